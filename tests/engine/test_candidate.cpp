// Values of the candidate-sampling loss and of the class decision (ops_candidate.cpp): with every
// other class as a candidate the loss is the full softmax cross entropy of z = E f + b; the decision
// is the argmax of z, background where no patch landed.
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "test_random.h"

using namespace pw;
using pw::test::random_tensor;

namespace {

// z [N, C, S] = E f + b, computed through the engine's elementwise ops (a reference path).
Var full_logits(const Var& f, const Tensor& E, const Tensor& b) {
  const int64_t N = f->value.dim(0), m = f->value.dim(1), S = f->value.numel() / (N * m), C = E.dim(0);
  std::vector<Var> rows;
  for (int64_t c = 0; c < C; ++c) {
    Var z = constant(Tensor::full({N, 1, S}, b.f32()[c]));
    for (int64_t j = 0; j < m; ++j)
      z = add(z, scale(slice(f, j, j + 1), E.f32()[c * m + j]));
    rows.push_back(z);
  }
  return concat(rows);
}

}  // namespace

TEST_CASE("candidate_cross_entropy with all classes as candidates equals the full cross entropy") {
  const int64_t N = 2, m = 4, S = 30, C = 7;
  Tensor fv = random_tensor({N, m, S}, 1, -2.f, 2.f), E = random_tensor({C, m}, 2), b = random_tensor({C}, 3);
  Tensor truth = Tensor::empty({N, S}, DType::i32), cand = Tensor::empty({N, C, S}, DType::i32);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t s = 0; s < S; ++s) {
      const int32_t t = static_cast<int32_t>((s * 5 + n) % C);
      truth.i32()[n * S + s] = s == 7 ? -1 : t;
      cand.i32()[n * C * S + s] = s == 7 ? -1 : t;
      for (int64_t k = 1; k < C; ++k) cand.i32()[(n * C + k) * S + s] = static_cast<int32_t>((t + k) % C);
    }
  Var f1 = variable(fv, true), f2 = variable(fv.clone(), true);
  Var Ev = variable(E, true), bv = variable(b, true);
  Var l1 = candidate_cross_entropy(f1, Ev, bv, cand);
  Var l2 = cross_entropy(full_logits(f2, E, b), truth);
  CHECK(l1->value.f32()[0] == doctest::Approx(l2->value.f32()[0]).epsilon(1e-5));
  backward(l1);
  backward(l2);
  std::vector<float> g1 = f1->grad.to_vector(), g2 = f2->grad.to_vector();
  for (size_t i = 0; i < g1.size(); ++i) CHECK(g1[i] == doctest::Approx(g2[i]).epsilon(1e-4).scale(1e-3));
  // Voxel 7 is ignored: no gradient there.
  for (int64_t j = 0; j < m; ++j) CHECK(g1[j * S + 7] == 0.f);
}

TEST_CASE("candidate_cross_entropy: the sampling correction raises the loss by the sampled mass") {
  // One voxel, m = 1, f = 0: every logit is its bias; truth 0 (bias 0), one candidate of bias 0.
  Tensor cand = Tensor::empty({1, 2, 1}, DType::i32);
  cand.i32()[0] = 0;
  cand.i32()[1] = 1;
  Var f = variable(Tensor::zeros({1, 1, 1})), E = variable(Tensor::zeros({2, 1})), b = variable(Tensor::zeros({2}));
  CHECK(candidate_cross_entropy(f, E, b, cand)->value.f32()[0] == doctest::Approx(std::log(2.0)));
  // offset log 3: as if the candidate stood for 3 classes: log(1 + 3)
  const float off = static_cast<float>(std::log(3.0));
  CHECK(candidate_cross_entropy(f, E, b, cand, off)->value.f32()[0] == doctest::Approx(std::log(4.0)));
}

TEST_CASE("candidate_cross_entropy refuses bad candidates and sizes") {
  Var f = variable(Tensor::zeros({1, 2, 3})), E = variable(Tensor::zeros({4, 2})), b = variable(Tensor::zeros({4}));
  Tensor cand = Tensor::zeros({1, 2, 3}, DType::i32);
  cand.i32()[4] = 4;
  CHECK_THROWS_WITH_AS(candidate_cross_entropy(f, E, b, cand), "candidate_cross_entropy: candidate 4 outside [0, 4)",
                       std::invalid_argument);
  cand.i32()[4] = 0;
  cand.i32()[1] = -2;
  CHECK_THROWS_WITH_AS(candidate_cross_entropy(f, E, b, cand), "candidate_cross_entropy: class -2 outside [-1, 4)",
                       std::invalid_argument);
  CHECK_THROWS_AS(candidate_cross_entropy(f, variable(Tensor::zeros({4, 3})), b, Tensor::zeros({1, 2, 3}, DType::i32)),
                  std::invalid_argument);
}

TEST_CASE("max_response_class: argmax of <f, e_c> + b_c, background where nothing landed, minimal probability") {
  const int64_t m = 3, C = 65, n = 200;
  Tensor f = random_tensor({m, n}, 7, -2.f, 2.f), E = random_tensor({C, m}, 8), b = random_tensor({C}, 9, -0.3f, 0.3f);
  for (int64_t j = 0; j < m; ++j) f.f32()[j * n + 5] = 0.f;
  Tensor cls = max_response_class(f, E, b);
  Tensor strict = max_response_class(f, E, b, 0.3f);
  CHECK(cls.shape() == Shape{n});
  int changed = 0;
  for (int64_t s = 0; s < n; ++s) {
    std::vector<double> z(C);
    int best = 0, fg = 1;
    double mx = -1e30, sum = 0;
    for (int64_t c = 0; c < C; ++c) {
      z[c] = b.f32()[c];
      for (int64_t j = 0; j < m; ++j) z[c] += double(f.f32()[j * n + s]) * E.f32()[c * m + j];
      if (z[c] > mx) mx = z[c], best = static_cast<int>(c);
      if (c > 0 && z[c] > z[fg]) fg = static_cast<int>(c);
    }
    for (int64_t c = 0; c < C; ++c) sum += std::exp(z[c] - mx);
    const int32_t expect = s == 5 ? 0 : best;
    CHECK(cls.i32()[s] == expect);
    // the best foreground class, kept where its probability reaches 0.3
    const bool sure = std::exp(z[fg] - mx) / sum >= 0.3;
    if (s != 5) CHECK(strict.i32()[s] == (sure ? fg : 0));
    changed += strict.i32()[s] != cls.i32()[s];
  }
  CHECK(changed > 0);  // the threshold mattered somewhere
}
