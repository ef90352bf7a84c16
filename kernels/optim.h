// Optimizer update kernels: parameters and state updated in place, n f32 values each.
// Every pointer is on the backend's device; hyper-parameters are host scalars.
#pragma once
#include <cstdint>

#include "kernels/op_list.h"

// The family's kernels: X(return type, name, (parameters)), expanded for both backends below
// (kernels/op_list.h).
#define PW_KERNELS_OPTIM(X)                                                                                     \
  /* Adam step `step` (1, 2, 3, ...), as PyTorch: */                                                            \
  /*   decoupled (AdamW): p -= lr*weight_decay*p;  else (Adam, L2): g += weight_decay*p */                      \
  /*   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g */                                                           \
  /*   p -= (lr/(1 - b1^step)) * m / (sqrt(v)/sqrt(1 - b2^step) + eps) */                                       \
  X(void, adam_step, (float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,    \
                      float beta2, float eps, float weight_decay, bool decoupled, int64_t step))                \
  /* SGD with momentum (PyTorch, dampening 0, no Nesterov): g += weight_decay*p; */                             \
  /* buf = first ? g : momentum*buf + g  (buf unused when momentum == 0, then p -= lr*g);  p -= lr*buf */       \
  X(void, sgd_step, (float* param, const float* grad, float* buf, int64_t n, float lr, float momentum,          \
                     float weight_decay, bool first))

namespace pw::kernels::cpu {
PW_KERNELS_OPTIM(PW_DECLARE_KERNEL)
}  // namespace pw::kernels::cpu

#ifdef PW_HAVE_CUDA
// The CUDA twins: identical signatures, pointers in device memory.
namespace pw::kernels::cuda {
PW_KERNELS_OPTIM(PW_DECLARE_KERNEL)
}  // namespace pw::kernels::cuda
#endif
