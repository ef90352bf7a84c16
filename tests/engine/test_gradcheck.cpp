#include <doctest/doctest.h>

#include <cmath>

#include "common/test_util.h"
#include "engine/gradcheck.h"
#include "engine/ops.h"
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
