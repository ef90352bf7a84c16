// The patch ops (engine/ops_patch.h): forward equals the kernels, gradients flow from a nested
// crop (level n) back into the previous level's output (level n-1) and into the image, finite
// differences, shape errors, stitching and pre-smoothing.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "common/test_util.h"
#include "engine/ops_patch.h"

using namespace pw;

namespace {

Tensor random_tensor(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(shape_numel(s));
  for (auto& x : v) x = u(rng);
  return Tensor::from_vector(s, v);
}

// A rotation about axis 0 by `deg`, scaling `sc`, centred at `c` (3D, axis order), for patch size s.
std::vector<float> rot_matrix(double deg, double sc, const double c[3], const int64_t s[3]) {
  const double a = deg * M_PI / 180, ca = std::cos(a) * sc, sa = std::sin(a) * sc;
  double L[3][3] = {{sc, 0, 0}, {0, ca, -sa}, {0, sa, ca}};
  std::vector<float> m(16, 0.f);
  for (int r = 0; r < 3; ++r) {
    double t = c[r];
    for (int k = 0; k < 3; ++k) {
      m[r * 4 + k] = float(L[r][k]);
      t -= L[r][k] * (double(s[k]) - 1) / 2;
    }
    m[r * 4 + 3] = float(t);
  }
  m[15] = 1;
  return m;
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += double(a.f32()[i]) * b.f32()[i];
  return s;
}

}  // namespace

TEST_CASE("gather_patches: forward is the kernel, backward the scatter-add; finite differences agree") {
  const int64_t s[3] = {4, 5, 3};
  const double c0[3] = {3, 4, 4}, c1[3] = {4.5, 3, 5};
  auto m0 = rot_matrix(30, 0.8, c0, s), m1 = rot_matrix(-70, 1.3, c1, s);
  m0.insert(m0.end(), m1.begin(), m1.end());
  Tensor mats = Tensor::from_vector({2, 4, 4}, m0);
  for (Interp mode : {Interp::nearest, Interp::linear}) {
    Var x = variable(random_tensor({2, 7, 8, 9}, 1), true);
    Var y = gather_patches(x, mats, {4, 5, 3}, mode, true);
    REQUIRE(y->value.shape() == Shape({2, 3, 4, 5, 3}));
    Tensor ref = Tensor::empty({2, 3, 4, 5, 3});
    kernels::PatchGeom g;
    g.channels = 2;
    g.num_patches = 2;
    g.vol[0] = 7, g.vol[1] = 8, g.vol[2] = 9;
    g.patch[0] = 4, g.patch[1] = 5, g.patch[2] = 3;
    kernels::cpu::gather_affine(x->value.f32(), g, mats.f32(), nullptr, mode, true, ref.f32());
    CHECK(std::memcmp(ref.f32(), y->value.f32(), ref.nbytes()) == 0);
    Tensor seed = random_tensor(y->value.shape(), 2);
    backward(y, seed);
    REQUIRE(x->grad.defined());
    // <gather(x), seed> is linear in x: d/dx_i by central differences on a few elements.
    for (int64_t i : {0L, 77L, 250L, 300L, 501L}) {
      const float h = 0.5f;
      Tensor xp = x->value.clone(), xm = x->value.clone();
      xp.f32()[i] += h;
      xm.f32()[i] -= h;
      NoGradGuard ng;
      Tensor yp = gather_patches(constant(xp), mats, {4, 5, 3}, mode, true)->value;
      Tensor ym = gather_patches(constant(xm), mats, {4, 5, 3}, mode, true)->value;
      Tensor sd = seed.clone();
      for (int64_t p = 0; p < 2; ++p)  // the mask channel carries no gradient
        for (int64_t k = 0; k < 60; ++k) sd.f32()[(p * 3 + 2) * 60 + k] = 0.f;
      double fd = (dot(yp, sd) - dot(ym, sd)) / (2 * h);
      CHECK(x->grad.f32()[i] == doctest::Approx(fd).epsilon(1e-4).scale(1.0));
    }
  }
}

TEST_CASE("nested gather: level n's gradient reaches level n-1 and the image") {
  // image -> level 0 patches (crop) -> level 1 patches (nested crop from each level-0 patch).
  Var img = variable(random_tensor({1, 12, 12, 12}, 3), true);
  const int64_t s0[3] = {8, 8, 8}, s1[3] = {4, 4, 4};
  const double ca[3] = {5.5, 5.5, 6}, cb[3] = {6, 6.5, 5.5}, cc[3] = {3.5, 4, 4};
  auto a = rot_matrix(20, 1.2, ca, s0), b = rot_matrix(-45, 1.1, cb, s0);
  a.insert(a.end(), b.begin(), b.end());
  Tensor m0 = Tensor::from_vector({2, 4, 4}, a);
  auto l1a = rot_matrix(10, 0.6, cc, s1), l1b = rot_matrix(90, 0.5, cc, s1), l1c = rot_matrix(-30, 0.7, cc, s1);
  l1a.insert(l1a.end(), l1b.begin(), l1b.end());
  l1a.insert(l1a.end(), l1c.begin(), l1c.end());
  Tensor m1 = Tensor::from_vector({3, 4, 4}, l1a);
  Tensor parent = Tensor::zeros({3}, DType::i32);
  parent.i32()[0] = 1, parent.i32()[1] = 0, parent.i32()[2] = 1;
  for (Interp mode : {Interp::nearest, Interp::linear}) {
    img->grad = Tensor();
    Var x0 = gather_patches(img, m0, {8, 8, 8}, mode);
    Var x1 = gather_patches_nested(x0, parent, m1, {4, 4, 4}, mode);
    REQUIRE(x1->value.shape() == Shape({3, 1, 4, 4, 4}));
    Tensor seed = random_tensor(x1->value.shape(), 4);
    backward(x1, seed);
    // Expected: the two adjoints applied by hand, level 1 into level 0, then level 0 into the image.
    kernels::PatchGeom g1;
    g1.num_vols = 2, g1.num_patches = 3;
    for (int k = 0; k < 3; ++k) g1.vol[k] = 8, g1.patch[k] = 4;
    Tensor gx0 = Tensor::zeros({2, 1, 8, 8, 8});
    kernels::cpu::gather_affine_backward(seed.f32(), g1, m1.f32(), parent.i32(), mode, false, gx0.f32());
    kernels::PatchGeom g0;
    g0.num_patches = 2;
    for (int k = 0; k < 3; ++k) g0.vol[k] = 12, g0.patch[k] = 8;
    Tensor gimg = Tensor::zeros({1, 12, 12, 12});
    kernels::cpu::gather_affine_backward(gx0.f32(), g0, m0.f32(), nullptr, mode, false, gimg.f32());
    REQUIRE(img->grad.defined());
    CHECK(std::memcmp(img->grad.f32(), gimg.f32(), gimg.nbytes()) == 0);
    CHECK(dot(gimg, gimg) > 1e-3);
    // And the chain is adjoint end to end: <x1(img), seed> = <img, grad>.
    CHECK(dot(x1->value, seed) == doctest::Approx(dot(img->value, img->grad)).epsilon(1e-5));
  }
}

TEST_CASE("patch ops reject bad shapes and parent indices with clear errors") {
  Var x = variable(random_tensor({1, 6, 6, 6}, 5), true);
  Tensor m = Tensor::from_vector({1, 4, 4}, {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1});
  CHECK_THROWS_AS(gather_patches(x, m, {4, 4}), std::invalid_argument);
  CHECK_THROWS_AS(gather_patches(x, Tensor::zeros({1, 3, 3}), {4, 4, 4}), std::invalid_argument);
  CHECK_THROWS_AS(gather_patches(variable(random_tensor({6, 6}, 6)), m, {4, 4}), std::invalid_argument);
  Tensor bad = Tensor::zeros({1}, DType::i32);
  bad.i32()[0] = 1;
  Var parents = variable(random_tensor({1, 1, 6, 6, 6}, 7), true);
  CHECK_THROWS_WITH_AS(gather_patches_nested(parents, bad, m, {4, 4, 4}), doctest::Contains("parent_index[0] = 1"),
                       std::invalid_argument);
  Tensor acc = Tensor::zeros({1, 6, 6, 6}), w = Tensor::zeros({6, 6});
  CHECK_THROWS_AS(stitch_accumulate(Tensor::zeros({1, 1, 4, 4, 4}), m, Interp::nearest, Window::cos, acc, w),
                  std::invalid_argument);
}

TEST_CASE("labels, stitching and pre-smoothing through the ops (2D)") {
  // Labels: u8 C,H,W -> i32 patches, nearest, 0 outside.
  Tensor lab = Tensor::zeros({1, 4, 5}, DType::u8);
  for (int i = 0; i < 20; ++i) lab.u8()[i] = uint8_t(i + 1);
  Tensor m = Tensor::from_vector({1, 3, 3}, {1, 0, 1, 0, 1, -1, 0, 0, 1});  // shift (+1, -1)
  Tensor pl = gather_labels(lab, m, {4, 5});
  REQUIRE(pl.shape() == Shape({1, 1, 4, 5}));
  CHECK(pl.i32()[0] == 0);                  // (1, -1): outside
  CHECK(pl.i32()[1] == lab.u8()[5]);        // (1, 0)
  CHECK(pl.i32()[3 * 5 + 2] == 0);          // row 4: outside
  // Stitch one flat patch of ones back: weighted mean 1 where it landed, 0 elsewhere.
  Tensor patches = Tensor::full({1, 1, 4, 5}, 1.f);
  Tensor acc = Tensor::zeros({1, 4, 5}), w = Tensor::zeros({4, 5});
  stitch_accumulate(patches, m, Interp::nearest, Window::flat, acc, w);
  Tensor y = stitch_normalize(acc, w, 0.f);
  CHECK(y.f32()[5] == 1.f);
  CHECK(y.f32()[0] == 0.f);
  Tensor y1 = stitch_normalize(acc, w, 1.f);
  CHECK(y1.f32()[5] == doctest::Approx(0.5));
  // Pre-smoothing: mixture gives [box, max, min] channels; the max is >= the box mean >= the min.
  Tensor src = random_tensor({2, 9, 10}, 8);
  const float u[3] = {1, 3, 2};
  Tensor mix = presmooth(src, SmoothKind::mixture, u);
  REQUIRE(mix.shape() == Shape({6, 9, 10}));
  const int64_t n = src.numel();
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += !(mix.f32()[n + i] >= mix.f32()[i] - 1e-6f && mix.f32()[i] >= mix.f32()[2 * n + i] - 1e-6f);
  CHECK(bad == 0);
  Tensor gs = presmooth(src, SmoothKind::gaussian, u, 0.5f);
  CHECK(gs.shape() == src.shape());
  CHECK(dot(gs, gs) < dot(src, src));  // smoothing lowers the energy of noise
  const float ones[3] = {1, 1, 1};
  Tensor same = presmooth(src, SmoothKind::gaussian, ones, 1.f);  // no undersampling: no filter
  CHECK(std::memcmp(same.f32(), src.f32(), src.nbytes()) == 0);
}

TEST_CASE("patch ops on CUDA equal the CPU (forward, nested backward, stitch)" * doctest::skip(!pw::cuda_available())) {
  const int64_t s0[3] = {6, 6, 6}, s1[3] = {3, 3, 3};
  const double ca[3] = {4, 4.5, 5}, cb[3] = {2.5, 2.5, 2.5};
  auto a = rot_matrix(35, 1.3, ca, s0), b = rot_matrix(-60, 0.9, ca, s0);
  a.insert(a.end(), b.begin(), b.end());
  Tensor m0 = Tensor::from_vector({2, 4, 4}, a);
  auto c = rot_matrix(15, 0.7, cb, s1), d = rot_matrix(80, 0.8, cb, s1);
  c.insert(c.end(), d.begin(), d.end());
  Tensor m1 = Tensor::from_vector({2, 4, 4}, c);
  Tensor parent = Tensor::zeros({2}, DType::i32);
  parent.i32()[1] = 1;
  Tensor img = random_tensor({2, 9, 9, 9}, 9);
  for (Interp mode : {Interp::nearest, Interp::linear}) {
    Tensor grads[2], outs[2];
    for (int k = 0; k < 2; ++k) {
      const Device dev = k ? Device::cuda : Device::cpu;
      Var x = variable(img.to(dev), true);
      Var x0 = gather_patches(x, m0, {6, 6, 6}, mode);  // matrices stay on the CPU: the op moves them
      Var x1 = gather_patches_nested(x0, parent, m1, {3, 3, 3}, mode);
      backward(x1, random_tensor(x1->value.shape(), 10).to(dev));
      outs[k] = x1->value.cpu();
      grads[k] = x->grad.cpu();
    }
    std::vector<double> ro(outs[0].numel()), rg(grads[0].numel());
    for (int64_t i = 0; i < outs[0].numel(); ++i) ro[i] = outs[0].f32()[i];
    for (int64_t i = 0; i < grads[0].numel(); ++i) rg[i] = grads[0].f32()[i];
    CHECK(test::check_close(outs[1].to_vector(), ro, 1e-5, 1e-6).empty());
    CHECK(test::check_close(grads[1].to_vector(), rg, 1e-5, 1e-6).empty());
  }
  Tensor patches = random_tensor({2, 2, 6, 6, 6}, 11);
  Tensor ys[2];
  for (int k = 0; k < 2; ++k) {
    const Device dev = k ? Device::cuda : Device::cpu;
    Tensor acc = Tensor::zeros({2, 9, 9, 9}, DType::f32, dev), w = Tensor::zeros({9, 9, 9}, DType::f32, dev);
    stitch_accumulate(patches.to(dev), m0, Interp::linear, Window::cos, acc, w);
    ys[k] = stitch_normalize(acc, w, 0.5f).cpu();
  }
  std::vector<double> ry(ys[0].numel());
  for (int64_t i = 0; i < ys[0].numel(); ++i) ry[i] = ys[0].f32()[i];
  CHECK(test::check_close(ys[1].to_vector(), ry, 1e-5, 1e-6).empty());
}

TEST_CASE("crop_centre: the central voxels of every row, the gradient back into them") {
  Tensor x = random_tensor({2, 3, 6, 5, 8}, 7);
  Var xv = variable(x, true);
  Var y = crop_centre(xv, {2, 5, 4});
  REQUIRE(y->value.shape() == Shape{2, 3, 2, 5, 4});
  for (int64_t pc = 0; pc < 6; ++pc)
    for (int64_t z = 0; z < 2; ++z)
      for (int64_t yy = 0; yy < 5; ++yy)
        for (int64_t xx = 0; xx < 4; ++xx)
          CHECK(y->value.f32()[((pc * 2 + z) * 5 + yy) * 4 + xx] == x.f32()[((pc * 6 + z + 2) * 5 + yy) * 8 + xx + 2]);
  backward(y, Tensor::full(y->value.shape(), 1.f));
  int64_t ones = 0;
  for (float g : xv->grad.to_vector()) {
    CHECK((g == 0.f || g == 1.f));
    ones += g == 1.f;
  }
  CHECK(ones == y->value.numel());
  CHECK_THROWS_AS(crop_centre(xv, {3, 5, 4}), std::invalid_argument);  // 6 - 3 is odd
  CHECK_THROWS_AS(crop_centre(xv, {2, 6, 4}), std::invalid_argument);  // larger than 5
  CHECK_THROWS_AS(crop_centre(xv, {2, 4}), std::invalid_argument);     // 2 sizes for 3-D
}
