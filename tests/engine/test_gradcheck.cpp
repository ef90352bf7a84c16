// The finite-difference gradient checker (engine/gradcheck.h) itself, then the gradient case of every
// differentiable op of the engine op list (op_list.h, PW_GRADIENT_CASE): small inputs, every element
// checked. test_op_list.cpp fails when a differentiable op of the list has no case here.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "common/test_util.h"
#include "engine/gradcheck.h"
#include "engine/ops.h"
#include "engine/ops_patch.h"
#include "kernels/patch_test_util.h"  // tests/kernels/: random_patch_mats
#include "op_list.h"
#include "test_random.h"

using namespace pw;
using namespace pw::test;

namespace {
// relu's forward with a deliberately wrong backward (scaled by 1.01).
Var relu_wrong_backward(const Var& x) {
  Tensor y = Tensor::empty_like(x->value);
  for (int64_t i = 0; i < y.numel(); ++i) y.f32()[i] = std::max(0.f, x->value.f32()[i]);
  return record(y, {x}, [](Node& self) {
    Node& x = *self.parents[0];
    Tensor dx = Tensor::empty_like(x.value);
    for (int64_t i = 0; i < dx.numel(); ++i)
      dx.f32()[i] = x.value.f32()[i] > 0.f ? 1.01f * self.grad.f32()[i] : 0.f;
    accumulate(x, dx);
  });
}
}  // namespace

TEST_CASE("gradcheck accepts a correct backward and counts every element") {
  Tensor a = random_tensor({3, 4}, 1), b = random_tensor({3, 4}, 2);
  GradcheckResult r = gradcheck([](const std::vector<Var>& v) { return mul(v[0], add(v[0], v[1])); }, {a, b});
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.checked == 24);
  CHECK(r.max_abs_err < 1e-3);
}

TEST_CASE("gradcheck rejects a backward that is 1% off, and one that forgets an input") {
  Tensor x = random_tensor({2, 5}, 3, -1.f, 1.f, 0.1f);
  GradcheckResult r = gradcheck([](const std::vector<Var>& v) { return relu_wrong_backward(v[0]); }, {x});
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("input 0") != std::string::npos);
  // An op whose backward ignores its second input: b gets no gradient, numeric says otherwise.
  auto forgets = [](const std::vector<Var>& v) {
    Tensor y = add(variable(v[0]->value), variable(v[1]->value))->value;
    return record(y, {v[0], v[1]}, [](Node& self) { accumulate(*self.parents[0], self.grad); });
  };
  r = gradcheck(forgets, {x, random_tensor({2, 5}, 4)});
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("input 1") != std::string::npos);
}

TEST_CASE("gradcheck refuses non-f32 inputs") {
  CHECK_THROWS_AS(gradcheck([](const std::vector<Var>& v) { return v[0]; }, {Tensor::zeros({2}, DType::i32)}),
                  std::invalid_argument);
}

// ---- the gradient case of every differentiable op (op_list.h) ------------------------------------

namespace {

// gradcheck of f at `inputs`, every element of every input checked.
void check_grad(const std::string& what, const std::function<Var(const std::vector<Var>&)>& f,
                const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradcheck(f, inputs);
  INFO(what);
  CHECK_MESSAGE(r.ok, r.message);
  int64_t n = 0;
  for (const Tensor& t : inputs) n += t.numel();
  CHECK(r.checked == n);
}

// Distinct values, well apart (0.05), so that no max-pool window is near a tie.
Tensor separated(const Shape& s) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = float((i * 37) % 128) * 0.05f - 3.0f;
  return t;
}

const Shape kSmall = {2, 3, 2, 3};  // N, C, H, W

}  // namespace

PW_GRADIENT_CASE(conv, "3D stride 1 pad 1, 2D stride 2 pad 1, with bias") {
  check_grad("conv3d", [](const std::vector<Var>& v) { return conv(v[0], v[1], v[2], 1, 1); },
             {random_tensor({1, 2, 3, 4, 3}, 1), random_tensor({2, 2, 3, 3, 3}, 2), random_tensor({2}, 3)});
  check_grad("conv2d", [](const std::vector<Var>& v) { return conv(v[0], v[1], v[2], 2, 1); },
             {random_tensor({2, 2, 5, 4}, 4), random_tensor({3, 2, 3, 3}, 5), random_tensor({3}, 6)});
}

PW_GRADIENT_CASE(conv_transpose, "3D stride 2, 2D kernel 3 stride 1, with bias") {
  check_grad("conv_transpose3d", [](const std::vector<Var>& v) { return conv_transpose(v[0], v[1], v[2], 2); },
             {random_tensor({1, 2, 2, 3, 2}, 7), random_tensor({2, 3, 2, 2, 2}, 8), random_tensor({3}, 9)});
  check_grad("conv_transpose2d", [](const std::vector<Var>& v) { return conv_transpose(v[0], v[1], v[2], 1); },
             {random_tensor({2, 2, 3, 2}, 10), random_tensor({2, 2, 3, 3}, 11), random_tensor({2}, 12)});
}

PW_GRADIENT_CASE(max_pool, "k2 s2 and overlapping k3 s1, no ties") {
  check_grad("max_pool k2", [](const std::vector<Var>& v) { return max_pool(v[0], 2, 2); }, {separated({1, 2, 4, 4, 4})});
  check_grad("max_pool k3 s1", [](const std::vector<Var>& v) { return max_pool(v[0], 3, 1); }, {separated({1, 2, 5, 4})});
}

PW_GRADIENT_CASE(avg_pool, "k2 s2 3D, k3 s1 2D") {
  check_grad("avg_pool k2", [](const std::vector<Var>& v) { return avg_pool(v[0], 2, 2); }, {random_tensor({1, 2, 4, 4, 4}, 13)});
  check_grad("avg_pool k3 s1", [](const std::vector<Var>& v) { return avg_pool(v[0], 3, 1); }, {random_tensor({2, 2, 4, 5}, 14)});
}

PW_GRADIENT_CASE(upsample, "nearest x2, linear x2 both align_corners, 3D and 2D") {
  for (const Tensor& x : {random_tensor({1, 2, 2, 3, 2}, 15), random_tensor({2, 2, 3, 4}, 16)}) {
    check_grad("nearest " + shape_str(x.shape()),
               [](const std::vector<Var>& v) { return upsample(v[0], 2, UpsampleMode::nearest); }, {x});
    for (bool ac : {false, true})
      check_grad(std::string("linear ") + (ac ? "align " : "") + shape_str(x.shape()),
                 [ac](const std::vector<Var>& v) { return upsample(v[0], 2, UpsampleMode::linear, ac); }, {x});
  }
}

PW_GRADIENT_CASE(instance_norm, "affine and plain") {
  const Tensor x = random_tensor({2, 3, 2, 3, 2}, 17, -2.f, 2.f);
  check_grad("affine", [](const std::vector<Var>& v) { return instance_norm(v[0], v[1], v[2]); },
             {x, random_tensor({3}, 18, 0.5f, 1.5f), random_tensor({3}, 19)});
  check_grad("plain", [](const std::vector<Var>& v) { return instance_norm(v[0], nullptr, nullptr); }, {x});
}

PW_GRADIENT_CASE(instance_norm_act, "affine leaky, plain relu") {
  const Tensor x = random_tensor({2, 3, 2, 3, 2}, 27, -2.f, 2.f);
  check_grad("affine leaky", [](const std::vector<Var>& v) { return instance_norm_act(v[0], v[1], v[2], 0.2f); },
             {x, random_tensor({3}, 28, 0.5f, 1.5f), random_tensor({3}, 29)});
  check_grad("plain relu", [](const std::vector<Var>& v) { return instance_norm_act(v[0], nullptr, nullptr, 0.f); }, {x});
}

PW_GRADIENT_CASE(batch_norm_act, "train leaky, eval relu") {
  for (bool training : {true, false})
    check_grad(training ? "train leaky" : "eval relu",
               [training](const std::vector<Var>& v) {
                 Tensor rm = Tensor::from_vector({3}, {0.1f, -0.2f, 0.3f}), rv = Tensor::from_vector({3}, {1.f, 2.f, 0.5f});
                 return batch_norm_act(v[0], v[1], v[2], rm, rv, training, training ? 0.2f : 0.f);
               },
               {random_tensor({2, 3, 2, 3, 2}, 37, -2.f, 2.f), random_tensor({3}, 38, 0.5f, 1.5f), random_tensor({3}, 39)});
}

PW_GRADIENT_CASE(batch_norm, "train (batch statistics) and eval (running statistics)") {
  for (bool training : {true, false})
    check_grad(training ? "train" : "eval",
               [training](const std::vector<Var>& v) {
                 Tensor rm = Tensor::from_vector({3}, {0.1f, -0.2f, 0.3f}), rv = Tensor::from_vector({3}, {1.f, 2.f, 0.5f});
                 return batch_norm(v[0], v[1], v[2], rm, rv, training);
               },
               {random_tensor({2, 3, 2, 3, 2}, 20, -2.f, 2.f), random_tensor({3}, 21, 0.5f, 1.5f), random_tensor({3}, 22)});
}

PW_GRADIENT_CASE(relu, "away from the kink") {
  check_grad("relu", [](const std::vector<Var>& v) { return relu(v[0]); }, {random_tensor(kSmall, 23, -1.f, 1.f, 0.05f)});
}

PW_GRADIENT_CASE(leaky_relu, "slope 0.2, away from the kink") {
  check_grad("leaky_relu", [](const std::vector<Var>& v) { return leaky_relu(v[0], 0.2f); },
             {random_tensor(kSmall, 24, -1.f, 1.f, 0.05f)});
}

PW_GRADIENT_CASE(sigmoid, "[-3, 3]") {
  check_grad("sigmoid", [](const std::vector<Var>& v) { return sigmoid(v[0]); }, {random_tensor(kSmall, 25, -3.f, 3.f)});
}

PW_GRADIENT_CASE(softmax, "over 3 channels") {
  check_grad("softmax", [](const std::vector<Var>& v) { return softmax(v[0]); }, {random_tensor(kSmall, 26, -3.f, 3.f)});
}

PW_GRADIENT_CASE(add, "two inputs, and one input twice") {
  check_grad("add", [](const std::vector<Var>& v) { return add(v[0], v[1]); }, {random_tensor(kSmall, 27), random_tensor(kSmall, 28)});
  check_grad("add aliasing", [](const std::vector<Var>& v) { return add(v[0], v[0]); }, {random_tensor(kSmall, 29)});
}

PW_GRADIENT_CASE(mul, "two inputs, and one input twice") {
  check_grad("mul", [](const std::vector<Var>& v) { return mul(v[0], v[1]); }, {random_tensor(kSmall, 30), random_tensor(kSmall, 31)});
  check_grad("mul aliasing", [](const std::vector<Var>& v) { return mul(v[0], v[0]); }, {random_tensor(kSmall, 32)});
}

PW_GRADIENT_CASE(scale, "by -1.5") {
  check_grad("scale", [](const std::vector<Var>& v) { return scale(v[0], -1.5f); }, {random_tensor(kSmall, 33)});
}

PW_GRADIENT_CASE(concat, "3 inputs, one of them twice") {
  check_grad("concat", [](const std::vector<Var>& v) { return concat({v[0], v[1], v[0]}); },
             {random_tensor(kSmall, 34), random_tensor({2, 1, 2, 3}, 35)});
}

PW_GRADIENT_CASE(slice, "channels [1,3)") {
  check_grad("slice", [](const std::vector<Var>& v) { return slice(v[0], 1, 3); }, {random_tensor(kSmall, 36)});
}

PW_GRADIENT_CASE(crop_centre, "the central 2x4x2 of 4x6x4 rows") {
  check_grad("crop_centre", [](const std::vector<Var>& v) { return crop_centre(v[0], {2, 4, 2}); },
             {random_tensor({1, 2, 4, 6, 4}, 38)});
}

PW_GRADIENT_CASE(sum, "all elements") {
  check_grad("sum", [](const std::vector<Var>& v) { return sum(v[0]); }, {random_tensor(kSmall, 37)});
}

PW_GRADIENT_CASE(mean, "all elements") {
  check_grad("mean", [](const std::vector<Var>& v) { return mean(v[0]); }, {random_tensor(kSmall, 38)});
}

namespace {
Tensor mask01(const Shape& s, uint64_t seed) {
  Tensor m = random_tensor(s, seed, 0.f, 1.f);
  for (int64_t i = 0; i < m.numel(); ++i) m.f32()[i] = m.f32()[i] > 0.3f ? 1.f : 0.f;
  return m;
}
}  // namespace

PW_GRADIENT_CASE(bce_with_logits, "with respect to the logits; NaN target, with and without a mask") {
  Tensor t = random_tensor(kSmall, 39, 0.f, 1.f);
  t.f32()[4] = std::numeric_limits<float>::quiet_NaN();
  const Tensor mask = mask01(kSmall, 40);
  check_grad("plain", [&](const std::vector<Var>& v) { return bce_with_logits(v[0], t); }, {random_tensor(kSmall, 41, -3.f, 3.f)});
  check_grad("masked", [&](const std::vector<Var>& v) { return bce_with_logits(v[0], t, &mask); },
             {random_tensor(kSmall, 42, -3.f, 3.f)});
}

PW_GRADIENT_CASE(cross_entropy, "with respect to the logits; ignore label, class weights, mask") {
  Tensor labels = Tensor::zeros({2, 2, 3}, DType::i32);
  for (int64_t i = 0; i < labels.numel(); ++i) labels.i32()[i] = static_cast<int32_t>(i % 4) - 1;
  Tensor vmask = Tensor::full({2, 2, 3}, 1.f);
  vmask.f32()[3] = 0.f;
  const std::vector<float> w{0.5f, 2.f, 1.f};
  check_grad("plain", [&](const std::vector<Var>& v) { return cross_entropy(v[0], labels); }, {random_tensor(kSmall, 43, -3.f, 3.f)});
  check_grad("weighted masked", [&](const std::vector<Var>& v) { return cross_entropy(v[0], labels, &w, &vmask); },
             {random_tensor(kSmall, 44, -3.f, 3.f)});
}

PW_GRADIENT_CASE(candidate_cross_entropy, "features, embedding and bias; ignored voxel, repeated and corrected candidates") {
  // N = 2, m = 3, 5 voxels, T = 4 slots of 6 classes; voxel 3 of sample 1 is ignored (-1).
  const std::vector<int32_t> c = {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 1, 1, 5, 4, 0, 2, 3, 4, 5, 0,
                                  5, 4, -1, 2, 1, 0, 1, 2, 3, 4, 1, 2, 3, 4, 5, 3, 3, 0, 0, 2};
  Tensor cand = Tensor::empty({2, 4, 5}, DType::i32);
  std::copy(c.begin(), c.end(), cand.i32());
  for (float offset : {0.f, 1.2f})
    check_grad("offset " + std::to_string(offset),
               [&](const std::vector<Var>& v) { return candidate_cross_entropy(v[0], v[1], v[2], cand, offset); },
               {random_tensor({2, 3, 5}, 48, -1.f, 1.f), random_tensor({6, 3}, 49, -1.f, 1.f),
                random_tensor({6}, 50, -0.5f, 0.5f)});
}

PW_GRADIENT_CASE(soft_dice, "with respect to the probabilities; per channel and per sample, masked") {
  Tensor onehot = Tensor::zeros(kSmall);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t s = 0; s < 6; ++s) onehot.f32()[(n * 3 + (s + n) % 3) * 6 + s] = 1.f;
  const Tensor mask = mask01(kSmall, 45);
  for (bool per_sample : {false, true}) {
    check_grad(per_sample ? "per_sample" : "per channel",
               [&](const std::vector<Var>& v) { return soft_dice(v[0], onehot, per_sample, 1.f); },
               {random_tensor(kSmall, 46, 0.05f, 0.95f)});
    check_grad(per_sample ? "per_sample masked" : "per channel masked",
               [&](const std::vector<Var>& v) { return soft_dice(v[0], onehot, per_sample, 1.f, &mask); },
               {random_tensor(kSmall, 47, 0.05f, 0.95f)});
  }
}

PW_GRADIENT_CASE(gather_patches, "with respect to the source; nearest and linear, inside mask, 3D and 2D") {
  using pw::test::patch::random_patch_mats;
  struct C {
    Shape src;
    std::vector<int64_t> patch;
  };
  uint64_t seed = 48;
  for (const C& c : {C{{2, 5, 6, 5}, {3, 4, 3}}, C{{2, 6, 7}, {4, 3}}}) {
    const Tensor mats = random_patch_mats(2, std::vector<int64_t>(c.src.begin() + 1, c.src.end()), c.patch, seed++);
    for (Interp mode : {Interp::nearest, Interp::linear})
      for (bool mask : {false, true})
        check_grad(shape_str(c.src) + (mode == Interp::linear ? " linear" : " nearest") + (mask ? " mask" : ""),
                   [&](const std::vector<Var>& v) { return gather_patches(v[0], mats, c.patch, mode, mask); },
                   {random_tensor(c.src, seed++)});
  }
}

PW_GRADIENT_CASE(gather_patches_nested, "with respect to the parents; alone and chained after gather_patches") {
  using pw::test::patch::random_patch_mats;
  const std::vector<int64_t> s = {3, 2, 3};
  const Tensor mats = random_patch_mats(3, {4, 5, 4}, s, 60, 0.6, 1.1);
  Tensor parent = Tensor::zeros({3}, DType::i32);
  parent.i32()[0] = 1, parent.i32()[2] = 1;
  const Tensor m0 = random_patch_mats(2, {6, 6, 5}, {4, 5, 4}, 61);
  for (Interp mode : {Interp::nearest, Interp::linear}) {
    const std::string tag = mode == Interp::linear ? " linear" : " nearest";
    check_grad("nested" + tag,
               [&](const std::vector<Var>& v) { return gather_patches_nested(v[0], parent, mats, s, mode, true); },
               {random_tensor({2, 2, 4, 5, 4}, 62)});
    check_grad("image -> gather_patches -> nested" + tag,
               [&](const std::vector<Var>& v) {
                 return gather_patches_nested(gather_patches(v[0], m0, {4, 5, 4}, mode), parent, mats, s, mode);
               },
               {random_tensor({1, 6, 6, 5}, 63)});
  }
}
