// The CUDA bodies of the engine's custom kernels (kernels/cuda/{pool,norm,loss,elementwise,optim}.cu),
// run on the host by the emulation (emu_context.h), against the CPU bodies on the same inputs.
// Outputs are pre-filled with different values on the two sides, so an element a body forgets to
// write shows up. Tolerance: 1e-5 relative (+1e-6 of the largest value); integer outputs exact.
#include <doctest/doctest.h>

#include "emu_context.h"
#include "emu_elementwise.h"
#include "emu_loss.h"
#include "emu_norm.h"
#include "emu_optim.h"
#include "emu_pool.h"
#include "emu_test.h"

using namespace pw::kernels;
using pw::test::emu::expect_close;
using pw::test::emu::expect_exact;
using pw::test::random_values;

TEST_CASE("emulated CUDA pooling and upsampling equal the CPU bodies") {
  struct P {
    int64_t in[3];
    int k[3], s[3];
  };
  const P ps[] = {{{8, 6, 7}, {2, 2, 2}, {2, 2, 2}}, {{8, 6, 7}, {3, 3, 3}, {2, 2, 2}},
                  {{9, 7, 8}, {3, 2, 3}, {1, 2, 2}}, {{1, 9, 10}, {1, 2, 2}, {1, 2, 2}},
                  {{1, 9, 10}, {1, 3, 3}, {1, 1, 1}}};
  uint64_t seed = 100;
  for (const P& p : ps) {
    PoolGeom g;
    g.nc = 3;
    g.ndim = p.in[0] == 1 ? 2 : 3;
    for (int a = 0; a < 3; ++a) {
      g.in[a] = p.in[a];
      g.k[a] = p.k[a];
      g.stride[a] = p.s[a];
      g.out[a] = (p.in[a] - p.k[a]) / p.s[a] + 1;
    }
    INFO("pool in " << g.in[0] << "x" << g.in[1] << "x" << g.in[2] << " k " << g.k[0] << g.k[1] << g.k[2]);
    const auto x = random_values(g.nc * g.in_vol(), ++seed), dy = random_values(g.nc * g.out_vol(), ++seed);
    std::vector<float> y1(g.nc * g.out_vol(), 7.f), y2(y1.size(), -7.f);
    std::vector<float> dx1(g.nc * g.in_vol(), 7.f), dx2(dx1.size(), -7.f);
    std::vector<int32_t> a1(y1.size(), 7), a2(y1.size(), -7);
    cpu::max_pool_forward(g, x.data(), y1.data(), a1.data());
    cuda_emu::max_pool_forward(g, x.data(), y2.data(), a2.data());
    expect_exact(y2, y1, "max_pool_forward");
    expect_exact(a2, a1, "max_pool_forward argmax");
    cpu::max_pool_backward(g, dy.data(), a1.data(), dx1.data());
    cuda_emu::max_pool_backward(g, dy.data(), a1.data(), dx2.data());
    expect_close(dx2, dx1, "max_pool_backward");
    cpu::avg_pool_forward(g, x.data(), y1.data());
    cuda_emu::avg_pool_forward(g, x.data(), y2.data());
    expect_close(y2, y1, "avg_pool_forward");
    std::fill(dx1.begin(), dx1.end(), 7.f);
    std::fill(dx2.begin(), dx2.end(), -7.f);
    cpu::avg_pool_backward(g, dy.data(), dx1.data());
    cuda_emu::avg_pool_backward(g, dy.data(), dx2.data());
    expect_close(dx2, dx1, "avg_pool_backward");
  }
  // Per-axis factors, equal and mixed (a mixed-up axis shows only with different factors).
  const int factors[][3] = {{1, 1, 1}, {2, 2, 2}, {3, 3, 3}, {4, 4, 4}, {2, 3, 1}, {1, 2, 4}, {3, 1, 2}};
  for (const auto& f : factors)
    for (int twod : {0, 1})
      for (int64_t base : {1, 2, 5}) {
        PoolGeom g;
        g.nc = 2;
        g.ndim = twod ? 2 : 3;
        const int64_t in[3] = {twod ? 1 : base, base + 1, base + 2};
        for (int a = 0; a < 3; ++a) {
          g.in[a] = in[a];
          g.out[a] = in[a] * ((twod && a == 0) ? 1 : f[a]);
        }
        INFO("upsample factors " << f[0] << f[1] << f[2] << (twod ? " 2D" : " 3D") << " base " << base);
        const auto x = random_values(g.nc * g.in_vol(), ++seed), dy = random_values(g.nc * g.out_vol(), ++seed);
        std::vector<float> y1(g.nc * g.out_vol(), 3.f), y2(y1.size(), -3.f);
        std::vector<float> dx1(g.nc * g.in_vol(), 3.f), dx2(dx1.size(), -3.f);
        cpu::upsample_nearest_forward(g, x.data(), y1.data());
        cuda_emu::upsample_nearest_forward(g, x.data(), y2.data());
        expect_exact(y2, y1, "upsample_nearest_forward");
        cpu::upsample_nearest_backward(g, dy.data(), dx1.data());
        cuda_emu::upsample_nearest_backward(g, dy.data(), dx2.data());
        expect_close(dx2, dx1, "upsample_nearest_backward");
        for (bool ac : {false, true}) {
          INFO("align_corners " << ac);
          cpu::upsample_linear_forward(g, ac, x.data(), y1.data());
          cuda_emu::upsample_linear_forward(g, ac, x.data(), y2.data());
          expect_close(y2, y1, "upsample_linear_forward");
          cpu::upsample_linear_backward(g, ac, dy.data(), dx1.data());
          cuda_emu::upsample_linear_backward(g, ac, dy.data(), dx2.data());
          expect_close(dx2, dx1, "upsample_linear_backward");
        }
      }
}

TEST_CASE("emulated CUDA instance and batch norm equal the CPU bodies") {
  const int64_t N = 3, C = 4, S = 50;
  const auto x = random_values(N * C * S, 1, -2.f, 3.f), dy = random_values(N * C * S, 2), w = random_values(C, 3), b = random_values(C, 4);
  // A large eps too, so that a body that drops or misplaces it fails beyond the tolerance.
  for (float eps : {1e-5f, 0.25f}) {
    for (bool affine : {true, false}) {
      // The fused activation of instance_norm_act / batch_norm_act: ReLU, leaky ReLU and none among the cases.
      const common::Act act = !affine ? common::Act::none : eps > 0.1f ? common::Act::leaky : common::Act::relu;
      const float slope = act == common::Act::leaky ? 0.2f : 0.f;
      INFO("affine " << affine << " eps " << eps << " act " << int(act));
      const float* wp = affine ? w.data() : nullptr;
      const float* bp = affine ? b.data() : nullptr;
      std::vector<float> y1(x.size(), 7.f), y2(x.size(), -7.f), m1(N * C, 7.f), m2(N * C, -7.f), r1(N * C, 7.f),
          r2(N * C, -7.f);
      cpu::instance_norm_forward(x.data(), wp, bp, y1.data(), m1.data(), r1.data(), N, C, S, eps, act, slope);
      cuda_emu::instance_norm_forward(x.data(), wp, bp, y2.data(), m2.data(), r2.data(), N, C, S, eps, act, slope);
      expect_close(y2, y1, "instance_norm_forward y");
      expect_close(m2, m1, "instance_norm_forward mean");
      expect_close(r2, r1, "instance_norm_forward rstd");
      std::vector<float> dx1(x.size(), 7.f), dx2(x.size(), -7.f), dw1(C, 7.f), dw2(C, -7.f), db1(C, 7.f),
          db2(C, -7.f);
      cpu::instance_norm_backward(x.data(), wp, m1.data(), r1.data(), dy.data(), y1.data(), act, slope, dx1.data(),
                                  dw1.data(), db1.data(), N, C, S);
      cuda_emu::instance_norm_backward(x.data(), wp, m1.data(), r1.data(), dy.data(), y1.data(), act, slope, dx2.data(),
                                       dw2.data(), db2.data(), N, C, S);
      expect_close(dx2, dx1, "instance_norm_backward dx");
      expect_close(dw2, dw1, "instance_norm_backward dweight");
      expect_close(db2, db1, "instance_norm_backward dbias");

      std::vector<float> bm1(C, 7.f), bm2(C, -7.f), bv1(C, 7.f), bv2(C, -7.f), br1(C, 7.f), br2(C, -7.f);
      cpu::batch_norm_stats(x.data(), bm1.data(), bv1.data(), N, C, S);
      cuda_emu::batch_norm_stats(x.data(), bm2.data(), bv2.data(), N, C, S);
      expect_close(bm2, bm1, "batch_norm_stats mean");
      expect_close(bv2, bv1, "batch_norm_stats var");
      auto rm1 = random_values(C, 5), rv1 = random_values(C, 6, 0.5f, 2.f);
      auto rm2 = rm1, rv2 = rv1;
      cpu::batch_norm_update_running(rm1.data(), rv1.data(), bm1.data(), bv1.data(), C, N * S, 0.1f);
      cuda_emu::batch_norm_update_running(rm2.data(), rv2.data(), bm1.data(), bv1.data(), C, N * S, 0.1f);
      expect_close(rm2, rm1, "batch_norm_update_running mean");
      expect_close(rv2, rv1, "batch_norm_update_running var");
      cpu::batch_norm_forward(x.data(), wp, bp, bm1.data(), bv1.data(), y1.data(), br1.data(), N, C, S, eps, act, slope);
      cuda_emu::batch_norm_forward(x.data(), wp, bp, bm1.data(), bv1.data(), y2.data(), br2.data(), N, C, S, eps, act,
                                   slope);
      expect_close(y2, y1, "batch_norm_forward y");
      expect_close(br2, br1, "batch_norm_forward rstd");
      for (bool training : {true, false}) {
        INFO("training " << training);
        std::fill(dx1.begin(), dx1.end(), 7.f);
        std::fill(dx2.begin(), dx2.end(), -7.f);
        cpu::batch_norm_backward(x.data(), wp, bm1.data(), br1.data(), dy.data(), y1.data(), act, slope, dx1.data(),
                                 dw1.data(), db1.data(), N, C, S, training);
        cuda_emu::batch_norm_backward(x.data(), wp, bm1.data(), br1.data(), dy.data(), y1.data(), act, slope,
                                      dx2.data(), dw2.data(), db2.data(), N, C, S, training);
        expect_close(dx2, dx1, "batch_norm_backward dx");
        expect_close(dw2, dw1, "batch_norm_backward dweight");
        expect_close(db2, db1, "batch_norm_backward dbias");
        // No outputs wanted: must not write anywhere (nothing to compare, must not crash).
        cuda_emu::batch_norm_backward(x.data(), wp, bm1.data(), br1.data(), dy.data(), y1.data(), act, slope, nullptr,
                                      nullptr, nullptr, N, C, S, training);
      }
    }
  }
}

TEST_CASE("emulated CUDA batch norm statistics over many voxels (several blocks per channel) equal the CPU") {
  const int64_t N = 2, C = 2, S = 5000;  // 10000 values per channel: group_reduce uses 4 parts per channel
  const auto x = random_values(N * C * S, 7, -1.f, 4.f);
  std::vector<float> m1(C, 7.f), m2(C, -7.f), v1(C, 7.f), v2(C, -7.f);
  cpu::batch_norm_stats(x.data(), m1.data(), v1.data(), N, C, S);
  cuda_emu::batch_norm_stats(x.data(), m2.data(), v2.data(), N, C, S);
  expect_close(m2, m1, "batch_norm_stats mean");
  expect_close(v2, v1, "batch_norm_stats var");
}

TEST_CASE("emulated CUDA losses (BCE, cross-entropy, soft Dice; masks, ignored targets) equal the CPU bodies") {
  const int64_t N = 2, K = 3, S = 40, n = N * K * S;
  const auto z = random_values(n, 11, -4.f, 4.f);
  auto t = random_values(n, 12, 0.f, 1.f), m = random_values(n, 13, 0.f, 1.f);
  for (auto& v : m) v = v < 0.3f ? 0.f : 1.f;
  for (int64_t i = 0; i < n; i += 13) t[i] = NAN;  // not counted
  std::mt19937_64 rng(14);
  std::vector<int32_t> labels(N * S);
  for (auto& v : labels) v = int32_t(rng() % 4) - 1;  // -1: ignored
  std::vector<float> vmask(N * S);
  for (auto& v : vmask) v = (rng() % 3) ? 1.f : 0.f;
  const std::vector<float> class_weight = {0.5f, 2.f, 1.25f};
  const float dloss = 0.7f;
  for (int masked : {0, 1}) {
    INFO("masked " << masked);
    const float* mp = masked ? m.data() : nullptr;
    float l1 = 7, d1 = 7, l2 = -7, d2 = -7;
    cpu::bce_with_logits_forward(z.data(), t.data(), mp, n, &l1, &d1);
    cuda_emu::bce_with_logits_forward(z.data(), t.data(), mp, n, &l2, &d2);
    expect_close({l2, d2}, {l1, d1}, "bce_with_logits_forward loss, denom");
    std::vector<float> g1(n, 7.f), g2(n, -7.f);
    cpu::bce_with_logits_backward(z.data(), t.data(), mp, n, &dloss, &d1, g1.data());
    cuda_emu::bce_with_logits_backward(z.data(), t.data(), mp, n, &dloss, &d1, g2.data());
    expect_close(g2, g1, "bce_with_logits_backward");
    for (int weighted : {0, 1}) {
      INFO("class weights " << weighted);
      const float* wp = weighted ? class_weight.data() : nullptr;
      const float* vmp = masked ? vmask.data() : nullptr;
      cpu::cross_entropy_forward(z.data(), labels.data(), wp, vmp, N, K, S, &l1, &d1);
      cuda_emu::cross_entropy_forward(z.data(), labels.data(), wp, vmp, N, K, S, &l2, &d2);
      expect_close({l2, d2}, {l1, d1}, "cross_entropy_forward loss, denom");
      std::fill(g1.begin(), g1.end(), 7.f);
      std::fill(g2.begin(), g2.end(), -7.f);
      cpu::cross_entropy_backward(z.data(), labels.data(), wp, vmp, N, K, S, &dloss, &d1, g1.data());
      cuda_emu::cross_entropy_backward(z.data(), labels.data(), wp, vmp, N, K, S, &dloss, &d1, g2.data());
      expect_close(g2, g1, "cross_entropy_backward");
    }
    const auto p = random_values(n, 15, 0.f, 1.f);
    auto onehot = random_values(n, 16, 0.f, 1.f);
    for (auto& v : onehot) v = v < 0.4f ? 1.f : 0.f;
    for (bool per_sample : {false, true}) {
      INFO("per_sample " << per_sample);
      const int64_t G = per_sample ? N * K : K;
      std::vector<float> s1(3 * G, 7.f), s2(3 * G, -7.f);
      cpu::soft_dice_forward(p.data(), onehot.data(), mp, N, K, S, per_sample, 1.f, s1.data(), &l1);
      cuda_emu::soft_dice_forward(p.data(), onehot.data(), mp, N, K, S, per_sample, 1.f, s2.data(), &l2);
      expect_close(s2, s1, "soft_dice_forward sums");
      expect_close({l2}, {l1}, "soft_dice_forward loss");
      std::fill(g1.begin(), g1.end(), 7.f);
      std::fill(g2.begin(), g2.end(), -7.f);
      cpu::soft_dice_backward(p.data(), onehot.data(), mp, N, K, S, per_sample, 1.f, s1.data(), &dloss, g1.data());
      cuda_emu::soft_dice_backward(p.data(), onehot.data(), mp, N, K, S, per_sample, 1.f, s1.data(), &dloss,
                                   g2.data());
      expect_close(g2, g1, "soft_dice_backward");
    }
  }
}

TEST_CASE("emulated CUDA losses with nothing counted (all masked, all ignored) equal the CPU bodies") {
  const int64_t N = 2, K = 3, S = 8, n = N * K * S;
  const auto z = random_values(n, 41, -4.f, 4.f), t = random_values(n, 42, 0.f, 1.f), p = random_values(n, 43, 0.f, 1.f);
  const std::vector<float> zero_mask(n, 0.f), zero_vmask(N * S, 0.f);
  const std::vector<int32_t> ignored(N * S, -1);
  const float dloss = 1.f;
  float l1 = 7, d1 = 7, l2 = -7, d2 = -7;
  cpu::bce_with_logits_forward(z.data(), t.data(), zero_mask.data(), n, &l1, &d1);
  cuda_emu::bce_with_logits_forward(z.data(), t.data(), zero_mask.data(), n, &l2, &d2);
  expect_exact(std::vector<float>{l2, d2}, std::vector<float>{l1, d1}, "bce, all masked: loss, denom");
  std::vector<float> g1(n, 7.f), g2(n, -7.f);
  cpu::bce_with_logits_backward(z.data(), t.data(), zero_mask.data(), n, &dloss, &d1, g1.data());
  cuda_emu::bce_with_logits_backward(z.data(), t.data(), zero_mask.data(), n, &dloss, &d1, g2.data());
  expect_exact(g2, g1, "bce, all masked: grad");
  for (int masked : {0, 1}) {
    INFO("cross-entropy " << (masked ? "all masked" : "all targets ignored"));
    const int32_t* target = masked ? nullptr : ignored.data();
    std::vector<int32_t> some(N * S, 1);
    if (!target) target = some.data();
    const float* vmp = masked ? zero_vmask.data() : nullptr;
    l1 = d1 = 7, l2 = d2 = -7;
    cpu::cross_entropy_forward(z.data(), target, nullptr, vmp, N, K, S, &l1, &d1);
    cuda_emu::cross_entropy_forward(z.data(), target, nullptr, vmp, N, K, S, &l2, &d2);
    expect_exact(std::vector<float>{l2, d2}, std::vector<float>{l1, d1}, "cross_entropy_forward loss, denom");
    std::fill(g1.begin(), g1.end(), 7.f);
    std::fill(g2.begin(), g2.end(), -7.f);
    cpu::cross_entropy_backward(z.data(), target, nullptr, vmp, N, K, S, &dloss, &d1, g1.data());
    cuda_emu::cross_entropy_backward(z.data(), target, nullptr, vmp, N, K, S, &dloss, &d1, g2.data());
    expect_exact(g2, g1, "cross_entropy_backward");
  }
  for (bool per_sample : {false, true}) {
    INFO("soft Dice, all masked, per_sample " << per_sample);
    const int64_t G = per_sample ? N * K : K;
    std::vector<float> s1(3 * G, 7.f), s2(3 * G, -7.f);
    cpu::soft_dice_forward(p.data(), t.data(), zero_mask.data(), N, K, S, per_sample, 1.f, s1.data(), &l1);
    cuda_emu::soft_dice_forward(p.data(), t.data(), zero_mask.data(), N, K, S, per_sample, 1.f, s2.data(), &l2);
    expect_exact(s2, s1, "soft_dice_forward sums");
    expect_exact(std::vector<float>{l2}, std::vector<float>{l1}, "soft_dice_forward loss");
    std::fill(g1.begin(), g1.end(), 7.f);
    std::fill(g2.begin(), g2.end(), -7.f);
    cpu::soft_dice_backward(p.data(), t.data(), zero_mask.data(), N, K, S, per_sample, 1.f, s1.data(), &dloss,
                            g1.data());
    cuda_emu::soft_dice_backward(p.data(), t.data(), zero_mask.data(), N, K, S, per_sample, 1.f, s1.data(), &dloss,
                                 g2.data());
    expect_exact(g2, g1, "soft_dice_backward");
  }
}

TEST_CASE("emulated CUDA elementwise, softmax, copy_channels and sum equal the CPU bodies") {
  const int64_t n = 1000;
  const auto x = random_values(n, 21, -3.f, 3.f), y = random_values(n, 22), dy = random_values(n, 23);
  std::vector<float> a(n, 7.f), b(n, -7.f);
#define PW_EMU_SAME(fn, ...)                  \
  cpu::fn(__VA_ARGS__, a.data(), n);          \
  cuda_emu::fn(__VA_ARGS__, b.data(), n);     \
  expect_close(b, a, #fn)
  PW_EMU_SAME(relu_forward, x.data());
  PW_EMU_SAME(relu_backward, x.data(), dy.data());
  PW_EMU_SAME(sigmoid_forward, x.data());
  PW_EMU_SAME(sigmoid_backward, x.data(), dy.data());
  PW_EMU_SAME(add, x.data(), y.data());
  PW_EMU_SAME(mul, x.data(), y.data());
#undef PW_EMU_SAME
  cpu::leaky_relu_forward(x.data(), a.data(), n, 0.1f);
  cuda_emu::leaky_relu_forward(x.data(), b.data(), n, 0.1f);
  expect_close(b, a, "leaky_relu_forward");
  cpu::leaky_relu_backward(x.data(), dy.data(), a.data(), n, 0.1f);
  cuda_emu::leaky_relu_backward(x.data(), dy.data(), b.data(), n, 0.1f);
  expect_close(b, a, "leaky_relu_backward");
  cpu::scale(x.data(), a.data(), n, -2.5f);
  cuda_emu::scale(x.data(), b.data(), n, -2.5f);
  expect_close(b, a, "scale");
  cpu::softmax_forward(x.data(), a.data(), 5, 4, 50);
  cuda_emu::softmax_forward(x.data(), b.data(), 5, 4, 50);
  expect_close(b, a, "softmax_forward");
  const std::vector<float> sy = a;
  cpu::softmax_backward(sy.data(), dy.data(), a.data(), 5, 4, 50);
  cuda_emu::softmax_backward(sy.data(), dy.data(), b.data(), 5, 4, 50);
  expect_close(b, a, "softmax_backward");
  std::vector<float> c1(2 * 7 * 9, 5.f), c2 = c1;  // untouched channels must stay 5 on both
  cpu::copy_channels(x.data(), 4, 1, c1.data(), 7, 3, 2, 2, 9);
  cuda_emu::copy_channels(x.data(), 4, 1, c2.data(), 7, 3, 2, 2, 9);
  expect_exact(c2, c1, "copy_channels");
  float s1 = 7, s2 = -7;
  cpu::sum(x.data(), n, &s1);
  cuda_emu::sum(x.data(), n, &s2);
  expect_close({s2}, {s1}, "sum");
  s1 = 7, s2 = -7;
  cpu::sum(x.data(), 0, &s1);
  cuda_emu::sum(x.data(), 0, &s2);
  expect_exact(std::vector<float>{s2}, std::vector<float>{s1}, "sum of nothing");
  // In place (the output aliases an input), as the engine's accumulations do.
  std::vector<float> i1 = x, i2 = x;
  cpu::add(i1.data(), y.data(), i1.data(), n);
  cuda_emu::add(i2.data(), y.data(), i2.data(), n);
  cpu::mul(i1.data(), i1.data(), i1.data(), n);
  cuda_emu::mul(i2.data(), i2.data(), i2.data(), n);
  cpu::scale(i1.data(), i1.data(), n, 0.5f);
  cuda_emu::scale(i2.data(), i2.data(), n, 0.5f);
  cpu::relu_forward(i1.data(), i1.data(), n);
  cuda_emu::relu_forward(i2.data(), i2.data(), n);
  expect_close(i2, i1, "add, mul, scale, relu in place");
  // Far more items than the emulated grid has threads (32 blocks of 256): several trips around the
  // grid-stride loop per thread, and the launch really ran.
  const int64_t big = 100003;
  const auto xb = random_values(big, 24);
  std::vector<float> yb1(big, 7.f), yb2(big, -7.f);
  const int64_t before = pw_emu::launches();
  cpu::relu_forward(xb.data(), yb1.data(), big);
  cuda_emu::relu_forward(xb.data(), yb2.data(), big);
  CHECK(pw_emu::launches() == before + 1);
  expect_exact(yb2, yb1, "relu_forward, 100003 items");
  // A reduction that large: group_reduce splits the group into 8 parts (blocks) and adds the partials.
  float sb1 = 7, sb2 = -7;
  cpu::sum(xb.data(), big, &sb1);
  cuda_emu::sum(xb.data(), big, &sb2);
  expect_close({sb2}, {sb1}, "sum, 100003 items");
  const float s = 1.5f;
  cpu::broadcast_scalar(&s, 0.5f, a.data(), n);
  cuda_emu::broadcast_scalar(&s, 0.5f, b.data(), n);
  expect_exact(b, a, "broadcast_scalar");
}

TEST_CASE("emulated CUDA Adam and SGD steps equal the CPU bodies") {
  const int64_t n = 500;
  for (bool decoupled : {false, true}) {
    INFO("decoupled " << decoupled);
    auto p1 = random_values(n, 31), g = random_values(n, 32);
    auto p2 = p1;
    std::vector<float> m1(n), v1(n), m2(n), v2(n);
    for (int step = 1; step <= 3; ++step) {
      cpu::adam_step(p1.data(), g.data(), m1.data(), v1.data(), n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, decoupled, step);
      cuda_emu::adam_step(p2.data(), g.data(), m2.data(), v2.data(), n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, decoupled,
                          step);
    }
    expect_close(p2, p1, "adam param");
    expect_close(m2, m1, "adam m");
    expect_close(v2, v1, "adam v");
  }
  for (float momentum : {0.f, 0.9f}) {
    INFO("momentum " << momentum);
    auto p1 = random_values(n, 33), g = random_values(n, 34);
    auto p2 = p1;
    std::vector<float> b1 = random_values(n, 35), b2 = b1;  // not zeros: the first step must overwrite, not add
    for (int step = 0; step < 3; ++step) {
      cpu::sgd_step(p1.data(), g.data(), b1.data(), n, 0.1f, momentum, 1e-3f, step == 0);
      cuda_emu::sgd_step(p2.data(), g.data(), b2.data(), n, 0.1f, momentum, 1e-3f, step == 0);
    }
    expect_close(p2, p1, "sgd param");
    if (momentum > 0) expect_close(b2, b1, "sgd momentum buffer");
    if (momentum == 0) {  // the buffer is not used then: nullptr must do
      cpu::sgd_step(p1.data(), g.data(), nullptr, n, 0.1f, 0.f, 1e-3f, false);
      cuda_emu::sgd_step(p2.data(), g.data(), nullptr, n, 0.1f, 0.f, 1e-3f, false);
      expect_close(p2, p1, "sgd param, no buffer");
    }
  }
}

TEST_CASE("emulated CUDA bodies on degenerate shapes (one channel, one voxel, global pooling) equal the CPU") {
  const auto x = random_values(64, 51, -2.f, 2.f), dy = random_values(64, 52);
  for (const auto& shape : {std::vector<int64_t>{3, 1, 7}, std::vector<int64_t>{7, 5, 1}}) {
    INFO("softmax outer, channels, inner " << shape[0] << "," << shape[1] << "," << shape[2]);
    const int64_t n = shape[0] * shape[1] * shape[2];
    std::vector<float> y1(n, 7.f), y2(n, -7.f), dx1(n, 7.f), dx2(n, -7.f);
    cpu::softmax_forward(x.data(), y1.data(), shape[0], shape[1], shape[2]);
    cuda_emu::softmax_forward(x.data(), y2.data(), shape[0], shape[1], shape[2]);
    expect_close(y2, y1, "softmax_forward");
    cpu::softmax_backward(y1.data(), dy.data(), dx1.data(), shape[0], shape[1], shape[2]);
    cuda_emu::softmax_backward(y1.data(), dy.data(), dx2.data(), shape[0], shape[1], shape[2]);
    expect_close(dx2, dx1, "softmax_backward");
  }
  {  // instance norm over a single voxel per (n, c); batch norm over M = N*S = 1. x - mean is rounding
     // noise, times rstd: eps 1 and biases of size 1 keep it below the tolerance.
    const int64_t N = 1, C = 3, S = 1;
    const std::vector<float> w = {1.5f, -0.5f, 2.f}, b = {1.f, -2.f, 1.5f};
    std::vector<float> y1(3, 7.f), y2(3, -7.f), m1(3, 7.f), m2(3, -7.f), r1(3, 7.f), r2(3, -7.f);
    cpu::instance_norm_forward(x.data(), w.data(), b.data(), y1.data(), m1.data(), r1.data(), N, C, S, 1.f,
                               common::Act::none, 0.f);
    cuda_emu::instance_norm_forward(x.data(), w.data(), b.data(), y2.data(), m2.data(), r2.data(), N, C, S, 1.f,
                                    common::Act::none, 0.f);
    expect_close(y2, y1, "instance_norm_forward, S = 1");
    expect_close(r2, r1, "instance_norm_forward rstd, S = 1");
    std::vector<float> dx1(3, 7.f), dx2(3, -7.f);
    cpu::instance_norm_backward(x.data(), nullptr, m1.data(), r1.data(), dy.data(), nullptr, common::Act::none, 0.f,
                                dx1.data(), nullptr, nullptr, N, C, S);
    cuda_emu::instance_norm_backward(x.data(), nullptr, m1.data(), r1.data(), dy.data(), nullptr, common::Act::none, 0.f,
                                     dx2.data(), nullptr, nullptr, N, C, S);
    expect_close(dx2, dx1, "instance_norm_backward, S = 1 (0 up to rounding)", 1e-5, 1e-6);
    std::vector<float> bm(3), bv(3), rm1 = random_values(3, 53), rv1 = random_values(3, 54, 0.5f, 2.f), rm2 = rm1, rv2 = rv1;
    cpu::batch_norm_stats(x.data(), bm.data(), bv.data(), N, C, S);
    cpu::batch_norm_update_running(rm1.data(), rv1.data(), bm.data(), bv.data(), C, N * S, 0.1f);
    cuda_emu::batch_norm_update_running(rm2.data(), rv2.data(), bm.data(), bv.data(), C, N * S, 0.1f);
    expect_close(rv2, rv1, "batch_norm_update_running, M = 1");
  }
  {  // cross-entropy with one class
    const std::vector<int32_t> target = {0, 0, -1, 0, 0};
    float l1 = 7, d1 = 7, l2 = -7, d2 = -7;
    const float dloss = 1.f;
    cpu::cross_entropy_forward(x.data(), target.data(), nullptr, nullptr, 1, 1, 5, &l1, &d1);
    cuda_emu::cross_entropy_forward(x.data(), target.data(), nullptr, nullptr, 1, 1, 5, &l2, &d2);
    expect_close({l2, d2}, {l1, d1}, "cross_entropy_forward, K = 1");
    std::vector<float> g1(5, 7.f), g2(5, -7.f);
    cpu::cross_entropy_backward(x.data(), target.data(), nullptr, nullptr, 1, 1, 5, &dloss, &d1, g1.data());
    cuda_emu::cross_entropy_backward(x.data(), target.data(), nullptr, nullptr, 1, 1, 5, &dloss, &d1, g2.data());
    expect_close(g2, g1, "cross_entropy_backward, K = 1");
  }
  {  // global pooling: the window is the whole volume
    PoolGeom g;
    g.nc = 2;
    for (int a = 0; a < 3; ++a) g.in[a] = 2 + a, g.k[a] = int(2 + a), g.stride[a] = 1, g.out[a] = 1;
    std::vector<float> y1(2, 7.f), y2(2, -7.f), dx1(48, 7.f), dx2(48, -7.f);
    std::vector<int32_t> a1(2, 7), a2(2, -7);
    cpu::max_pool_forward(g, x.data(), y1.data(), a1.data());
    cuda_emu::max_pool_forward(g, x.data(), y2.data(), a2.data());
    expect_exact(a2, a1, "global max_pool argmax");
    cpu::avg_pool_backward(g, dy.data(), dx1.data());
    cuda_emu::avg_pool_backward(g, dy.data(), dx2.data());
    expect_close(dx2, dx1, "global avg_pool_backward");
  }
}
