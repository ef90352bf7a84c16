// Pooling and upsampling kernels (raw pointers, f32, C-order), identical API for the CPU and
// CUDA backends.
//
// Activations are N,C,D,H,W; a 2D tensor N,C,H,W is the 3D case with D = 1 (and k[0] = stride[0]
// = 1, factor 1 in depth). Every kernel OVERWRITES its output (backward kernels write the whole
// dx, zeros included). Shapes are checked by the engine ops (engine/ops_pool.cpp), not here.
#pragma once
#include <cstdint>

#include "kernels/op_list.h"

namespace pw::kernels {

// Geometry of one (n, c)-separable spatial op: `nc` = N*C independent planes of size in -> out.
struct PoolGeom {
  int ndim = 3;  // 2 or 3 (informational; 2D is stored as D = 1)
  int64_t nc = 0;
  int64_t in[3] = {1, 1, 1};
  int64_t out[3] = {1, 1, 1};
  int k[3] = {1, 1, 1};       // pooling window (unused by upsampling)
  int stride[3] = {1, 1, 1};  // pooling stride (unused by upsampling)

  int64_t in_vol() const { return in[0] * in[1] * in[2]; }
  int64_t out_vol() const { return out[0] * out[1] * out[2]; }
};

// The family's kernels: X(return type, name, (parameters)), expanded for both backends below
// (kernels/op_list.h).
#define PW_KERNELS_POOL(X)                                                                                      \
  /* Pooling, floor mode (out = (in - k)/stride + 1), no padding. */                                            \
  /* argmax[i] = flat spatial index (d*H + h)*W + w, within its (n, c) plane, of the max of window i. */        \
  X(void, max_pool_forward, (const PoolGeom& g, const float* x, float* y, int32_t* argmax))                     \
  X(void, max_pool_backward, (const PoolGeom& g, const float* dy, const int32_t* argmax, float* dx))            \
  X(void, avg_pool_forward, (const PoolGeom& g, const float* x, float* y))                                      \
  X(void, avg_pool_backward, (const PoolGeom& g, const float* dy, float* dx))                                   \
  /* Upsampling to `out` (an integer multiple of `in` per dim). */                                              \
  /* nearest: src = floor(dst * in / out). */                                                                   \
  /* linear (bi/trilinear): align_corners false: src = (dst + 0.5) * in/out - 0.5, clamped at 0; */             \
  /*                        true: src = dst * (in - 1)/(out - 1) (0 when out == 1). */                          \
  X(void, upsample_nearest_forward, (const PoolGeom& g, const float* x, float* y))                              \
  X(void, upsample_nearest_backward, (const PoolGeom& g, const float* dy, float* dx))                           \
  X(void, upsample_linear_forward, (const PoolGeom& g, bool align_corners, const float* x, float* y))           \
  X(void, upsample_linear_backward, (const PoolGeom& g, bool align_corners, const float* dy, float* dx))

namespace cpu {
PW_KERNELS_POOL(PW_DECLARE_KERNEL)
}  // namespace cpu

#ifdef PW_HAVE_CUDA
namespace cuda {
PW_KERNELS_POOL(PW_DECLARE_KERNEL)
}  // namespace cuda
#endif

}  // namespace pw::kernels
