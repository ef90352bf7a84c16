// CPU pooling and upsampling: each (n, c) plane is independent; planes are split over the pool.
#include "kernels/pool.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/resample_math.h"
#include "kernels/parallel.h"

namespace pw::kernels::cpu {
namespace {

// Runs plane(p) for p in [0, g.nc) on the pool, chunks of at least ~64k output voxels.
template <class F>
void for_planes(const PoolGeom& g, const F& plane) {
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, g.out_vol()));
  parallel_for(
      g.nc,
      [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e; ++p) plane(p);
      },
      grain);
}

// Calls fn(out_index, window_start_in_index) for every output voxel of a pooling plane.
template <class F>
inline void for_windows(const PoolGeom& g, const F& fn) {
  int64_t o = 0;
  for (int64_t od = 0; od < g.out[0]; ++od)
    for (int64_t oh = 0; oh < g.out[1]; ++oh)
      for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o)
        fn(o, ((od * g.stride[0]) * g.in[1] + oh * g.stride[1]) * g.in[2] + ow * g.stride[2]);
}

// Per-axis taps of an upsampling, computed once per call.
struct Taps {
  std::vector<int64_t> i0[3], i1[3];
  std::vector<float> frac[3];
  Taps(const PoolGeom& g, bool linear, bool align_corners) {
    for (int a = 0; a < 3; ++a) {
      for (int64_t o = 0; o < g.out[a]; ++o) {
        if (linear) {
          LinearTap t = linear_source(o, g.in[a], g.out[a], align_corners);
          i0[a].push_back(t.i0);
          i1[a].push_back(t.i1);
          frac[a].push_back(t.frac);
        } else {
          i0[a].push_back(nearest_source(o, g.in[a], g.out[a]));
        }
      }
    }
  }
};

}  // namespace

void max_pool_forward(const PoolGeom& g, const float* x, float* y, int32_t* argmax) {
  const int64_t iv = g.in_vol(), ov = g.out_vol(), plane_hw = g.in[1] * g.in[2];
  for_planes(g, [&](int64_t p) {
    const float* xp = x + p * iv;
    float* yp = y + p * ov;
    int32_t* ap = argmax + p * ov;
    for_windows(g, [&](int64_t o, int64_t start) {
      // A select per tap, no branch on the data (those mispredict half the time on activations); the
      // NaN rule below runs only for windows that hold a NaN, and gives the same result for the others.
      int64_t best_i = start;
      float best = xp[start];
      bool has_nan = false;
      for (int kd = 0; kd < g.k[0]; ++kd)
        for (int kh = 0; kh < g.k[1]; ++kh) {
          const int64_t row = start + kd * plane_hw + kh * g.in[2];
          for (int kw = 0; kw < g.k[2]; ++kw) {
            const float v = xp[row + kw];
            const bool take = v > best;
            best = take ? v : best;
            best_i = take ? row + kw : best_i;
            has_nan |= v != v;
          }
        }
      if (has_nan) {
        best_i = start;
        best = xp[start];
        for (int kd = 0; kd < g.k[0]; ++kd)
          for (int kh = 0; kh < g.k[1]; ++kh) {
            const int64_t row = start + kd * plane_hw + kh * g.in[2];
            for (int kw = 0; kw < g.k[2]; ++kw) {
              float v = xp[row + kw];
              if (v > best || std::isnan(v)) {  // NaN propagates, like PyTorch
                best = v;
                best_i = row + kw;
                if (std::isnan(v)) break;
              }
            }
          }
      }
      yp[o] = best;
      ap[o] = static_cast<int32_t>(best_i);
    });
  });
}

void max_pool_backward(const PoolGeom& g, const float* dy, const int32_t* argmax, float* dx) {
  const int64_t iv = g.in_vol(), ov = g.out_vol();
  for_planes(g, [&](int64_t p) {
    float* dxp = dx + p * iv;
    std::fill(dxp, dxp + iv, 0.0f);
    const float* dyp = dy + p * ov;
    const int32_t* ap = argmax + p * ov;
    for (int64_t o = 0; o < ov; ++o) dxp[ap[o]] += dyp[o];
  });
}

void avg_pool_forward(const PoolGeom& g, const float* x, float* y) {
  const int64_t iv = g.in_vol(), ov = g.out_vol(), plane_hw = g.in[1] * g.in[2];
  const float inv = 1.0f / static_cast<float>(g.k[0] * g.k[1] * g.k[2]);
  for_planes(g, [&](int64_t p) {
    const float* xp = x + p * iv;
    float* yp = y + p * ov;
    for_windows(g, [&](int64_t o, int64_t start) {
      float s = 0.0f;
      for (int kd = 0; kd < g.k[0]; ++kd)
        for (int kh = 0; kh < g.k[1]; ++kh) {
          const float* row = xp + start + kd * plane_hw + kh * g.in[2];
          for (int kw = 0; kw < g.k[2]; ++kw) s += row[kw];
        }
      yp[o] = s * inv;
    });
  });
}

void avg_pool_backward(const PoolGeom& g, const float* dy, float* dx) {
  const int64_t iv = g.in_vol(), ov = g.out_vol(), plane_hw = g.in[1] * g.in[2];
  const float inv = 1.0f / static_cast<float>(g.k[0] * g.k[1] * g.k[2]);
  for_planes(g, [&](int64_t p) {
    float* dxp = dx + p * iv;
    std::fill(dxp, dxp + iv, 0.0f);
    const float* dyp = dy + p * ov;
    for_windows(g, [&](int64_t o, int64_t start) {
      const float v = dyp[o] * inv;
      for (int kd = 0; kd < g.k[0]; ++kd)
        for (int kh = 0; kh < g.k[1]; ++kh) {
          float* row = dxp + start + kd * plane_hw + kh * g.in[2];
          for (int kw = 0; kw < g.k[2]; ++kw) row[kw] += v;
        }
    });
  });
}

void upsample_nearest_forward(const PoolGeom& g, const float* x, float* y) {
  const Taps t(g, false, false);
  const int64_t iv = g.in_vol(), ov = g.out_vol();
  for_planes(g, [&](int64_t p) {
    const float* xp = x + p * iv;
    float* yp = y + p * ov;
    for (int64_t od = 0; od < g.out[0]; ++od)
      for (int64_t oh = 0; oh < g.out[1]; ++oh) {
        const float* src = xp + (t.i0[0][od] * g.in[1] + t.i0[1][oh]) * g.in[2];
        const int64_t* iw = t.i0[2].data();
        for (int64_t ow = 0; ow < g.out[2]; ++ow) *yp++ = src[iw[ow]];
      }
  });
}

void upsample_nearest_backward(const PoolGeom& g, const float* dy, float* dx) {
  const Taps t(g, false, false);
  const int64_t iv = g.in_vol(), ov = g.out_vol();
  for_planes(g, [&](int64_t p) {
    float* dxp = dx + p * iv;
    std::fill(dxp, dxp + iv, 0.0f);
    const float* dyp = dy + p * ov;
    for (int64_t od = 0; od < g.out[0]; ++od)
      for (int64_t oh = 0; oh < g.out[1]; ++oh) {
        float* dst = dxp + (t.i0[0][od] * g.in[1] + t.i0[1][oh]) * g.in[2];
        const int64_t* iw = t.i0[2].data();
        for (int64_t ow = 0; ow < g.out[2]; ++ow) dst[iw[ow]] += *dyp++;
      }
  });
}

void upsample_linear_forward(const PoolGeom& g, bool align_corners, const float* x, float* y) {
  const Taps t(g, true, align_corners);
  const int64_t iv = g.in_vol(), ov = g.out_vol(), W = g.in[2], HW = g.in[1] * g.in[2];
  for_planes(g, [&](int64_t p) {
    const float* xp = x + p * iv;
    float* yp = y + p * ov;
    for (int64_t od = 0; od < g.out[0]; ++od) {
      const float fd = t.frac[0][od];
      const float* d0 = xp + t.i0[0][od] * HW;
      const float* d1 = xp + t.i1[0][od] * HW;
      for (int64_t oh = 0; oh < g.out[1]; ++oh) {
        const float fh = t.frac[1][oh];
        const int64_t h0 = t.i0[1][oh] * W, h1 = t.i1[1][oh] * W;
        for (int64_t ow = 0; ow < g.out[2]; ++ow) {
          const float fw = t.frac[2][ow];
          const int64_t w0 = t.i0[2][ow], w1 = t.i1[2][ow];
          auto lerp_w = [&](const float* r) { return (1.0f - fw) * r[w0] + fw * r[w1]; };
          const float a = (1.0f - fh) * lerp_w(d0 + h0) + fh * lerp_w(d0 + h1);
          const float b = (1.0f - fh) * lerp_w(d1 + h0) + fh * lerp_w(d1 + h1);
          *yp++ = (1.0f - fd) * a + fd * b;
        }
      }
    }
  });
}

void upsample_linear_backward(const PoolGeom& g, bool align_corners, const float* dy, float* dx) {
  const Taps t(g, true, align_corners);
  const int64_t iv = g.in_vol(), ov = g.out_vol(), W = g.in[2], HW = g.in[1] * g.in[2];
  for_planes(g, [&](int64_t p) {
    float* dxp = dx + p * iv;
    std::fill(dxp, dxp + iv, 0.0f);
    const float* dyp = dy + p * ov;
    for (int64_t od = 0; od < g.out[0]; ++od) {
      const float fd = t.frac[0][od];
      float* d0 = dxp + t.i0[0][od] * HW;
      float* d1 = dxp + t.i1[0][od] * HW;
      for (int64_t oh = 0; oh < g.out[1]; ++oh) {
        const float fh = t.frac[1][oh];
        const int64_t h0 = t.i0[1][oh] * W, h1 = t.i1[1][oh] * W;
        for (int64_t ow = 0; ow < g.out[2]; ++ow) {
          const float fw = t.frac[2][ow], v = *dyp++;
          const int64_t w0 = t.i0[2][ow], w1 = t.i1[2][ow];
          auto add_w = [&](float* r, float s) {
            r[w0] += s * (1.0f - fw);
            r[w1] += s * fw;
          };
          add_w(d0 + h0, v * (1.0f - fd) * (1.0f - fh));
          add_w(d0 + h1, v * (1.0f - fd) * fh);
          add_w(d1 + h0, v * fd * (1.0f - fh));
          add_w(d1 + h1, v * fd * fh);
        }
      }
    }
  });
}

}  // namespace pw::kernels::cpu
