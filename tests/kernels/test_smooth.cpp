// Pre-smoothing (kernels/smooth.h), CPU body, against direct (non-separable) sums in double over
// the clipped window: with per-axis renormalisation the separable filters equal these exactly.
#include <doctest/doctest.h>

#include <cmath>

#include "common/test_util.h"
#include "kernels/smooth.h"
#include "patch_test_util.h"

using namespace pw;
using namespace pw::kernels;

namespace {

// Reference: out(v) over the box [v+lo_a, v+hi_a] clipped to the volume, per axis a.
std::vector<double> reference(const std::vector<float>& in, int64_t nc, const int64_t vol[3], SmoothKind kind,
                              const float sigma[3], const int width[3]) {
  std::vector<double> out(in.size());
  int lo[3], hi[3];
  for (int a = 0; a < 3; ++a) {
    if (kind == SmoothKind::gaussian) {
      int R = sigma[a] > 0 ? int(std::ceil(3 * sigma[a])) : 0;
      lo[a] = -R;
      hi[a] = R;
    } else {
      lo[a] = -((width[a] - 1) / 2);
      hi[a] = width[a] / 2;
    }
  }
  auto tap = [&](int a, int k) {
    return kind == SmoothKind::gaussian && sigma[a] > 0 ? std::exp(-0.5 * (k / sigma[a]) * (k / sigma[a])) : 1.0;
  };
  const int64_t V = vol[0] * vol[1] * vol[2];
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t z = 0; z < vol[0]; ++z)
      for (int64_t y = 0; y < vol[1]; ++y)
        for (int64_t x = 0; x < vol[2]; ++x) {
          double acc = 0, ws = 0, mx = -1e300, mn = 1e300;
          for (int dz = lo[0]; dz <= hi[0]; ++dz)
            for (int dy = lo[1]; dy <= hi[1]; ++dy)
              for (int dx = lo[2]; dx <= hi[2]; ++dx) {
                int64_t zz = z + dz, yy = y + dy, xx = x + dx;
                if (zz < 0 || zz >= vol[0] || yy < 0 || yy >= vol[1] || xx < 0 || xx >= vol[2]) continue;
                double v = in[c * V + (zz * vol[1] + yy) * vol[2] + xx];
                double w = tap(0, dz) * tap(1, dy) * tap(2, dx);
                acc += w * v;
                ws += w;
                mx = std::max(mx, v);
                mn = std::min(mn, v);
              }
          out[c * V + (z * vol[1] + y) * vol[2] + x] =
              kind == SmoothKind::max ? mx : kind == SmoothKind::min ? mn : acc / ws;
        }
  return out;
}

}  // namespace

TEST_CASE("smooth: gaussian, box, max and min equal direct sums over the clipped window") {
  const int64_t nc = 2, vol[3] = {7, 9, 8};
  auto in = pw::test::patch::random_values(nc * 7 * 9 * 8, 21);
  std::vector<float> tmp(in.size()), out(in.size());
  const float sigma[3] = {0.8f, 1.3f, 0.f};  // W not filtered
  const int width[3] = {3, 4, 1};
  for (SmoothKind k : {SmoothKind::gaussian, SmoothKind::box, SmoothKind::max, SmoothKind::min}) {
    cpu::smooth(in.data(), nc, vol, k, sigma, width, tmp.data(), out.data());
    auto ref = reference(in, nc, vol, k, sigma, width);
    std::string err = pw::test::check_close(out, ref, 1e-5, 1e-6);
    CHECK_MESSAGE(err.empty(), int(k), ": ", err);
  }
  // A constant stays constant at the border; nothing to filter is a copy.
  std::vector<float> ones(in.size(), 3.f);
  cpu::smooth(ones.data(), nc, vol, SmoothKind::gaussian, sigma, width, tmp.data(), out.data());
  for (float v : out) REQUIRE(v == doctest::Approx(3.0).epsilon(1e-6));
  const float none[3] = {0, 0, 0};
  const int w1[3] = {1, 1, 1};
  cpu::smooth(in.data(), nc, vol, SmoothKind::box, none, w1, tmp.data(), out.data());
  CHECK(out == in);
  // 2D (D = 1) with all three axes asked for: the unit axis is left alone.
  const int64_t vol2[3] = {1, 9, 8};
  const float s2[3] = {2.f, 1.f, 1.f};
  const int wd2[3] = {5, 3, 2};
  for (SmoothKind k : {SmoothKind::gaussian, SmoothKind::max}) {
    std::vector<float> in2(in.begin(), in.begin() + 72), o2(72), t2(72);
    cpu::smooth(in2.data(), 1, vol2, k, s2, wd2, t2.data(), o2.data());
    auto ref = reference(in2, 1, vol2, k, s2, wd2);
    CHECK(pw::test::check_close(o2, ref, 1e-5, 1e-6).empty());
  }
}

TEST_CASE("undersampling of a patch matrix: row lengths, in axis order") {
  // Rotation by 90 degrees in (H, W) with scalings 2 (along patch H) and 3 (along patch W).
  const float m3[16] = {1, 0, 0, 0, 0, 0, 3, 0, 0, 2, 0, 0, 0, 0, 0, 1};
  float u[3];
  undersampling(m3, 3, u);
  CHECK(u[0] == 1.f);
  CHECK(u[1] == 3.f);
  CHECK(u[2] == 2.f);
  const float m2[9] = {0.6f * 2, -0.8f * 2, 5, 0.8f * 2, 0.6f * 2, 1, 0, 0, 1};
  undersampling(m2, 2, u);
  CHECK(u[0] == 1.f);
  CHECK(u[1] == doctest::Approx(2.0));
  CHECK(u[2] == doctest::Approx(2.0));
}
