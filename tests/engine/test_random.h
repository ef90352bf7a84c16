// Seeded random tensors for the engine tests.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>

#include "engine/tensor.h"

namespace pw::test {

// Uniform values in [lo, hi], kept at least `gap` away from 0 (for ops with a kink at 0).
inline Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.f, float hi = 1.f, float gap = 0.f) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> uni(lo, hi);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) {
    float v = uni(rng);
    while (std::fabs(v) < gap) v = uni(rng);
    t.f32()[i] = v;
  }
  return t;
}

}  // namespace pw::test
