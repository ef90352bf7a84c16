// Instance norm and batch norm: shape checks, dispatch to kernels/norm.h, backward.
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/elementwise.h"
#include "kernels/norm.h"

namespace pw {
namespace {

struct Planes {
  int64_t N, C, S;
};

// Checks x (f32, N,C,spatial) and the optional per-channel weight/bias; returns the plane view.
Planes check_norm_inputs(const Var& x, const Var& weight, const Var& bias, const char* op) {
  if (!x || x->value.dtype() != DType::f32 || x->value.ndim() < 3)
    throw std::invalid_argument(std::string(op) + ": expected an f32 N,C,spatial tensor, got " +
                                (x ? x->value.str() : std::string("nothing")));
  const Tensor& t = x->value;
  Planes p{t.dim(0), t.dim(1), t.numel() / (t.dim(0) * t.dim(1))};
  for (const Var* v : {&weight, &bias}) {
    if (!*v) continue;
    const Tensor& w = (*v)->value;
    if (w.dtype() != DType::f32 || w.shape() != Shape{p.C} || w.device() != t.device())
      throw std::invalid_argument(std::string(op) + ": weight/bias must be f32 [" + std::to_string(p.C) +
                                  "] on the input's device, got " + w.str());
  }
  return p;
}

const float* ptr_or_null(const Var& v) { return v ? v->value.f32() : nullptr; }

// The shared backward: dx, dweight, dbias from a norm kernel's backward, accumulated where wanted.
template <class Kernel>
void accumulate_norm_grads(Node& self, Kernel&& kernel) {
  Node& x = *self.parents[0];
  const Var& w = self.parents[1];
  const Var& b = self.parents[2];
  Tensor dx, dw, db;
  if (x.requires_grad) dx = Tensor::empty_like(x.value);
  if (w && w->requires_grad) dw = Tensor::empty_like(w->value);
  if (b && b->requires_grad) db = Tensor::empty_like(b->value);
  kernel(dx.defined() ? dx.f32() : nullptr, dw.defined() ? dw.f32() : nullptr, db.defined() ? db.f32() : nullptr);
  if (dx.defined()) accumulate_owned(x, std::move(dx));
  if (dw.defined()) accumulate_owned(*w, std::move(dw));
  if (db.defined()) accumulate_owned(*b, std::move(db));
}

// The activation of a fused norm node: slope 0: ReLU, else leaky ReLU with that slope.
void check_slope(float slope, const char* op) {
  if (!(slope >= 0.f && slope < 1.f))
    throw std::invalid_argument(std::string(op) + ": slope must be in [0, 1), got " + std::to_string(slope));
}
// What the norm kernels apply to their output: nothing, or the activation of slope (written in the same pass
// over the output as the normalisation: one read and write of an activation-sized tensor less).
kernels::common::Act act_kind(bool act, float slope) {
  using kernels::common::Act;
  return !act ? Act::none : slope == 0.f ? Act::relu : Act::leaky;
}
// instance_norm, and the activation of slope when act (instance_norm_act), applied by the norm kernels.
Var instance_norm_impl(const char* op, const Var& x, const Var& weight, const Var& bias, float eps, bool act,
                       float slope) {
  Planes p = check_norm_inputs(x, weight, bias, op);
  if (act) check_slope(slope, op);
  const Device dev = x->value.device();
  Tensor y = Tensor::empty_like(x->value);
  Tensor mean = Tensor::empty({p.N * p.C}, DType::f32, dev);
  Tensor rstd = Tensor::empty({p.N * p.C}, DType::f32, dev);
  PW_DISPATCH(dev, instance_norm_forward, x->value.f32(), ptr_or_null(weight), ptr_or_null(bias), y.f32(),
              mean.f32(), rstd.f32(), p.N, p.C, p.S, eps, act_kind(act, slope), slope);
  return record(y, {x, weight, bias}, [p, mean, rstd, act, slope](Node& self) {
    accumulate_norm_grads(self, [&](float* dx, float* dw, float* db) {  // the activation's gradient inside
      PW_DISPATCH(self.value.device(), instance_norm_backward, self.parents[0]->value.f32(),
                  ptr_or_null(self.parents[1]), mean.f32(), rstd.f32(), self.grad.f32(), self.value.f32(),
                  act_kind(act, slope), slope, dx, dw, db, p.N, p.C, p.S);
    });
  });
}

// batch_norm, and the activation of slope when act (batch_norm_act), applied by the norm kernels.
Var batch_norm_impl(const char* op, const Var& x, const Var& weight, const Var& bias, Tensor& running_mean,
                    Tensor& running_var, bool training, float momentum, float eps, bool act, float slope) {
  Planes p = check_norm_inputs(x, weight, bias, op);
  if (act) check_slope(slope, op);
  const Device dev = x->value.device();
  for (const Tensor* r : {&running_mean, &running_var})
    if (r->dtype() != DType::f32 || r->shape() != Shape{p.C} || r->device() != dev)
      throw std::invalid_argument(std::string(op) + ": running statistics must be f32 [" + std::to_string(p.C) +
                                  "] on the input's device, got " + r->str());
  Tensor mean, var;
  if (training) {
    if (p.N * p.S < 2)
      throw std::invalid_argument(std::string(op) + ": training needs more than one value per channel, got shape " +
                                  shape_str(x->value.shape()));
    mean = Tensor::empty({p.C}, DType::f32, dev);
    var = Tensor::empty({p.C}, DType::f32, dev);
    PW_DISPATCH(dev, batch_norm_stats, x->value.f32(), mean.f32(), var.f32(), p.N, p.C, p.S);
    PW_DISPATCH(dev, batch_norm_update_running, running_mean.f32(), running_var.f32(), mean.f32(), var.f32(), p.C,
                p.N * p.S, momentum);
  } else {
    mean = running_mean.clone();  // the backward must see the statistics used here
    var = running_var;
  }
  Tensor y = Tensor::empty_like(x->value);
  Tensor rstd = Tensor::empty({p.C}, DType::f32, dev);
  PW_DISPATCH(dev, batch_norm_forward, x->value.f32(), ptr_or_null(weight), ptr_or_null(bias), mean.f32(),
              var.f32(), y.f32(), rstd.f32(), p.N, p.C, p.S, eps, act_kind(act, slope), slope);
  return record(y, {x, weight, bias}, [p, mean, rstd, training, act, slope](Node& self) {
    accumulate_norm_grads(self, [&](float* dx, float* dw, float* db) {  // the activation's gradient inside
      PW_DISPATCH(self.value.device(), batch_norm_backward, self.parents[0]->value.f32(),
                  ptr_or_null(self.parents[1]), mean.f32(), rstd.f32(), self.grad.f32(), self.value.f32(),
                  act_kind(act, slope), slope, dx, dw, db, p.N, p.C, p.S, training);
    });
  });
}

}  // namespace

Var instance_norm(const Var& x, const Var& weight, const Var& bias, float eps) {
  return instance_norm_impl("instance_norm", x, weight, bias, eps, false, 0.f);
}

Var instance_norm_act(const Var& x, const Var& weight, const Var& bias, float slope, float eps) {
  return instance_norm_impl("instance_norm_act", x, weight, bias, eps, true, slope);
}

Var batch_norm(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
               bool training, float momentum, float eps) {
  return batch_norm_impl("batch_norm", x, weight, bias, running_mean, running_var, training, momentum, eps, false, 0.f);
}

Var batch_norm_act(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
                   bool training, float slope, float momentum, float eps) {
  return batch_norm_impl("batch_norm_act", x, weight, bias, running_mean, running_var, training, momentum, eps, true,
                         slope);
}

}  // namespace pw
