// CPU vs CUDA parity of whole training steps: the benchmark U-Net (engine issue, bench spec)
// with identical initial weights gives the same loss, gradients and weights after Adam steps;
// Adam, AdamW and SGD with momentum give the same parameters over several steps. TF32 off.
// Skipped (and reported as skipped) without a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "cuda_test_util.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/testing/unet_block.h"
#ifdef PW_HAVE_CUDA
#include "engine/cuda/runtime.h"
#endif

using namespace pw;
using pw::test::as_double;
using pw::test::check_close;
using pw::test::Fp32Only;

namespace {

// The benchmark block (engine/testing/unet_block.h) with weights drawn on the CPU.
struct BenchUNet {
  std::vector<Var> params;  // w1 b1 w2 b2 w3 b3 w4 b4 w5 b5

  // He-normal weights and small biases from one seed, on the CPU, then moved to `dev`.
  BenchUNet(int width, uint32_t seed, Device dev) {
    std::mt19937 rng(seed);
    const int w = width;
    const std::vector<Shape> shapes = testing::unet_block_shapes(w);
    for (const Shape& s : shapes) {
      Tensor t = Tensor::empty(s);
      const bool is_weight = s.size() > 1;
      const double fan_in = is_weight ? double(t.numel() / s[0]) : 1.0;
      std::normal_distribution<float> nd(0.f, is_weight ? float(std::sqrt(2.0 / fan_in)) : 0.05f);
      for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = nd(rng);
      params.push_back(variable(t.to(dev), true));
    }
  }

  Var forward(const Var& x) const { return testing::unet_block_forward(x, params); }
};

struct StepLog {
  std::vector<float> losses;
  std::vector<Tensor> first_grads;  // gradients of the first step
  std::vector<Tensor> weights;      // after the last step
};

StepLog train(Device dev, int steps, const Tensor& x_cpu, const Tensor& y_cpu) {
  BenchUNet net(8, 77, dev);
  Adam opt(net.params, AdamOptions{});
  Var x = constant(x_cpu.to(dev));
  Tensor y = y_cpu.to(dev);
  StepLog log;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    Var loss = cross_entropy(net.forward(x), y);
    backward(loss);
    log.losses.push_back(loss->value.to_vector()[0]);
    if (s == 0)
      for (const Var& p : net.params) log.first_grads.push_back(p->grad.cpu());
    opt.step();
  }
  for (const Var& p : net.params) log.weights.push_back(p->value.cpu());
  return log;
}

}  // namespace

TEST_SUITE("cuda parity") {

TEST_CASE("benchmark U-Net training steps: same loss, gradients and weights" * doctest::skip(!cuda_available())) {
  Fp32Only fp32;
  const Shape xs = {2, 1, 16, 16, 16};
  Tensor x = Tensor::empty(xs), y = Tensor::empty({2, 16, 16, 16}, DType::i32);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = nd(rng);
  for (int64_t i = 0; i < y.numel(); ++i) y.i32()[i] = x.f32()[i] > 0.3f ? 1 : 0;  // learnable labels

  const int steps = 3;
  StepLog cpu = train(Device::cpu, steps, x, y);
  StepLog gpu = train(Device::cuda, steps, x, y);
  for (int s = 0; s < steps; ++s) {
    CAPTURE(s);
    CHECK(gpu.losses[s] == doctest::Approx(cpu.losses[s]).epsilon(1e-4));
  }
  CHECK(cpu.losses.back() < cpu.losses.front());  // the steps really train
  for (size_t i = 0; i < cpu.first_grads.size(); ++i) {
    const std::string msg = check_close(gpu.first_grads[i].to_vector(), as_double(cpu.first_grads[i]), 1e-4, 1e-5);
    CHECK_MESSAGE(msg.empty(), "gradient of parameter " << i << ": " << msg);
  }
  // Adam's first steps move each weight by about lr*sign(g): a gradient within rounding of 0 can
  // take either sign on the two devices. Allow that for at most 0.1% of the weights; all others
  // must agree to fp32 tolerance.
  const double lr = AdamOptions{}.lr;
  for (size_t i = 0; i < cpu.weights.size(); ++i) {
    std::vector<float> a = gpu.weights[i].to_vector(), r = cpu.weights[i].to_vector();
    int64_t loose = 0;
    double worst = 0;
    for (size_t j = 0; j < a.size(); ++j) {
      const double d = std::fabs(double(a[j]) - r[j]);
      worst = std::max(worst, d);
      if (d > 1e-4 * std::fabs(r[j]) + 1e-6) ++loose;
    }
    CAPTURE(i);
    CHECK(loose <= std::max<int64_t>(1, int64_t(a.size()) / 1000));
    CHECK(worst <= 2 * lr * steps + 1e-6);
  }
}

TEST_CASE("optimizers: Adam, AdamW and SGD with momentum agree over several steps" *
          doctest::skip(!cuda_available())) {
  Fp32Only fp32;
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  Tensor p0 = Tensor::empty({1000}), target = Tensor::empty({1000});
  for (int64_t i = 0; i < p0.numel(); ++i) {
    p0.f32()[i] = nd(rng);
    target.f32()[i] = nd(rng);
  }
  // Loss = mean((p - target)^2 * 3): the gradient is never near 0 away from the target.
  auto run = [&](Device dev, int kind) {
    Var p = variable(p0.clone().to(dev), true);
    Var neg_t = constant(target.to(dev));
    std::unique_ptr<Optimizer> opt;
    if (kind == 0) opt = std::make_unique<Adam>(std::vector<Var>{p}, AdamOptions{0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, false});
    if (kind == 1) opt = std::make_unique<Adam>(std::vector<Var>{p}, AdamOptions{0.01f, 0.9f, 0.999f, 1e-8f, 0.05f, true});
    if (kind == 2) opt = std::make_unique<Sgd>(std::vector<Var>{p}, SgdOptions{0.1f, 0.9f, 1e-3f});
    for (int s = 0; s < 5; ++s) {
      opt->zero_grad();
      Var d = add(p, scale(neg_t, -1.f));
      backward(mean(scale(mul(d, d), 3.f)));
      opt->step();
    }
    return p->value.cpu();
  };
  for (int kind = 0; kind < 3; ++kind) {
    CAPTURE(kind);
    Tensor c = run(Device::cpu, kind), g = run(Device::cuda, kind);
    const std::string msg = check_close(g.to_vector(), as_double(c), 1e-4, 1e-5);
    CHECK_MESSAGE(msg.empty(), msg);
    CHECK(check_close(c.to_vector(), as_double(p0), 1e-4, 1e-5) != "");  // the steps moved the parameters
  }
}

}  // TEST_SUITE
