// Every CUDA patch kernel (gather, labels, gather backward, scatter, normalise, smooth) against its
// CPU body on the same inputs: nearest bit-exact, linear and every accumulation within 1e-5
// relative. Skipped (and reported skipped) where no GPU is present.
#include <doctest/doctest.h>

#include <cstring>

#include "common/test_util.h"
#include "engine/cuda_backend.h"
#include "engine/tensor.h"
#include "kernels/gather.h"
#include "kernels/scatter.h"
#include "kernels/smooth.h"
#include "patch_test_util.h"

using namespace pw;
using namespace pw::kernels;
using namespace pw::test::patch;

#ifdef PW_HAVE_CUDA
namespace {

Tensor dev_f32(const std::vector<float>& v) {
  return Tensor::from_vector({int64_t(v.size())}, v).to(Device::cuda);
}
Tensor dev_i32(const std::vector<int32_t>& v) {
  Tensor t = Tensor::empty({int64_t(v.size())}, DType::i32);
  std::memcpy(t.i32(), v.data(), v.size() * sizeof(int32_t));
  return t.to(Device::cuda);
}
std::vector<float> host(const Tensor& t) { return t.cpu().to_vector(); }

struct Setup {
  PatchGeom g;
  std::vector<float> mats;
  std::vector<int32_t> parent;
};

// Q volumes, P patches at random rotations/scalings, some partly outside.
Setup make_setup(int d, int64_t C, int64_t Q, int64_t P, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Setup s;
  std::vector<int64_t> vol = d == 3 ? std::vector<int64_t>{14, 13, 15} : std::vector<int64_t>{30, 28};
  std::vector<int64_t> ps = d == 3 ? std::vector<int64_t>{6, 7, 5} : std::vector<int64_t>{9, 8};
  s.g = d == 3 ? geom3(C, Q, vol, P, ps) : geom2(C, Q, vol, P, ps);
  for (int64_t p = 0; p < P; ++p) {
    std::vector<double> centre;
    for (int a = 0; a < d; ++a) centre.push_back(std::uniform_real_distribution<double>(-1, vol[a] + 1)(rng));
    push_random_matrix(s.mats, d, centre, {s.g.patch[0], s.g.patch[1], s.g.patch[2]}, 0.6, 1.6, rng);
    s.parent.push_back(int32_t(rng() % Q));
  }
  return s;
}

void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, bool exact, const char* what) {
  if (exact) {
    REQUIRE(gpu.size() == cpu.size());
    CHECK_MESSAGE(std::memcmp(gpu.data(), cpu.data(), gpu.size() * sizeof(float)) == 0, what);
  } else {
    std::vector<double> ref(cpu.begin(), cpu.end());
    std::string err = test::check_close(gpu, ref, 1e-5, 1e-6);
    CHECK_MESSAGE(err.empty(), what, ": ", err);
  }
}

}  // namespace
#endif

TEST_CASE("CUDA gather_affine (f32, u8, labels; 2D/3D; nested; mask) equals the CPU body" *
          doctest::skip(!pw::cuda_available())) {
#ifdef PW_HAVE_CUDA
  for (int d : {2, 3}) {
    Setup s = make_setup(d, 2, 3, 11, 30 + d);
    const int64_t nsrc = s.g.num_vols * s.g.channels * s.g.vol_numel();
    auto src = random_values(nsrc, 31);
    std::vector<uint8_t> u8(nsrc);
    for (int64_t i = 0; i < nsrc; ++i) u8[i] = uint8_t((src[i] + 1) * 127);
    Tensor dsrc = dev_f32(src), dm = dev_f32(s.mats), dp = dev_i32(s.parent);
    Tensor du8 = Tensor::empty({nsrc}, DType::u8);
    std::memcpy(du8.u8(), u8.data(), nsrc);
    du8 = du8.to(Device::cuda);
    for (Interp mode : {Interp::nearest, Interp::linear}) {
      const bool exact = mode == Interp::nearest;
      const int64_t n = s.g.num_patches * (s.g.channels + 1) * s.g.patch_numel();
      std::vector<float> c(n);
      Tensor o = Tensor::empty({n}, DType::f32, Device::cuda);
      cpu::gather_affine(src.data(), s.g, s.mats.data(), s.parent.data(), mode, true, c.data());
      PW_CUDA_KERNEL(gather_affine, dsrc.f32(), s.g, dm.f32(), dp.i32(), mode, true, o.f32());
      expect_close(host(o), c, exact, "f32 gather");
      cpu::gather_affine(u8.data(), s.g, s.mats.data(), s.parent.data(), mode, true, c.data());
      PW_CUDA_KERNEL(gather_affine, du8.u8(), s.g, dm.f32(), dp.i32(), mode, true, o.f32());
      expect_close(host(o), c, exact, "u8 gather");
    }
    const int64_t nl = s.g.num_patches * s.g.channels * s.g.patch_numel();
    std::vector<int32_t> cl(nl);
    Tensor ol = Tensor::empty({nl}, DType::i32, Device::cuda);
    cpu::gather_affine_labels(u8.data(), s.g, s.mats.data(), s.parent.data(), cl.data());
    PW_CUDA_KERNEL(gather_affine_labels, du8.u8(), s.g, dm.f32(), dp.i32(), ol.i32());
    Tensor hl = ol.cpu();
    CHECK(std::memcmp(hl.i32(), cl.data(), nl * sizeof(int32_t)) == 0);
  }
#endif
}

TEST_CASE("CUDA gather_affine_backward and scatter_affine (windows) + stitch_normalize equal the CPU bodies" *
          doctest::skip(!pw::cuda_available())) {
#ifdef PW_HAVE_CUDA
  for (int d : {2, 3}) {
    Setup s = make_setup(d, 2, 2, 13, 40 + d);
    const int64_t nv = s.g.num_vols * s.g.channels * s.g.vol_numel(), nw = s.g.num_vols * s.g.vol_numel();
    Tensor dm = dev_f32(s.mats), dp = dev_i32(s.parent);
    for (Interp mode : {Interp::nearest, Interp::linear}) {
      auto gy = random_values(s.g.num_patches * (s.g.channels + 1) * s.g.patch_numel(), 41);
      std::vector<float> c(nv, 0.f);
      Tensor o = Tensor::zeros({nv}, DType::f32, Device::cuda), dgy = dev_f32(gy);
      cpu::gather_affine_backward(gy.data(), s.g, s.mats.data(), s.parent.data(), mode, true, c.data());
      PW_CUDA_KERNEL(gather_affine_backward, dgy.f32(), s.g, dm.f32(), dp.i32(), mode, true, o.f32());
      expect_close(host(o), c, false, "gather backward");
      auto pv = random_values(s.g.num_patches * s.g.channels * s.g.patch_numel(), 42);
      Tensor dpv = dev_f32(pv);
      for (Window win : {Window::flat, Window::cos, Window::cos2}) {
        std::vector<float> ca(nv, 0.f), cw(nw, 0.f);
        Tensor ga = Tensor::zeros({nv}, DType::f32, Device::cuda), gw = Tensor::zeros({nw}, DType::f32, Device::cuda);
        cpu::scatter_affine(pv.data(), s.g, s.mats.data(), s.parent.data(), mode, win, ca.data(), cw.data());
        PW_CUDA_KERNEL(scatter_affine, dpv.f32(), s.g, dm.f32(), dp.i32(), mode, win, ga.f32(), gw.f32());
        expect_close(host(ga), ca, false, "scatter acc");
        expect_close(host(gw), cw, false, "scatter weight");
        // Normalise volume 0 from the CPU's sums on both backends: same per-voxel math.
        const int64_t V = s.g.vol_numel();
        std::vector<float> ny(s.g.channels * V);
        cpu::stitch_normalize(ca.data(), cw.data(), s.g.channels, V, 0.7f, ny.data());
        Tensor da = dev_f32(std::vector<float>(ca.begin(), ca.begin() + s.g.channels * V));
        Tensor dw = dev_f32(std::vector<float>(cw.begin(), cw.begin() + V));
        Tensor dy = Tensor::empty({s.g.channels * V}, DType::f32, Device::cuda);
        PW_CUDA_KERNEL(stitch_normalize, da.f32(), dw.f32(), s.g.channels, V, 0.7f, dy.f32());
        expect_close(host(dy), ny, false, "stitch_normalize");
      }
    }
  }
#endif
}

TEST_CASE("CUDA smooth equals the CPU body" * doctest::skip(!pw::cuda_available())) {
#ifdef PW_HAVE_CUDA
  const int64_t nc = 2, vol[3] = {9, 11, 10};
  auto in = random_values(nc * 9 * 11 * 10, 50);
  const float sigma[3] = {1.2f, 0.7f, 2.f};
  const int width[3] = {3, 2, 4};
  Tensor din = dev_f32(in), dt = Tensor::empty({int64_t(in.size())}, DType::f32, Device::cuda),
         dout = Tensor::empty({int64_t(in.size())}, DType::f32, Device::cuda);
  std::vector<float> t(in.size()), o(in.size());
  for (SmoothKind k : {SmoothKind::gaussian, SmoothKind::box, SmoothKind::max, SmoothKind::min}) {
    cpu::smooth(in.data(), nc, vol, k, sigma, width, t.data(), o.data());
    PW_CUDA_KERNEL(smooth, din.f32(), nc, vol, k, sigma, width, dt.f32(), dout.f32());
    expect_close(host(dout), o, k == SmoothKind::max || k == SmoothKind::min, "smooth");
  }
#endif
}
