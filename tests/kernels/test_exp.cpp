// kernels/common/exp_math.h: exp_f32 against e^x in double, within 2 ulp over the float range it covers,
// exact where it must be (e^0, the limits, NaN); and the kernels that use it (sigmoid, softmax) against
// double references.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/common/exp_math.h"
#include "kernels/elementwise.h"

using pw::kernels::common::exp_f32;

namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// |y - exact| in units of the float spacing at the exact value (2^-149 among the subnormals); inf counts
// as 1 ulp above FLT_MAX.
double ulp_error(float y, double exact) {
  const double max = std::numeric_limits<float>::max(), top_ulp = std::ldexp(1.0, 104);
  if (std::isinf(y)) return exact >= max ? 0.0 : (max + top_ulp - exact) / top_ulp;
  const int e = exact == 0.0 ? -149 : std::max(std::ilogb(exact) - 23, -149);
  return std::fabs(double(y) - exact) / std::ldexp(1.0, e);
}

}  // namespace

TEST_CASE("exp_f32 is within 2 ulp of e^x across the float range") {
  double worst = 0.0;
  float worst_x = 0.f;
  // Every 61st float from 0 up to 89 and from -0 down to -104 (bit patterns), ~36 M values.
  for (uint32_t sign : {0u, 0x80000000u}) {
    const uint32_t last = sign ? 0x42d00000u : 0x42b20000u;  // 104, 89
    for (uint32_t b = 0; b <= last; b += 61) {
      const float x = from_bits(sign | b);
      const double err = ulp_error(exp_f32(x), std::exp(double(x)));
      if (err > worst) worst = err, worst_x = x;
    }
  }
  INFO("worst at x = " << worst_x);
  CHECK(worst <= 2.0);
}

TEST_CASE("exp_f32 at its limits") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(exp_f32(0.f) == 1.f);
  CHECK(exp_f32(-0.f) == 1.f);
  CHECK(exp_f32(1.f) == doctest::Approx(2.718281828).epsilon(1e-7));
  CHECK(exp_f32(-inf) == 0.f);
  CHECK(exp_f32(-1000.f) == 0.f);
  CHECK(exp_f32(inf) == inf);
  CHECK(exp_f32(88.72f) < inf);  // e^88.72 = 3.39e38 < FLT_MAX
  CHECK(exp_f32(88.73f) == inf);
  CHECK(exp_f32(-87.f) > 0.f);
  CHECK(exp_f32(-100.f) > 0.f);  // a subnormal: 3.7e-44
  CHECK(ulp_error(exp_f32(-100.f), std::exp(-100.0)) <= 1.0);
  CHECK(std::isnan(exp_f32(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("sigmoid and softmax kernels against double references") {
  std::vector<float> x;
  for (int i = -2000; i <= 2000; ++i) x.push_back(float(i) * 0.0625f);  // -125 .. 125: both tails saturate
  x.push_back(std::numeric_limits<float>::infinity());
  x.push_back(-std::numeric_limits<float>::infinity());
  std::vector<float> y(x.size());
  pw::kernels::cpu::sigmoid_forward(x.data(), y.data(), int64_t(x.size()));
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double exact = 1.0 / (1.0 + std::exp(-double(x[i])));
    worst = std::max(worst, ulp_error(y[i], exact));
  }
  CHECK(worst <= 3.0);  // exp_f32's 2 ulp, then 1 + e and the division
  CHECK(y[y.size() - 2] == 1.f);
  CHECK(y[y.size() - 1] == 0.f);

  // Softmax over 3 channels of 1001 positions (outer 2), one channel far above the others at some.
  const int64_t C = 3, S = 1001, O = 2;
  std::vector<float> z(O * C * S), p(z.size());
  for (int64_t i = 0; i < int64_t(z.size()); ++i) z[i] = float((i * 37) % 101) * 0.7f - 35.f;
  pw::kernels::cpu::softmax_forward(z.data(), p.data(), O, C, S);
  double worst_rel = 0.0;
  for (int64_t o = 0; o < O; ++o)
    for (int64_t s = 0; s < S; ++s) {
      // The differences to the maximum as the kernel forms them, in float; the rest exact.
      float mx = z[o * C * S + s];
      for (int64_t c = 1; c < C; ++c) mx = std::max(mx, z[(o * C + c) * S + s]);
      double sum = 0.0;
      for (int64_t c = 0; c < C; ++c) sum += std::exp(double(z[(o * C + c) * S + s] - mx));
      for (int64_t c = 0; c < C; ++c) {
        const double exact = std::exp(double(z[(o * C + c) * S + s] - mx)) / sum;
        worst_rel = std::max(worst_rel, std::fabs(p[(o * C + c) * S + s] - exact) / std::max(exact, 1e-30));
      }
    }
  CHECK(worst_rel < 1e-6);
}
