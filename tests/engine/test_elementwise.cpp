#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "common/test_util.h"
#include "engine/gradcheck.h"
#include "engine/ops.h"
#include "op_fixture.h"
#include "test_random.h"

using namespace pw;
using namespace pw::test;

namespace {

void check_grad(const std::function<Var(const std::vector<Var>&)>& f, const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradcheck(f, inputs);
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.checked > 0);
}

}  // namespace

TEST_CASE("leaky_relu matches the PyTorch fixtures (forward and gradient)") {
  for (auto [name, slope] : {std::pair<const char*, float>{"leaky_relu_0p01", 0.01f}, {"leaky_relu_0p2", 0.2f}}) {
    Var x = variable(fixture(name, "x").to_f32(), true);
    Var y = leaky_relu(x, slope);
    check_fixture(y->value, name, "y");
    backward(y, fixture(name, "grad_y").to_f32());
    check_fixture(x->grad, name, "grad_x");
  }
}

TEST_CASE("activations: values") {
  Var x = variable(Tensor::from_vector({1, 2, 2}, {-2.f, 0.5f, 3.f, -0.25f}));
  CHECK(relu(x)->value.to_vector() == std::vector<float>{0.f, 0.5f, 3.f, 0.f});
  CHECK(leaky_relu(x, 0.1f)->value.to_vector() == std::vector<float>{-0.2f, 0.5f, 3.f, -0.025f});
  std::vector<float> s = sigmoid(x)->value.to_vector();
  CHECK(s[0] == doctest::Approx(1.0 / (1.0 + std::exp(2.0))));
  // Large magnitudes stay finite.
  std::vector<float> big = sigmoid(variable(Tensor::from_vector({2}, {-100.f, 100.f})))->value.to_vector();
  CHECK(big[0] >= 0.f);
  CHECK(big[0] < 1e-30f);
  CHECK(big[1] == 1.f);
  // softmax over the 2 channels at each of the 2 positions
  std::vector<float> p = softmax(x)->value.to_vector();
  CHECK(p[0] == doctest::Approx(1.0 / (1.0 + std::exp(3.0 + 2.0))));
  CHECK(p[0] + p[2] == doctest::Approx(1.0));
  CHECK(p[1] + p[3] == doctest::Approx(1.0));
  std::vector<float> q = softmax(variable(Tensor::from_vector({1, 2}, {1000.f, 0.f})))->value.to_vector();
  CHECK(q[0] == 1.f);
  CHECK(q[1] == 0.f);
}

TEST_CASE("add, mul, scale, sum, mean: values and shape errors") {
  Var a = variable(Tensor::from_vector({2, 2}, {1, 2, 3, 4}));
  Var b = variable(Tensor::from_vector({2, 2}, {5, 6, 7, 8}));
  CHECK(add(a, b)->value.to_vector() == std::vector<float>{6, 8, 10, 12});
  CHECK(mul(a, b)->value.to_vector() == std::vector<float>{5, 12, 21, 32});
  CHECK(scale(a, -2.f)->value.to_vector() == std::vector<float>{-2, -4, -6, -8});
  CHECK(sum(a)->value.to_vector() == std::vector<float>{10});
  CHECK(mean(b)->value.to_vector() == std::vector<float>{6.5f});
  CHECK(sum(a)->value.shape() == Shape{1});
  Var c = variable(Tensor::zeros({4}));
  CHECK_THROWS_AS(add(a, c), std::invalid_argument);
  CHECK_THROWS_AS(mul(a, c), std::invalid_argument);
  // A large sum is accumulated in double: 1e6 ones plus one 1e-3 is exact to float precision.
  Tensor big = Tensor::full({1000001}, 1.f);
  big.f32()[0] = 1e-3f;
  CHECK(sum(variable(big))->value.to_vector()[0] == doctest::Approx(1000000.001).epsilon(1e-7));
}

TEST_CASE("concat and slice along channels") {
  Tensor ta = Tensor::from_vector({2, 1, 2}, {1, 2, 3, 4});
  Tensor tb = Tensor::from_vector({2, 2, 2}, {5, 6, 7, 8, 9, 10, 11, 12});
  Var y = concat({variable(ta), variable(tb)});
  CHECK(y->value.shape() == Shape{2, 3, 2});
  CHECK(y->value.to_vector() == std::vector<float>{1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12});
  Var s = slice(y, 1, 3);
  CHECK(s->value.to_vector() == tb.to_vector());
  CHECK(slice(y, 0, 1)->value.to_vector() == ta.to_vector());
  CHECK_THROWS_AS(slice(y, 2, 4), std::invalid_argument);
  CHECK_THROWS_AS(slice(y, 1, 1), std::invalid_argument);
  CHECK_THROWS_AS(concat({variable(ta), variable(Tensor::zeros({2, 1, 3}))}), std::invalid_argument);
  CHECK_THROWS_AS(concat({}), std::invalid_argument);
}

TEST_CASE("elementwise ops pass the finite-difference gradient check") {
  Shape sh{2, 3, 2, 3};
  Tensor x = random_tensor(sh, 1, -1.f, 1.f, 0.05f);
  Tensor y = random_tensor(sh, 2);
  check_grad([](const std::vector<Var>& v) { return relu(v[0]); }, {x});
  check_grad([](const std::vector<Var>& v) { return leaky_relu(v[0], 0.2f); }, {x});
  check_grad([](const std::vector<Var>& v) { return sigmoid(v[0]); }, {x});
  check_grad([](const std::vector<Var>& v) { return softmax(v[0]); }, {random_tensor(sh, 3, -3.f, 3.f)});
  check_grad([](const std::vector<Var>& v) { return add(v[0], v[1]); }, {x, y});
  check_grad([](const std::vector<Var>& v) { return mul(v[0], v[1]); }, {x, y});
  check_grad([](const std::vector<Var>& v) { return scale(v[0], -1.5f); }, {x});
  check_grad([](const std::vector<Var>& v) { return concat({v[0], v[1], v[0]}); },
             {x, random_tensor({2, 1, 2, 3}, 4)});
  check_grad([](const std::vector<Var>& v) { return slice(v[0], 1, 3); }, {x});
  check_grad([](const std::vector<Var>& v) { return sum(v[0]); }, {x});
  check_grad([](const std::vector<Var>& v) { return mean(v[0]); }, {x});
  // A composition: the same input used twice accumulates both gradients.
  check_grad([](const std::vector<Var>& v) { return mul(sigmoid(v[0]), add(v[0], v[1])); }, {x, y});
}
