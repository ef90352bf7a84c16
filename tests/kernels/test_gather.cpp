// Affine patch gather (kernels/gather.h), CPU body: grid_sample fixtures, exactness, adjointness,
// nested gather, integer sources and labels, the inside mask.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "common/test_util.h"
#include "kernels/common/patch_math.h"
#include "kernels/cpu_paths.h"
#include "kernels/gather.h"
#include "kernels/parallel.h"
#include "patch_test_util.h"

using namespace pw;
using namespace pw::kernels;
using namespace pw::test::patch;

namespace {

void run_grid_sample_case(const char* name, Interp mode) {
  auto dir = test::test_data(std::string("op-fixtures/") + name);
  auto x = test::load_npy(dir / "x.npy"), matrix = test::load_npy(dir / "matrix.npy"),
       y = test::load_npy(dir / "y.npy"), gy = test::load_npy(dir / "grad_y.npy"),
       gx = test::load_npy(dir / "grad_x.npy");
  const int64_t N = x.shape[0], C = x.shape[1];
  const int64_t in[3] = {x.shape[2], x.shape[3], x.shape[4]};
  const int64_t out[3] = {y.shape[2], y.shape[3], y.shape[4]};
  // Each batch element is its own volume: a nested gather with parent[p] = p.
  PatchGeom g = geom3(C, N, {in[0], in[1], in[2]}, N, {out[0], out[1], out[2]});
  std::vector<float> mats;
  for (int64_t n = 0; n < N; ++n) {
    auto m = grid_sample_matrix(matrix.data.data() + n * 16, in, out);
    mats.insert(mats.end(), m.begin(), m.end());
  }
  std::vector<int32_t> parent(N);
  for (int64_t n = 0; n < N; ++n) parent[n] = int32_t(n);
  std::vector<float> xs(x.data.begin(), x.data.end()), gys(gy.data.begin(), gy.data.end());
  std::vector<float> ys(y.data.size());
  cpu::gather_affine(xs.data(), g, mats.data(), parent.data(), mode, false, ys.data());
  std::string err = test::check_close(ys, y.data);
  CHECK_MESSAGE(err.empty(), name, " y: ", err);
  std::vector<float> gxs(gx.data.size(), 0.f);
  cpu::gather_affine_backward(gys.data(), g, mats.data(), parent.data(), mode, false, gxs.data());
  err = test::check_close(gxs, gx.data);
  CHECK_MESSAGE(err.empty(), name, " grad_x: ", err);
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

}  // namespace

TEST_CASE("gather_affine matches grid_sample fixtures (value and input gradient)") {
  run_grid_sample_case("grid_sample3d_nearest", Interp::nearest);
  run_grid_sample_case("grid_sample3d_trilinear", Interp::linear);
}

TEST_CASE("gather_affine: identity and integer shifts are bit-exact, outside is 0 (2D and 3D, all modes)") {
  const int64_t C = 2, D = 5, H = 6, W = 7;
  auto src = random_values(C * D * H * W, 1);
  for (Interp mode : {Interp::nearest, Interp::linear}) {
    // 3D: patch 4x5x6 shifted by (1, -2, 3): partly outside along H and W.
    const int64_t s[3] = {4, 5, 6}, sh[3] = {1, -2, 3};
    PatchGeom g = geom3(C, 1, {D, H, W}, 1, {s[0], s[1], s[2]});
    std::vector<float> m = {1, 0, 0, float(sh[0]), 0, 1, 0, float(sh[1]), 0, 0, 1, float(sh[2]), 0, 0, 0, 1};
    std::vector<float> out(C * s[0] * s[1] * s[2] + s[0] * s[1] * s[2], -7.f);
    cpu::gather_affine(src.data(), g, m.data(), nullptr, mode, true, out.data());
    int mismatches = 0;
    for (int64_t c = 0; c <= C; ++c)
      for (int64_t z = 0; z < s[0]; ++z)
        for (int64_t y = 0; y < s[1]; ++y)
          for (int64_t x = 0; x < s[2]; ++x) {
            int64_t sz = z + sh[0], sy = y + sh[1], sx = x + sh[2];
            bool in = sz >= 0 && sz < D && sy >= 0 && sy < H && sx >= 0 && sx < W;
            float expect = c == C ? (in ? 1.f : 0.f) : (in ? src[((c * D + sz) * H + sy) * W + sx] : 0.f);
            float got = out[((c * s[0] + z) * s[1] + y) * s[2] + x];
            mismatches += std::memcmp(&expect, &got, sizeof(float)) != 0;
          }
    CHECK(mismatches == 0);
    // 2D: identity over the whole image.
    PatchGeom g2 = geom2(C, 1, {H, W}, 1, {H, W});
    std::vector<float> m2 = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    std::vector<float> src2(src.begin(), src.begin() + C * H * W), out2(C * H * W);
    cpu::gather_affine(src2.data(), g2, m2.data(), nullptr, mode, false, out2.data());
    CHECK(std::memcmp(src2.data(), out2.data(), src2.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("gather_affine: a 90-degree rotation equals the transposed and flipped array") {
  const int64_t C = 1, D = 3, H = 5, W = 4;
  auto src = random_values(C * D * H * W, 2);
  // out[d][i][j] = src[d][j][W-1-i]: patch (D, W, H); source (D, H, W) = (x0, x2, W-1-x1).
  std::vector<float> m = {1, 0, 0, 0, 0, 0, 1, 0, 0, -1, 0, float(W - 1), 0, 0, 0, 1};
  PatchGeom g = geom3(C, 1, {D, H, W}, 1, {D, W, H});
  for (Interp mode : {Interp::nearest, Interp::linear}) {
    std::vector<float> out(D * W * H);
    cpu::gather_affine(src.data(), g, m.data(), nullptr, mode, false, out.data());
    int bad = 0;
    for (int64_t d = 0; d < D; ++d)
      for (int64_t i = 0; i < W; ++i)
        for (int64_t j = 0; j < H; ++j) bad += out[(d * W + i) * H + j] != src[(d * H + j) * W + (W - 1 - i)];
    CHECK(bad == 0);
  }
  // 2D: rotation by 90 degrees in the (H, W) plane.
  PatchGeom g2 = geom2(1, 1, {H, W}, 1, {W, H});
  std::vector<float> m2 = {0, 1, 0, -1, 0, float(W - 1), 0, 0, 1};
  std::vector<float> out2(W * H);
  cpu::gather_affine(src.data(), g2, m2.data(), nullptr, Interp::nearest, false, out2.data());
  int bad = 0;
  for (int64_t i = 0; i < W; ++i)
    for (int64_t j = 0; j < H; ++j) bad += out2[i * H + j] != src[j * W + (W - 1 - i)];
  CHECK(bad == 0);
}

TEST_CASE("gather_affine_backward is the adjoint of gather_affine (2D/3D, nested, both modes)") {
  std::mt19937_64 rng(3);
  for (int d : {2, 3}) {
    for (Interp mode : {Interp::nearest, Interp::linear}) {
      for (bool mask : {false, true}) {
        const int64_t C = 2, Q = 2, P = 5;
        std::vector<int64_t> vol = d == 3 ? std::vector<int64_t>{9, 10, 11} : std::vector<int64_t>{13, 12};
        std::vector<int64_t> s = d == 3 ? std::vector<int64_t>{4, 5, 6} : std::vector<int64_t>{7, 6};
        PatchGeom g = d == 3 ? geom3(C, Q, vol, P, s) : geom2(C, Q, vol, P, s);
        std::vector<float> mats;
        std::vector<int32_t> parent;
        for (int64_t p = 0; p < P; ++p) {
          std::vector<double> centre;
          for (int a = 0; a < d; ++a) centre.push_back(std::uniform_real_distribution<double>(0, vol[a])(rng));
          push_random_matrix(mats, d, centre, {g.patch[0], g.patch[1], g.patch[2]}, 0.7, 1.6, rng);
          parent.push_back(int32_t(p % Q));
        }
        const int64_t Cout = C + (mask ? 1 : 0);
        auto x = random_values(Q * C * g.vol_numel(), 4);
        auto y = random_values(P * Cout * g.patch_numel(), 5);
        std::vector<float> gx(P * Cout * g.patch_numel()), xty(x.size(), 0.f);
        cpu::gather_affine(x.data(), g, mats.data(), parent.data(), mode, mask, gx.data());
        cpu::gather_affine_backward(y.data(), g, mats.data(), parent.data(), mode, mask, xty.data());
        if (mask)  // the mask channel is no function of x: leave it out of <gather(x), y>
          for (int64_t p = 0; p < P; ++p)
            for (int64_t i = 0; i < g.patch_numel(); ++i) y[(p * Cout + C) * g.patch_numel() + i] = 0.f;
        double lhs = dot(gx, y), rhs = dot(x, xty);
        CHECK_MESSAGE(std::fabs(lhs - rhs) <= 1e-5 * std::fabs(lhs), "d=", d, " lhs ", lhs, " rhs ", rhs);
        CHECK(std::fabs(lhs) > 1e-3);  // something was sampled
      }
    }
  }
}

TEST_CASE("nested gather equals gathering from each parent alone; threads do not change results") {
  std::mt19937_64 rng(6);
  const int64_t C = 3, Q = 3, P = 7;
  std::vector<int64_t> vol = {8, 9, 10}, s = {5, 5, 5};
  PatchGeom g = geom3(C, Q, vol, P, s);
  std::vector<float> mats;
  std::vector<int32_t> parent;
  for (int64_t p = 0; p < P; ++p) {
    push_random_matrix(mats, 3, {4, 4.5, 5}, s, 0.5, 1.5, rng);
    parent.push_back(int32_t((p * 2) % Q));
  }
  auto x = random_values(Q * C * g.vol_numel(), 7);
  for (Interp mode : {Interp::nearest, Interp::linear}) {
    std::vector<float> all(P * C * g.patch_numel());
    cpu::gather_affine(x.data(), g, mats.data(), parent.data(), mode, false, all.data());
    PatchGeom g1 = g;
    g1.num_vols = 1;
    g1.num_patches = 1;
    for (int64_t p = 0; p < P; ++p) {
      std::vector<float> one(C * g.patch_numel());
      cpu::gather_affine(x.data() + parent[p] * C * g.vol_numel(), g1, mats.data() + p * 16, nullptr, mode, false,
                         one.data());
      CHECK(std::memcmp(one.data(), all.data() + p * C * g.patch_numel(), one.size() * sizeof(float)) == 0);
    }
    int prev = num_threads();
    set_num_threads(1);
    std::vector<float> serial(all.size()), gs(x.size(), 0.f), gp(x.size(), 0.f);
    cpu::gather_affine(x.data(), g, mats.data(), parent.data(), mode, false, serial.data());
    cpu::gather_affine_backward(all.data(), g, mats.data(), parent.data(), mode, false, gs.data());
    set_num_threads(3);
    cpu::gather_affine_backward(all.data(), g, mats.data(), parent.data(), mode, false, gp.data());
    set_num_threads(prev);
    CHECK(std::memcmp(serial.data(), all.data(), all.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(gs.data(), gp.data(), gs.size() * sizeof(float)) == 0);
  }
  std::vector<int32_t> bad = parent;
  bad[2] = int32_t(Q);
  std::vector<float> out(P * C * g.patch_numel());
  CHECK_THROWS_AS(cpu::gather_affine(x.data(), g, mats.data(), bad.data(), Interp::nearest, false, out.data()),
                  std::invalid_argument);
}

TEST_CASE("gather_affine reads integer sources directly; labels are nearest into int32") {
  std::mt19937_64 rng(8);
  const int64_t D = 6, H = 7, W = 8;
  PatchGeom g = geom3(1, 1, {D, H, W}, 3, {4, 4, 4});
  std::vector<float> mats;
  for (int p = 0; p < 3; ++p) push_random_matrix(mats, 3, {3, 3.5, 4}, {4, 4, 4}, 0.8, 1.7, rng);
  std::vector<uint8_t> u8(D * H * W);
  std::vector<int16_t> i16(u8.size());
  std::vector<int32_t> i32(u8.size());
  std::vector<float> f32(u8.size());
  for (size_t i = 0; i < u8.size(); ++i) {
    u8[i] = uint8_t(rng() % 256);
    i16[i] = int16_t(int(u8[i]) * 100 - 12000);
    i32[i] = int32_t(u8[i]) * 70000 - 9000000;
  }
  const int64_t n = 3 * g.patch_numel();
  for (Interp mode : {Interp::nearest, Interp::linear}) {
    std::vector<float> a(n), b(n);
    for (size_t i = 0; i < u8.size(); ++i) f32[i] = float(u8[i]);
    cpu::gather_affine(u8.data(), g, mats.data(), nullptr, mode, false, a.data());
    cpu::gather_affine(f32.data(), g, mats.data(), nullptr, mode, false, b.data());
    CHECK(std::memcmp(a.data(), b.data(), n * sizeof(float)) == 0);
    for (size_t i = 0; i < u8.size(); ++i) f32[i] = float(i16[i]);
    cpu::gather_affine(i16.data(), g, mats.data(), nullptr, mode, false, a.data());
    cpu::gather_affine(f32.data(), g, mats.data(), nullptr, mode, false, b.data());
    CHECK(std::memcmp(a.data(), b.data(), n * sizeof(float)) == 0);
  }
  // Labels: int32 patches equal to the nearest float gather of the same values (all below 2^24).
  auto check_labels = [&](auto& labels) {
    std::vector<float> f(n);
    std::vector<int32_t> lab(n);
    for (size_t i = 0; i < labels.size(); ++i) f32[i] = float(labels[i]);
    cpu::gather_affine_labels(labels.data(), g, mats.data(), nullptr, lab.data());
    cpu::gather_affine(f32.data(), g, mats.data(), nullptr, Interp::nearest, false, f.data());
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) bad += float(lab[i]) != f[i];
    CHECK(bad == 0);
  };
  check_labels(u8);
  check_labels(i16);
  check_labels(i32);
}

TEST_CASE("gather_affine: inside mask follows the nearest voxel; linear weights are not renormalised") {
  // One voxel sampled at (1, 1, -0.25): the nearest voxel (1, 1, 0) is inside (mask 1,
  // value src), linear gives 0.75 * src (the neighbour at -1 is outside and counts 0).
  const int64_t D = 2, H = 2, W = 3;
  std::vector<float> src = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  PatchGeom g = geom3(1, 1, {D, H, W}, 1, {1, 1, 1});
  std::vector<float> m = {1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, -0.25f, 0, 0, 0, 1};
  std::vector<float> out(2);
  cpu::gather_affine(src.data(), g, m.data(), nullptr, Interp::linear, true, out.data());
  CHECK(out[0] == doctest::Approx(0.75 * 10));
  CHECK(out[1] == 1.f);
  m[11] = -0.75f;  // nearest voxel -1: outside
  cpu::gather_affine(src.data(), g, m.data(), nullptr, Interp::linear, true, out.data());
  CHECK(out[0] == doctest::Approx(0.25 * 10));
  CHECK(out[1] == 0.f);
  cpu::gather_affine(src.data(), g, m.data(), nullptr, Interp::nearest, true, out.data());
  CHECK(out[0] == 0.f);
  CHECK(out[1] == 0.f);
  m[11] = NAN;  // a NaN coordinate samples nothing
  cpu::gather_affine(src.data(), g, m.data(), nullptr, Interp::linear, true, out.data());
  CHECK(out[0] == 0.f);
  CHECK(out[1] == 0.f);
}

// The CPU body takes vectorised fast paths for patches and rows that lie inside the source (index
// buffers, pair gathers of x-neighbours); every voxel must still equal the per-voxel definition of
// kernels/common/patch_math.h bit for bit. Patches fully inside, crossing the border, and placed half
// a voxel off the grid; rows of 32 voxels (patches inside go plane by plane in strips of 8) and of 13
// (vector tails, rows); 2D and 3D; one channel and two; both per-CPU ways of reading the source
// (kernels/cpu_paths.h: vector gathers, scalar loads); with the inside mask channel too (the nearest
// voxel exists), which must not change the values.
TEST_CASE("gather_affine: fast paths equal the per-voxel definition bit for bit") {
  using namespace pw::kernels::common;
  const cpu::GatherLoads saved_loads = cpu::gather_loads();
  MESSAGE(cpu::cpu_paths_description());
  for (int64_t C : {int64_t(1), int64_t(2)})
  for (int d : {2, 3}) {
    for (int64_t s : {int64_t(13), int64_t(32)}) {
      const std::vector<int64_t> vol = d == 3 ? std::vector<int64_t>{40, 37, 45} : std::vector<int64_t>{70, 83};
      const std::vector<int64_t> ps = d == 3 ? std::vector<int64_t>{7, 9, s} : std::vector<int64_t>{11, s};
      PatchGeom g = d == 3 ? geom3(C, 1, vol, 24, ps) : geom2(C, 1, vol, 24, ps);
      std::mt19937_64 rng(d * 100 + s);
      std::uniform_real_distribution<double> uc(0.0, 1.0);
      std::vector<float> mats;
      for (int p = 0; p < 24; ++p) {
        std::vector<double> c(d);
        for (int a = 0; a < d; ++a) {
          const double n = double(vol[a]);
          c[a] = p < 12 ? n / 2 + (uc(rng) - 0.5) * 4 : uc(rng) * n;  // first half inside, then anywhere
        }
        push_random_matrix(mats, d, c, ps, 0.7, 1.3, rng);
      }
      // Two axis-aligned patches half a voxel off the grid (nearest rounds half up).
      for (int p = 22; p < 24; ++p) {
        float* m = mats.data() + p * (d + 1) * (d + 1);
        for (int r = 0; r < d; ++r)
          for (int col = 0; col <= d; ++col) m[r * (d + 1) + col] = col == r ? 1.f : col == d ? 5.5f + r : 0.f;
      }
      const std::vector<float> src = random_values(C * g.vol_numel(), 7);
      for (cpu::GatherLoads loads : {cpu::GatherLoads::vector, cpu::GatherLoads::scalar})
      for (Interp mode : {Interp::nearest, Interp::linear}) {
        std::vector<float> got(C * 24 * g.patch_numel()), gotm((C + 1) * 24 * g.patch_numel());
        cpu::set_gather_loads(loads);  // both per-CPU paths, whichever this CPU takes
        cpu::gather_affine(src.data(), g, mats.data(), nullptr, mode, false, got.data());
        cpu::gather_affine(src.data(), g, mats.data(), nullptr, mode, true, gotm.data());  // + the inside mask
        cpu::set_gather_loads(saved_loads);
        int64_t mismatches = 0, mask_mismatches = 0;
        for (int64_t p = 0; p < 24; ++p) {
          const PatchMatrix M = load_patch_matrix(mats.data() + p * (d + 1) * (d + 1), d);
          for (int64_t x0 = 0; x0 < g.patch[0]; ++x0)
            for (int64_t x1 = 0; x1 < g.patch[1]; ++x1)
              for (int64_t x2 = 0; x2 < g.patch[2]; ++x2) {
                float co[3];
                for (int k = 0; k < 3; ++k) co[k] = coord(row_start(M, k, float(x0), float(x1)), float(x2), M.m[k][2]);
                const int64_t H = g.vol[1], W = g.vol[2];
                const int64_t at = (x0 * g.patch[1] + x1) * g.patch[2] + x2;
                bool n0, n1, n2;  // the mask: whether the nearest voxel exists
                nearest_axis(co[0], g.vol[0], n0), nearest_axis(co[1], H, n1), nearest_axis(co[2], W, n2);
                if (gotm[(p * (C + 1) + C) * g.patch_numel() + at] != (n0 && n1 && n2 ? 1.f : 0.f)) ++mask_mismatches;
                for (int64_t c = 0; c < C; ++c) {
                  const float* sc = src.data() + c * g.vol_numel();
                  float want;
                  if (mode == Interp::nearest) {
                    bool in0, in1, in2;
                    const int i0 = nearest_axis(co[0], g.vol[0], in0), i1 = nearest_axis(co[1], H, in1),
                              i2 = nearest_axis(co[2], W, in2);
                    want = in0 && in1 && in2 ? sc[(i0 * H + i1) * W + i2] : 0.f;
                  } else {
                    LinearAxis az = linear_axis(co[0], g.vol[0]), ay = linear_axis(co[1], H), ax = linear_axis(co[2], W);
                    if (d == 2) az = {0, 0, 1.f, 0.f};
                    auto at = [&](int z, int y, int x) { return sc[(z * H + y) * W + x]; };
                    if (d == 3) {
                      const float v[8] = {at(az.i0, ay.i0, ax.i0), at(az.i0, ay.i0, ax.i1), at(az.i0, ay.i1, ax.i0),
                                          at(az.i0, ay.i1, ax.i1), at(az.i1, ay.i0, ax.i0), at(az.i1, ay.i0, ax.i1),
                                          at(az.i1, ay.i1, ax.i0), at(az.i1, ay.i1, ax.i1)};
                      want = trilinear(v, az.w0, az.w1, ay.w0, ay.w1, ax.w0, ax.w1);
                    } else {
                      const float v[4] = {at(0, ay.i0, ax.i0), at(0, ay.i0, ax.i1), at(0, ay.i1, ax.i0),
                                          at(0, ay.i1, ax.i1)};
                      want = bilinear(v, ay.w0, ay.w1, ax.w0, ax.w1);
                    }
                  }
                  const float have = got[(p * C + c) * g.patch_numel() + at];
                  const float have_m = gotm[(p * (C + 1) + c) * g.patch_numel() + at];
                  if (std::memcmp(&have, &want, sizeof(float)) != 0) ++mismatches;
                  if (std::memcmp(&have_m, &want, sizeof(float)) != 0) ++mask_mismatches;
                }
              }
        }
        CHECK_MESSAGE(mismatches == 0, "C=", C, " d=", d, " s=", s, " mode=", int(mode), " loads=", int(loads), ": ",
                      mismatches, " voxels differ");
        CHECK_MESSAGE(mask_mismatches == 0, "with the inside mask: C=", C, " d=", d, " s=", s, " mode=", int(mode),
                      " loads=", int(loads), ": ", mask_mismatches, " values differ");
      }
    }
  }
}

// Outputs of 8 MB and more are written plane by plane through a buffer by non-temporal stores, and nearest
// planes by strips take their indices from planes computed while an earlier plane was gathered
// (kernels/cpu/gather.cpp); with 8 threads the work blocks start and end inside patches, where those
// planes were not computed ahead. Bit for bit the per-voxel definition, with 1 and 8 threads; integer
// labels through the same strips equal the float gather of their values.
TEST_CASE("gather_affine: large nearest outputs, work blocks inside patches, equal the per-voxel definition") {
  using namespace pw::kernels::common;
  const int64_t C = 2, P = 32;
  const std::vector<int64_t> vol = {80, 72, 88}, ps = {32, 32, 32};
  PatchGeom g = geom3(C, 1, vol, P, ps);
  std::mt19937_64 rng(11);
  std::vector<float> mats;
  for (int64_t p = 0; p < P; ++p) push_random_matrix(mats, 3, {40, 36, 44}, ps, 0.9, 1.1, rng);
  const std::vector<float> src = random_values(C * g.vol_numel(), 5);
  std::vector<float> want(C * P * g.patch_numel());
  const int64_t H = g.vol[1], W = g.vol[2];
  for (int64_t p = 0; p < P; ++p) {
    const PatchMatrix M = load_patch_matrix(mats.data() + p * 16, 3);
    for (int64_t x0 = 0; x0 < 32; ++x0)
      for (int64_t x1 = 0; x1 < 32; ++x1)
        for (int64_t x2 = 0; x2 < 32; ++x2) {
          float co[3];
          for (int k = 0; k < 3; ++k) co[k] = coord(row_start(M, k, float(x0), float(x1)), float(x2), M.m[k][2]);
          bool in0, in1, in2;
          const int i0 = nearest_axis(co[0], g.vol[0], in0), i1 = nearest_axis(co[1], H, in1),
                    i2 = nearest_axis(co[2], W, in2);
          for (int64_t c = 0; c < C; ++c)
            want[(p * C + c) * g.patch_numel() + (x0 * 32 + x1) * 32 + x2] =
                in0 && in1 && in2 ? src[c * g.vol_numel() + (i0 * H + i1) * W + i2] : 0.f;
        }
  }
  const int prev = num_threads();
  for (int threads : {1, 8}) {
    set_num_threads(threads);
    std::vector<float> got(want.size(), -1.f);
    cpu::gather_affine(src.data(), g, mats.data(), nullptr, Interp::nearest, false, got.data());
    int64_t mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) mismatches += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
    CHECK_MESSAGE(mismatches == 0, threads, " threads: ", mismatches, " voxels differ");
    // Integer labels take the same strips (int16 source, int32 patches): channel 0's values as labels.
    PatchGeom g1 = g;
    g1.channels = 1;
    std::vector<int16_t> labels(g.vol_numel());
    for (int64_t i = 0; i < g.vol_numel(); ++i) labels[i] = int16_t(int64_t(src[i] * 1000.f) % 30000);
    std::vector<float> as_float(labels.begin(), labels.end()), want1(P * g.patch_numel());
    std::vector<int32_t> got1(want1.size(), -1);
    cpu::gather_affine_labels(labels.data(), g1, mats.data(), nullptr, got1.data());
    cpu::gather_affine(as_float.data(), g1, mats.data(), nullptr, Interp::nearest, false, want1.data());
    int64_t label_mismatches = 0;
    for (size_t i = 0; i < got1.size(); ++i) label_mismatches += float(got1[i]) != want1[i];
    CHECK_MESSAGE(label_mismatches == 0, threads, " threads: ", label_mismatches, " labels differ");
  }
  set_num_threads(prev);
}
