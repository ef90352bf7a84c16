// Convolution kernels (raw pointers, f32, C-order), identical API for the CPU and CUDA backends.
//
// Layouts: activations N,C,D,H,W (a 2D tensor N,C,H,W is the 3D case with D = 1, k[0] = 1,
// stride[0] = 1, pad[0] = 0); conv weights Cout,Cin,kD,kH,kW; transposed-conv weights
// Cin,Cout,kD,kH,kW (PyTorch's convention); bias Cout.
//
// Every kernel OVERWRITES its output (the engine accumulates gradients itself).
// Shapes are checked by the engine ops (engine/ops_conv.cpp), not here.
#pragma once
#include <cstdint>

#include "kernels/op_list.h"

namespace pw::kernels {

// One convolution's geometry. `in`/`out` are the spatial sizes (D,H,W) of x and y.
// conv:           out = (in + 2*pad - k) / stride + 1          (floor)
// conv_transpose: out = (in - 1)*stride - 2*pad + k
// For both, x has `cin` channels and y has `cout` channels.
struct ConvGeom {
  int ndim = 3;  // 2 or 3 (informational; 2D is stored as D = 1)
  int64_t n = 0, cin = 0, cout = 0;
  int64_t in[3] = {1, 1, 1};
  int64_t out[3] = {1, 1, 1};
  int k[3] = {1, 1, 1};
  int stride[3] = {1, 1, 1};
  int pad[3] = {0, 0, 0};

  int64_t in_vol() const { return in[0] * in[1] * in[2]; }
  int64_t out_vol() const { return out[0] * out[1] * out[2]; }
  int64_t k_vol() const { return int64_t(k[0]) * k[1] * k[2]; }
};

// The family's kernels: X(return type, name, (parameters)), expanded for both backends below
// (kernels/op_list.h).
#define PW_KERNELS_CONV(X)                                                                                       \
  /* y = conv(x, w) + b            x: n,cin,in   w: cout,cin,k   b: cout or nullptr   y: n,cout,out */           \
  X(void, conv_forward, (const ConvGeom& g, const float* x, const float* w, const float* b, float* y))           \
  /* dx = dL/dx given dy           dy: n,cout,out   dx: n,cin,in */                                              \
  X(void, conv_backward_data, (const ConvGeom& g, const float* dy, const float* w, float* dx))                   \
  /* dw = dL/dw given x and dy     dw: cout,cin,k */                                                             \
  X(void, conv_backward_weight, (const ConvGeom& g, const float* x, const float* dy, float* dw))                 \
  /* db[c] = sum over n and out of dy[n,c,...]   (also the bias gradient of conv_transpose) */                   \
  X(void, conv_backward_bias, (const ConvGeom& g, const float* dy, float* db))                                   \
  /* Transposed convolution (the adjoint of conv in x):  x: n,cin,in   w: cin,cout,k   y: n,cout,out */          \
  X(void, conv_transpose_forward, (const ConvGeom& g, const float* x, const float* w, const float* b, float* y)) \
  /* Its gradients dx, dw, db given x and dy, each skipped where null: one kernel, so that the CPU can make */  \
  /* one pass over dy (the largest tensor of an up-sampling step) for all three */                              \
  X(void, conv_transpose_backward,                                                                              \
    (const ConvGeom& g, const float* x, const float* dy, const float* w, float* dx, float* dw, float* db))

namespace cpu {
PW_KERNELS_CONV(PW_DECLARE_KERNEL)
}  // namespace cpu

#ifdef PW_HAVE_CUDA
namespace cuda {
PW_KERNELS_CONV(PW_DECLARE_KERNEL)
}  // namespace cuda
#endif

}  // namespace pw::kernels
