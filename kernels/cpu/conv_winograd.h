// Winograd F(2x2x2, 3x3x3) for the CPU's 3x3x3 stride-1 convolutions (kernels/cpu/conv_winograd.cpp):
// 64 multiplications per 2x2x2 output tile and channel pair instead of 216. conv.cpp calls these
// where `suits` says so and the process's conv path (kernels/cpu_paths.h) is Winograd.
#pragma once
#include "kernels/conv.h"

namespace pw::kernels::cpu::winograd {

// A 3x3x3 kernel, stride 1, padding <= 2 per dimension (the data gradient is the same convolution of dy
// with the flipped kernel: padding 2 - pad), and channel counts that waste little when padded to
// multiples of the SIMD width.
bool suits(const ConvGeom& g);

void forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y);
void backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx);
void backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw);

}  // namespace pw::kernels::cpu::winograd
