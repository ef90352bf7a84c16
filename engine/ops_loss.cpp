// Losses (each a mean, shape {1}) with an optional don't-care mask: shape checks, dispatch to
// kernels/loss.h, backward.
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/loss.h"

namespace pw {
namespace {

void check_input(const Var& x, const char* op, int min_dims) {
  if (!x || x->value.dtype() != DType::f32 || x->value.ndim() < min_dims)
    throw std::invalid_argument(std::string(op) + ": expected an f32 input with at least " +
                                std::to_string(min_dims) + " dimensions, got " +
                                (x ? x->value.str() : std::string("nothing")));
}

void check_target(const Tensor& target, DType dtype, const Shape& shape, Device dev, const char* op) {
  if (!target.defined() || target.dtype() != dtype || target.shape() != shape || target.device() != dev)
    throw std::invalid_argument(std::string(op) + ": target must be " + dtype_name(dtype) + shape_str(shape) +
                                " on " + device_name(dev) + ", got " +
                                (target.defined() ? target.str() : std::string("nothing")));
}

const float* check_mask(const Tensor* mask, const Tensor& target, const char* op) {
  if (!mask) return nullptr;
  if (mask->dtype() != DType::f32 || mask->shape() != target.shape() || mask->device() != target.device())
    throw std::invalid_argument(std::string(op) + ": mask must be f32 with the target's shape " +
                                shape_str(target.shape()) + ", got " + mask->str());
  return mask->f32();
}

Shape without_channels(const Shape& s) {
  Shape r{s[0]};
  r.insert(r.end(), s.begin() + 2, s.end());
  return r;
}

}  // namespace

Var bce_with_logits(const Var& logits, const Tensor& target, const Tensor* mask) {
  check_input(logits, "bce_with_logits", 1);
  const Tensor& z = logits->value;
  check_target(target, DType::f32, z.shape(), z.device(), "bce_with_logits");
  check_mask(mask, target, "bce_with_logits");
  Tensor m = mask ? *mask : Tensor();
  Tensor loss = Tensor::empty({1}, DType::f32, z.device());
  Tensor denom = Tensor::empty({1}, DType::f32, z.device());
  PW_DISPATCH(z.device(), bce_with_logits_forward, z.f32(), target.f32(), mask ? m.f32() : nullptr, z.numel(),
              loss.f32(), denom.f32());
  return record(loss, {logits}, [target, m, denom](Node& self) {
    Node& x = *self.parents[0];
    Tensor dz = Tensor::empty_like(x.value);
    PW_DISPATCH(dz.device(), bce_with_logits_backward, x.value.f32(), target.f32(),
                m.defined() ? m.f32() : nullptr, dz.numel(), self.grad.f32(), denom.f32(), dz.f32());
    accumulate_owned(x, std::move(dz));
  });
}

Var cross_entropy(const Var& logits, const Tensor& target, const std::vector<float>* class_weight,
                  const Tensor* mask) {
  check_input(logits, "cross_entropy", 2);
  const Tensor& x = logits->value;
  const Device dev = x.device();
  const int64_t N = x.dim(0), K = x.dim(1), S = x.numel() / (N * K);
  check_target(target, DType::i32, without_channels(x.shape()), dev, "cross_entropy");
  check_mask(mask, target, "cross_entropy");
  {
    // Class indices are checked on the host (a CUDA target is copied down: one small transfer per
    // call), so a bad target is the same clear error on every device.
    const Tensor host = dev == Device::cpu ? target : target.cpu();
    const int32_t* t = host.i32();
    const int64_t n = host.numel();
    for (int64_t i = 0; i < n; ++i)
      if (t[i] < -1 || t[i] >= K)
        throw std::invalid_argument("cross_entropy: target value " + std::to_string(t[i]) + " outside [-1, " +
                                    std::to_string(K) + ")");
  }
  Tensor weight;
  if (class_weight) {
    if (static_cast<int64_t>(class_weight->size()) != K)
      throw std::invalid_argument("cross_entropy: " + std::to_string(class_weight->size()) +
                                  " class weights for " + std::to_string(K) + " classes");
    weight = Tensor::from_vector({K}, *class_weight).to(dev);
  }
  Tensor m = mask ? *mask : Tensor();
  const float* wp = weight.defined() ? weight.f32() : nullptr;
  const float* mp = m.defined() ? m.f32() : nullptr;
  Tensor loss = Tensor::empty({1}, DType::f32, dev);
  Tensor denom = Tensor::empty({1}, DType::f32, dev);
  PW_DISPATCH(dev, cross_entropy_forward, x.f32(), target.i32(), wp, mp, N, K, S, loss.f32(), denom.f32());
  return record(loss, {logits}, [target, weight, m, denom, N, K, S](Node& self) {
    Node& x = *self.parents[0];
    Tensor dx = Tensor::empty_like(x.value);
    PW_DISPATCH(dx.device(), cross_entropy_backward, x.value.f32(), target.i32(),
                weight.defined() ? weight.f32() : nullptr, m.defined() ? m.f32() : nullptr, N, K, S,
                self.grad.f32(), denom.f32(), dx.f32());
    accumulate_owned(x, std::move(dx));
  });
}

Var soft_dice(const Var& probs, const Tensor& target_onehot, bool per_sample, float smooth, const Tensor* mask) {
  check_input(probs, "soft_dice", 2);
  const Tensor& p = probs->value;
  const Device dev = p.device();
  const int64_t N = p.dim(0), K = p.dim(1), S = p.numel() / (N * K);
  check_target(target_onehot, DType::f32, p.shape(), dev, "soft_dice");
  check_mask(mask, target_onehot, "soft_dice");
  Tensor m = mask ? *mask : Tensor();
  const int64_t G = per_sample ? N * K : K;
  Tensor sums = Tensor::empty({3 * G}, DType::f32, dev);
  Tensor loss = Tensor::empty({1}, DType::f32, dev);
  PW_DISPATCH(dev, soft_dice_forward, p.f32(), target_onehot.f32(), m.defined() ? m.f32() : nullptr, N, K, S,
              per_sample, smooth, sums.f32(), loss.f32());
  return record(loss, {probs}, [target_onehot, m, sums, N, K, S, per_sample, smooth](Node& self) {
    Node& x = *self.parents[0];
    Tensor dp = Tensor::empty_like(x.value);
    PW_DISPATCH(dp.device(), soft_dice_backward, x.value.f32(), target_onehot.f32(),
                m.defined() ? m.f32() : nullptr, N, K, S, per_sample, smooth, sums.f32(), self.grad.f32(),
                dp.f32());
    accumulate_owned(x, std::move(dp));
  });
}

}  // namespace pw
