// Per-element loss and activation math shared by the CPU and CUDA bodies.
#pragma once
#include <cmath>

#include "kernels/common/exp_math.h"
#include "kernels/common/hd.h"

namespace pw::kernels::common {

PW_HD inline float sigmoid(float x) {
  // Stable for large |x|: exp of a non-positive number only. Branch-free: a loop of these vectorises.
  const float e = exp_f32(-fabsf(x)), d = 1.f + e;
  return x >= 0.f ? 1.f / d : e / d;
}

// max(z,0) - z*t + log1p(exp(-|z|)), the stable sigmoid cross-entropy.
PW_HD inline float bce_with_logits(float z, float t) { return fmaxf(z, 0.f) - z * t + log1pf(exp_f32(-fabsf(z))); }

// d(bce)/dz = sigmoid(z) - t.
PW_HD inline float bce_with_logits_grad(float z, float t) { return sigmoid(z) - t; }

// The Dice gradient of one element of group g: d/dp [1 - (2I + s)/(P + T + s)] for an element
// with target t, given the group sums I, P, T.
PW_HD inline float soft_dice_grad(float t, float I, float P, float T, float smooth) {
  float d = P + T + smooth;
  return -(2.f * t * d - (2.f * I + smooth)) / (d * d);
}

// 1 - (2I + s)/(P + T + s), one group's Dice loss.
PW_HD inline float soft_dice_loss(float I, float P, float T, float smooth) {
  return 1.f - (2.f * I + smooth) / (P + T + smooth);
}

}  // namespace pw::kernels::common
