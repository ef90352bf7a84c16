#include <doctest/doctest.h>

#include <cmath>

#include "common/test_util.h"
#include "engine/optim.h"
#include "op_fixture.h"

using namespace pw;
using namespace pw::test;

namespace {
// Rows [i*per, (i+1)*per) of a fixture array as a tensor of `shape`.
Tensor row(const Npy& a, int64_t i, const Shape& shape) {
  int64_t per = shape_numel(shape);
  std::vector<float> v(a.data.begin() + i * per, a.data.begin() + (i + 1) * per);
  return Tensor::from_vector(shape, v);
}
std::vector<double> row_ref(const Npy& a, int64_t i, int64_t per) {
  return std::vector<double>(a.data.begin() + i * per, a.data.begin() + (i + 1) * per);
}
}  // namespace

TEST_CASE("Adam matches the PyTorch fixture over 3 steps (parameters and moments)") {
  const char* c = "adam_3_steps";
  Var p = variable(fixture(c, "param_initial").to_f32(), true);
  Npy grads = fixture(c, "grads"), params = fixture(c, "param_after_each_step");
  Npy m = fixture(c, "exp_avg_after_each_step"), v = fixture(c, "exp_avg_sq_after_each_step");
  Adam opt({p}, AdamOptions{1e-3f, 0.9f, 0.999f, 1e-8f, 0.f, false});
  const Shape sh = p->value.shape();
  for (int64_t t = 0; t < 3; ++t) {
    INFO("step " << t + 1);
    p->grad = row(grads, t, sh);
    opt.step();
    std::string err = check_close(p->value.to_vector(), row_ref(params, t, 20));
    CHECK_MESSAGE(err.empty(), err);
    err = check_close(opt.exp_avg(0).to_vector(), row_ref(m, t, 20));
    CHECK_MESSAGE(err.empty(), err);
    err = check_close(opt.exp_avg_sq(0).to_vector(), row_ref(v, t, 20));
    CHECK_MESSAGE(err.empty(), err);
  }
  CHECK(opt.steps() == 3);
}

TEST_CASE("Adam weight decay (L2) and AdamW (decoupled) follow PyTorch's formulas") {
  // One step, m = (1-b1) g', v = (1-b2) g'^2, so the update is lr * g'/(|g'| + eps') = lr*sign(g')
  // up to eps: L2 changes g' = g + wd*p; AdamW scales p by (1 - lr*wd) first.
  const float lr = 0.1f, wd = 0.5f;
  Var a = variable(Tensor::from_vector({2}, {2.f, -1.f}), true);
  a->grad = Tensor::from_vector({2}, {-0.5f, 0.25f});
  Adam adam({a}, AdamOptions{lr, 0.9f, 0.999f, 1e-8f, wd, false});
  adam.step();
  // g' = -0.5 + 1 = 0.5 > 0 -> p = 2 - 0.1; g' = 0.25 - 0.5 = -0.25 -> p = -1 + 0.1
  CHECK(a->value.to_vector()[0] == doctest::Approx(1.9).epsilon(1e-6));
  CHECK(a->value.to_vector()[1] == doctest::Approx(-0.9).epsilon(1e-6));
  Var b = variable(Tensor::from_vector({2}, {2.f, -1.f}), true);
  b->grad = Tensor::from_vector({2}, {-0.5f, 0.25f});
  Adam adamw({b}, AdamOptions{lr, 0.9f, 0.999f, 1e-8f, wd, true});
  adamw.step();
  // p *= 0.95, then p -= lr*sign(g)
  CHECK(b->value.to_vector()[0] == doctest::Approx(2.0 * 0.95 + 0.1).epsilon(1e-6));
  CHECK(b->value.to_vector()[1] == doctest::Approx(-1.0 * 0.95 - 0.1).epsilon(1e-6));
}

TEST_CASE("SGD with momentum follows PyTorch's rule; parameters without gradient stay put") {
  Var p = variable(Tensor::from_vector({1}, {1.f}), true);
  Var q = variable(Tensor::from_vector({1}, {5.f}), true);
  Sgd opt({p, q}, SgdOptions{0.1f, 0.9f, 0.f});
  // buf1 = g1 = 1 -> p = 0.9; buf2 = 0.9*1 + 2 = 2.9 -> p = 0.61; buf3 = 0.9*2.9 - 1 = 1.61 -> p = 0.449
  const float g[3] = {1.f, 2.f, -1.f};
  const double expect[3] = {0.9, 0.61, 0.449};
  for (int t = 0; t < 3; ++t) {
    p->grad = Tensor::from_vector({1}, {g[t]});
    opt.step();
    CHECK(p->value.to_vector()[0] == doctest::Approx(expect[t]).epsilon(1e-6));
  }
  CHECK(q->value.to_vector()[0] == 5.f);
  opt.zero_grad();
  CHECK_FALSE(p->grad.defined());
  // Plain SGD with weight decay: p -= lr*(g + wd*p)
  Var r = variable(Tensor::from_vector({1}, {2.f}), true);
  Sgd plain({r}, SgdOptions{0.5f, 0.f, 0.1f});
  r->grad = Tensor::from_vector({1}, {1.f});
  plain.step();
  CHECK(r->value.to_vector()[0] == doctest::Approx(2.0 - 0.5 * 1.2));
}

TEST_CASE("learning-rate schedules") {
  LrSchedule c;
  c.base = 0.01f;
  CHECK(c.at(0) == 0.01f);
  CHECK(c.at(1000) == 0.01f);
  LrSchedule s{LrSchedule::Kind::step, 1.f, 10, 0.5f};
  CHECK(s.at(0) == 1.f);
  CHECK(s.at(9) == 1.f);
  CHECK(s.at(10) == 0.5f);
  CHECK(s.at(25) == 0.25f);
  LrSchedule p{LrSchedule::Kind::poly, 1.f, 1, 0.1f, 100, 0.9f};
  CHECK(p.at(0) == 1.f);
  CHECK(p.at(50) == doctest::Approx(std::pow(0.5, 0.9)));
  CHECK(p.at(100) == 0.f);
  // over a fraction of the course (optimizer.schedule_over "time")
  CHECK(p.at_fraction(0.0) == 1.f);
  CHECK(p.at_fraction(0.5) == doctest::Approx(std::pow(0.5, 0.9)));
  CHECK(p.at_fraction(1.2) == 0.f);
  CHECK(c.at_fraction(0.7) == 0.01f);
  CHECK(LrSchedule::parse_kind("poly") == LrSchedule::Kind::poly);
  CHECK_THROWS_AS(LrSchedule::parse_kind("cosine"), std::invalid_argument);
}
