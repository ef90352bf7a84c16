#include "kernels/optim.h"

#include <cmath>

#include "kernels/parallel.h"

namespace pw::kernels::cpu {
namespace {
constexpr int64_t kGrain = 1 << 15;
}

void adam_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
               float beta2, float eps, float weight_decay, bool decoupled, int64_t step) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bc1);
  const float sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  const float decay = decoupled ? 1.f - lr * weight_decay : 1.f;
  const float l2 = decoupled ? 0.f : weight_decay;
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float p = param[i] * decay;
      const float g = grad[i] + l2 * p;
      m[i] = beta1 * m[i] + (1.f - beta1) * g;
      v[i] = beta2 * v[i] + (1.f - beta2) * g * g;
      param[i] = p - step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps);
    }
  }, kGrain);
}

void sgd_step(float* param, const float* grad, float* buf, int64_t n, float lr, float momentum,
              float weight_decay, bool first) {
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float g = grad[i] + weight_decay * param[i];
      if (momentum != 0.f) {
        buf[i] = first ? g : momentum * buf[i] + g;
        g = buf[i];
      }
      param[i] -= lr * g;
    }
  }, kGrain);
}

}  // namespace pw::kernels::cpu
