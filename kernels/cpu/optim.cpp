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
  // Locals and restrict pointers: floats read through the closure might alias the stores, which kept the
  // loop scalar; with them (and -fno-math-errno, kernels/CMakeLists.txt, for the square root) it vectorises.
  parallel_for(n, [=](int64_t b, int64_t e) {
    float* __restrict__ P = param;
    const float* __restrict__ G = grad;
    float* __restrict__ M = m;
    float* __restrict__ Vv = v;
    const float b1 = beta1, b2 = beta2, ss = step_size, sb = sqrt_bc2, ep = eps, dc = decay, wd = l2;
    for (int64_t i = b; i < e; ++i) {
      float p = P[i] * dc;
      const float g = G[i] + wd * p;
      M[i] = b1 * M[i] + (1.f - b1) * g;
      Vv[i] = b2 * Vv[i] + (1.f - b2) * g * g;
      P[i] = p - ss * M[i] / (std::sqrt(Vv[i]) / sb + ep);
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
