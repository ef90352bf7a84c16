// max_pool, avg_pool, upsample: every op-fixture case (3D, forward and gradient), plus 2D and
// larger 3D shapes against naive double-precision loops (forward) and the adjoint identity
// <op(x), g> == <x, op^T(g)> (backward), plus shape errors.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/test_util.h"
#include "engine/gradcheck.h"
#include "engine/ops.h"
#include "engine/op_fixture.h"

namespace {

using pw::Tensor;
using pw::Var;

Tensor random_tensor(const pw::Shape& s, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng);
  return t;
}

// Spatial dims of a 4-D or 5-D shape as D, H, W (D = 1 for 2D).
std::array<int64_t, 3> spatial(const pw::Shape& s) {
  return s.size() == 5 ? std::array<int64_t, 3>{s[2], s[3], s[4]} : std::array<int64_t, 3>{1, s[2], s[3]};
}

// Naive forward of every op on one (n, c) plane layout, in double precision.
enum class Kind { max, avg, nearest, linear_false, linear_true };

double linear_src(int64_t dst, int64_t in, int64_t out, bool align) {
  if (align) return out > 1 ? dst * double(in - 1) / double(out - 1) : 0.0;
  return std::max(0.0, (dst + 0.5) * double(in) / double(out) - 0.5);
}

std::vector<double> naive_forward(Kind kind, const Tensor& x, const pw::Shape& ys) {
  const auto in = spatial(x.shape()), out = spatial(ys);
  const int64_t planes = x.dim(0) * x.dim(1), iv = in[0] * in[1] * in[2];
  const bool two_d = x.ndim() == 4;
  const int k = 2;  // pooling kernel = stride = 2 in these tests
  std::vector<double> y;
  const float* xp = x.f32();
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t d = 0; d < out[0]; ++d)
      for (int64_t h = 0; h < out[1]; ++h)
        for (int64_t w = 0; w < out[2]; ++w) {
          auto at = [&](int64_t a, int64_t b, int64_t c) { return double(xp[p * iv + (a * in[1] + b) * in[2] + c]); };
          double v = 0.0;
          if (kind == Kind::max || kind == Kind::avg) {
            double best = -1e300, sum = 0.0;
            const int kd = two_d ? 1 : k;
            for (int a = 0; a < kd; ++a)
              for (int b = 0; b < k; ++b)
                for (int c = 0; c < k; ++c) {
                  double e = at((two_d ? d : d * k + a), h * k + b, w * k + c);
                  best = std::max(best, e);
                  sum += e;
                }
            v = kind == Kind::max ? best : sum / (kd * k * k);
          } else if (kind == Kind::nearest) {
            v = at(d * in[0] / out[0], h * in[1] / out[1], w * in[2] / out[2]);
          } else {
            const bool align = kind == Kind::linear_true;
            double s[3] = {linear_src(d, in[0], out[0], align), linear_src(h, in[1], out[1], align),
                           linear_src(w, in[2], out[2], align)};
            int64_t i0[3], i1[3];
            double f[3];
            for (int a = 0; a < 3; ++a) {
              i0[a] = static_cast<int64_t>(std::floor(s[a]));
              i1[a] = std::min(i0[a] + 1, in[a] - 1);
              f[a] = s[a] - i0[a];
            }
            for (int a = 0; a < 2; ++a)
              for (int b = 0; b < 2; ++b)
                for (int c = 0; c < 2; ++c)
                  v += (a ? f[0] : 1 - f[0]) * (b ? f[1] : 1 - f[1]) * (c ? f[2] : 1 - f[2]) *
                       at(a ? i1[0] : i0[0], b ? i1[1] : i0[1], c ? i1[2] : i0[2]);
          }
          y.push_back(v);
        }
  return y;
}

Var run_op(Kind kind, const Var& x) {
  switch (kind) {
    case Kind::max: return pw::max_pool(x, 2, 2);
    case Kind::avg: return pw::avg_pool(x, 2, 2);
    case Kind::nearest: return pw::upsample(x, 2, pw::UpsampleMode::nearest);
    case Kind::linear_false: return pw::upsample(x, 2, pw::UpsampleMode::linear, false);
    default: return pw::upsample(x, 2, pw::UpsampleMode::linear, true);
  }
}

void check_vs_naive(Kind kind, const pw::Shape& xs, unsigned seed) {
  INFO("kind " << int(kind) << " x " << pw::shape_str(xs));
  Var x = pw::variable(random_tensor(xs, seed), true);
  Var y = run_op(kind, x);
  std::string err = pw::test::check_close(y->value.to_vector(), naive_forward(kind, x->value, y->value.shape()));
  CHECK_MESSAGE(err.empty(), err);
  // Backward is the adjoint of the forward: <y, g> == <x, dx> for these ops that are linear in x
  // (max pool is linear for a fixed argmax, i.e. for a fixed x).
  Tensor g = random_tensor(y->value.shape(), seed + 1);
  pw::backward(y, g);
  double lhs = 0.0, rhs = 0.0;
  for (int64_t i = 0; i < g.numel(); ++i) lhs += double(y->value.f32()[i]) * g.f32()[i];
  for (int64_t i = 0; i < x->value.numel(); ++i) rhs += double(x->value.f32()[i]) * x->grad.f32()[i];
  CHECK(rhs == doctest::Approx(lhs).epsilon(1e-5));
}

}  // namespace

TEST_CASE("max_pool, avg_pool and upsample match every op-fixture case (forward and gradient)") {
  std::ifstream f(pw::test::test_data("op-fixtures/index.json"));
  auto index = nlohmann::json::parse(f);
  int ran = 0;
  for (const auto& c : index["cases"]) {
    const std::string op = c["op"], name = c["name"];
    if (op != "max_pool3d" && op != "avg_pool3d" && op != "upsample") continue;
    CAPTURE(name);
    const auto& prm = c["params"];
    Var x = pw::variable(pw::test::fixture(name, "x").to_f32(), true);
    Var y;
    if (op == "max_pool3d") {
      y = pw::max_pool(x, prm["kernel"], prm["stride"]);
    } else if (op == "avg_pool3d") {
      y = pw::avg_pool(x, prm["kernel"], prm["stride"]);
    } else {
      const bool linear = prm["mode"] == "trilinear";
      REQUIRE((linear || prm["mode"] == "nearest"));
      y = pw::upsample(x, prm["scale_factor"], linear ? pw::UpsampleMode::linear : pw::UpsampleMode::nearest,
                       linear && prm["align_corners"].get<bool>());
    }
    CHECK(y->value.shape() == pw::test::fixture(name, "y").shape);
    pw::test::check_fixture(y->value, name, "y");
    pw::backward(y, pw::test::fixture(name, "grad_y").to_f32());
    pw::test::check_fixture(x->grad, name, "grad_x");
    ++ran;
  }
  CHECK(ran == 7);  // 2 max, 2 avg, 3 upsample cases in index.json
}

TEST_CASE("2D pooling and upsampling match naive loops; backward is the adjoint") {
  for (Kind k : {Kind::max, Kind::avg, Kind::nearest, Kind::linear_false, Kind::linear_true}) {
    check_vs_naive(k, {2, 3, 9, 7}, 1);
    check_vs_naive(k, {1, 2, 2, 5}, 2);  // one pooled row, odd width
  }
}

TEST_CASE("3D pooling and upsampling on many planes (threaded) match naive loops") {
  for (Kind k : {Kind::max, Kind::avg, Kind::nearest, Kind::linear_false, Kind::linear_true})
    check_vs_naive(k, {3, 20, 6, 9, 8}, 3);
}

TEST_CASE("max_pool gradient goes to the window's max only") {
  Var x = pw::variable(Tensor::from_vector({1, 1, 2, 2}, {1.0f, 4.0f, 3.0f, 2.0f}), true);
  Var y = pw::max_pool(x, 2, 2);
  CHECK(y->value.f32()[0] == 4.0f);
  pw::backward(y, Tensor::full({1, 1, 1, 1}, 5.0f));
  CHECK(x->grad.to_vector() == std::vector<float>{0.0f, 5.0f, 0.0f, 0.0f});
}

TEST_CASE("max_pool propagates NaN like PyTorch; windows without NaN are unaffected") {
  // Windows (2x2): [1 NaN; 3 2] -> NaN; [5 6; 7 8] -> 8; [NaN 0; NaN 9] -> NaN (the first NaN of the last
  // row holding one, our rule); [-1 -2; -3 -4] -> -1. Gradient goes to the chosen voxel.
  const float nan = std::nanf("");
  Var x = pw::variable(Tensor::from_vector({1, 1, 4, 4}, {1, nan, 5, 6,  //
                                                           3, 2, 7, 8,    //
                                                           nan, 0, -1, -2,  //
                                                           nan, 9, -3, -4}),
                       true);
  Var y = pw::max_pool(x, 2, 2);
  const std::vector<float> v = y->value.to_vector();
  CHECK(std::isnan(v[0]));
  CHECK(v[1] == 8.f);
  CHECK(std::isnan(v[2]));
  CHECK(v[3] == -1.f);
  pw::backward(y, Tensor::full({1, 1, 2, 2}, 1.0f));
  const std::vector<float> g = x->grad.to_vector();
  const std::vector<float> want = {0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0};
  CHECK(g == want);
}

TEST_CASE("2x2x2 max_pool on tied values and a NaN: the first max of each window, in window order") {
  // Values from {0, 1, 2}: most windows tie. The gradient of sum(y) lands on the chosen voxel of each
  // window, which must be the first maximum in (d, h, w) order; the window holding the NaN picks it.
  const int64_t C = 3, D = 6, H = 4, W = 38;  // W: several SIMD vectors and a remainder
  std::mt19937 rng(5);
  Tensor t = Tensor::empty({2, C, D, H, W});
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = static_cast<float>(rng() % 3);
  const int64_t nan_at = ((1 * C + 2) * D + 3) * H * W + 2 * W + 17;  // sample 1, channel 2, (3, 2, 17)
  t.f32()[nan_at] = std::nanf("");
  Var x = pw::variable(t, true);
  Var y = pw::max_pool(x, 2, 2);
  pw::backward(y, Tensor::full(y->value.shape(), 1.0f));
  std::vector<float> want(static_cast<size_t>(t.numel()), 0.0f);
  for (int64_t p = 0; p < 2 * C; ++p)
    for (int64_t od = 0; od < D / 2; ++od)
      for (int64_t oh = 0; oh < H / 2; ++oh)
        for (int64_t ow = 0; ow < W / 2; ++ow) {
          int64_t best = -1;
          for (int64_t d = 2 * od; d < 2 * od + 2; ++d)
            for (int64_t h = 2 * oh; h < 2 * oh + 2; ++h)
              for (int64_t w = 2 * ow; w < 2 * ow + 2; ++w) {
                const int64_t i = ((p * D + d) * H + h) * W + w;
                const float v = t.f32()[i];
                if (best < 0 || (!std::isnan(t.f32()[best]) && (std::isnan(v) || v > t.f32()[best]))) best = i;
              }
          want[static_cast<size_t>(best)] += 1.0f;
        }
  CHECK(x->grad.to_vector() == want);
  const std::vector<float> v = y->value.to_vector();
  CHECK(std::isnan(v[static_cast<size_t>(((1 * C + 2) * (D / 2) + 1) * (H / 2) * (W / 2) + 1 * (W / 2) + 8)]));
  int64_t nans = 0;
  for (float f : v) nans += std::isnan(f) ? 1 : 0;
  CHECK(nans == 1);
}

TEST_CASE("pooling and upsampling shape errors name the op") {
  Var x = pw::constant(Tensor::zeros({1, 2, 3, 3}));
  CHECK_THROWS_WITH_AS(pw::max_pool(x, 4, 4), doctest::Contains("max_pool"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(pw::avg_pool(x, 0, 1), doctest::Contains("avg_pool"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(pw::upsample(x, 0), doctest::Contains("upsample"), std::invalid_argument);
  CHECK_THROWS_AS(pw::max_pool(pw::constant(Tensor::zeros({2, 3})), 2, 2), std::invalid_argument);
}

TEST_CASE("pooling and upsampling pass the finite-difference gradient check") {
  // Distinct, well separated values so that no max-pool window is near a tie.
  Tensor xp = Tensor::empty({1, 2, 4, 4, 4});
  for (int64_t i = 0; i < xp.numel(); ++i) xp.f32()[i] = float((i * 37) % 128) * 0.05f - 3.0f;
  Tensor x2 = random_tensor({2, 2, 3, 4}, 5);
  for (Kind k : {Kind::max, Kind::avg, Kind::nearest, Kind::linear_false, Kind::linear_true}) {
    for (const Tensor& x : {xp, x2}) {
      if (k == Kind::max && x.ndim() == 4) continue;  // random values may tie within h
      pw::GradcheckResult r = pw::gradcheck([k](const std::vector<Var>& in) { return run_op(k, in[0]); }, {x});
      INFO("kind " << int(k) << " x " << pw::shape_str(x.shape()));
      CHECK(r.checked > 0);
      CHECK_MESSAGE(r.ok, r.message);
    }
  }
}
