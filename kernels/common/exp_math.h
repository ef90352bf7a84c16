// e^x for float, shared by the CPU and CUDA bodies (sigmoid, softmax, the cross-entropies).
//
// A call of the C library's expf per element keeps a loop scalar (GCC vectorises it only under
// -ffast-math): the sigmoid took 3.4 ns per element on 2 threads, 8.7% of bench_apply's tree case. exp_f32
// is branch-free arithmetic (selects, a bit-built power of two), so the loops that call it vectorise.
//
// Method: e^x = 2^n e^r with n = round(x / ln 2), r = x - n ln 2 (ln 2 in two parts: n times the first is
// exact, so r is exact to ~1e-10), |r| <= ln 2 / 2; e^r by its Taylor polynomial to r^7 (truncation below
// 6e-9 relative); 2^n as the product of two normal powers of two, so that results down through the
// subnormals round once. Within 2 ulp of the exact value (tests/kernels/test_exp.cpp checks every 61st float
// in [-104, 89]; every 7th measured 0.92 ulp at most with FMA, 1.19 without); e^0 = 1, -inf and anything
// below -104 give 0, +inf and anything above 88.73 give inf, NaN gives NaN.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/common/hd.h"

namespace pw::kernels::common {

// 2^k for k in [-126, 127], by its exponent bits.
PW_HD inline float pow2_normal(int32_t k) {
  const uint32_t bits = uint32_t(k + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

PW_HD inline float exp_f32(float x) {
  float xc = x < -104.f ? -104.f : x;  // e^-104 is below half the smallest subnormal; NaN stays NaN
  xc = xc > 89.f ? 89.f : xc;          // e^89 overflows to inf in the final product
  const float n = (xc * 1.44269502f + 12582912.f) - 12582912.f;  // round(x / ln 2), by 1.5 * 2^23
  const float r = (xc - n * 0.693145751953125f) - n * 1.42860677e-06f;
  float p = 1.98412698e-4f;  // 1/7!, then Horner down to 1/0!
  p = p * r + 1.38888889e-3f;
  p = p * r + 8.33333333e-3f;
  p = p * r + 4.16666667e-2f;
  p = p * r + 1.66666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t k = int32_t(n), a = k / 2;  // k in [-150, 129]: 2^k = 2^a 2^(k - a), both normal
  const float y = (p * pow2_normal(a)) * pow2_normal(k - a);
  return x == x ? y : x;
}

}  // namespace pw::kernels::common
