// Elementwise, activation and channel-shape kernels on raw f32 buffers.
// Channel ops view a tensor N,C,spatial as [outer = N][C][inner = spatial].
// Every pointer is on the backend's device (CPU memory for cpu::, device memory for cuda::),
// one-element values (a sum's result, the upstream gradient of a scalar) included.
// Backward kernels WRITE dx (they do not accumulate); the engine accumulates.
#pragma once
#include <cstdint>

#include "kernels/op_list.h"

// The family's kernels: X(return type, name, (parameters)), expanded for both backends below
// (kernels/op_list.h).
#define PW_KERNELS_ELEMENTWISE(X)                                                                               \
  /* y = max(x, 0);  dx = x > 0 ? dy : 0.  Both forwards may run in place (y == x; instance_norm_act does),  */ \
  /* and both backwards take y for x as well (y > 0 exactly where x > 0, for slope >= 0).                     */ \
  X(void, relu_forward, (const float* x, float* y, int64_t n))                                                  \
  X(void, relu_backward, (const float* x, const float* dy, float* dx, int64_t n))                               \
  /* y = x > 0 ? x : slope*x;  dx = x > 0 ? dy : slope*dy */                                                    \
  X(void, leaky_relu_forward, (const float* x, float* y, int64_t n, float slope))                               \
  X(void, leaky_relu_backward, (const float* x, const float* dy, float* dx, int64_t n, float slope))            \
  /* y = 1/(1 + exp(-x));  dx = dy*y*(1 - y), from the forward output y */                                      \
  X(void, sigmoid_forward, (const float* x, float* y, int64_t n))                                               \
  X(void, sigmoid_backward, (const float* y, const float* dy, float* dx, int64_t n))                            \
  /* Softmax over the channels of [outer][channels][inner] (max subtracted); */                                 \
  /* backward from the forward output y: dx = y*(dy - sum_c dy*y) */                                            \
  X(void, softmax_forward, (const float* x, float* y, int64_t outer, int64_t channels, int64_t inner))          \
  X(void, softmax_backward,                                                                                     \
    (const float* y, const float* dy, float* dx, int64_t outer, int64_t channels, int64_t inner))               \
  /* y = a + b;  y = a*b;  y = s*x   (y may alias an input) */                                                  \
  X(void, add, (const float* a, const float* b, float* y, int64_t n))                                           \
  X(void, mul, (const float* a, const float* b, float* y, int64_t n))                                           \
  X(void, scale, (const float* x, float* y, int64_t n, float s))                                                \
  /* Copies channels [src_c0, src_c0 + count) of src [outer][src_channels][inner] into channels */              \
  /* [dst_c0, dst_c0 + count) of dst [outer][dst_channels][inner]; other dst channels are left */               \
  /* untouched. Used by concat, slice and their backwards. */                                                   \
  X(void, copy_channels, (const float* src, int64_t src_channels, int64_t src_c0, float* dst,                   \
                          int64_t dst_channels, int64_t dst_c0, int64_t count, int64_t outer, int64_t inner))   \
  /* out[0] = sum of x[0, n)  (accumulated in double) */                                                        \
  X(void, sum, (const float* x, int64_t n, float* out))                                                         \
  /* y[i] = s[0]*factor for i in [0, n): the backward of sum (factor 1) and mean (factor 1/n) */                \
  X(void, broadcast_scalar, (const float* s, float factor, float* y, int64_t n))

namespace pw::kernels::cpu {
PW_KERNELS_ELEMENTWISE(PW_DECLARE_KERNEL)
}  // namespace pw::kernels::cpu

#ifdef PW_HAVE_CUDA
// The CUDA twins: identical signatures, pointers in device memory.
namespace pw::kernels::cuda {
PW_KERNELS_ELEMENTWISE(PW_DECLARE_KERNEL)
}  // namespace pw::kernels::cuda
#endif
