// Normalisation kernels on raw f32 buffers. x is viewed as [N][C][S] (S = spatial size).
// weight and bias (C values) may be nullptr (= 1 and 0); so may dx/dweight/dbias when not wanted.
// Variances are BIASED (divide by the count); rstd = 1/sqrt(var + eps).
// Every pointer is on the backend's device. Backward kernels WRITE their outputs.
#pragma once
#include <cstdint>

#include "kernels/common/act_math.h"
#include "kernels/op_list.h"

// The family's kernels: X(return type, name, (parameters)), expanded for both backends below
// (kernels/op_list.h).
#define PW_KERNELS_NORM(X)                                                                                           \
  /* Instance norm: statistics per (n, c) over S. mean and rstd (N*C values) are written for the */                  \
  /* backward pass; y = act((x - mean)*rstd*weight + bias) (common::activate, slope for leaky). */                   \
  X(void, instance_norm_forward, (const float* x, const float* weight, const float* bias, float* y, float* mean,     \
                                  float* rstd, int64_t N, int64_t C, int64_t S, float eps, common::Act act,          \
                                  float slope))                                                                      \
  /* dy: the gradient at y; with an activation, y is the forward's output (where it is > 0, the activation's */   \
  /* input is), and the gradient at the normalised values is common::activation_grad of it (no y: act none). */     \
  X(void, instance_norm_backward, (const float* x, const float* weight, const float* mean, const float* rstd,        \
                                   const float* dy, const float* y, common::Act act, float slope, float* dx,         \
                                   float* dweight, float* dbias, int64_t N, int64_t C, int64_t S))                   \
  /* Batch norm, statistics per channel over N and S (M = N*S values). */                                            \
  /* mean and var (C values) <- the batch mean and biased variance. */                                               \
  X(void, batch_norm_stats, (const float* x, float* mean, float* var, int64_t N, int64_t C, int64_t S))              \
  /* running_mean = (1-momentum)*running_mean + momentum*mean; */                                                    \
  /* running_var  = (1-momentum)*running_var  + momentum*var*M/(M-1)   (unbiased; M = 1 uses var) */                 \
  X(void, batch_norm_update_running, (float* running_mean, float* running_var, const float* mean, const float* var,  \
                                      int64_t C, int64_t M, float momentum))                                         \
  /* y = act((x - mean)*rstd*weight + bias) with the given statistics (batch ones in training, */                    \
  /* running ones in evaluation); rstd (C values) is written for the backward pass. */                               \
  X(void, batch_norm_forward, (const float* x, const float* weight, const float* bias, const float* mean,            \
                               const float* var, float* y, float* rstd, int64_t N, int64_t C, int64_t S, float eps,  \
                               common::Act act, float slope))                                                        \
  /* training = true: the statistics were the batch's and take part in the gradient; */                              \
  /* false: they were constants (evaluation), dx = dy*weight*rstd. dy, y, act: as instance_norm_backward. */        \
  X(void, batch_norm_backward, (const float* x, const float* weight, const float* mean, const float* rstd,           \
                                const float* dy, const float* y, common::Act act, float slope, float* dx,            \
                                float* dweight, float* dbias, int64_t N, int64_t C, int64_t S, bool training))

namespace pw::kernels::cpu {
PW_KERNELS_NORM(PW_DECLARE_KERNEL)
}  // namespace pw::kernels::cpu

#ifdef PW_HAVE_CUDA
// The CUDA twins: identical signatures, pointers in device memory.
namespace pw::kernels::cuda {
PW_KERNELS_NORM(PW_DECLARE_KERNEL)
}  // namespace pw::kernels::cuda
#endif
