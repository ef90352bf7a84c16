// CUDA bodies of kernels/elementwise.h: activations, arithmetic, softmax over channels,
// channel copies (concat/slice) and the scalar sum.
#include "kernels/common/act_math.h"
#include "kernels/common/loss_math.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/elementwise.h"

namespace pw::kernels::cuda {

namespace {
__global__ void relu_fwd_k(const float* x, float* y, int64_t n) {
  PW_CUDA_LOOP(i, n) y[i] = common::relu(x[i]);
}
__global__ void relu_bwd_k(const float* x, const float* dy, float* dx, int64_t n) {
  PW_CUDA_LOOP(i, n) dx[i] = common::relu_grad(x[i], dy[i]);
}
__global__ void leaky_fwd_k(const float* x, float* y, int64_t n, float slope) {
  PW_CUDA_LOOP(i, n) y[i] = common::leaky_relu(x[i], slope);
}
__global__ void leaky_bwd_k(const float* x, const float* dy, float* dx, int64_t n, float slope) {
  PW_CUDA_LOOP(i, n) dx[i] = common::leaky_relu_grad(x[i], dy[i], slope);
}
__global__ void sigmoid_fwd_k(const float* x, float* y, int64_t n) {
  PW_CUDA_LOOP(i, n) y[i] = common::sigmoid(x[i]);
}
__global__ void sigmoid_bwd_k(const float* y, const float* dy, float* dx, int64_t n) {
  PW_CUDA_LOOP(i, n) dx[i] = dy[i] * y[i] * (1.f - y[i]);
}
__global__ void add_k(const float* a, const float* b, float* y, int64_t n) {
  PW_CUDA_LOOP(i, n) y[i] = a[i] + b[i];
}
__global__ void mul_k(const float* a, const float* b, float* y, int64_t n) {
  PW_CUDA_LOOP(i, n) y[i] = a[i] * b[i];
}
__global__ void scale_k(const float* x, float* y, int64_t n, float s) {
  PW_CUDA_LOOP(i, n) y[i] = s * x[i];
}

// One thread per (outer, inner) position, looping over the channels (stride `inner`).
__global__ void softmax_fwd_k(const float* x, float* y, int64_t outer, int64_t C, int64_t inner) {
  PW_CUDA_LOOP(t, outer * inner) {
    const int64_t o = t / inner, s = t % inner;
    const float* xp = x + o * C * inner + s;
    float* yp = y + o * C * inner + s;
    float m = xp[0];
    for (int64_t c = 1; c < C; ++c) m = fmaxf(m, xp[c * inner]);
    float z = 0.f;
    for (int64_t c = 0; c < C; ++c) {
      float e = expf(xp[c * inner] - m);
      yp[c * inner] = e;
      z += e;
    }
    const float inv = 1.f / z;
    for (int64_t c = 0; c < C; ++c) yp[c * inner] *= inv;
  }
}
__global__ void softmax_bwd_k(const float* y, const float* dy, float* dx, int64_t outer, int64_t C, int64_t inner) {
  PW_CUDA_LOOP(t, outer * inner) {
    const int64_t base = (t / inner) * C * inner + t % inner;
    float dot = 0.f;
    for (int64_t c = 0; c < C; ++c) dot += dy[base + c * inner] * y[base + c * inner];
    for (int64_t c = 0; c < C; ++c) dx[base + c * inner] = y[base + c * inner] * (dy[base + c * inner] - dot);
  }
}

__global__ void copy_channels_k(const float* src, int64_t src_channels, int64_t src_c0, float* dst,
                                int64_t dst_channels, int64_t dst_c0, int64_t count, int64_t outer, int64_t inner) {
  PW_CUDA_LOOP(t, outer * count * inner) {
    const int64_t s = t % inner, c = (t / inner) % count, o = t / (inner * count);
    dst[(o * dst_channels + dst_c0 + c) * inner + s] = src[(o * src_channels + src_c0 + c) * inner + s];
  }
}

struct SumItem {
  const float* x;
  __device__ void operator()(int64_t, int64_t i, double* acc) const { acc[0] += x[i]; }
};
struct SumFinish {
  float* out;
  __device__ void operator()(int64_t, const double* tot) const { out[0] = float(tot[0]); }
};

__global__ void broadcast_k(const float* s, float factor, float* y, int64_t n) {
  PW_CUDA_LOOP(i, n) y[i] = s[0] * factor;
}

}  // namespace

void relu_forward(const float* x, float* y, int64_t n) { PW_LAUNCH(relu_fwd_k, n, x, y, n); }
void relu_backward(const float* x, const float* dy, float* dx, int64_t n) { PW_LAUNCH(relu_bwd_k, n, x, dy, dx, n); }
void leaky_relu_forward(const float* x, float* y, int64_t n, float slope) {
  PW_LAUNCH(leaky_fwd_k, n, x, y, n, slope);
}
void leaky_relu_backward(const float* x, const float* dy, float* dx, int64_t n, float slope) {
  PW_LAUNCH(leaky_bwd_k, n, x, dy, dx, n, slope);
}
void sigmoid_forward(const float* x, float* y, int64_t n) { PW_LAUNCH(sigmoid_fwd_k, n, x, y, n); }
void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n) {
  PW_LAUNCH(sigmoid_bwd_k, n, y, dy, dx, n);
}
void softmax_forward(const float* x, float* y, int64_t outer, int64_t channels, int64_t inner) {
  PW_LAUNCH(softmax_fwd_k, outer * inner * (channels > 0), x, y, outer, channels, inner);
}
void softmax_backward(const float* y, const float* dy, float* dx, int64_t outer, int64_t channels, int64_t inner) {
  PW_LAUNCH(softmax_bwd_k, outer * inner * (channels > 0), y, dy, dx, outer, channels, inner);
}
void add(const float* a, const float* b, float* y, int64_t n) { PW_LAUNCH(add_k, n, a, b, y, n); }
void mul(const float* a, const float* b, float* y, int64_t n) { PW_LAUNCH(mul_k, n, a, b, y, n); }
void scale(const float* x, float* y, int64_t n, float s) { PW_LAUNCH(scale_k, n, x, y, n, s); }
void copy_channels(const float* src, int64_t src_channels, int64_t src_c0, float* dst, int64_t dst_channels,
                   int64_t dst_c0, int64_t count, int64_t outer, int64_t inner) {
  PW_LAUNCH(copy_channels_k, outer * count * inner, src, src_channels, src_c0, dst, dst_channels, dst_c0, count,
            outer, inner);
}
void sum(const float* x, int64_t n, float* out) {
  if (n <= 0) {
    memset_zero(out, sizeof(float));
    return;
  }
  group_reduce<1>(1, n, SumItem{x}, SumFinish{out});
}
void broadcast_scalar(const float* s, float factor, float* y, int64_t n) {
  PW_LAUNCH(broadcast_k, n, s, factor, y, n);
}

}  // namespace pw::kernels::cuda
