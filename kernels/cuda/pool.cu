// CUDA bodies of kernels/pool.h. One thread per output voxel for the forwards; the backwards
// GATHER (one thread per input voxel summing the outputs that read it), so no atomics are needed
// and results are deterministic. The upsampling index math is kernels/common/resample_math.h,
// shared with the CPU bodies.
#include "kernels/common/resample_math.h"
#include "kernels/cuda/context.h"
#include "kernels/pool.h"

namespace pw::kernels::cuda {

namespace {

struct Dims {
  int64_t in[3], out[3];
  int k[3], stride[3];
};

Dims dims_of(const PoolGeom& g) {
  Dims d;
  for (int a = 0; a < 3; ++a) {
    d.in[a] = g.in[a];
    d.out[a] = g.out[a];
    d.k[a] = g.k[a];
    d.stride[a] = g.stride[a];
  }
  return d;
}

// The output windows [lo, hi) along one axis whose pooling window contains input index i.
__device__ inline void windows_containing(int64_t i, int k, int stride, int64_t out, int64_t& lo, int64_t& hi) {
  const int64_t first = i - k + 1;
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  hi = i / stride + 1;
  if (hi > out) hi = out;
}

__global__ void max_pool_fwd_k(Dims g, int64_t total, const float* x, float* y, int32_t* argmax) {
  const int64_t ov = g.out[0] * g.out[1] * g.out[2], iv = g.in[0] * g.in[1] * g.in[2];
  const int64_t plane_hw = g.in[1] * g.in[2];
  PW_CUDA_LOOP(t, total) {
    const int64_t p = t / ov, o = t % ov;
    const int64_t ow = o % g.out[2], oh = (o / g.out[2]) % g.out[1], od = o / (g.out[2] * g.out[1]);
    const float* xp = x + p * iv;
    const int64_t start = ((od * g.stride[0]) * g.in[1] + oh * g.stride[1]) * g.in[2] + ow * g.stride[2];
    int64_t best_i = start;
    float best = xp[start];
    for (int kd = 0; kd < g.k[0]; ++kd)
      for (int kh = 0; kh < g.k[1]; ++kh) {
        const int64_t row = start + kd * plane_hw + kh * g.in[2];
        for (int kw = 0; kw < g.k[2]; ++kw) {
          const float v = xp[row + kw];
          if (v > best || isnan(v)) {  // NaN propagates, as on the CPU
            best = v;
            best_i = row + kw;
            if (isnan(v)) break;
          }
        }
      }
    y[t] = best;
    argmax[t] = int32_t(best_i);
  }
}

__global__ void max_pool_bwd_k(Dims g, int64_t total, const float* dy, const int32_t* argmax, float* dx) {
  const int64_t ov = g.out[0] * g.out[1] * g.out[2], iv = g.in[0] * g.in[1] * g.in[2];
  PW_CUDA_LOOP(t, total) {
    const int64_t p = t / iv, i = t % iv;
    const int64_t iw = i % g.in[2], ih = (i / g.in[2]) % g.in[1], id = i / (g.in[2] * g.in[1]);
    int64_t lo[3], hi[3];
    windows_containing(id, g.k[0], g.stride[0], g.out[0], lo[0], hi[0]);
    windows_containing(ih, g.k[1], g.stride[1], g.out[1], lo[1], hi[1]);
    windows_containing(iw, g.k[2], g.stride[2], g.out[2], lo[2], hi[2]);
    const float* dyp = dy + p * ov;
    const int32_t* ap = argmax + p * ov;
    float s = 0.f;
    for (int64_t od = lo[0]; od < hi[0]; ++od)
      for (int64_t oh = lo[1]; oh < hi[1]; ++oh)
        for (int64_t ow = lo[2]; ow < hi[2]; ++ow) {
          const int64_t o = (od * g.out[1] + oh) * g.out[2] + ow;
          if (ap[o] == i) s += dyp[o];
        }
    dx[t] = s;
  }
}

__global__ void avg_pool_fwd_k(Dims g, int64_t total, const float* x, float* y) {
  const int64_t ov = g.out[0] * g.out[1] * g.out[2], iv = g.in[0] * g.in[1] * g.in[2];
  const int64_t plane_hw = g.in[1] * g.in[2];
  const float inv = 1.f / float(g.k[0] * g.k[1] * g.k[2]);
  PW_CUDA_LOOP(t, total) {
    const int64_t p = t / ov, o = t % ov;
    const int64_t ow = o % g.out[2], oh = (o / g.out[2]) % g.out[1], od = o / (g.out[2] * g.out[1]);
    const float* xp = x + p * iv;
    const int64_t start = ((od * g.stride[0]) * g.in[1] + oh * g.stride[1]) * g.in[2] + ow * g.stride[2];
    float s = 0.f;
    for (int kd = 0; kd < g.k[0]; ++kd)
      for (int kh = 0; kh < g.k[1]; ++kh) {
        const float* row = xp + start + kd * plane_hw + kh * g.in[2];
        for (int kw = 0; kw < g.k[2]; ++kw) s += row[kw];
      }
    y[t] = s * inv;
  }
}

__global__ void avg_pool_bwd_k(Dims g, int64_t total, const float* dy, float* dx) {
  const int64_t ov = g.out[0] * g.out[1] * g.out[2], iv = g.in[0] * g.in[1] * g.in[2];
  const float inv = 1.f / float(g.k[0] * g.k[1] * g.k[2]);
  PW_CUDA_LOOP(t, total) {
    const int64_t p = t / iv, i = t % iv;
    const int64_t iw = i % g.in[2], ih = (i / g.in[2]) % g.in[1], id = i / (g.in[2] * g.in[1]);
    int64_t lo[3], hi[3];
    windows_containing(id, g.k[0], g.stride[0], g.out[0], lo[0], hi[0]);
    windows_containing(ih, g.k[1], g.stride[1], g.out[1], lo[1], hi[1]);
    windows_containing(iw, g.k[2], g.stride[2], g.out[2], lo[2], hi[2]);
    const float* dyp = dy + p * ov;
    float s = 0.f;
    for (int64_t od = lo[0]; od < hi[0]; ++od)
      for (int64_t oh = lo[1]; oh < hi[1]; ++oh)
        for (int64_t ow = lo[2]; ow < hi[2]; ++ow) s += dyp[(od * g.out[1] + oh) * g.out[2] + ow] * inv;
    dx[t] = s;
  }
}

__global__ void up_nearest_fwd_k(Dims g, int64_t total, const float* x, float* y) {
  const int64_t ov = g.out[0] * g.out[1] * g.out[2], iv = g.in[0] * g.in[1] * g.in[2];
  PW_CUDA_LOOP(t, total) {
    const int64_t p = t / ov, o = t % ov;
    const int64_t ow = o % g.out[2], oh = (o / g.out[2]) % g.out[1], od = o / (g.out[2] * g.out[1]);
    const int64_t sd = nearest_source(od, g.in[0], g.out[0]), sh = nearest_source(oh, g.in[1], g.out[1]),
                  sw = nearest_source(ow, g.in[2], g.out[2]);
    y[t] = x[p * iv + (sd * g.in[1] + sh) * g.in[2] + sw];
  }
}

// The destinations [lo, hi) along one axis whose nearest source is s: floor(d*in/out) == s.
__device__ inline void nearest_targets(int64_t s, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  lo = (s * out + in - 1) / in;
  hi = ((s + 1) * out + in - 1) / in;
}

__global__ void up_nearest_bwd_k(Dims g, int64_t total, const float* dy, float* dx) {
  const int64_t ov = g.out[0] * g.out[1] * g.out[2], iv = g.in[0] * g.in[1] * g.in[2];
  PW_CUDA_LOOP(t, total) {
    const int64_t p = t / iv, i = t % iv;
    const int64_t iw = i % g.in[2], ih = (i / g.in[2]) % g.in[1], id = i / (g.in[2] * g.in[1]);
    int64_t lo[3], hi[3];
    nearest_targets(id, g.in[0], g.out[0], lo[0], hi[0]);
    nearest_targets(ih, g.in[1], g.out[1], lo[1], hi[1]);
    nearest_targets(iw, g.in[2], g.out[2], lo[2], hi[2]);
    const float* dyp = dy + p * ov;
    float s = 0.f;
    for (int64_t od = lo[0]; od < hi[0]; ++od)
      for (int64_t oh = lo[1]; oh < hi[1]; ++oh)
        for (int64_t ow = lo[2]; ow < hi[2]; ++ow) s += dyp[(od * g.out[1] + oh) * g.out[2] + ow];
    dx[t] = s;
  }
}

__global__ void up_linear_fwd_k(Dims g, bool align, int64_t total, const float* x, float* y) {
  const int64_t ov = g.out[0] * g.out[1] * g.out[2], iv = g.in[0] * g.in[1] * g.in[2];
  const int64_t W = g.in[2], HW = g.in[1] * g.in[2];
  PW_CUDA_LOOP(t, total) {
    const int64_t p = t / ov, o = t % ov;
    const int64_t ow = o % g.out[2], oh = (o / g.out[2]) % g.out[1], od = o / (g.out[2] * g.out[1]);
    const LinearTap td = linear_source(od, g.in[0], g.out[0], align);
    const LinearTap th = linear_source(oh, g.in[1], g.out[1], align);
    const LinearTap tw = linear_source(ow, g.in[2], g.out[2], align);
    const float* d0 = x + p * iv + td.i0 * HW;
    const float* d1 = x + p * iv + td.i1 * HW;
    const float fw = tw.frac, fh = th.frac, fd = td.frac;
    auto lerp_w = [&](const float* r) { return (1.f - fw) * r[tw.i0] + fw * r[tw.i1]; };
    const float a = (1.f - fh) * lerp_w(d0 + th.i0 * W) + fh * lerp_w(d0 + th.i1 * W);
    const float b = (1.f - fh) * lerp_w(d1 + th.i0 * W) + fh * lerp_w(d1 + th.i1 * W);
    y[t] = (1.f - fd) * a + fd * b;
  }
}

// Destinations along one axis that may read source s (their source coordinate lies within one
// voxel of s), found by inverting the coordinate map with a margin of one voxel.
__device__ inline void linear_candidates(int64_t s, int64_t in, int64_t out, bool align, int64_t& lo, int64_t& hi) {
  if (in <= 1) {
    lo = 0;
    hi = out;
    return;
  }
  double a, b;
  if (align) {
    const double r = double(out - 1) / double(in - 1);  // out > in >= 2 here
    a = (s - 1) * r;
    b = (s + 1) * r;
  } else {
    const double r = double(out) / double(in);
    a = (s - 0.5) * r - 0.5;
    b = (s + 1.5) * r - 0.5;
  }
  lo = int64_t(floor(a)) - 1;
  hi = int64_t(ceil(b)) + 2;
  if (lo < 0) lo = 0;
  if (hi > out) hi = out;
}

// The weight with which destination d reads source s along one axis.
__device__ inline float linear_weight(int64_t d, int64_t s, int64_t in, int64_t out, bool align) {
  const LinearTap t = linear_source(d, in, out, align);
  float w = 0.f;
  if (t.i0 == s) w += 1.f - t.frac;
  if (t.i1 == s) w += t.frac;
  return w;
}

__global__ void up_linear_bwd_k(Dims g, bool align, int64_t total, const float* dy, float* dx) {
  const int64_t ov = g.out[0] * g.out[1] * g.out[2], iv = g.in[0] * g.in[1] * g.in[2];
  PW_CUDA_LOOP(t, total) {
    const int64_t p = t / iv, i = t % iv;
    const int64_t iw = i % g.in[2], ih = (i / g.in[2]) % g.in[1], id = i / (g.in[2] * g.in[1]);
    int64_t lo[3], hi[3];
    linear_candidates(id, g.in[0], g.out[0], align, lo[0], hi[0]);
    linear_candidates(ih, g.in[1], g.out[1], align, lo[1], hi[1]);
    linear_candidates(iw, g.in[2], g.out[2], align, lo[2], hi[2]);
    const float* dyp = dy + p * ov;
    float s = 0.f;
    for (int64_t od = lo[0]; od < hi[0]; ++od) {
      const float wd = linear_weight(od, id, g.in[0], g.out[0], align);
      if (wd == 0.f) continue;
      for (int64_t oh = lo[1]; oh < hi[1]; ++oh) {
        const float wh = linear_weight(oh, ih, g.in[1], g.out[1], align);
        if (wh == 0.f) continue;
        const float* row = dyp + (od * g.out[1] + oh) * g.out[2];
        float r = 0.f;
        for (int64_t ow = lo[2]; ow < hi[2]; ++ow) {
          const float ww = linear_weight(ow, iw, g.in[2], g.out[2], align);
          if (ww != 0.f) r += ww * row[ow];
        }
        s += wd * wh * r;
      }
    }
    dx[t] = s;
  }
}

}  // namespace

void max_pool_forward(const PoolGeom& g, const float* x, float* y, int32_t* argmax) {
  const int64_t n = g.nc * g.out_vol();
  PW_LAUNCH(max_pool_fwd_k, n, dims_of(g), n, x, y, argmax);
}
void max_pool_backward(const PoolGeom& g, const float* dy, const int32_t* argmax, float* dx) {
  const int64_t n = g.nc * g.in_vol();
  PW_LAUNCH(max_pool_bwd_k, n, dims_of(g), n, dy, argmax, dx);
}
void avg_pool_forward(const PoolGeom& g, const float* x, float* y) {
  const int64_t n = g.nc * g.out_vol();
  PW_LAUNCH(avg_pool_fwd_k, n, dims_of(g), n, x, y);
}
void avg_pool_backward(const PoolGeom& g, const float* dy, float* dx) {
  const int64_t n = g.nc * g.in_vol();
  PW_LAUNCH(avg_pool_bwd_k, n, dims_of(g), n, dy, dx);
}
void upsample_nearest_forward(const PoolGeom& g, const float* x, float* y) {
  const int64_t n = g.nc * g.out_vol();
  PW_LAUNCH(up_nearest_fwd_k, n, dims_of(g), n, x, y);
}
void upsample_nearest_backward(const PoolGeom& g, const float* dy, float* dx) {
  const int64_t n = g.nc * g.in_vol();
  PW_LAUNCH(up_nearest_bwd_k, n, dims_of(g), n, dy, dx);
}
void upsample_linear_forward(const PoolGeom& g, bool align_corners, const float* x, float* y) {
  const int64_t n = g.nc * g.out_vol();
  PW_LAUNCH(up_linear_fwd_k, n, dims_of(g), align_corners, n, x, y);
}
void upsample_linear_backward(const PoolGeom& g, bool align_corners, const float* dy, float* dx) {
  const int64_t n = g.nc * g.in_vol();
  PW_LAUNCH(up_linear_bwd_k, n, dims_of(g), align_corners, n, dy, dx);
}

}  // namespace pw::kernels::cuda
