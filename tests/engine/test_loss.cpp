#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "common/test_util.h"
#include "engine/gradcheck.h"
#include "engine/ops.h"
#include "kernels/parallel.h"
#include "op_fixture.h"
#include "test_random.h"

using namespace pw;
using namespace pw::test;

TEST_CASE("cross_entropy with ignore label (and class weights) matches the PyTorch fixtures") {
  for (const char* c : {"cross_entropy_ignore", "cross_entropy_ignore_weighted"}) {
    Var z = variable(fixture(c, "logits").to_f32(), true);
    Tensor target = fixture(c, "target").to_i32();
    std::vector<float> weights;
    bool weighted = std::string(c).find("weighted") != std::string::npos;
    if (weighted) {
      Npy w = fixture(c, "class_weight");
      weights.assign(w.data.begin(), w.data.end());
    }
    Var loss = cross_entropy(z, target, weighted ? &weights : nullptr);
    check_fixture(loss->value, c, "loss");
    backward(loss);
    check_fixture(z->grad, c, "grad_logits");
  }
}

TEST_CASE("bce_with_logits matches the PyTorch fixture") {
  const char* c = "bce_with_logits";
  Var z = variable(fixture(c, "logits").to_f32(), true);
  Var loss = bce_with_logits(z, fixture(c, "target").to_f32());
  check_fixture(loss->value, c, "loss");
  backward(loss);
  check_fixture(z->grad, c, "grad_logits");
}

TEST_CASE("soft_dice matches the PyTorch fixtures (batch, per sample, through softmax)") {
  for (auto [c, per_sample] : {std::pair<const char*, bool>{"soft_dice_probs", false}, {"soft_dice_probs_per_sample", true}}) {
    Var p = variable(fixture(c, "probs").to_f32(), true);
    Var loss = soft_dice(p, fixture(c, "target_onehot").to_f32(), per_sample);
    check_fixture(loss->value, c, "loss");
    backward(loss);
    check_fixture(p->grad, c, "grad_probs");
  }
  const char* c = "soft_dice_softmax_logits";
  Var z = variable(fixture(c, "logits").to_f32(), true);
  Var p = softmax(z);
  check_fixture(p->value, c, "probs");
  Var loss = soft_dice(p, fixture(c, "target_onehot").to_f32());
  check_fixture(loss->value, c, "loss");
  backward(loss);
  check_fixture(z->grad, c, "grad_logits");
}

TEST_CASE("bce_with_logits: stable at large logits; NaN targets and the mask are don't care") {
  Tensor zt = Tensor::from_vector({4}, {80.f, -80.f, 0.f, 2.f});
  Tensor t = Tensor::from_vector({4}, {0.f, 1.f, std::numeric_limits<float>::quiet_NaN(), 1.f});
  Var z = variable(zt, true);
  Var loss = bce_with_logits(z, t);
  // counted: 80 (t=0) -> 80, -80 (t=1) -> 80, 2 (t=1) -> log1p(exp(-2)); mean over 3
  double expect = (80.0 + 80.0 + std::log1p(std::exp(-2.0))) / 3.0;
  CHECK(loss->value.to_vector()[0] == doctest::Approx(expect).epsilon(1e-6));
  backward(loss);
  std::vector<float> g = z->grad.to_vector();
  CHECK(g[2] == 0.f);
  CHECK(g[0] == doctest::Approx(1.0 / 3.0));
  CHECK(g[3] == doctest::Approx((1.0 / (1.0 + std::exp(-2.0)) - 1.0) / 3.0));
  // The mask leaves element 0 out of the loss and the denominator.
  Tensor mask = Tensor::from_vector({4}, {0.f, 1.f, 1.f, 1.f});
  Var masked = bce_with_logits(variable(zt), t, &mask);
  CHECK(masked->value.to_vector()[0] == doctest::Approx((80.0 + std::log1p(std::exp(-2.0))) / 2.0).epsilon(1e-6));
  // Nothing counted: loss 0.
  Tensor none = Tensor::zeros({4});
  CHECK(bce_with_logits(variable(zt), t, &none)->value.to_vector()[0] == 0.f);
  CHECK_THROWS_AS(bce_with_logits(variable(zt), Tensor::zeros({3})), std::invalid_argument);
}

TEST_CASE("cross_entropy: mask, all ignored, bad targets") {
  // 1 sample, 2 classes, 3 voxels
  Tensor zt = Tensor::from_vector({1, 2, 3}, {0.f, 1.f, 2.f, 0.f, 0.f, 0.f});
  Tensor target = Tensor::zeros({1, 3}, DType::i32);
  target.i32()[0] = 1;
  target.i32()[1] = -1;
  target.i32()[2] = 0;
  auto nll = [](double a, double b, int t) { return std::log(std::exp(a) + std::exp(b)) - (t == 0 ? a : b); };
  Var loss = cross_entropy(variable(zt), target);
  CHECK(loss->value.to_vector()[0] == doctest::Approx((nll(0, 0, 1) + nll(2, 0, 0)) / 2.0).epsilon(1e-6));
  Tensor mask = Tensor::from_vector({1, 3}, {1.f, 1.f, 0.f});
  loss = cross_entropy(variable(zt), target, nullptr, &mask);
  CHECK(loss->value.to_vector()[0] == doctest::Approx(nll(0, 0, 1)).epsilon(1e-6));
  std::vector<float> w{1.f, 3.f};
  loss = cross_entropy(variable(zt), target, &w);
  CHECK(loss->value.to_vector()[0] == doctest::Approx((3 * nll(0, 0, 1) + nll(2, 0, 0)) / 4.0).epsilon(1e-6));
  Tensor all_ignored = Tensor::zeros({1, 3}, DType::i32);
  for (int i = 0; i < 3; ++i) all_ignored.i32()[i] = -1;
  Var z = variable(zt, true);
  loss = cross_entropy(z, all_ignored);
  CHECK(loss->value.to_vector()[0] == 0.f);
  backward(loss);
  for (float g : z->grad.to_vector()) CHECK(g == 0.f);
  Tensor bad = Tensor::zeros({1, 3}, DType::i32);
  bad.i32()[1] = 2;
  CHECK_THROWS_AS(cross_entropy(variable(zt), bad), std::invalid_argument);
  std::vector<float> w3{1.f, 1.f, 1.f};
  CHECK_THROWS_AS(cross_entropy(variable(zt), target, &w3), std::invalid_argument);
  CHECK_THROWS_AS(cross_entropy(variable(zt), Tensor::zeros({1, 3})), std::invalid_argument);  // f32 target
}

TEST_CASE("soft_dice: perfect prediction gives 0; the mask removes voxels") {
  Tensor t = Tensor::from_vector({1, 2, 2}, {1.f, 0.f, 0.f, 1.f});
  CHECK(soft_dice(variable(t), t)->value.to_vector()[0] == doctest::Approx(0.0));
  // Wrong at voxel 1, masked out there: Dice as if only voxel 0 existed.
  Tensor p = Tensor::from_vector({1, 2, 2}, {1.f, 1.f, 0.f, 0.f});
  Tensor mask = Tensor::from_vector({1, 2, 2}, {1.f, 0.f, 1.f, 0.f});
  CHECK(soft_dice(variable(p), t, false, 1.f, &mask)->value.to_vector()[0] == doctest::Approx(0.0));
  // Unmasked: channel 0: I=1, P=2, T=1 -> 1 - 3/4; channel 1: I=0, P=0, T=1 -> 1 - 1/2.
  CHECK(soft_dice(variable(p), t)->value.to_vector()[0] == doctest::Approx((0.25 + 0.5) / 2));
}

TEST_CASE("losses pass the finite-difference gradient check (with masks)") {
  Shape sh{2, 3, 2, 3};
  Tensor z = random_tensor(sh, 21, -3.f, 3.f);
  Tensor mask = random_tensor(sh, 22, 0.f, 1.f);
  for (int64_t i = 0; i < mask.numel(); ++i) mask.f32()[i] = mask.f32()[i] > 0.3f ? 1.f : 0.f;
  Tensor t = random_tensor(sh, 23, 0.f, 1.f);
  t.f32()[4] = std::numeric_limits<float>::quiet_NaN();
  GradcheckResult r = gradcheck([&](const std::vector<Var>& v) { return bce_with_logits(v[0], t, &mask); }, {z});
  CHECK_MESSAGE(r.ok, r.message);

  Tensor labels = Tensor::zeros({2, 2, 3}, DType::i32);
  for (int64_t i = 0; i < labels.numel(); ++i) labels.i32()[i] = static_cast<int32_t>(i % 4) - 1;
  Tensor vmask = Tensor::full({2, 2, 3}, 1.f);
  vmask.f32()[3] = 0.f;
  std::vector<float> w{0.5f, 2.f, 1.f};
  r = gradcheck([&](const std::vector<Var>& v) { return cross_entropy(v[0], labels, &w, &vmask); }, {z});
  CHECK_MESSAGE(r.ok, r.message);

  Tensor onehot = Tensor::zeros(sh);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t s = 0; s < 6; ++s) onehot.f32()[(n * 3 + (s + n) % 3) * 6 + s] = 1.f;
  for (bool per_sample : {false, true}) {
    r = gradcheck(
        [&](const std::vector<Var>& v) { return soft_dice(softmax(v[0]), onehot, per_sample, 1.f, &mask); }, {z});
    INFO("per_sample " << per_sample);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("reductions (losses, sum, norms) give bit-identical results for any thread count") {
  Shape sh{2, 3, 40, 41, 42};
  Tensor z = random_tensor(sh, 31, -4.f, 4.f);
  Tensor t = random_tensor(sh, 32, 0.f, 1.f);
  Tensor labels = Tensor::zeros({2, 40, 41, 42}, DType::i32);
  for (int64_t i = 0; i < labels.numel(); ++i) labels.i32()[i] = static_cast<int32_t>((i * 7) % 4) - 1;
  auto run = [&] {
    std::vector<float> out;
    auto take = [&](const Tensor& v) {
      std::vector<float> a = v.to_vector();
      out.insert(out.end(), a.begin(), a.end());
    };
    Var x = variable(z, true);
    Var l = add(add(bce_with_logits(x, t), cross_entropy(x, labels)),
                add(soft_dice(softmax(x), t), mean(instance_norm(x, nullptr, nullptr))));
    Tensor rm = Tensor::zeros({3}), rv = Tensor::full({3}, 1.f);
    l = add(l, sum(batch_norm(x, nullptr, nullptr, rm, rv, true)));
    take(l->value);
    backward(l);
    take(x->grad);
    take(rm);
    take(rv);
    return out;
  };
  const int before = num_threads();
  set_num_threads(1);
  std::vector<float> one = run();
  set_num_threads(3);
  std::vector<float> three = run();
  set_num_threads(before);
  REQUIRE(one.size() == three.size());
  CHECK(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)) == 0);
}
