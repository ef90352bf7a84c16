// Small helpers for the op-fixture tests: load a case's array and compare with the README rule.
#pragma once
#include <doctest/doctest.h>

#include <string>

#include "common/test_util.h"
#include "engine/tensor.h"

namespace pw::test {

inline Npy fixture(const std::string& case_name, const std::string& array) {
  return load_npy(test_data(fs::path("op-fixtures") / case_name / (array + ".npy")));
}

// Checks `actual` against the fixture array with the op-fixtures tolerance rule (shape included).
inline void check_fixture(const Tensor& actual, const std::string& case_name, const std::string& array) {
  Npy ref = fixture(case_name, array);
  INFO(case_name << "/" << array);
  CHECK(actual.numel() == shape_numel(ref.shape));
  std::string err = check_close(actual.cpu().to_vector(), ref.data);
  CHECK_MESSAGE(err.empty(), err);
}

}  // namespace pw::test
