// Helpers of the CUDA emulation test: random data and the two comparisons of the GPU parity rule
// (exact: bit for bit; close: |emu - cpu| <= rtol |cpu| + 1e-6 max|cpu|, NaN where the CPU has NaN).
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_util.h"

namespace pw::test::emu {

// The emulated CUDA result `emu` against the CPU result `cpu`; `atol`: differences up to this much
// also pass (for results that are rounding noise around 0).
inline void expect_close(const std::vector<float>& emu, const std::vector<float>& cpu, const std::string& what,
                         double rtol = 1e-5, double atol = 0) {
  INFO(what);
  REQUIRE(emu.size() == cpu.size());
  std::vector<float> a = emu;
  std::vector<double> r(cpu.begin(), cpu.end());
  for (size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i]) != std::isnan(a[i])) {
      FAIL_CHECK("element " << i << ": got " << a[i] << ", expected " << r[i]);
      return;
    }
    if (std::isnan(r[i])) a[i] = 0.f, r[i] = 0.0;
    if (std::fabs(double(a[i]) - r[i]) <= atol) a[i] = float(r[i]);
  }
  const std::string err = check_close(a, r, rtol, 1e-6);
  CHECK_MESSAGE(err.empty(), err);
}

template <class T>
inline void expect_exact(const std::vector<T>& emu, const std::vector<T>& cpu, const std::string& what) {
  INFO(what);
  REQUIRE(emu.size() == cpu.size());
  size_t first = emu.size();
  for (size_t i = 0; i < emu.size() && first == emu.size(); ++i)
    if (std::memcmp(&emu[i], &cpu[i], sizeof(T)) != 0) first = i;
  std::ostringstream msg;
  if (first < emu.size())
    msg << "first difference at element " << first << ": got " << std::setprecision(9) << +emu[first]
        << ", expected " << +cpu[first];
  CHECK_MESSAGE(first == emu.size(), msg.str());
}

}  // namespace pw::test::emu
