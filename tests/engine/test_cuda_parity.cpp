// CPU vs CUDA parity of every op in engine/ops.h, forward and backward, on random inputs (in the
// spirit of ggml's test-backend-ops). Each case runs the same function on CPU tensors and on their
// CUDA copies, seeds the backward with the same random upstream gradient, and compares the output
// and every input gradient with the op-fixtures rule at fp32 tolerance (rtol 1e-4, atol 1e-5 of
// the largest reference value), TF32 off. Skipped (and reported as skipped) without a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "cuda_test_util.h"
#include "test_random.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#ifdef PW_HAVE_CUDA
#include "engine/cuda/runtime.h"
#endif

using namespace pw;
using pw::test::as_double;
using pw::test::check_close;
using pw::test::Fp32Only;
using pw::test::random_tensor;

namespace {

constexpr double kRtol = 1e-4, kAtolFrac = 1e-5;

Tensor labels(const Shape& shape, int classes, uint32_t seed, double ignore_fraction = 0.0) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> c(0, classes - 1);
  std::uniform_real_distribution<double> u(0, 1);
  Tensor t = Tensor::empty(shape, DType::i32);
  for (int64_t i = 0; i < t.numel(); ++i) t.i32()[i] = u(rng) < ignore_fraction ? -1 : c(rng);
  return t;
}

Tensor binary_mask(const Shape& shape, uint32_t seed, double keep = 0.7) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng) < keep ? 1.f : 0.f;
  return t;
}

// The op under test: takes the inputs as Vars (already on `dev`) and returns the output.
using OpFn = std::function<Var(const std::vector<Var>& in, Device dev)>;

struct RunResult {
  Tensor out;
  std::vector<Tensor> grads;  // undefined where an input has no gradient
};

RunResult run_on(Device dev, const std::vector<Tensor>& inputs, const OpFn& fn, uint32_t seed) {
  std::vector<Var> vars;
  for (const Tensor& t : inputs) vars.push_back(variable(t.to(dev), t.dtype() == DType::f32));
  Var y = fn(vars, dev);
  RunResult r;
  r.out = y->value.cpu();
  if (y->requires_grad) backward(y, random_tensor(y->value.shape(), seed).to(dev));
  for (const Var& v : vars) r.grads.push_back(v->grad.defined() ? v->grad.cpu() : Tensor());
  return r;
}

// Runs `fn` on both devices and compares output and gradients.
void check_parity(const std::string& name, const std::vector<Tensor>& inputs, const OpFn& fn,
                  bool expect_grads = true) {
  CAPTURE(name);
  Fp32Only fp32;
  RunResult cpu = run_on(Device::cpu, inputs, fn, 1234);
  RunResult gpu = run_on(Device::cuda, inputs, fn, 1234);
  REQUIRE(gpu.out.shape() == cpu.out.shape());
  const std::string fwd = check_close(gpu.out.to_vector(), as_double(cpu.out), kRtol, kAtolFrac);
  CHECK_MESSAGE(fwd.empty(), name << " forward: " << fwd);
  for (size_t i = 0; i < inputs.size(); ++i) {
    REQUIRE(cpu.grads[i].defined() == gpu.grads[i].defined());
    if (!cpu.grads[i].defined()) continue;
    const std::string bwd = check_close(gpu.grads[i].to_vector(), as_double(cpu.grads[i]), kRtol, kAtolFrac);
    CHECK_MESSAGE(bwd.empty(), name << " gradient of input " << i << ": " << bwd);
  }
  if (expect_grads) CHECK(cpu.grads[0].defined());
}

}  // namespace

TEST_SUITE("cuda parity") {

TEST_CASE("conv 3D and 2D, stride, padding, bias, 1x1 (cuBLAS path)" * doctest::skip(!cuda_available())) {
  struct C {
    Shape x, w;
    int stride, pad;
    bool bias;
  };
  const std::vector<C> cases = {
      {{2, 3, 9, 8, 7}, {4, 3, 3, 3, 3}, 1, 1, true},  {{2, 3, 9, 8, 7}, {5, 3, 3, 3, 3}, 2, 1, true},
      {{1, 4, 6, 6, 6}, {2, 4, 2, 2, 2}, 2, 0, false}, {{2, 8, 5, 6, 7}, {3, 8, 1, 1, 1}, 1, 0, true},
      {{3, 3, 12, 11}, {6, 3, 3, 3}, 1, 1, true},      {{3, 3, 12, 11}, {6, 3, 5, 5}, 2, 2, false},
      {{2, 16, 10, 10}, {4, 16, 1, 1}, 1, 0, true},
  };
  uint32_t seed = 10;
  for (const C& c : cases) {
    std::vector<Tensor> in = {random_tensor(c.x, seed++), random_tensor(c.w, seed++, -0.5f, 0.5f)};
    if (c.bias) in.push_back(random_tensor({c.w[0]}, seed++));
    check_parity("conv x" + shape_str(c.x) + " w" + shape_str(c.w) + " s" + std::to_string(c.stride) + " p" +
                     std::to_string(c.pad),
                 in, [c](const std::vector<Var>& v, Device) {
                   return conv(v[0], v[1], c.bias ? v[2] : Var(), c.stride, c.pad);
                 });
  }
}

TEST_CASE("conv_transpose 3D and 2D" * doctest::skip(!cuda_available())) {
  struct C {
    Shape x, w;
    int stride;
    bool bias;
  };
  const std::vector<C> cases = {{{2, 6, 4, 5, 3}, {6, 3, 2, 2, 2}, 2, true},
                                {{1, 4, 3, 3, 3}, {4, 2, 3, 3, 3}, 2, false},
                                {{2, 5, 6, 7}, {5, 4, 2, 2}, 2, true},
                                {{2, 3, 5, 4}, {3, 2, 3, 3}, 1, true}};
  uint32_t seed = 40;
  for (const C& c : cases) {
    std::vector<Tensor> in = {random_tensor(c.x, seed++), random_tensor(c.w, seed++, -0.5f, 0.5f)};
    if (c.bias) in.push_back(random_tensor({c.w[1]}, seed++));
    check_parity("conv_transpose x" + shape_str(c.x) + " w" + shape_str(c.w), in,
                 [c](const std::vector<Var>& v, Device) {
                   return conv_transpose(v[0], v[1], c.bias ? v[2] : Var(), c.stride);
                 });
  }
}

TEST_CASE("pooling and upsampling, 3D and 2D" * doctest::skip(!cuda_available())) {
  const std::vector<Shape> shapes = {{2, 3, 8, 6, 7}, {3, 2, 9, 10}};
  uint32_t seed = 60;
  for (const Shape& s : shapes) {
    const std::string tag = shape_str(s);
    check_parity("max_pool k2 s2 " + tag, {random_tensor(s, seed++)},
                 [](const std::vector<Var>& v, Device) { return max_pool(v[0], 2, 2); });
    check_parity("max_pool k3 s2 (overlapping) " + tag, {random_tensor(s, seed++)},
                 [](const std::vector<Var>& v, Device) { return max_pool(v[0], 3, 2); });
    check_parity("avg_pool k2 s2 " + tag, {random_tensor(s, seed++)},
                 [](const std::vector<Var>& v, Device) { return avg_pool(v[0], 2, 2); });
    check_parity("avg_pool k3 s1 " + tag, {random_tensor(s, seed++)},
                 [](const std::vector<Var>& v, Device) { return avg_pool(v[0], 3, 1); });
    for (int f : {2, 3}) {
      check_parity("upsample nearest x" + std::to_string(f) + " " + tag, {random_tensor(s, seed++)},
                   [f](const std::vector<Var>& v, Device) { return upsample(v[0], f, UpsampleMode::nearest); });
      for (bool ac : {false, true})
        check_parity("upsample linear x" + std::to_string(f) + (ac ? " align" : "") + " " + tag,
                     {random_tensor(s, seed++)}, [f, ac](const std::vector<Var>& v, Device) {
                       return upsample(v[0], f, UpsampleMode::linear, ac);
                     });
    }
  }
}

TEST_CASE("instance norm and batch norm (train and eval)" * doctest::skip(!cuda_available())) {
  const Shape s = {3, 4, 5, 6, 7};
  check_parity("instance_norm affine", {random_tensor(s, 80, -2.f, 3.f), random_tensor({4}, 81), random_tensor({4}, 82)},
               [](const std::vector<Var>& v, Device) { return instance_norm(v[0], v[1], v[2]); });
  check_parity("instance_norm plain 2D", {random_tensor({2, 3, 9, 8}, 83)},
               [](const std::vector<Var>& v, Device) { return instance_norm(v[0], Var(), Var()); });
  for (bool training : {true, false}) {
    Tensor rm_cpu = random_tensor({4}, 84), rv_cpu = random_tensor({4}, 85, 0.5f, 2.f);
    std::vector<Tensor> running_after;  // cpu then cuda
    check_parity(std::string("batch_norm ") + (training ? "train" : "eval"),
                 {random_tensor(s, 86, -1.f, 2.f), random_tensor({4}, 87), random_tensor({4}, 88)},
                 [&](const std::vector<Var>& v, Device dev) {
                   Tensor rm = rm_cpu.clone().to(dev), rv = rv_cpu.clone().to(dev);
                   Var y = batch_norm(v[0], v[1], v[2], rm, rv, training, 0.1f, 1e-5f);
                   running_after.push_back(rm.cpu());
                   running_after.push_back(rv.cpu());
                   return y;
                 });
    REQUIRE(running_after.size() == 4);
    CHECK(check_close(running_after[2].to_vector(), as_double(running_after[0]), kRtol, kAtolFrac) == "");
    CHECK(check_close(running_after[3].to_vector(), as_double(running_after[1]), kRtol, kAtolFrac) == "");
  }
}

TEST_CASE("activations, arithmetic, softmax" * doctest::skip(!cuda_available())) {
  const Shape s = {2, 5, 4, 6, 3};
  check_parity("relu", {random_tensor(s, 100, -1.f, 1.f, 1e-3f)},
               [](const std::vector<Var>& v, Device) { return relu(v[0]); });
  check_parity("leaky_relu", {random_tensor(s, 101, -1.f, 1.f, 1e-3f)},
               [](const std::vector<Var>& v, Device) { return leaky_relu(v[0], 0.1f); });
  check_parity("sigmoid", {random_tensor(s, 102, -6.f, 6.f)},
               [](const std::vector<Var>& v, Device) { return sigmoid(v[0]); });
  check_parity("softmax", {random_tensor(s, 103, -5.f, 5.f)},
               [](const std::vector<Var>& v, Device) { return softmax(v[0]); });
  check_parity("add", {random_tensor(s, 104), random_tensor(s, 105)},
               [](const std::vector<Var>& v, Device) { return add(v[0], v[1]); });
  check_parity("mul", {random_tensor(s, 106), random_tensor(s, 107)},
               [](const std::vector<Var>& v, Device) { return mul(v[0], v[1]); });
  check_parity("scale", {random_tensor(s, 108)}, [](const std::vector<Var>& v, Device) { return scale(v[0], -2.5f); });
  check_parity("add aliasing one input", {random_tensor(s, 109)},
               [](const std::vector<Var>& v, Device) { return add(v[0], v[0]); });
}

TEST_CASE("concat, slice, sum, mean" * doctest::skip(!cuda_available())) {
  check_parity("concat 3 inputs",
               {random_tensor({2, 3, 4, 5, 6}, 120), random_tensor({2, 1, 4, 5, 6}, 121), random_tensor({2, 4, 4, 5, 6}, 122)},
               [](const std::vector<Var>& v, Device) { return concat({v[0], v[1], v[2]}); });
  check_parity("slice [2,5)", {random_tensor({3, 7, 4, 5}, 123)},
               [](const std::vector<Var>& v, Device) { return slice(v[0], 2, 5); });
  check_parity("sum (large, multi-block reduction)", {random_tensor({4, 3, 33, 31, 29}, 124)},
               [](const std::vector<Var>& v, Device) { return sum(v[0]); });
  check_parity("mean", {random_tensor({2, 3, 17, 19}, 125)},
               [](const std::vector<Var>& v, Device) { return mean(v[0]); });
  check_parity("sum of a chain (relu(conv) -> slice -> mean)", {random_tensor({2, 3, 6, 6, 6}, 126), random_tensor({4, 3, 3, 3, 3}, 127)},
               [](const std::vector<Var>& v, Device) { return mean(slice(relu(conv(v[0], v[1], Var(), 1, 1)), 1, 3)); });
}

TEST_CASE("losses with masks, ignore labels and class weights" * doctest::skip(!cuda_available())) {
  const Shape s = {2, 3, 7, 6, 5}, vox = {2, 7, 6, 5};
  // BCE: targets in [0,1] with some NaN (don't care), and a mask.
  Tensor t = random_tensor(s, 140, 0.f, 1.f);
  for (int64_t i = 0; i < t.numel(); i += 17) t.f32()[i] = std::nanf("");
  Tensor m = binary_mask(s, 141);
  check_parity("bce_with_logits", {random_tensor(s, 142, -4.f, 4.f)}, [&](const std::vector<Var>& v, Device dev) {
    Tensor td = t.to(dev);
    return bce_with_logits(v[0], td);
  });
  check_parity("bce_with_logits masked", {random_tensor(s, 143, -4.f, 4.f)}, [&](const std::vector<Var>& v, Device dev) {
    Tensor td = t.to(dev), md = m.to(dev);
    return bce_with_logits(v[0], td, &md);
  });
  // Cross-entropy: ignore label -1, class weights, mask.
  Tensor lab = labels(vox, 3, 144, 0.2);
  Tensor vm = binary_mask(vox, 145);
  const std::vector<float> cw = {0.5f, 2.f, 1.25f};
  check_parity("cross_entropy", {random_tensor(s, 146, -3.f, 3.f)}, [&](const std::vector<Var>& v, Device dev) {
    Tensor ld = lab.to(dev);
    return cross_entropy(v[0], ld);
  });
  check_parity("cross_entropy weighted masked", {random_tensor(s, 147, -3.f, 3.f)},
               [&](const std::vector<Var>& v, Device dev) {
                 Tensor ld = lab.to(dev), md = vm.to(dev);
                 return cross_entropy(v[0], ld, &cw, &md);
               });
  // A class index outside [-1, K) is the same clear error on the GPU as on the CPU.
  {
    Tensor bad = lab.clone();
    bad.i32()[5] = 3;
    Var x = variable(random_tensor(s, 152, -1.f, 1.f).to(Device::cuda), false);
    CHECK_THROWS_WITH_AS(cross_entropy(x, bad.to(Device::cuda)), "cross_entropy: target value 3 outside [-1, 3)",
                         std::invalid_argument);
  }
  // Soft Dice on softmax probabilities against one-hot targets.
  Tensor onehot = Tensor::zeros(s);
  {
    Tensor l = labels(vox, 3, 148);
    const int64_t S = 7 * 6 * 5;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t i = 0; i < S; ++i) onehot.f32()[(n * 3 + l.i32()[n * S + i]) * S + i] = 1.f;
  }
  Tensor dm = binary_mask(s, 149);
  for (bool per_sample : {false, true}) {
    check_parity(std::string("soft_dice") + (per_sample ? " per_sample" : ""), {random_tensor(s, 150, -2.f, 2.f)},
                 [&](const std::vector<Var>& v, Device dev) {
                   Tensor od = onehot.to(dev);
                   return soft_dice(softmax(v[0]), od, per_sample, 1.f);
                 });
    check_parity(std::string("soft_dice masked") + (per_sample ? " per_sample" : ""), {random_tensor(s, 151, -2.f, 2.f)},
                 [&](const std::vector<Var>& v, Device dev) {
                   Tensor od = onehot.to(dev), md = dm.to(dev);
                   return soft_dice(softmax(v[0]), od, per_sample, 1.f, &md);
                 });
  }
}

}  // TEST_SUITE
