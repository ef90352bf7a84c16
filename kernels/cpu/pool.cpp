// CPU pooling and upsampling: each (n, c) plane is independent; planes are split over the pool.
#include "kernels/pool.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <Eigen/Core>

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
  // Nearest, rows of out = 2 * in columns with source column ow / 2 for output ow (upsampling by 2).
  bool doubles_rows(const PoolGeom& g) const {
    if (g.out[2] != 2 * g.in[2] || static_cast<int64_t>(i0[2].size()) != g.out[2]) return false;
    for (int64_t o = 0; o < g.out[2]; ++o)
      if (i0[2][o] != o / 2) return false;
    return true;
  }
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

// One output row of a 2x2x2 window (KD = 2; 2D: 1x2x2, KD = 1), stride = window (the U-Nets'
// pooling), in two passes: per input column (SIMD), the first maximum over the window's 2*KD rows (m,
// and its row r); then per output, the better of its two columns, the right one only when it is larger
// or equal and from an earlier row. That is the general loop's rule (first maximum in (d, h, w) order).
// Returns false when the row holds a NaN or an infinity (the caller then runs the general rule on the
// plane). 2 * n <= kPoolCols.
constexpr int64_t kPoolCols = 512;
template <int KD>
bool max_pool_row_2x2(const float* xr, int64_t hw, int64_t w, int64_t start, int64_t n, float* y, int32_t* am) {
  using namespace Eigen::internal;
  using Packet = packet_traits<float>::type;
  constexpr int64_t kVec = sizeof(Packet) / sizeof(float);
  const float* rows[4] = {xr, xr + w, xr + hw, xr + hw + w};
  const int32_t row_off[4] = {0, int32_t(w), int32_t(hw), int32_t(hw + w)};
  alignas(64) float m[kPoolCols], r[kPoolCols];
  const int64_t cols = 2 * n;
  Packet bad = pset1<Packet>(0.0f);  // NaN once a NaN or an infinity was seen (x * 0)
  int64_t i = 0;
  for (; i + kVec <= cols; i += kVec) {
    Packet best = ploadu<Packet>(rows[0] + i), bi = pset1<Packet>(0.0f);
    bad = padd(bad, pmul(best, pset1<Packet>(0.0f)));
    for (int t = 1; t < 2 * KD; ++t) {
      const Packet c = ploadu<Packet>(rows[t] + i), take = pcmp_lt(best, c);
      best = pselect(take, c, best);
      bi = pselect(take, pset1<Packet>(float(t)), bi);
      bad = padd(bad, pmul(c, pset1<Packet>(0.0f)));
    }
    pstore(m + i, best);
    pstore(r + i, bi);
  }
  float bad_tail = 0.0f;
  for (; i < cols; ++i) {
    m[i] = rows[0][i];
    r[i] = 0.0f;
    bad_tail += m[i] * 0.0f;
    for (int t = 1; t < 2 * KD; ++t) {
      const float c = rows[t][i];
      bad_tail += c * 0.0f;
      if (c > m[i]) m[i] = c, r[i] = float(t);
    }
  }
  if (std::isnan(predux(bad) + bad_tail)) return false;
  for (int64_t o = 0; o < n; ++o) {
    const float a = m[2 * o], b = m[2 * o + 1];
    const int ra = static_cast<int>(r[2 * o]), rb = static_cast<int>(r[2 * o + 1]);
    const bool right = b > a || (b == a && rb < ra);
    y[o] = right ? b : a;
    am[o] = static_cast<int32_t>(start + 2 * o) + (right ? row_off[rb] + 1 : row_off[ra]);
  }
  return true;
}

// A whole plane by max_pool_row_2x2; false (the plane to be redone) when it holds a NaN.
template <int KD>
bool max_pool_plane_2x2(const PoolGeom& g, const float* xp, float* yp, int32_t* ap) {
  const int64_t hw = g.in[1] * g.in[2];
  for (int64_t od = 0; od < g.out[0]; ++od)
    for (int64_t oh = 0; oh < g.out[1]; ++oh) {
      const int64_t start = (KD * od * g.in[1] + 2 * oh) * g.in[2], o = (od * g.out[1] + oh) * g.out[2];
      if (!max_pool_row_2x2<KD>(xp + start, hw, g.in[2], start, g.out[2], yp + o, ap + o)) return false;
    }
  return true;
}

}  // namespace

void max_pool_forward(const PoolGeom& g, const float* x, float* y, int32_t* argmax) {
  const int64_t iv = g.in_vol(), ov = g.out_vol(), plane_hw = g.in[1] * g.in[2];
  const int depth = g.k[0] == g.stride[0] && g.k[0] <= 2 ? g.k[0] : 0;  // 0: no fast path
  const bool k2 = depth > 0 && g.k[1] == 2 && g.k[2] == 2 && g.stride[1] == 2 && g.stride[2] == 2 &&
                  2 * g.out[2] <= kPoolCols;
  for_planes(g, [&](int64_t p) {
    float* yp = y + p * ov;
    int32_t* ap = argmax + p * ov;
    const float* xp = x + p * iv;
    if (k2 && (depth == 2 ? max_pool_plane_2x2<2>(g, xp, yp, ap) : max_pool_plane_2x2<1>(g, xp, yp, ap))) return;
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
  const bool twice = t.doubles_rows(g);
  const int64_t iv = g.in_vol(), ov = g.out_vol();
  for_planes(g, [&](int64_t p) {
    const float* xp = x + p * iv;
    float* yp = y + p * ov;
    for (int64_t od = 0; od < g.out[0]; ++od)
      for (int64_t oh = 0; oh < g.out[1]; ++oh) {
        const float* src = xp + (t.i0[0][od] * g.in[1] + t.i0[1][oh]) * g.in[2];
        const int64_t* iw = t.i0[2].data();
        if (twice) {  // the same copies as below, in a loop the compiler vectorises
          for (int64_t q = 0; q < g.in[2]; ++q) yp[2 * q] = yp[2 * q + 1] = src[q];
          yp += g.out[2];
          continue;
        }
        for (int64_t ow = 0; ow < g.out[2]; ++ow) *yp++ = src[iw[ow]];
      }
  });
}

void upsample_nearest_backward(const PoolGeom& g, const float* dy, float* dx) {
  const Taps t(g, false, false);
  const bool twice = t.doubles_rows(g);
  const int64_t iv = g.in_vol(), ov = g.out_vol();
  for_planes(g, [&](int64_t p) {
    float* dxp = dx + p * iv;
    std::fill(dxp, dxp + iv, 0.0f);
    const float* dyp = dy + p * ov;
    for (int64_t od = 0; od < g.out[0]; ++od)
      for (int64_t oh = 0; oh < g.out[1]; ++oh) {
        float* dst = dxp + (t.i0[0][od] * g.in[1] + t.i0[1][oh]) * g.in[2];
        const int64_t* iw = t.i0[2].data();
        if (twice) {  // the same sums in the same order, in a loop the compiler vectorises
          for (int64_t q = 0; q < g.in[2]; ++q) dst[q] = (dst[q] + dyp[2 * q]) + dyp[2 * q + 1];
          dyp += g.out[2];
          continue;
        }
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
