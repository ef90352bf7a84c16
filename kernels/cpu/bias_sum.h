// The bias gradient's summation order, in one place: conv_backward_bias (conv.cpp) and the transposed k2 s2
// convolution's one-pass backward (conv_k2s2.cpp) must give the same floats.
#pragma once
#include <Eigen/Core>
#include <cstdint>

namespace pw::kernels::cpu {

// One sample's channel plane of n floats: Eigen's float sum.
inline float plane_sum(const float* p, int64_t n) { return Eigen::Map<const Eigen::VectorXf>(p, n).sum(); }

// db of one channel: the n samples' plane sums plane(s), in sample order, in double.
template <class F>
float bias_sum(int64_t n, const F& plane) {
  double sum = 0.0;
  for (int64_t s = 0; s < n; ++s) sum += plane(s);
  return static_cast<float>(sum);
}

}  // namespace pw::kernels::cpu
