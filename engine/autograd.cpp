#include "engine/autograd.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <unordered_set>

namespace pw {
namespace {
thread_local bool t_grad_enabled = true;
std::atomic<uint64_t> g_order{0};
}  // namespace

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }

Var variable(Tensor value, bool requires_grad, std::string name) {
  auto n = std::make_shared<Node>();
  n->value = std::move(value);
  n->requires_grad = requires_grad;
  n->order = g_order++;
  n->name = std::move(name);
  return n;
}

Var record(Tensor value, std::vector<Var> parents, std::function<void(Node&)> backward_fn) {
  auto n = std::make_shared<Node>();
  n->value = std::move(value);
  n->order = g_order++;
  if (!t_grad_enabled) return n;
  bool any = std::any_of(parents.begin(), parents.end(), [](const Var& p) { return p && p->requires_grad; });
  if (!any) return n;
  n->requires_grad = true;
  n->parents = std::move(parents);
  n->backward_fn = std::move(backward_fn);
  return n;
}

void accumulate(Node& node, const Tensor& g) {
  check_same_shape(node.value, g, node.name.empty() ? "gradient" : node.name.c_str());
  if (!node.grad.defined()) {
    node.grad = g.clone();
  } else {
    add_inplace(node.grad, g);
  }
}

void accumulate_owned(Node& node, Tensor g) {
  check_same_shape(node.value, g, node.name.empty() ? "gradient" : node.name.c_str());
  if (!node.grad.defined()) {
    node.grad = std::move(g);
  } else {
    add_inplace(node.grad, g);
  }
}

void backward(const Var& loss) {
  if (loss->value.numel() != 1)
    throw std::invalid_argument("backward(loss): loss must have one element, has shape " +
                                shape_str(loss->value.shape()));
  backward(loss, Tensor::full(loss->value.shape(), 1.0f, loss->value.device()));
}

void backward(const Var& output, const Tensor& seed) {
  if (!output->requires_grad) throw std::logic_error("backward: the output does not depend on any parameter");
  // Collect the graph reachable from `output`, then walk it in reverse recording order.
  std::vector<Node*> nodes;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack{output.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    nodes.push_back(n);
    for (auto& p : n->parents)
      if (p && p->requires_grad) stack.push_back(p.get());
  }
  std::sort(nodes.begin(), nodes.end(), [](Node* a, Node* b) { return a->order > b->order; });
  if (output->backward_fn && !output->grad.defined()) {
    // The seed itself becomes the output's gradient, no copy: backward functions only read their node's
    // gradient, nothing adds to the output's (no node reached from it is its child), and it is dropped below.
    check_same_shape(output->value, seed, output->name.empty() ? "gradient" : output->name.c_str());
    output->grad = seed;
  } else {
    accumulate(*output, seed);
  }
  for (Node* n : nodes) {
    if (n->backward_fn && n->grad.defined()) n->backward_fn(*n);
  }
  // Free intermediate gradients (keep those of leaves: parameters and inputs).
  for (Node* n : nodes)
    if (n->backward_fn) n->grad = Tensor();
}

}  // namespace pw
