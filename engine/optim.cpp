#include "engine/optim.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/dispatch.h"
#include "kernels/optim.h"

namespace pw {

Optimizer::Optimizer(std::vector<Var> params) : params_(std::move(params)) {
  for (const Var& p : params_)
    if (!p || p->value.dtype() != DType::f32)
      throw std::invalid_argument("optimizer: every parameter must be an f32 tensor" +
                                  (p ? std::string(", got ") + p->name + " " + p->value.str() : std::string()));
}

void Optimizer::zero_grad() {
  for (const Var& p : params_) p->grad = Tensor();
}

Adam::Adam(std::vector<Var> params, AdamOptions options) : Optimizer(std::move(params)), opt_(options) {
  lr_ = opt_.lr;
  for (const Var& p : params_) {
    m_.push_back(Tensor::zeros_like(p->value));
    v_.push_back(Tensor::zeros_like(p->value));
  }
}

void Adam::step() {
  ++step_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Node& p = *params_[i];
    if (!p.grad.defined()) continue;
    PW_DISPATCH(p.value.device(), adam_step, p.value.f32(), p.grad.f32(), m_[i].f32(), v_[i].f32(), p.value.numel(),
                lr_, opt_.beta1, opt_.beta2, opt_.eps, opt_.weight_decay, opt_.decoupled, step_);
  }
}

Sgd::Sgd(std::vector<Var> params, SgdOptions options) : Optimizer(std::move(params)), opt_(options) {
  lr_ = opt_.lr;
  for (const Var& p : params_) buf_.push_back(opt_.momentum != 0.f ? Tensor::zeros_like(p->value) : Tensor());
  started_.assign(params_.size(), false);
}

void Sgd::restore_momentum(size_t i, Tensor buffer) {
  const Tensor& v = params_.at(i)->value;
  if (opt_.momentum == 0.f) throw std::invalid_argument("Sgd::restore_momentum: this optimizer has no momentum");
  if (buffer.shape() != v.shape() || buffer.dtype() != v.dtype())
    throw std::invalid_argument("Sgd::restore_momentum: buffer " + std::to_string(i) +
                                " does not match its parameter's shape or type");
  buf_.at(i) = buffer.to(v.device());
  started_.at(i) = true;
}

void Sgd::step() {
  for (size_t i = 0; i < params_.size(); ++i) {
    Node& p = *params_[i];
    if (!p.grad.defined()) continue;
    float* buf = buf_[i].defined() ? buf_[i].f32() : nullptr;
    PW_DISPATCH(p.value.device(), sgd_step, p.value.f32(), p.grad.f32(), buf, p.value.numel(), lr_, opt_.momentum,
                opt_.weight_decay, !started_[i]);
    started_[i] = true;
  }
}

float LrSchedule::at(int64_t t) const {
  switch (kind) {
    case Kind::constant:
      return base;
    case Kind::step:
      return base * std::pow(gamma, static_cast<float>(t / std::max<int64_t>(1, step_size)));
    case Kind::poly:
      if (t >= total) return 0.f;
      return base * std::pow(1.f - static_cast<float>(t) / static_cast<float>(total), power);
  }
  return base;
}

float LrSchedule::at_fraction(double f) const {
  if (kind != Kind::poly) return base;
  if (f >= 1.0) return 0.f;
  return base * std::pow(1.f - static_cast<float>(std::max(0.0, f)), power);
}

LrSchedule::Kind LrSchedule::parse_kind(const std::string& name) {
  if (name == "constant") return Kind::constant;
  if (name == "step") return Kind::step;
  if (name == "poly") return Kind::poly;
  throw std::invalid_argument("learning-rate schedule '" + name + "': expected constant, step or poly");
}

}  // namespace pw
