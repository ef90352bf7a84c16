// Affine patch scatter / stitching (kernels/scatter.h), CPU body: the paper's reconstruction
// experiment, windows, the sqrt(W^2 + 3 alpha) rule, thread independence, and the link to the
// gather's adjoint.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "common/test_util.h"
#include "kernels/common/patch_math.h"
#include "kernels/parallel.h"
#include "kernels/scatter.h"
#include "patch_test_util.h"

using namespace pw;
using namespace pw::kernels;
using namespace pw::test::patch;

namespace {

// Identity blocks (B_n = identity): crop random rotated, 1.5x-undersampling patches out of `img`
// and stitch them straight back. Returns the RMS error over covered voxels relative to the image's
// RMS, and the covered fraction.
void reconstruct(const std::vector<float>& img, int64_t n, Interp mode, double& rel_err, double& covered) {
  std::mt19937_64 rng(11);
  const int64_t P = 400;
  const std::vector<int64_t> s = {12, 12, 12};
  PatchGeom g = geom3(1, 1, {n, n, n}, P, s);
  std::vector<float> mats;
  for (int64_t p = 0; p < P; ++p) {
    std::uniform_real_distribution<double> uc(0, double(n - 1));
    push_random_matrix(mats, 3, {uc(rng), uc(rng), uc(rng)}, s, 1.5, 1.5, rng);
  }
  std::vector<float> patches(P * g.patch_numel()), acc(img.size(), 0.f), w(img.size(), 0.f), y(img.size());
  cpu::gather_affine(img.data(), g, mats.data(), nullptr, mode, false, patches.data());
  cpu::scatter_affine(patches.data(), g, mats.data(), nullptr, mode, Window::flat, acc.data(), w.data());
  cpu::stitch_normalize(acc.data(), w.data(), 1, int64_t(img.size()), 0.f, y.data());
  double se = 0, ss = 0;
  int64_t cov = 0;
  for (size_t i = 0; i < img.size(); ++i) {
    if (w[i] <= 0.f) continue;
    ++cov;
    se += (double(y[i]) - img[i]) * (double(y[i]) - img[i]);
    ss += double(img[i]) * img[i];
  }
  rel_err = std::sqrt(se / ss);
  covered = double(cov) / double(img.size());
}

}  // namespace

TEST_CASE("reconstruction experiment: stitched identity patches give a downgraded copy; nearest beats linear") {
  const int64_t n = 32;
  // A smooth image (low frequencies) plus fine texture.
  std::vector<float> img(n * n * n);
  auto noise = random_values(img.size(), 12, -0.2f, 0.2f);
  for (int64_t z = 0; z < n; ++z)
    for (int64_t y = 0; y < n; ++y)
      for (int64_t x = 0; x < n; ++x)
        img[(z * n + y) * n + x] = float(std::sin(0.3 * z) + std::cos(0.25 * y) + std::sin(0.2 * x + 0.1 * z)) +
                                   noise[(z * n + y) * n + x];
  double e_nn, c_nn, e_lin, c_lin;
  reconstruct(img, n, Interp::nearest, e_nn, c_nn);
  reconstruct(img, n, Interp::linear, e_lin, c_lin);
  MESSAGE("reconstruction rel. RMS error: nearest ", e_nn, " (covered ", c_nn, "), linear ", e_lin, " (covered ",
          c_lin, ")");
  CHECK(c_nn > 0.9);
  CHECK(c_lin > 0.9);
  CHECK(e_lin < 0.2);        // a (blurred) copy of the image
  CHECK(e_nn < e_lin);       // nearest neighbour reconstructs closer
  CHECK(e_nn < 1e-6);        // nearest crop + nearest stitch puts every sample back where it came from
}

TEST_CASE("stitching windows and the sqrt(W^2 + 3 alpha) rule") {
  const int64_t n = 10;
  const std::vector<int64_t> s = {5, 6, 7};
  PatchGeom g = geom3(1, 1, {n, n, n}, 1, s);
  std::vector<float> m = {1, 0, 0, 2, 0, 1, 0, 1, 0, 0, 1, 3, 0, 0, 0, 1};  // a shift, fully inside
  auto vals = random_values(g.patch_numel(), 13, -1.f, 1.f);
  for (Window win : {Window::flat, Window::cos, Window::cos2}) {
    std::vector<float> acc(n * n * n, 0.f), w(n * n * n, 0.f), y(n * n * n);
    cpu::scatter_affine(vals.data(), g, m.data(), nullptr, Interp::nearest, win, acc.data(), w.data());
    int bad = 0;
    double maxabs = 0;
    for (int64_t z = 0; z < s[0]; ++z)
      for (int64_t yy = 0; yy < s[1]; ++yy)
        for (int64_t x = 0; x < s[2]; ++x) {
          auto f = [&](int64_t i, int64_t S) { return std::sin(M_PI * double(i) / double(S - 1)); };
          double cw = f(z, s[0]) * f(yy, s[1]) * f(x, s[2]);
          double expect = win == Window::flat ? 1.0 : win == Window::cos ? cw : std::sqrt(cw);
          int64_t t = ((z + 2) * n + yy + 1) * n + x + 3;
          bad += std::fabs(w[t] - expect) > 1e-6;
          bad += std::fabs(acc[t] - expect * vals[(z * s[1] + yy) * s[2] + x]) > 1e-6;
        }
    CHECK(bad == 0);
    // alpha = 1: a voxel seen once by a patch value in [-1, 1] never exceeds 0.5.
    cpu::stitch_normalize(acc.data(), w.data(), 1, n * n * n, 1.f, y.data());
    for (float v : y) maxabs = std::max(maxabs, double(std::fabs(v)));
    CHECK(maxabs <= 0.5);
    if (win == Window::flat) CHECK(maxabs > 0.45);  // |v|/2 for the largest |v|
  }
  // alpha = 0 is the weighted mean: two overlapping constant patches 1 and 3 with flat window -> 2.
  PatchGeom g2 = geom3(1, 1, {n, n, n}, 2, {2, 2, 2});
  std::vector<float> m2 = {1, 0, 0, 4, 0, 1, 0, 4, 0, 0, 1, 4, 0, 0, 0, 1, 1, 0, 0, 4, 0, 1, 0, 4, 0, 0, 1, 4, 0, 0, 0, 1};
  std::vector<float> pv(16, 1.f);
  for (int i = 8; i < 16; ++i) pv[i] = 3.f;
  std::vector<float> acc(n * n * n, 0.f), w(n * n * n, 0.f), y(n * n * n);
  cpu::scatter_affine(pv.data(), g2, m2.data(), nullptr, Interp::linear, Window::flat, acc.data(), w.data());
  cpu::stitch_normalize(acc.data(), w.data(), 1, n * n * n, 0.f, y.data());
  CHECK(y[(4 * n + 4) * n + 4] == doctest::Approx(2.0));
  CHECK(y[(5 * n + 5) * n + 5] == doctest::Approx(2.0));
  CHECK(y[0] == 0.f);  // nothing landed: 0, not NaN
  CHECK(common::window_axis(common::kWindowCos, 0, 7) == 0.f);
  CHECK(common::window_axis(common::kWindowCos, 6, 7) == 0.f);
  CHECK(common::window_axis(common::kWindowCos, 3, 7) == 1.f);
}

TEST_CASE("scatter_affine: flat window equals the gather adjoint; results do not depend on threads") {
  std::mt19937_64 rng(14);
  for (int d : {2, 3}) {
    for (Interp mode : {Interp::nearest, Interp::linear}) {
      const int64_t C = 2, Q = 2, P = 9;
      std::vector<int64_t> vol = d == 3 ? std::vector<int64_t>{12, 11, 10} : std::vector<int64_t>{20, 18};
      std::vector<int64_t> s = d == 3 ? std::vector<int64_t>{5, 6, 4} : std::vector<int64_t>{6, 7};
      PatchGeom g = d == 3 ? geom3(C, Q, vol, P, s) : geom2(C, Q, vol, P, s);
      std::vector<float> mats;
      std::vector<int32_t> parent;
      for (int64_t p = 0; p < P; ++p) {
        std::vector<double> centre;
        for (int a = 0; a < d; ++a) centre.push_back(std::uniform_real_distribution<double>(-2, vol[a] + 2)(rng));
        push_random_matrix(mats, d, centre, {g.patch[0], g.patch[1], g.patch[2]}, 0.6, 1.4, rng);
        parent.push_back(int32_t(p % Q));
      }
      auto patches = random_values(P * C * g.patch_numel(), 15);
      const size_t nv = Q * C * g.vol_numel();
      std::vector<float> a(nv, 0.f), b(nv, 0.f), c1(nv, 0.f), w1(Q * g.vol_numel(), 0.f), w3(w1.size(), 0.f);
      cpu::scatter_affine(patches.data(), g, mats.data(), parent.data(), mode, Window::flat, a.data(), nullptr);
      cpu::gather_affine_backward(patches.data(), g, mats.data(), parent.data(), mode, false, b.data());
      CHECK(std::memcmp(a.data(), b.data(), nv * sizeof(float)) == 0);
      int prev = num_threads();
      set_num_threads(1);
      std::vector<float> c3(nv, 0.f);
      cpu::scatter_affine(patches.data(), g, mats.data(), parent.data(), mode, Window::cos, c1.data(), w1.data());
      set_num_threads(3);
      cpu::scatter_affine(patches.data(), g, mats.data(), parent.data(), mode, Window::cos, c3.data(), w3.data());
      set_num_threads(prev);
      CHECK(std::memcmp(c1.data(), c3.data(), nv * sizeof(float)) == 0);
      CHECK(std::memcmp(w1.data(), w3.data(), w1.size() * sizeof(float)) == 0);
      double total = 0;
      for (float v : w1) total += v;
      CHECK(total > 1.0);
    }
  }
}

TEST_CASE("nearest stitch of a patch offset by half a voxel covers every voxel once (no empty slices)") {
  // Tree tiling of an odd-sized axis with an even patch puts every patch voxel exactly half-way
  // between two grid voxels. Rounding half up maps them one to one; half to even would send pairs to
  // the even voxels and leave every other slice empty.
  const int64_t nz = 31, ny = 6, nx = 5;
  PatchGeom g = geom3(1, 1, {nz, ny, nx}, 1, {32, ny, nx});
  std::vector<float> mats = {1, 0, 0, -0.5f, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  std::vector<float> patch(g.patch_numel(), 1.f), acc(g.vol_numel(), 0.f), w(g.vol_numel(), 0.f);
  cpu::scatter_affine(patch.data(), g, mats.data(), nullptr, Interp::nearest, Window::flat, acc.data(), w.data());
  for (int64_t i = 0; i < g.vol_numel(); ++i) REQUIRE(w[i] == 1.f);
  // The gather is the adjoint: it reads each grid voxel once along the same rows.
  std::vector<float> src(g.vol_numel());
  for (int64_t i = 0; i < g.vol_numel(); ++i) src[i] = float(i);
  std::vector<float> out(g.patch_numel());
  cpu::gather_affine(src.data(), g, mats.data(), nullptr, Interp::nearest, false, out.data());
  for (int64_t z = 0; z < 31; ++z) CHECK(out[z * ny * nx] == float(z * ny * nx));  // z - 0.5 rounds up to z
  CHECK(out[31 * ny * nx] == 0.f);  // 30.5 rounds to 31: outside
}

// The CPU body's fast paths (vectorised index rows; axis-aligned rows stitched as contiguous runs)
// must give the per-voxel definition bit for bit: patches added in order, each voxel's contribution
// w * value with the window w = (f0 * f1) * f2, skipped where w is 0 or the voxel lies outside.
// Axis-aligned patches at integer offsets (contiguous rows), some crossing the border, some half a
// voxel off the grid, and rotated ones (12 x 30 rows: more than the CPU body gathers before one
// flush; rows crossing a thread's planes); overlapping; one and two channels; 1, 2 and 3 threads.
TEST_CASE("scatter_affine nearest: fast paths equal the per-voxel definition bit for bit") {
  using namespace pw::kernels::common;
  const std::vector<int64_t> vol = {26, 13, 40}, s = {5, 6, 16};  // 26 planes: up to 3 threads' slabs of >= 8
  for (const int64_t C : {1, 2}) {
  CAPTURE(C);
  const int64_t P = 20;
  PatchGeom g = geom3(C, 1, vol, P, s);
  std::mt19937_64 rng(21);
  std::vector<float> mats;
  for (int64_t p = 0; p < P; ++p) {
    if (p < 8) {  // axis-aligned: integer offsets, then two half-voxel ones; 4 to 7 cross the x border
      const float o[3] = {float(p % 9), float((3 * p) % 8),
                          p == 4 ? -4.f : p == 5 ? 28.f : p == 6 ? -3.f : p == 7 ? 30.f : float(2 * p)};
      const float h = p >= 4 && p < 6 ? 0.5f : 0.f;
      mats.insert(mats.end(), {1, 0, 0, o[0] + h, 0, 1, 0, o[1], 0, 0, 1, o[2] + h, 0, 0, 0, 1});
    } else {
      std::uniform_real_distribution<double> u(0, 1);
      push_random_matrix(mats, 3, {u(rng) * 26, u(rng) * 13, u(rng) * 40}, s, 0.8, 1.2, rng);
    }
  }
  const std::vector<float> patches = random_values(P * C * g.patch_numel(), 22);
  const int64_t V = g.vol_numel(), PN = g.patch_numel();
  std::vector<float> want(C * V, 0.f), want_w(V, 0.f), want_adj(C * V, 0.f);  // want_adj: the flat window
  for (int64_t p = 0; p < P; ++p) {
    const PatchMatrix M = load_patch_matrix(mats.data() + p * 16, 3);
    for (int64_t x0 = 0; x0 < s[0]; ++x0)
      for (int64_t x1 = 0; x1 < s[1]; ++x1)
        for (int64_t x2 = 0; x2 < s[2]; ++x2) {
          const float w = (window_axis(kWindowCos, x0, s[0]) * window_axis(kWindowCos, x1, s[1])) *
                          window_axis(kWindowCos, x2, s[2]);
          bool in[3];
          int i[3];
          for (int k = 0; k < 3; ++k)
            i[k] = nearest_axis(coord(row_start(M, k, float(x0), float(x1)), float(x2), M.m[k][2]), vol[k], in[k]);
          if (!(in[0] && in[1] && in[2])) continue;
          const int64_t id = (i[0] * vol[1] + i[1]) * vol[2] + i[2];
          for (int64_t c = 0; c < C; ++c) want_adj[c * V + id] += patches[(p * C + c) * PN + (x0 * s[1] + x1) * s[2] + x2];
          if (w == 0.f) continue;
          for (int64_t c = 0; c < C; ++c) want[c * V + id] += w * patches[(p * C + c) * PN + (x0 * s[1] + x1) * s[2] + x2];
          want_w[id] += w;
        }
  }
  const int prev = num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<float> acc(C * V, 0.f), w(V, 0.f);
    cpu::scatter_affine(patches.data(), g, mats.data(), nullptr, Interp::nearest, Window::cos, acc.data(), w.data());
    CHECK_MESSAGE(std::memcmp(acc.data(), want.data(), acc.size() * sizeof(float)) == 0, threads, " threads");
    CHECK_MESSAGE(std::memcmp(w.data(), want_w.data(), w.size() * sizeof(float)) == 0, threads, " threads");
    // The gather's adjoint: the same rows with a flat window and no weight volume.
    std::vector<float> adj(C * V, 0.f);
    cpu::gather_affine_backward(patches.data(), g, mats.data(), nullptr, Interp::nearest, false, adj.data());
    CHECK_MESSAGE(std::memcmp(adj.data(), want_adj.data(), adj.size() * sizeof(float)) == 0, threads, " threads");
  }
  set_num_threads(prev);
  }
}

// The CPU body for rotated patches (rows inside the target gathered and added in row order; rows
// crossing a thread's planes masked (nearest) or voxel by voxel (linear); rows crossing the border voxel
// by voxel) against the per-voxel definition bit for bit, nearest and linear, 3D and 2D: contribution
// (w * k) * value with the window w and the splatting weight k (nearest 1, linear (kz * ky) * kx from
// common::linear_axis), skipped where the weight is 0 or the voxel lies outside. 8 rotated patches over
// and across the border and 4 axis-aligned scaled ones off the grid (rows along x with steps 0.5, 0.7, 1
// and -0.6: consecutive voxels sharing corners); 3D 5x6x16, 2D 12x16; one and two channels; 1, 2 and 3
// threads; the cos window with its weight volume, and the gather's adjoint (flat window).
TEST_CASE("scatter_affine rotated patches: the CPU body equals the per-voxel definition bit for bit") {
  using namespace pw::kernels::common;
  for (const int d : {3, 2}) {
    // 3D: 26 planes (up to 3 threads' slabs of >= 8); 2D: the slabs run along y, 30 rows.
    const std::vector<int64_t> vol = d == 3 ? std::vector<int64_t>{26, 13, 40} : std::vector<int64_t>{30, 40};
    const std::vector<int64_t> s = d == 3 ? std::vector<int64_t>{5, 6, 16} : std::vector<int64_t>{12, 16};
    const int64_t P = 12;
    std::mt19937_64 rng(23 + d);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<float> mats;
    for (int64_t p = 0; p < P; ++p) {
      if (p >= 8) {  // axis-aligned, scaled, off the grid: rows along x (steps 0.5, 0.7, 1, -0.6 along x)
        const float sx = p == 8 ? 0.5f : p == 9 ? 0.7f : p == 10 ? 1.f : -0.6f;
        const float ox = sx < 0 ? 12.3f : 3.3f + float(p), oy = 1.7f + float(p % 3), oz = 2.4f + float(p);
        if (d == 3) mats.insert(mats.end(), {0.9f, 0, 0, oz, 0, 1.1f, 0, oy, 0, 0, sx, ox, 0, 0, 0, 1});
        else mats.insert(mats.end(), {1.1f, 0, oy + float(p), 0, sx, ox, 0, 0, 1});
        continue;
      }
      std::vector<double> centre;
      for (int a = 0; a < d; ++a) centre.push_back(u(rng) * double(vol[a]));
      push_random_matrix(mats, d, centre, s, 0.8, 1.2, rng);
    }
    for (const Interp mode : {Interp::nearest, Interp::linear})
      for (const int64_t C : {1, 2}) {
        CAPTURE(d);
        CAPTURE(C);
        CAPTURE(mode == Interp::linear);
        const PatchGeom g = d == 3 ? geom3(C, 1, vol, P, s) : geom2(C, 1, vol, P, s);
        const int64_t V = g.vol_numel(), PN = g.patch_numel();
        const int64_t* n = g.vol;
        const std::vector<float> patches = random_values(P * C * PN, 24);
        for (const bool flat : {false, true}) {
          const int kind = flat ? kWindowFlat : kWindowCos;
          std::vector<float> want(C * V, 0.f), want_w(V, 0.f);
          auto add = [&](int64_t id, float wk, int64_t p, int64_t voxel) {
            for (int64_t c = 0; c < C; ++c) want[c * V + id] += wk * patches[(p * C + c) * PN + voxel];
            want_w[id] += wk;
          };
          for (int64_t p = 0; p < P; ++p) {
            const PatchMatrix M = load_patch_matrix(mats.data() + p * (d + 1) * (d + 1), d);
            for (int64_t x0 = 0; x0 < g.patch[0]; ++x0)
              for (int64_t x1 = 0; x1 < g.patch[1]; ++x1)
                for (int64_t x2 = 0; x2 < g.patch[2]; ++x2) {
                  const float w = (window_axis(kind, x0, g.patch[0]) * window_axis(kind, x1, g.patch[1])) *
                                  window_axis(kind, x2, g.patch[2]);
                  float x[3];
                  for (int k = 0; k < 3; ++k) x[k] = coord(row_start(M, k, float(x0), float(x1)), float(x2), M.m[k][2]);
                  const int64_t voxel = (x0 * g.patch[1] + x1) * g.patch[2] + x2;
                  if (w == 0.f) continue;
                  if (mode == Interp::nearest) {
                    bool in[3];
                    int i[3];
                    for (int k = 0; k < 3; ++k) i[k] = nearest_axis(x[k], n[k], in[k]);
                    if (in[0] && in[1] && in[2]) add((i[0] * n[1] + i[1]) * n[2] + i[2], w, p, voxel);
                    continue;
                  }
                  LinearAxis ax[3];
                  for (int k = 0; k < 3; ++k) ax[k] = linear_axis(x[k], n[k]);
                  for (int a = 0; a < 2; ++a)
                    for (int b = 0; b < 2; ++b)
                      for (int e = 0; e < 2; ++e) {
                        const float kw =
                            ((a ? ax[0].w1 : ax[0].w0) * (b ? ax[1].w1 : ax[1].w0)) * (e ? ax[2].w1 : ax[2].w0);
                        if (kw == 0.f) continue;
                        add(((a ? ax[0].i1 : ax[0].i0) * n[1] + (b ? ax[1].i1 : ax[1].i0)) * n[2] +
                                (e ? ax[2].i1 : ax[2].i0),
                            w * kw, p, voxel);
                      }
                }
          }
          const int prev = num_threads();
          for (int threads : {1, 2, 3}) {
            set_num_threads(threads);
            std::vector<float> acc(C * V, 0.f), wsum(V, 0.f);
            if (flat) {
              cpu::gather_affine_backward(patches.data(), g, mats.data(), nullptr, mode, false, acc.data());
            } else {
              cpu::scatter_affine(patches.data(), g, mats.data(), nullptr, mode, Window::cos, acc.data(), wsum.data());
              CHECK_MESSAGE(std::memcmp(wsum.data(), want_w.data(), V * sizeof(float)) == 0, threads, " threads");
            }
            CHECK_MESSAGE(std::memcmp(acc.data(), want.data(), acc.size() * sizeof(float)) == 0, threads,
                          " threads, flat ", flat);
          }
          set_num_threads(prev);
        }
      }
  }
}

// A corner of weight 0 is skipped, not added to: where it holds -0.0 it keeps it (adding +0 would make it
// +0), and a patch value of inf adds no NaN there (0 * inf). Rows along the target's y axis with x on the
// grid (every x + 1 corner has weight 0) take the batched linear path, which adds corners in x-pairs.
TEST_CASE("linear splats leave corners of weight 0 untouched: -0.0 stays, inf adds no NaN") {
  const std::vector<int64_t> vol = {6, 12, 8}, s = {3, 4, 8};
  const PatchGeom g = geom3(1, 1, vol, 1, s);
  // patch (x0, x1, x2) -> target (z, y, x) = (x0 + 1.25, x2 + 1.5, x1 + 2): rows run along y, x is whole.
  const std::vector<float> mats = {1, 0, 0, 1.25f, 0, 0, 1, 1.5f, 0, 1, 0, 2, 0, 0, 0, 1};
  std::vector<float> patch = random_values(g.patch_numel(), 5);
  patch[7] = INFINITY;  // voxel (0, 0, 7)
  std::vector<float> want(g.vol_numel(), -0.0f), got(g.vol_numel(), -0.0f);
  for (int64_t x0 = 0; x0 < s[0]; ++x0)
    for (int64_t x1 = 0; x1 < s[1]; ++x1)
      for (int64_t x2 = 0; x2 < s[2]; ++x2) {
        const float z = float(x0) + 1.25f, y = float(x2) + 1.5f, p = patch[(x0 * s[1] + x1) * s[2] + x2];
        const int64_t iz = int64_t(z), iy = int64_t(y), ix = x1 + 2;
        const float wz[2] = {1.f - (z - float(iz)), z - float(iz)}, wy[2] = {1.f - (y - float(iy)), y - float(iy)};
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b)  // x + 1 has weight 0: only x gets additions
            want[((iz + a) * vol[1] + iy + b) * vol[2] + ix] += (wz[a] * wy[b]) * p;
      }
  cpu::gather_affine_backward(patch.data(), g, mats.data(), nullptr, Interp::linear, false, got.data());
  int64_t negative_zeros = 0;
  for (float v : got) negative_zeros += v == 0.f && std::signbit(v);
  CHECK(negative_zeros > 0);
  for (size_t i = 0; i < got.size(); ++i) CHECK_FALSE(std::isnan(got[i]));
  CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
}
