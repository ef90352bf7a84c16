// CUDA bodies of kernels/optim.h: one thread per parameter, the CPU bodies' formulas.
#include <cmath>

#include "kernels/cuda/context.h"
#include "kernels/optim.h"

namespace pw::kernels::cuda {

namespace {
__global__ void adam_k(float* param, const float* grad, float* m, float* v, int64_t n, float beta1, float beta2,
                       float eps, float step_size, float sqrt_bc2, float decay, float l2) {
  PW_CUDA_LOOP(i, n) {
    const float p = param[i] * decay;
    const float g = grad[i] + l2 * p;
    const float mi = beta1 * m[i] + (1.f - beta1) * g;
    const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = p - step_size * mi / (sqrtf(vi) / sqrt_bc2 + eps);
  }
}

__global__ void sgd_k(float* param, const float* grad, float* buf, int64_t n, float lr, float momentum,
                      float weight_decay, bool first) {
  PW_CUDA_LOOP(i, n) {
    float g = grad[i] + weight_decay * param[i];
    if (momentum != 0.f) {
      buf[i] = first ? g : momentum * buf[i] + g;
      g = buf[i];
    }
    param[i] -= lr * g;
  }
}
}  // namespace

void adam_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
               float eps, float weight_decay, bool decoupled, int64_t step) {
  if (n <= 0) return;
  const double bc1 = 1.0 - std::pow(double(beta1), double(step));
  const double bc2 = 1.0 - std::pow(double(beta2), double(step));
  const float step_size = float(lr / bc1), sqrt_bc2 = float(std::sqrt(bc2));
  const float decay = decoupled ? 1.f - lr * weight_decay : 1.f, l2 = decoupled ? 0.f : weight_decay;
  adam_k<<<grid_for(n), kBlock, 0, stream()>>>(param, grad, m, v, n, beta1, beta2, eps, step_size, sqrt_bc2, decay,
                                               l2);
  PW_CUDA_CHECK_LAUNCH("adam_k");
}

void sgd_step(float* param, const float* grad, float* buf, int64_t n, float lr, float momentum, float weight_decay,
              bool first) {
  if (n <= 0) return;
  sgd_k<<<grid_for(n), kBlock, 0, stream()>>>(param, grad, buf, n, lr, momentum, weight_decay, first);
  PW_CUDA_CHECK_LAUNCH("sgd_k");
}

}  // namespace pw::kernels::cuda
