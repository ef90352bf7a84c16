// The activations per element, shared by the CPU and CUDA bodies: the elementwise kernels and the
// activation that the normalisation kernels apply to their output (instance_norm_act, batch_norm_act).
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"

namespace pw::kernels::common {

// What a normalisation kernel applies to each value it writes.
enum class Act : int { none = 0, relu = 1, leaky = 2 };

// +0 for v <= 0 (and NaN).
PW_HD inline float relu(float v) { return v > 0.f ? v : 0.f; }
PW_HD inline float leaky_relu(float v, float slope) { return v > 0.f ? v : slope * v; }
PW_HD inline float activate(Act act, float v, float slope) {
  return act == Act::relu ? relu(v) : act == Act::leaky ? leaky_relu(v, slope) : v;
}

// The gradient at an activation's input from g, the gradient at its output, and y, its output (or input:
// both are > 0 at the same elements).
PW_HD inline float relu_grad(float y, float g) { return y > 0.f ? g : 0.f; }
PW_HD inline float leaky_relu_grad(float y, float g, float slope) { return y > 0.f ? g : slope * g; }
PW_HD inline float activation_grad(Act act, float y, float g, float slope) {
  return act == Act::relu ? relu_grad(y, g) : act == Act::leaky ? leaky_relu_grad(y, g, slope) : g;
}
// The same for element i of arrays y and g; y is not read with Act::none (it may then be nullptr).
PW_HD inline float activation_grad_at(Act act, const float* y, const float* g, int64_t i, float slope) {
  return act == Act::none ? g[i] : activation_grad(act, y[i], g[i], slope);
}

}  // namespace pw::kernels::common
