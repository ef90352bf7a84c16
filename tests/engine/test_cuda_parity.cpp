// CPU vs CUDA parity of every op in engine/ops.h and engine/ops_patch.h, forward and backward, on
// random inputs (in the spirit of ggml's test-backend-ops). Each case runs the same function on CPU
// tensors and on their CUDA copies, seeds the backward with the same random upstream gradient, and
// compares the output and every input gradient with the op-fixtures rule at fp32 tolerance (rtol 1e-4,
// atol 1e-5 of the largest reference value), TF32 off. Skipped (and reported as skipped) without a GPU.
// Each TEST_CASE is named after its op in the engine op list (op_list.h, PW_PARITY_CASE);
// test_op_list.cpp fails when an op of the list has no case here.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "cuda_test_util.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_patch.h"
#include "kernels/patch_test_util.h"  // tests/kernels/: random_patch_mats
#include "op_list.h"
#include "test_random.h"
#ifdef PW_HAVE_CUDA
#include "engine/cuda/runtime.h"
#endif

using namespace pw;
using pw::test::as_double;
using pw::test::check_close;
using pw::test::Fp32Only;
using pw::test::random_tensor;
using pw::test::patch::random_patch_mats;

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

// A host f32 copy of any tensor (integer outputs are compared as floats: exact for labels).
Tensor host_f32(const Tensor& t) {
  Tensor c = t.cpu();
  if (c.dtype() == DType::f32) return c;
  Tensor f = Tensor::empty(c.shape());
  for (int64_t i = 0; i < c.numel(); ++i) f.f32()[i] = c.dtype() == DType::i32 ? float(c.i32()[i]) : float(c.u8()[i]);
  return f;
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
  r.out = host_f32(y->value);
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

// ---- engine/ops.h -------------------------------------------------------------------------------

PW_PARITY_CASE(conv, "3D and 2D, stride, padding, bias, 1x1 (cuBLAS path)") {
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
  check_parity("sum of a chain (relu(conv) -> slice -> mean)", {random_tensor({2, 3, 6, 6, 6}, 126), random_tensor({4, 3, 3, 3, 3}, 127)},
               [](const std::vector<Var>& v, Device) { return mean(slice(relu(conv(v[0], v[1], Var(), 1, 1)), 1, 3)); });
}

PW_PARITY_CASE(conv_transpose, "3D and 2D") {
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

const std::vector<Shape> kPoolShapes = {{2, 3, 8, 6, 7}, {3, 2, 9, 10}};  // 3D and 2D

PW_PARITY_CASE(max_pool, "k2 s2 and overlapping k3 s2, 3D and 2D") {
  uint32_t seed = 60;
  for (const Shape& s : kPoolShapes) {
    const std::string tag = shape_str(s);
    check_parity("max_pool k2 s2 " + tag, {random_tensor(s, seed++)},
                 [](const std::vector<Var>& v, Device) { return max_pool(v[0], 2, 2); });
    check_parity("max_pool k3 s2 (overlapping) " + tag, {random_tensor(s, seed++)},
                 [](const std::vector<Var>& v, Device) { return max_pool(v[0], 3, 2); });
  }
}

PW_PARITY_CASE(avg_pool, "k2 s2 and k3 s1, 3D and 2D") {
  uint32_t seed = 70;
  for (const Shape& s : kPoolShapes) {
    const std::string tag = shape_str(s);
    check_parity("avg_pool k2 s2 " + tag, {random_tensor(s, seed++)},
                 [](const std::vector<Var>& v, Device) { return avg_pool(v[0], 2, 2); });
    check_parity("avg_pool k3 s1 " + tag, {random_tensor(s, seed++)},
                 [](const std::vector<Var>& v, Device) { return avg_pool(v[0], 3, 1); });
  }
}

PW_PARITY_CASE(upsample, "nearest and linear (align_corners both ways), x2 and x3, 3D and 2D") {
  uint32_t seed = 75;
  for (const Shape& s : kPoolShapes) {
    const std::string tag = shape_str(s);
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

PW_PARITY_CASE(instance_norm, "affine 3D, plain 2D") {
  check_parity("instance_norm affine", {random_tensor({3, 4, 5, 6, 7}, 80, -2.f, 3.f), random_tensor({4}, 81), random_tensor({4}, 82)},
               [](const std::vector<Var>& v, Device) { return instance_norm(v[0], v[1], v[2]); });
  check_parity("instance_norm plain 2D", {random_tensor({2, 3, 9, 8}, 83)},
               [](const std::vector<Var>& v, Device) { return instance_norm(v[0], Var(), Var()); });
}

PW_PARITY_CASE(instance_norm_act, "affine 3D leaky, plain 2D relu") {
  check_parity("instance_norm_act affine leaky",
               {random_tensor({3, 4, 5, 6, 7}, 84, -2.f, 3.f), random_tensor({4}, 85), random_tensor({4}, 86)},
               [](const std::vector<Var>& v, Device) { return instance_norm_act(v[0], v[1], v[2], 0.01f); });
  check_parity("instance_norm_act plain 2D relu", {random_tensor({2, 3, 9, 8}, 87)},
               [](const std::vector<Var>& v, Device) { return instance_norm_act(v[0], Var(), Var(), 0.f); });
}

PW_PARITY_CASE(batch_norm_act, "train leaky, eval relu") {
  for (bool training : {true, false}) {
    const Tensor rm0 = random_tensor({4}, 89), rv0 = random_tensor({4}, 90, 0.5f, 2.f);
    check_parity(std::string("batch_norm_act ") + (training ? "train leaky" : "eval relu"),
                 {random_tensor({3, 4, 5, 6, 7}, 91, -1.f, 2.f), random_tensor({4}, 92), random_tensor({4}, 93)},
                 [&](const std::vector<Var>& v, Device dev) {
                   Tensor rm = rm0.clone().to(dev), rv = rv0.clone().to(dev);
                   return batch_norm_act(v[0], v[1], v[2], rm, rv, training, training ? 0.01f : 0.f);
                 });
  }
}

PW_PARITY_CASE(batch_norm, "train and eval, running statistics") {
  const Shape s = {3, 4, 5, 6, 7};
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

const Shape kEltShape = {2, 5, 4, 6, 3};

PW_PARITY_CASE(relu, "away from the kink") {
  check_parity("relu", {random_tensor(kEltShape, 100, -1.f, 1.f, 1e-3f)},
               [](const std::vector<Var>& v, Device) { return relu(v[0]); });
}

PW_PARITY_CASE(leaky_relu, "slope 0.1") {
  check_parity("leaky_relu", {random_tensor(kEltShape, 101, -1.f, 1.f, 1e-3f)},
               [](const std::vector<Var>& v, Device) { return leaky_relu(v[0], 0.1f); });
}

PW_PARITY_CASE(sigmoid, "[-6, 6]") {
  check_parity("sigmoid", {random_tensor(kEltShape, 102, -6.f, 6.f)},
               [](const std::vector<Var>& v, Device) { return sigmoid(v[0]); });
}

PW_PARITY_CASE(softmax, "over 5 channels") {
  check_parity("softmax", {random_tensor(kEltShape, 103, -5.f, 5.f)},
               [](const std::vector<Var>& v, Device) { return softmax(v[0]); });
}

PW_PARITY_CASE(add, "two inputs, and one input twice (aliasing)") {
  check_parity("add", {random_tensor(kEltShape, 104), random_tensor(kEltShape, 105)},
               [](const std::vector<Var>& v, Device) { return add(v[0], v[1]); });
  check_parity("add aliasing one input", {random_tensor(kEltShape, 109)},
               [](const std::vector<Var>& v, Device) { return add(v[0], v[0]); });
}

PW_PARITY_CASE(mul, "two inputs") {
  check_parity("mul", {random_tensor(kEltShape, 106), random_tensor(kEltShape, 107)},
               [](const std::vector<Var>& v, Device) { return mul(v[0], v[1]); });
}

PW_PARITY_CASE(scale, "by -2.5") {
  check_parity("scale", {random_tensor(kEltShape, 108)}, [](const std::vector<Var>& v, Device) { return scale(v[0], -2.5f); });
}

PW_PARITY_CASE(concat, "3 inputs") {
  check_parity("concat 3 inputs",
               {random_tensor({2, 3, 4, 5, 6}, 120), random_tensor({2, 1, 4, 5, 6}, 121), random_tensor({2, 4, 4, 5, 6}, 122)},
               [](const std::vector<Var>& v, Device) { return concat({v[0], v[1], v[2]}); });
}

PW_PARITY_CASE(slice, "channels [2,5)") {
  check_parity("slice [2,5)", {random_tensor({3, 7, 4, 5}, 123)},
               [](const std::vector<Var>& v, Device) { return slice(v[0], 2, 5); });
}

PW_PARITY_CASE(crop_centre, "the central 4x3x5 of 8x7x9 rows") {
  check_parity("crop_centre", {random_tensor({2, 3, 8, 7, 9}, 125)},
               [](const std::vector<Var>& v, Device) { return crop_centre(v[0], {4, 3, 5}); });
}

PW_PARITY_CASE(sum, "large, multi-block reduction") {
  check_parity("sum (large, multi-block reduction)", {random_tensor({4, 3, 33, 31, 29}, 124)},
               [](const std::vector<Var>& v, Device) { return sum(v[0]); });
}

PW_PARITY_CASE(mean, "2D") {
  check_parity("mean", {random_tensor({2, 3, 17, 19}, 125)},
               [](const std::vector<Var>& v, Device) { return mean(v[0]); });
}

const Shape kLossShape = {2, 3, 7, 6, 5}, kLossVox = {2, 7, 6, 5};

PW_PARITY_CASE(bce_with_logits, "NaN targets (don't care), with and without a mask") {
  // Targets in [0,1] with some NaN (don't care), and a mask.
  Tensor t = random_tensor(kLossShape, 140, 0.f, 1.f);
  for (int64_t i = 0; i < t.numel(); i += 17) t.f32()[i] = std::nanf("");
  Tensor m = binary_mask(kLossShape, 141);
  check_parity("bce_with_logits", {random_tensor(kLossShape, 142, -4.f, 4.f)}, [&](const std::vector<Var>& v, Device dev) {
    Tensor td = t.to(dev);
    return bce_with_logits(v[0], td);
  });
  check_parity("bce_with_logits masked", {random_tensor(kLossShape, 143, -4.f, 4.f)}, [&](const std::vector<Var>& v, Device dev) {
    Tensor td = t.to(dev), md = m.to(dev);
    return bce_with_logits(v[0], td, &md);
  });
}

PW_PARITY_CASE(cross_entropy, "ignore label -1, class weights, mask; a bad class is the same error") {
  Tensor lab = labels(kLossVox, 3, 144, 0.2);
  Tensor vm = binary_mask(kLossVox, 145);
  const std::vector<float> cw = {0.5f, 2.f, 1.25f};
  check_parity("cross_entropy", {random_tensor(kLossShape, 146, -3.f, 3.f)}, [&](const std::vector<Var>& v, Device dev) {
    Tensor ld = lab.to(dev);
    return cross_entropy(v[0], ld);
  });
  check_parity("cross_entropy weighted masked", {random_tensor(kLossShape, 147, -3.f, 3.f)},
               [&](const std::vector<Var>& v, Device dev) {
                 Tensor ld = lab.to(dev), md = vm.to(dev);
                 return cross_entropy(v[0], ld, &cw, &md);
               });
  // A class index outside [-1, K) is the same clear error on the GPU as on the CPU.
  Tensor bad = lab.clone();
  bad.i32()[5] = 3;
  Var x = variable(random_tensor(kLossShape, 152, -1.f, 1.f).to(Device::cuda), false);
  CHECK_THROWS_WITH_AS(cross_entropy(x, bad.to(Device::cuda)), "cross_entropy: target value 3 outside [-1, 3)",
                       std::invalid_argument);
}

// Candidates [N, T, spatial] of classes in [0, C): slot 0 = the true class (-1 with probability
// `ignore`), the other slots drawn uniformly.
Tensor candidate_slots(const Shape& vox, int64_t T, int C, uint32_t seed, double ignore) {
  Shape sh = vox;
  sh.insert(sh.begin() + 1, T);
  Tensor c = labels(sh, C, seed);
  Tensor truth = labels(vox, C, seed + 1, ignore);
  const int64_t N = vox[0], S = truth.numel() / N;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t s = 0; s < S; ++s) c.i32()[n * T * S + s] = truth.i32()[n * S + s];
  return c;
}

PW_PARITY_CASE(candidate_cross_entropy, "3D and 2D, ignored voxels, correction offset, repeated candidates") {
  const int C = 9;
  for (const Shape& vox : {Shape{2, 7, 6, 5}, Shape{3, 11, 13}}) {
    const int64_t m = 5, T = 4;
    Shape fs = vox;
    fs.insert(fs.begin() + 1, m);
    Tensor cand = candidate_slots(vox, T, C, 160, 0.2);
    check_parity("candidate_cross_entropy " + shape_str(fs),
                 {random_tensor(fs, 161, -1.f, 1.f), random_tensor({C, m}, 162, -1.f, 1.f), random_tensor({C}, 163)},
                 [&](const std::vector<Var>& v, Device dev) {
                   return candidate_cross_entropy(v[0], v[1], v[2], cand.to(dev), 0.7f);
                 });
  }
}

PW_PARITY_CASE(max_response_class, "argmax, uncovered voxels, minimal probability") {
  const int64_t m = 6, C = 70;
  Tensor f = random_tensor({m, 9, 10, 11}, 170, -2.f, 2.f);
  for (int64_t s = 0; s < 990; s += 13)
    for (int64_t j = 0; j < m; ++j) f.f32()[j * 990 + s] = 0.f;  // no patch landed there
  for (float min_prob : {0.f, 0.2f})
    check_parity("max_response_class min_prob " + std::to_string(min_prob),
                 {f, random_tensor({C, m}, 171), random_tensor({C}, 172)},
                 [min_prob](const std::vector<Var>& v, Device) {
                   return constant(max_response_class(v[0]->value, v[1]->value, v[2]->value, min_prob));
                 },
                 false);
}

PW_PARITY_CASE(soft_dice, "of softmax probabilities, per channel and per sample, with and without a mask") {
  // Soft Dice on softmax probabilities against one-hot targets.
  Tensor onehot = Tensor::zeros(kLossShape);
  {
    Tensor l = labels(kLossVox, 3, 148);
    const int64_t S = 7 * 6 * 5;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t i = 0; i < S; ++i) onehot.f32()[(n * 3 + l.i32()[n * S + i]) * S + i] = 1.f;
  }
  Tensor dm = binary_mask(kLossShape, 149);
  for (bool per_sample : {false, true}) {
    check_parity(std::string("soft_dice") + (per_sample ? " per_sample" : ""), {random_tensor(kLossShape, 150, -2.f, 2.f)},
                 [&](const std::vector<Var>& v, Device dev) {
                   Tensor od = onehot.to(dev);
                   return soft_dice(softmax(v[0]), od, per_sample, 1.f);
                 });
    check_parity(std::string("soft_dice masked") + (per_sample ? " per_sample" : ""), {random_tensor(kLossShape, 151, -2.f, 2.f)},
                 [&](const std::vector<Var>& v, Device dev) {
                   Tensor od = onehot.to(dev), md = dm.to(dev);
                   return soft_dice(softmax(v[0]), od, per_sample, 1.f, &md);
                 });
  }
}

// ---- engine/ops_patch.h -------------------------------------------------------------------------
// Sources C,D,H,W (3D) and C,H,W (2D); the matrices stay on the CPU (the ops copy them to the data's
// device). Rotations and scalings put some samples outside the source (zeros, mask 0).

struct PatchSetup {
  Shape src;                    // C, spatial
  std::vector<int64_t> patch;   // s, axis order
  int64_t P;
};
const std::vector<PatchSetup> kPatchSetups = {{{2, 9, 10, 11}, {5, 4, 6}, 3}, {{3, 12, 13}, {6, 7}, 4}};

std::vector<int64_t> spatial(const Shape& s, int first) { return std::vector<int64_t>(s.begin() + first, s.end()); }

PW_PARITY_CASE(gather_patches, "nearest and linear, with and without the inside mask, 3D and 2D") {
  uint64_t seed = 200;
  for (const PatchSetup& c : kPatchSetups) {
    const Tensor mats = random_patch_mats(c.P, spatial(c.src, 1), c.patch, seed++);
    for (Interp mode : {Interp::nearest, Interp::linear})
      for (bool mask : {false, true})
        check_parity("gather_patches " + shape_str(c.src) + (mode == Interp::linear ? " linear" : " nearest") +
                         (mask ? " mask" : ""),
                     {random_tensor(c.src, seed++)}, [&](const std::vector<Var>& v, Device) {
                       return gather_patches(v[0], mats, c.patch, mode, mask);
                     });
  }
}

PW_PARITY_CASE(gather_patches_nested, "from parent patches, alone and chained after gather_patches") {
  const Shape parents = {3, 2, 8, 7, 9};  // Q, C, spatial
  const std::vector<int64_t> s = {4, 5, 3};
  const Tensor mats = random_patch_mats(5, {8, 7, 9}, s, 220, 0.5, 0.9);
  Tensor parent = Tensor::zeros({5}, DType::i32);
  for (int p = 0; p < 5; ++p) parent.i32()[p] = (p * 2 + 1) % 3;
  for (Interp mode : {Interp::nearest, Interp::linear}) {
    const std::string tag = mode == Interp::linear ? " linear" : " nearest";
    check_parity("gather_patches_nested" + tag, {random_tensor(parents, 221)},
                 [&](const std::vector<Var>& v, Device) {
                   return gather_patches_nested(v[0], parent, mats, s, mode, true);
                 });
    // image -> 3 level-0 patches -> 5 level-1 patches: the gradient reaches the image.
    const Tensor m0 = random_patch_mats(3, {12, 11, 13}, {8, 7, 9}, 222, 1.0, 1.4);
    check_parity("gather_patches -> gather_patches_nested" + tag, {random_tensor({2, 12, 11, 13}, 223)},
                 [&](const std::vector<Var>& v, Device) {
                   return gather_patches_nested(gather_patches(v[0], m0, {8, 7, 9}, mode), parent, mats, s, mode);
                 });
  }
}

// Integer labels C,spatial with values 0..classes-1.
Tensor label_map(const Shape& shape, DType dt, uint32_t seed) {
  Tensor l = labels(shape, 5, seed);
  if (dt == DType::i32) return l;
  Tensor u = Tensor::empty(shape, DType::u8);
  for (int64_t i = 0; i < l.numel(); ++i) u.u8()[i] = uint8_t(l.i32()[i]);
  return u;
}

PW_PARITY_CASE(gather_labels, "u8 and i32 labels, 3D and 2D") {
  uint64_t seed = 240;
  for (const PatchSetup& c : kPatchSetups) {
    const Tensor mats = random_patch_mats(c.P, spatial(c.src, 1), c.patch, seed++);
    for (DType dt : {DType::u8, DType::i32})
      check_parity("gather_labels " + shape_str(c.src) + " " + dtype_name(dt), {label_map(c.src, dt, uint32_t(seed++))},
                   [&](const std::vector<Var>& v, Device) { return constant(gather_labels(v[0]->value, mats, c.patch)); },
                   false);
  }
}

PW_PARITY_CASE(gather_patches_into, "into rows of a larger batch, nearest and linear, with the mask") {
  uint64_t seed = 260;
  for (const PatchSetup& c : kPatchSetups) {
    const Tensor mats = random_patch_mats(c.P, spatial(c.src, 1), c.patch, seed++);
    for (Interp mode : {Interp::nearest, Interp::linear}) {
      check_parity("gather_patches_into " + shape_str(c.src) + (mode == Interp::linear ? " linear" : " nearest"),
                   {random_tensor(c.src, seed++)}, [&](const std::vector<Var>& v, Device dev) {
                     Shape batch = {c.P + 2, c.src[0] + 1};  // one row before and after the patches stay -7
                     batch.insert(batch.end(), c.patch.begin(), c.patch.end());
                     Tensor out = Tensor::full(batch, -7.f, dev), rows = out.rows(1, 1 + c.P);
                     gather_patches_into(v[0]->value, mats, mode, rows, true);
                     return constant(out);
                   },
                   false);
    }
  }
}

PW_PARITY_CASE(gather_labels_into, "u8 and i32 labels into rows of a larger batch") {
  uint64_t seed = 280;
  for (const PatchSetup& c : kPatchSetups) {
    const Tensor mats = random_patch_mats(c.P, spatial(c.src, 1), c.patch, seed++);
    for (DType dt : {DType::u8, DType::i32})
      check_parity("gather_labels_into " + shape_str(c.src) + " " + dtype_name(dt), {label_map(c.src, dt, uint32_t(seed++))},
                   [&](const std::vector<Var>& v, Device dev) {
                     Shape batch = {c.P + 1, c.src[0]};
                     batch.insert(batch.end(), c.patch.begin(), c.patch.end());
                     Tensor out = Tensor::zeros(batch, DType::i32, dev), rows = out.rows(1, 1 + c.P);
                     gather_labels_into(v[0]->value, mats, rows);
                     return constant(out);
                   },
                   false);
  }
}

PW_PARITY_CASE(stitch_accumulate, "nearest and linear splatting, flat, cos and cos2 windows, 3D and 2D") {
  uint64_t seed = 300;
  for (const PatchSetup& c : kPatchSetups) {
    const Tensor mats = random_patch_mats(c.P, spatial(c.src, 1), c.patch, seed++);
    Shape ps = {c.P, c.src[0]};
    ps.insert(ps.end(), c.patch.begin(), c.patch.end());
    for (Interp mode : {Interp::nearest, Interp::linear})
      for (Window window : {Window::flat, Window::cos, Window::cos2}) {
        std::vector<Tensor> weights;  // cpu then cuda
        check_parity("stitch_accumulate " + shape_str(c.src) + (mode == Interp::linear ? " linear" : " nearest") +
                         " window " + std::to_string(int(window)),
                     {random_tensor(ps, seed++)}, [&](const std::vector<Var>& v, Device dev) {
                       Tensor acc = Tensor::zeros(c.src, DType::f32, dev);
                       Tensor weight = Tensor::zeros(spatial(c.src, 1), DType::f32, dev);
                       stitch_accumulate(v[0]->value, mats, mode, window, acc, weight);
                       weights.push_back(weight.cpu());
                       return constant(acc);
                     },
                     false);
        REQUIRE(weights.size() == 2);
        CHECK(check_close(weights[1].to_vector(), as_double(weights[0]), kRtol, kAtolFrac) == "");
      }
  }
}

PW_PARITY_CASE(stitch_normalize, "alpha 0 (weighted mean) and 0.5, empty voxels") {
  const Shape acc = {3, 7, 8, 9}, w = {7, 8, 9};
  Tensor weight = random_tensor(w, 321, 0.f, 2.f);
  for (int64_t i = 0; i < weight.numel(); i += 7) weight.f32()[i] = 0.f;  // nothing landed there
  for (float alpha : {0.f, 0.5f})
    check_parity("stitch_normalize alpha " + std::to_string(alpha), {random_tensor(acc, 320), weight},
                 [alpha](const std::vector<Var>& v, Device) {
                   return constant(stitch_normalize(v[0]->value, v[1]->value, alpha));
                 },
                 false);
}

PW_PARITY_CASE(presmooth, "none, gaussian, box, max, min and mixture, 3D and 2D") {
  const float u[3] = {1.6f, 2.4f, 3.1f};
  uint64_t seed = 340;
  for (const Shape& s : {Shape{2, 9, 10, 11}, Shape{3, 12, 13}})
    for (SmoothKind kind : {SmoothKind::none, SmoothKind::gaussian, SmoothKind::box, SmoothKind::max, SmoothKind::min,
                            SmoothKind::mixture})
      check_parity("presmooth " + shape_str(s) + " kind " + std::to_string(int(kind)), {random_tensor(s, seed++)},
                   [&](const std::vector<Var>& v, Device) { return constant(presmooth(v[0]->value, kind, u, 0.8f)); },
                   false);
}

}  // TEST_SUITE
