// The activations per element, shared by the CPU and CUDA bodies: the elementwise kernels and the
// activation that the normalisation kernels apply to their output (instance_norm_act, batch_norm_act).
#pragma once

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

}  // namespace pw::kernels::common
