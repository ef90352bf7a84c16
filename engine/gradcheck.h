// Finite-difference gradient check for any op or composition of ops: the path to verify the
// backward of a new op (README "Adding a custom op").
//
//   GradcheckResult r = gradcheck([](const std::vector<Var>& in) { return my_op(in[0], in[1]); },
//                                 {x, w});
//   CHECK_MESSAGE(r.ok, r.message);
//
// The function's output y (any shape) is reduced to L = sum_i r_i * y_i with fixed random
// weights r in [-1, 1], so every output element takes part. The analytic gradient is the op's
// float backward of L; the numeric one is the central difference (L(x+h) - L(x-h)) / (x+h - x-h)
// for each input element, with L accumulated in double and the actual float step used as the
// denominator. Every input must be f32 and is checked (pass non-differentiable arguments such
// as targets by capture). Keep inputs small (every element costs two forward passes) and away
// from kinks (relu at 0, max-pool ties).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"

namespace pw {

struct GradcheckOptions {
  double step = 1e-3;  // h, absolute perturbation
  double atol = 1e-3;  // pass when |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 2e-3;
  uint64_t seed = 1;   // for the projection weights r
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_err = 0;  // over all checked elements
  int64_t checked = 0;     // elements checked
  std::string message;     // the worst element (input, index, analytic, numeric), or "ok"
};

GradcheckResult gradcheck(const std::function<Var(const std::vector<Var>&)>& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace pw
