// Finiteness checks of tensors (divergence in training, damaged models, bad network outputs).
#pragma once
#include <vector>

#include "engine/autograd.h"

namespace pw {

// Finiteness of f32 tensors (no NaN, no infinity; other dtypes always pass) at the cost of one
// one-number download at most: a tensor on the host is scanned when added; a tensor on a GPU is
// reduced there with engine ops, sum(0 * t), which is exactly 0 when every value is finite (0 * inf
// is NaN, a NaN survives the sum, and a sum of zeros cannot overflow), the sums accumulating on the
// device until ok() downloads one number.
class FiniteCheck {
 public:
  void add(const Tensor& t);
  bool ok();  // every tensor added so far is finite
 private:
  bool host_bad_ = false;
  Var device_sum_;
};
bool all_finite(const Tensor& t);
bool all_finite(const std::vector<Tensor>& ts);

}  // namespace pw
