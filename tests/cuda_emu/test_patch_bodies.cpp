// The CUDA bodies of the patch kernels (kernels/cuda/{gather,scatter,smooth}.cu), run on the host by
// the emulation (emu_context.h), against the CPU bodies (kernels/cpu/{gather,scatter,smooth}.cpp)
// on the same inputs: nearest gathers and labels bit for bit, linear gathers and every accumulation
// within 1e-5 relative (+1e-6 of the largest value), max/min smoothing bit for bit.
// Patches: identity, integer and half-voxel shifts, the rounding edges, random rotations and scalings
// partly outside the source, one far outside, NaN/huge/infinite matrices, one thin (an axis of size
// 1); 2D and 3D; one source or nested (parent index per patch); rows long enough for the CPU's vector
// paths.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "emu_gather.h"
#include "emu_scatter.h"
#include "emu_smooth.h"
#include "emu_test.h"
#include "kernels/patch_test_util.h"  // tests/kernels/patch_test_util.h: geom2/geom3, push_random_matrix

using namespace pw::kernels;
using namespace pw::test::patch;
using pw::test::emu::expect_close;
using pw::test::emu::expect_exact;
using pw::test::random_values;

namespace {

struct Setup {
  PatchGeom g;
  std::vector<float> mats;
  std::vector<int32_t> parent;  // empty: not nested (parent = nullptr)
  const int32_t* parent_ptr() const { return parent.empty() ? nullptr : parent.data(); }
  std::string name;
};

// Appends a matrix with `scale` on the diagonal and translation t (axis order), (d+1)x(d+1).
void push_diagonal(std::vector<float>& mats, int d, float scale, const std::vector<float>& t) {
  for (int r = 0; r <= d; ++r)
    for (int c = 0; c <= d; ++c) mats.push_back(r == d ? (c == d ? 1.f : 0.f) : c == d ? t[r] : r == c ? scale : 0.f);
}

// d = 2 or 3; `thin`: a 3D patch with an axis of size 1; `nested`: Q = 3 sources and a parent per
// patch, else Q = 1 and parent = nullptr.
Setup make_setup(int d, bool nested, bool thin, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Setup s;
  const int64_t Q = nested ? 3 : 1;
  std::vector<int64_t> vol = d == 3 ? std::vector<int64_t>{14, 13, 19} : std::vector<int64_t>{30, 28};
  std::vector<int64_t> ps = d == 3 ? (thin ? std::vector<int64_t>{5, 1, 17} : std::vector<int64_t>{6, 7, 17})
                                   : std::vector<int64_t>{9, 18};
  s.g = d == 3 ? geom3(2, Q, vol, 0, ps) : geom2(2, Q, vol, 0, ps);
  s.name = std::to_string(d) + "D" + (nested ? " nested" : "") + (thin ? " thin" : "");
  std::vector<float> zero(d, 0.f), shift(d), half(d), minus_half(d), below_half(d), upper_edge(d), far(d);
  for (int a = 0; a < d; ++a) {
    const int64_t n = vol[a], sz = ps[a];
    shift[a] = float(int(a % 2 ? -3 : n - 4));         // integer shift, partly outside
    half[a] = 0.5f + float(a);                         // exactly half-way: rounding ties
    minus_half[a] = -0.5f;                             // the first voxel's lower edge (inside)
    below_half[a] = std::nextafter(-0.5f, -1.f);       // just below it (outside)
    upper_edge[a] = float(n) - 0.5f - float(sz - 1);  // the last patch voxel on the upper edge (outside)
    far[a] = float(3 * n);                             // entirely outside
  }
  push_diagonal(s.mats, d, 1.f, zero);
  push_diagonal(s.mats, d, 1.f, shift);
  push_diagonal(s.mats, d, 1.f, half);
  push_diagonal(s.mats, d, 1.f, minus_half);
  push_diagonal(s.mats, d, 1.f, below_half);
  push_diagonal(s.mats, d, 1.f, upper_edge);
  push_diagonal(s.mats, d, 0.5f, zero);  // inside: the CPU's whole-patch fast path
  push_diagonal(s.mats, d, 2.5f, far);
  // Matrices no one should pass, which the engine does not reject: NaN, beyond int range, infinite
  // (0 * inf = NaN coordinates), nearly singular. Both bodies must agree (0 outside, no crash).
  std::vector<float> nanv(d, NAN), huge(d, 1e30f), neg_huge(d, -3e9f);
  push_diagonal(s.mats, d, 1.f, nanv);
  push_diagonal(s.mats, d, 1.f, huge);
  push_diagonal(s.mats, d, 1.f, neg_huge);
  push_diagonal(s.mats, d, INFINITY, zero);
  push_diagonal(s.mats, d, 1e-30f, zero);
  const std::vector<int64_t> s3 = {s.g.patch[0], s.g.patch[1], s.g.patch[2]};
  for (int i = 0; i < 10; ++i) {  // random rotations and scalings, centres from just outside to just outside
    std::vector<double> centre;
    for (int a = 0; a < d; ++a) centre.push_back(std::uniform_real_distribution<double>(-1, double(vol[a]) + 1)(rng));
    push_random_matrix(s.mats, d, centre, s3, 0.6, 1.6, rng);
  }
  for (int i = 0; i < 2; ++i) {  // strong downscaling: the patch reaches past the source on every side
    std::vector<double> centre;
    for (int a = 0; a < d; ++a) centre.push_back(double(vol[a]) / 2);
    push_random_matrix(s.mats, d, centre, s3, 2.0, 3.0, rng);
  }
  s.g.num_patches = int64_t(s.mats.size()) / ((d + 1) * (d + 1));
  if (nested)
    for (int64_t p = 0; p < s.g.num_patches; ++p) s.parent.push_back(int32_t(rng() % Q));
  return s;
}

std::vector<Setup> setups() {
  std::vector<Setup> all;
  uint64_t seed = 1000;
  for (int d : {2, 3})
    for (bool nested : {false, true}) all.push_back(make_setup(d, nested, false, ++seed));
  all.push_back(make_setup(3, true, true, ++seed));
  return all;
}

template <class T>
std::vector<T> random_ints(size_t n, int lo, int hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = T(u(rng));
  return v;
}

// One gather of source type T, both modes, with and without the inside mask.
template <class T>
void check_gather(const Setup& s, const std::vector<T>& src, const char* type) {
  for (Interp mode : {Interp::nearest, Interp::linear})
    for (bool mask : {false, true}) {
      const int64_t n = s.g.num_patches * (s.g.channels + (mask ? 1 : 0)) * s.g.patch_numel();
      std::vector<float> c(n, 7.f), e(n, -7.f);
      cpu::gather_affine(src.data(), s.g, s.mats.data(), s.parent_ptr(), mode, mask, c.data());
      cuda_emu::gather_affine(src.data(), s.g, s.mats.data(), s.parent_ptr(), mode, mask, e.data());
      const std::string what = s.name + " " + type + (mode == Interp::nearest ? " nearest" : " linear") +
                               (mask ? " +mask" : "");
      if (mode == Interp::nearest) expect_exact(e, c, what);
      else expect_close(e, c, what);
    }
}

}  // namespace

TEST_CASE("emulated CUDA gather_affine (f32, u8, i16, i32; nearest, linear; mask; nested; 2D, 3D) equals the CPU") {
  uint64_t seed = 2000;
  for (const Setup& s : setups()) {
    const size_t nsrc = size_t(s.g.num_vols * s.g.channels * s.g.vol_numel());
    check_gather(s, random_values(nsrc, ++seed, -2.f, 3.f), "f32");
    check_gather(s, random_ints<uint8_t>(nsrc, 0, 255, ++seed), "u8");
    check_gather(s, random_ints<int16_t>(nsrc, -32768, 32767, ++seed), "i16");
    check_gather(s, random_ints<int32_t>(nsrc, -(1 << 22), 1 << 22, ++seed), "i32");
  }
}

TEST_CASE("emulated CUDA gather_affine_labels (u8, i16, i32) equals the CPU bit for bit") {
  uint64_t seed = 3000;
  for (const Setup& s : setups()) {
    const size_t nsrc = size_t(s.g.num_vols * s.g.channels * s.g.vol_numel());
    const size_t n = size_t(s.g.num_patches * s.g.channels * s.g.patch_numel());
    std::vector<int32_t> c(n, 7), e(n, -7);
    const auto u8 = random_ints<uint8_t>(nsrc, 0, 9, ++seed);
    cpu::gather_affine_labels(u8.data(), s.g, s.mats.data(), s.parent_ptr(), c.data());
    cuda_emu::gather_affine_labels(u8.data(), s.g, s.mats.data(), s.parent_ptr(), e.data());
    expect_exact(e, c, s.name + " u8 labels");
    const auto i16 = random_ints<int16_t>(nsrc, -5, 300, ++seed);
    cpu::gather_affine_labels(i16.data(), s.g, s.mats.data(), s.parent_ptr(), c.data());
    cuda_emu::gather_affine_labels(i16.data(), s.g, s.mats.data(), s.parent_ptr(), e.data());
    expect_exact(e, c, s.name + " i16 labels");
    const auto i32 = random_ints<int32_t>(nsrc, -5, 100000, ++seed);
    cpu::gather_affine_labels(i32.data(), s.g, s.mats.data(), s.parent_ptr(), c.data());
    cuda_emu::gather_affine_labels(i32.data(), s.g, s.mats.data(), s.parent_ptr(), e.data());
    expect_exact(e, c, s.name + " i32 labels");
  }
}

TEST_CASE("emulated CUDA gather_affine_backward (adds the adjoint into grad_src) equals the CPU") {
  uint64_t seed = 4000;
  for (const Setup& s : setups())
    for (Interp mode : {Interp::nearest, Interp::linear})
      for (bool mask : {false, true}) {
        const int64_t nsrc = s.g.num_vols * s.g.channels * s.g.vol_numel();
        const auto gy = random_values(s.g.num_patches * (s.g.channels + (mask ? 1 : 0)) * s.g.patch_numel(), ++seed);
        std::vector<float> c = random_values(nsrc, ++seed), e = c;  // it ADDS: start from the same non-zero values
        cpu::gather_affine_backward(gy.data(), s.g, s.mats.data(), s.parent_ptr(), mode, mask, c.data());
        cuda_emu::gather_affine_backward(gy.data(), s.g, s.mats.data(), s.parent_ptr(), mode, mask, e.data());
        expect_close(e, c, s.name + " gather backward" + (mode == Interp::nearest ? " nearest" : " linear") +
                               (mask ? " +mask" : ""));
      }
}

TEST_CASE("emulated CUDA scatter_affine (flat, cos, cos2; nearest, linear) and stitch_normalize equal the CPU") {
  uint64_t seed = 5000;
  for (const Setup& s : setups()) {
    const int64_t V = s.g.vol_numel(), nacc = s.g.num_vols * s.g.channels * V, nw = s.g.num_vols * V;
    const auto patches = random_values(s.g.num_patches * s.g.channels * s.g.patch_numel(), ++seed);
    for (Interp mode : {Interp::nearest, Interp::linear})
      for (Window win : {Window::flat, Window::cos, Window::cos2}) {
        const std::string what = s.name + (mode == Interp::nearest ? " nearest" : " linear") +
                                 (win == Window::flat ? " flat" : win == Window::cos ? " cos" : " cos2");
        // Both ADD: start from the same values (zeros, as the stitcher does, for the weights of the
        // first pass; random for acc).
        std::vector<float> ca = random_values(nacc, ++seed), cw(nw, 0.f);
        std::vector<float> ea = ca, ew = cw;
        cpu::scatter_affine(patches.data(), s.g, s.mats.data(), s.parent_ptr(), mode, win, ca.data(), cw.data());
        cuda_emu::scatter_affine(patches.data(), s.g, s.mats.data(), s.parent_ptr(), mode, win, ea.data(), ew.data());
        expect_close(ea, ca, what + " scatter acc");
        expect_close(ew, cw, what + " scatter weight");
        const auto zero_weights = std::count(cw.begin(), cw.end(), 0.f);
        CHECK_MESSAGE(zero_weights > 0, (what + ": some target voxels get no patch (the normalisation's 0 case)"));
        CHECK_MESSAGE(zero_weights < nw, (what + ": the patches land somewhere"));
        // Without a weight volume (what gather_affine_backward uses).
        std::vector<float> ca2(nacc, 0.f), ea2(nacc, 0.f);
        cpu::scatter_affine(patches.data(), s.g, s.mats.data(), s.parent_ptr(), mode, win, ca2.data(), nullptr);
        cuda_emu::scatter_affine(patches.data(), s.g, s.mats.data(), s.parent_ptr(), mode, win, ea2.data(), nullptr);
        expect_close(ea2, ca2, what + " scatter acc, no weight volume");
        // Normalise volume 0 (from the CPU's sums on both sides), into a new array and in place.
        for (float alpha : {0.f, 0.7f}) {
          const std::string wa = what + " stitch_normalize alpha " + std::to_string(alpha);
          const int64_t C = s.g.channels;
          std::vector<float> cy(C * V, 7.f), ey(C * V, -7.f);
          cpu::stitch_normalize(ca.data(), cw.data(), C, V, alpha, cy.data());
          cuda_emu::stitch_normalize(ca.data(), cw.data(), C, V, alpha, ey.data());
          expect_close(ey, cy, wa);
          std::vector<float> ci(ca.begin(), ca.begin() + C * V), ei = ci;
          cpu::stitch_normalize(ci.data(), cw.data(), C, V, alpha, ci.data());
          cuda_emu::stitch_normalize(ei.data(), cw.data(), C, V, alpha, ei.data());
          expect_close(ei, ci, wa + " in place");
        }
      }
  }
}

TEST_CASE("scatter_affine into a brick (PatchGeom::origin) equals the same voxels of the whole target: CPU bit for "
          "bit, emulated CUDA within the accumulation tolerance") {
  uint64_t seed = 6000;
  for (const Setup& s : setups()) {
    if (!s.parent.empty()) continue;
    const int d = s.g.ndim;
    const int64_t C = s.g.channels, V = s.g.vol_numel();
    const auto patches = random_values(s.g.num_patches * C * s.g.patch_numel(), ++seed);
    for (Interp mode : {Interp::nearest, Interp::linear}) {
      std::vector<float> wa(C * V, 0.f), ww(V, 0.f);
      cpu::scatter_affine(patches.data(), s.g, s.mats.data(), nullptr, mode, Window::cos, wa.data(), ww.data());
      // A brick of 5 (2D: 1) x 6 x 7 voxels at (2 or 0, 4, 9): clipped by the target's end.
      PatchGeom b = s.g;
      const int64_t lo[3] = {d == 3 ? 2 : 0, 4, 9}, bs[3] = {d == 3 ? 5 : 1, 6, 7};
      for (int a = 0; a < 3; ++a) {
        b.origin[a] = lo[a];
        b.vol[a] = std::min(bs[a], s.g.vol[a] - lo[a]);
      }
      const int64_t BV = b.vol_numel();
      std::vector<float> ca(C * BV, 0.f), cw(BV, 0.f), ea = ca, ew = cw, want_a(C * BV), want_w(BV);
      for (int64_t z = 0; z < b.vol[0]; ++z)
        for (int64_t y = 0; y < b.vol[1]; ++y)
          for (int64_t x = 0; x < b.vol[2]; ++x) {
            const int64_t li = (z * b.vol[1] + y) * b.vol[2] + x;
            const int64_t gi = ((lo[0] + z) * s.g.vol[1] + lo[1] + y) * s.g.vol[2] + lo[2] + x;
            want_w[li] = ww[gi];
            for (int64_t c = 0; c < C; ++c) want_a[c * BV + li] = wa[c * V + gi];
          }
      cpu::scatter_affine(patches.data(), b, s.mats.data(), nullptr, mode, Window::cos, ca.data(), cw.data());
      cuda_emu::scatter_affine(patches.data(), b, s.mats.data(), nullptr, mode, Window::cos, ea.data(), ew.data());
      const std::string what = s.name + (mode == Interp::nearest ? " nearest" : " linear") + " brick";
      expect_exact(ca, want_a, what + " CPU acc");
      expect_exact(cw, want_w, what + " CPU weight");
      expect_close(ea, want_a, what + " CUDA acc");
      expect_close(ew, want_w, what + " CUDA weight");
      CHECK_MESSAGE(std::count(want_w.begin(), want_w.end(), 0.f) < BV, (what + ": patches land in the brick"));
    }
  }
}

TEST_CASE("emulated CUDA smooth (gaussian, box, max, min; 2D, 3D; 0 to 3 axes) equals the CPU") {
  struct Params {
    float sigma[3];
    int width[3];
  };
  const Params params[] = {
      {{1.2f, 0.7f, 2.f}, {3, 2, 4}},  // three axes (ping-pong ends in tmp -> out)
      {{0.f, 0.f, 1.5f}, {1, 1, 3}},   // one axis: straight into out
      {{5.f, 0.3f, 0.f}, {6, 1, 2}},   // two axes; a Gaussian wider than the axis
      {{0.f, 0.f, 0.f}, {1, 1, 1}},    // nothing to filter: a copy
  };
  const int64_t vols[][3] = {{9, 11, 10}, {1, 12, 13}};
  uint64_t seed = 6000;
  for (const auto& vol : vols)
    for (const Params& pr : params)
      for (SmoothKind k : {SmoothKind::gaussian, SmoothKind::box, SmoothKind::max, SmoothKind::min}) {
        const int64_t nc = 2, n = nc * vol[0] * vol[1] * vol[2];
        const auto in = random_values(n, ++seed);
        std::vector<float> ct(n, 7.f), co(n, 7.f), et(n, -7.f), eo(n, -7.f);
        cpu::smooth(in.data(), nc, vol, k, pr.sigma, pr.width, ct.data(), co.data());
        cuda_emu::smooth(in.data(), nc, vol, k, pr.sigma, pr.width, et.data(), eo.data());
        const char* kind = k == SmoothKind::gaussian ? "gaussian" : k == SmoothKind::box ? "box"
                           : k == SmoothKind::max    ? "max"
                                                     : "min";
        std::ostringstream what;
        what << "smooth " << kind << " vol " << vol[0] << "x" << vol[1] << "x" << vol[2] << " sigma " << pr.sigma[0]
             << "," << pr.sigma[1] << "," << pr.sigma[2] << " width " << pr.width[0] << pr.width[1] << pr.width[2];
        if (k == SmoothKind::max || k == SmoothKind::min) expect_exact(eo, co, what.str());
        else expect_close(eo, co, what.str());
      }
}

TEST_CASE("emulated CUDA gather_affine and scatter_affine reject a bad ndim as the CPU bodies do") {
  PatchGeom g = geom3(1, 1, {4, 4, 4}, 1, {2, 2, 2});
  g.ndim = 4;
  const std::vector<float> mats(25, 0.f), src(64, 1.f), patches(8, 1.f);
  std::vector<float> out(8), acc(64), weight(64);
  CHECK_THROWS_AS(cpu::gather_affine(src.data(), g, mats.data(), nullptr, Interp::linear, false, out.data()),
                  std::invalid_argument);
  CHECK_THROWS_AS(cuda_emu::gather_affine(src.data(), g, mats.data(), nullptr, Interp::linear, false, out.data()),
                  std::invalid_argument);
  CHECK_THROWS_AS(cpu::scatter_affine(patches.data(), g, mats.data(), nullptr, Interp::nearest, Window::flat,
                                      acc.data(), weight.data()),
                  std::invalid_argument);
  CHECK_THROWS_AS(cuda_emu::scatter_affine(patches.data(), g, mats.data(), nullptr, Interp::nearest, Window::flat,
                                           acc.data(), weight.data()),
                  std::invalid_argument);
}
