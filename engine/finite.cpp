// Finiteness checks (engine/finite.h).
#include "engine/finite.h"

#include <cstring>

#include "engine/ops.h"

namespace pw {

void FiniteCheck::add(const Tensor& t) {
  if (!t.defined() || t.dtype() != DType::f32 || t.numel() == 0) return;
  if (!t.is_cuda()) {
    if (host_bad_) return;
    const float* p = t.f32();
    uint32_t bad = 0;
    for (int64_t i = 0, n = t.numel(); i < n; ++i) {  // exponent bits all ones: an infinity or a NaN
      uint32_t b;
      std::memcpy(&b, p + i, sizeof b);
      bad |= static_cast<uint32_t>((b & 0x7f800000u) == 0x7f800000u);
    }
    host_bad_ = bad != 0;
    return;
  }
  NoGradGuard ng;
  Var s = pw::sum(pw::scale(constant(t), 0.f));
  device_sum_ = device_sum_ ? pw::add(device_sum_, s) : s;
}

bool FiniteCheck::ok() {
  if (host_bad_) return false;
  if (!device_sum_) return true;
  const float s = device_sum_->value.cpu().f32()[0];
  device_sum_ = Var();
  host_bad_ = s != 0.f;  // NaN compares unequal
  return !host_bad_;
}

bool all_finite(const Tensor& t) {
  FiniteCheck c;
  c.add(t);
  return c.ok();
}

bool all_finite(const std::vector<Tensor>& ts) {
  FiniteCheck c;
  for (const Tensor& t : ts) c.add(t);
  return c.ok();
}

}  // namespace pw
