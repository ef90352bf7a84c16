// Autodiff: a graph of nodes recorded while grad mode is on. Each op returns a Var whose
// node holds the value, its parents and a backward function; backward(loss) visits the
// nodes in reverse recording order and accumulates gradients into `grad`.
//
// Writing an op (see README "Adding a custom op"):
//   Var my_op(const Var& x) {
//     Tensor y = ...forward...;
//     return record(y, {x}, [](Node& self) {
//       Node& x = *self.parents[0];
//       if (x.requires_grad) accumulate(x, ...dL/dx from self.grad...);
//     });
//   }
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace pw {

struct Node;
using Var = std::shared_ptr<Node>;

struct Node {
  Tensor value;
  Tensor grad;                            // undefined until a gradient arrives
  std::vector<Var> parents;               // empty for leaves
  std::function<void(Node&)> backward_fn; // empty for leaves
  bool requires_grad = false;
  uint64_t order = 0;                     // recording order, for the reverse walk
  std::string name;                       // parameters carry their registry name
};

// A leaf (input or parameter).
Var variable(Tensor value, bool requires_grad = false, std::string name = {});
inline Var constant(Tensor value) { return variable(std::move(value), false); }

// Records an op result. With grad mode off, or when no parent requires a gradient,
// the result is a plain leaf and `backward_fn` is dropped (no graph is kept).
Var record(Tensor value, std::vector<Var> parents, std::function<void(Node&)> backward_fn);

// node.grad += g (allocating a zero grad on first use).
void accumulate(Node& node, const Tensor& g);
// The same for a gradient just computed by a backward function and held by nobody else (no
// view of another tensor): it becomes node.grad without a copy when node has no gradient yet.
void accumulate_owned(Node& node, Tensor g);

// Seeds d(loss)/d(loss) = 1 (loss must have one element) or `seed` and runs every
// backward function reachable from `loss` in reverse recording order.
void backward(const Var& loss);
void backward(const Var& output, const Tensor& seed);

bool grad_enabled();
// RAII: disables recording for its lifetime (inference keeps no graph).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace pw
