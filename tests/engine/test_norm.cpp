#include <doctest/doctest.h>

#include <cmath>

#include "common/test_util.h"
#include "engine/gradcheck.h"
#include "engine/ops.h"
#include "op_fixture.h"
#include "test_random.h"

using namespace pw;
using namespace pw::test;

TEST_CASE("instance_norm matches the PyTorch fixture (forward and every gradient)") {
  const char* c = "instance_norm3d";
  Var x = variable(fixture(c, "x").to_f32(), true);
  Var w = variable(fixture(c, "weight").to_f32(), true);
  Var b = variable(fixture(c, "bias").to_f32(), true);
  Var y = instance_norm(x, w, b);
  check_fixture(y->value, c, "y");
  backward(y, fixture(c, "grad_y").to_f32());
  check_fixture(x->grad, c, "grad_x");
  check_fixture(w->grad, c, "grad_weight");
  check_fixture(b->grad, c, "grad_bias");
}

TEST_CASE("batch_norm (training) matches the PyTorch fixture, running statistics included") {
  const char* c = "batch_norm3d_train";
  Var x = variable(fixture(c, "x").to_f32(), true);
  Var w = variable(fixture(c, "weight").to_f32(), true);
  Var b = variable(fixture(c, "bias").to_f32(), true);
  Tensor rm = fixture(c, "running_mean_before").to_f32();
  Tensor rv = fixture(c, "running_var_before").to_f32();
  Var y = batch_norm(x, w, b, rm, rv, true, 0.1f, 1e-5f);
  check_fixture(y->value, c, "y");
  check_fixture(rm, c, "running_mean_after");
  check_fixture(rv, c, "running_var_after");
  backward(y, fixture(c, "grad_y").to_f32());
  check_fixture(x->grad, c, "grad_x");
  check_fixture(w->grad, c, "grad_weight");
  check_fixture(b->grad, c, "grad_bias");
}

TEST_CASE("batch_norm (evaluation) uses the running statistics and leaves them alone") {
  Tensor x = random_tensor({2, 2, 3, 3}, 7, -2.f, 2.f);
  Tensor rm = Tensor::from_vector({2}, {0.5f, -1.f});
  Tensor rv = Tensor::from_vector({2}, {4.f, 0.25f});
  Var y = batch_norm(variable(x), variable(Tensor::from_vector({2}, {2.f, 1.f})),
                     variable(Tensor::from_vector({2}, {0.f, 3.f})), rm, rv, false);
  std::vector<float> yv = y->value.to_vector();
  for (int64_t i = 0; i < x.numel(); ++i) {
    int c = static_cast<int>((i / 9) % 2);
    double expect = c == 0 ? (x.f32()[i] - 0.5) / std::sqrt(4.0 + 1e-5) * 2.0
                           : (x.f32()[i] + 1.0) / std::sqrt(0.25 + 1e-5) + 3.0;
    CHECK(yv[i] == doctest::Approx(expect).epsilon(1e-5));
  }
  CHECK(rm.to_vector() == std::vector<float>{0.5f, -1.f});
  CHECK(rv.to_vector() == std::vector<float>{4.f, 0.25f});
}

TEST_CASE("norm shape errors") {
  Tensor rm = Tensor::zeros({3}), rv = Tensor::full({3}, 1.f);
  Var x = variable(Tensor::zeros({2, 3, 4}));
  CHECK_THROWS_AS(instance_norm(x, variable(Tensor::zeros({2})), nullptr), std::invalid_argument);
  CHECK_THROWS_AS(instance_norm(variable(Tensor::zeros({3, 4})), nullptr, nullptr), std::invalid_argument);
  Tensor rm2 = Tensor::zeros({2});
  CHECK_THROWS_AS(batch_norm(x, nullptr, nullptr, rm2, rv, true), std::invalid_argument);
  CHECK_THROWS_AS(batch_norm(variable(Tensor::zeros({1, 3, 1})), nullptr, nullptr, rm, rv, true),
                  std::invalid_argument);
}

TEST_CASE("instance_norm and batch_norm pass the finite-difference gradient check") {
  Tensor x = random_tensor({2, 3, 2, 3, 2}, 11, -2.f, 2.f);
  Tensor w = random_tensor({3}, 12, 0.5f, 1.5f);
  Tensor b = random_tensor({3}, 13);
  GradcheckResult r = gradcheck(
      [](const std::vector<Var>& v) { return instance_norm(v[0], v[1], v[2]); }, {x, w, b});
  CHECK_MESSAGE(r.ok, r.message);
  r = gradcheck([](const std::vector<Var>& v) { return instance_norm(v[0], nullptr, nullptr); }, {x});
  CHECK_MESSAGE(r.ok, r.message);
  for (bool training : {true, false}) {
    r = gradcheck(
        [training](const std::vector<Var>& v) {
          Tensor rm = Tensor::from_vector({3}, {0.1f, -0.2f, 0.3f}), rv = Tensor::from_vector({3}, {1.f, 2.f, 0.5f});
          return batch_norm(v[0], v[1], v[2], rm, rv, training);
        },
        {x, w, b});
    INFO("training " << training);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

// The fused nodes run the same kernels in the same order as the norm then relu / leaky_relu, so their
// output and every gradient are the same floats.
TEST_CASE("instance_norm_act and batch_norm_act equal norm then activation bit for bit, without the middle tensor") {
  struct Case {
    Shape x;
    bool affine;
    float slope;
    int norm;  // 0 instance, 1 batch (training), 2 batch (running statistics)
  };
  const Case cases[] = {{{2, 3, 4, 5, 6}, true, 0.01f, 0}, {{2, 3, 4, 5, 6}, true, 0.f, 0},
                        {{3, 2, 7, 5}, false, 0.2f, 0},    {{1, 4, 9}, true, 0.f, 0},
                        {{2, 3, 4, 5, 6}, true, 0.01f, 1}, {{3, 2, 7, 5}, true, 0.f, 2}};
  unsigned seed = 30;
  for (const Case& c : cases) {
    INFO("x " << shape_str(c.x) << " slope " << c.slope << " norm " << c.norm << (c.affine ? " affine" : ""));
    const Tensor x0 = random_tensor(c.x, seed++, -2.f, 3.f), w0 = random_tensor({c.x[1]}, seed++, 0.5f, 1.5f),
                 b0 = random_tensor({c.x[1]}, seed++), gy = random_tensor(c.x, seed++);
    auto run = [&](bool fused) {
      Var x = variable(x0.clone(), true), w = variable(w0.clone(), true), b = variable(b0.clone(), true);
      Var wv = c.affine ? w : Var(), bv = c.affine ? b : Var();
      Var y;
      Tensor rm = Tensor::full({c.x[1]}, 0.1f), rv = Tensor::full({c.x[1]}, 1.5f);
      if (c.norm == 0) {
        y = fused ? instance_norm_act(x, wv, bv, c.slope) : instance_norm(x, wv, bv);
      } else {
        const bool training = c.norm == 1;
        y = fused ? batch_norm_act(x, wv, bv, rm, rv, training, c.slope) : batch_norm(x, wv, bv, rm, rv, training);
      }
      if (!fused) y = c.slope == 0.f ? relu(y) : leaky_relu(y, c.slope);
      if (fused) CHECK(y->parents.size() == 3);  // x, weight, bias: no normalised tensor in between
      backward(y, gy);
      std::vector<std::vector<float>> out{y->value.to_vector(), x->grad.to_vector()};
      if (c.affine) out.push_back(w->grad.to_vector()), out.push_back(b->grad.to_vector());
      return out;
    };
    const auto fused = run(true), plain = run(false);
    REQUIRE(fused.size() == plain.size());
    for (size_t k = 0; k < fused.size(); ++k) CHECK(fused[k] == plain[k]);
  }
  Var x = variable(Tensor::zeros({1, 2, 3}));
  CHECK_THROWS_AS(instance_norm_act(x, nullptr, nullptr, -0.1f), std::invalid_argument);
  CHECK_THROWS_AS(instance_norm_act(x, nullptr, nullptr, std::nanf("")), std::invalid_argument);
  Tensor rm = Tensor::zeros({2}), rv = Tensor::full({2}, 1.f);
  CHECK_THROWS_AS(batch_norm_act(x, nullptr, nullptr, rm, rv, true, 1.f), std::invalid_argument);
}
