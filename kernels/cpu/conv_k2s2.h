// Convolutions whose 2x2(x2) kernel equals their stride (the U-Net's down- and up-sampling steps) on the
// CPU (kernels/cpu/conv_k2s2.cpp). Every input voxel meets exactly one tap, so these run on x, dy and dx
// in place: no padded, phase-split copy as the general strided path makes (conv.cpp), which cost half of
// a k2 s2 forward. conv.cpp calls these where `suits` says so and the process's conv path
// (kernels/cpu_paths.h) is not `direct`.
#pragma once
#include "kernels/conv.h"

namespace pw::kernels::cpu::k2s2 {

// k = stride = 2 in H and W, and 2 or 1 in D (3D or 2D), no padding, sizes that divide exactly
// (in = 2 * out), output rows of >= 2 voxels; built with AVX2 and FMA.
bool suits(const ConvGeom& g);

void forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y);
// dx = the adjoint of conv g applied to dy, plus b per input channel (may be nullptr): the data
// gradient, and the transposed convolution's forward pass.
void backward_data(const ConvGeom& g, const float* dy, const float* w, const float* b, float* dx);
void backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw);
// The transposed convolution's gradients (conv g is its adjoint): y = conv(x) without bias (the data
// gradient), dw from x and dy, db[c] = the sum of x's channel c, each skipped where null, in one pass over x.
void transposed_backward(const ConvGeom& g, const float* x, const float* w, const float* dy, float* y, float* dw,
                         float* db);

}  // namespace pw::kernels::cpu::k2s2
