// Optimizers that update parameters in place from their gradients (Node::grad), and learning-rate
// schedules. State (moments, momentum buffers) lives on the parameters' device.
//
//   Adam opt(model.parameters(), {.lr = 1e-3f});
//   ... backward(loss); opt.step(); opt.zero_grad();
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/autograd.h"

namespace pw {

struct AdamOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.f;
  bool decoupled = false;  // true: AdamW (p -= lr*wd*p), false: Adam (L2 added to the gradient)
};

struct SgdOptions {
  float lr = 1e-2f;
  float momentum = 0.f;
  float weight_decay = 0.f;
};

class Optimizer {
 public:
  explicit Optimizer(std::vector<Var> params);
  virtual ~Optimizer() = default;
  // One update of every parameter that has a gradient (parameters without one are skipped).
  virtual void step() = 0;
  // Drops every parameter's gradient.
  void zero_grad();
  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  const std::vector<Var>& params() const { return params_; }

 protected:
  std::vector<Var> params_;
  float lr_ = 0.f;
};

// Adam / AdamW exactly as PyTorch (eps added after bias-correcting sqrt(v)).
class Adam : public Optimizer {
 public:
  Adam(std::vector<Var> params, AdamOptions options = {});
  void step() override;
  int64_t steps() const { return step_; }
  // Moments of parameter i (for checkpoints and tests).
  Tensor& exp_avg(size_t i) { return m_.at(i); }
  Tensor& exp_avg_sq(size_t i) { return v_.at(i); }
  // Sets the step count (resuming from a checkpoint that restored the moments).
  void set_steps(int64_t steps) { step_ = steps; }

 private:
  AdamOptions opt_;
  std::vector<Tensor> m_, v_;
  int64_t step_ = 0;
};

// SGD with momentum (PyTorch: dampening 0, no Nesterov).
class Sgd : public Optimizer {
 public:
  Sgd(std::vector<Var> params, SgdOptions options = {});
  void step() override;
  Tensor& momentum_buffer(size_t i) { return buf_.at(i); }
  // Whether parameter i's momentum buffer holds a history (after its first step); checkpoints save
  // those buffers and restore_momentum puts one back, marking it started.
  bool momentum_started(size_t i) const { return started_.at(i) && buf_.at(i).defined(); }
  void restore_momentum(size_t i, Tensor buffer);

 private:
  SgdOptions opt_;
  std::vector<Tensor> buf_;
  std::vector<bool> started_;
};

// Learning rate as a function of the epoch (or iteration) t = 0, 1, 2, ...
//   constant: base
//   step:     base * gamma^floor(t / step_size)
//   poly:     base * (1 - t/total)^power  (0 from t >= total)
struct LrSchedule {
  enum class Kind { constant, step, poly };
  Kind kind = Kind::constant;
  float base = 1e-3f;
  int64_t step_size = 1;  // step
  float gamma = 0.1f;     // step
  int64_t total = 1;      // poly
  float power = 0.9f;     // poly

  float at(int64_t t) const;
  // The schedule at a fraction f in [0, 1] of its course: poly base * (1 - f)^power, constant base
  // (step has no course: base * gamma^0).
  float at_fraction(double f) const;
  // Parses "constant", "step" or "poly"; throws std::invalid_argument otherwise.
  static Kind parse_kind(const std::string& name);
};

}  // namespace pw
