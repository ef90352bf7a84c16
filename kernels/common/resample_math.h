// Per-voxel index math of upsampling, shared by the CPU and CUDA bodies (kernels/pool.h).
#pragma once
#include <cstdint>

#include "kernels/common/hd.h"

namespace pw::kernels {

// Nearest upsampling along one axis: src = floor(dst * in / out).
PW_HD inline int64_t nearest_source(int64_t dst, int64_t in, int64_t out) { return dst * in / out; }

// Linear interpolation along one axis: y[dst] = (1 - frac) * x[i0] + frac * x[i1].
struct LinearTap {
  int64_t i0, i1;
  float frac;
};

// align_corners false: src = (dst + 0.5) * in/out - 0.5, clamped at 0;
// align_corners true:  src = dst * (in - 1)/(out - 1), and 0 when out == 1.
PW_HD inline LinearTap linear_source(int64_t dst, int64_t in, int64_t out, bool align_corners) {
  float src;
  if (align_corners) {
    float scale = out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
    src = scale * static_cast<float>(dst);
  } else {
    float scale = static_cast<float>(in) / static_cast<float>(out);
    src = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
  }
  LinearTap t;
  t.i0 = static_cast<int64_t>(src);
  if (t.i0 > in - 1) t.i0 = in - 1;
  t.i1 = t.i0 < in - 1 ? t.i0 + 1 : t.i0;
  t.frac = src - static_cast<float>(t.i0);
  return t;
}

}  // namespace pw::kernels
