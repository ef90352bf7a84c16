// Per-voxel math of the pre-smoothing filters (kernels/smooth.h), shared by the CPU and CUDA
// bodies: one output voxel of a 1D filter along a line of n voxels.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/exp_math.h"
#include "kernels/common/hd.h"

namespace pw::kernels::common {

enum SmoothOp : int { kSmoothGaussian = 0, kSmoothBox = 1, kSmoothMax = 2, kSmoothMin = 3 };

// Gaussian taps reach ceil(3 sigma) voxels to each side.
PW_HD inline int gaussian_radius(float sigma) { return int(ceilf(3.f * sigma)); }
PW_HD inline float gaussian_tap(int k, float sigma) {
  float t = float(k) / sigma;
  return exp_f32(-0.5f * t * t);
}
// Window offsets [-(w-1)/2, w/2] of a box/max/min filter of width w.
PW_HD inline int box_lo(int w) { return -((w - 1) / 2); }
PW_HD inline int box_hi(int w) { return w / 2; }

// Output voxel i of the filter along in[0], in[stride], ..., in[(n-1)*stride]. taps: the Gaussian
// taps for offsets -R..R (taps[k + R]); unused by the other filters. Offsets outside the line are
// left out and the Gaussian/box renormalise over the rest (so a constant stays constant).
PW_HD inline float filter_voxel(int op, const float* in, int64_t stride, int64_t n, int64_t i, const float* taps,
                                int R, int width) {
  int lo = op == kSmoothGaussian ? -R : box_lo(width);
  int hi = op == kSmoothGaussian ? R : box_hi(width);
  if (i + lo < 0) lo = int(-i);
  if (i + hi > n - 1) hi = int(n - 1 - i);
  if (op == kSmoothMax || op == kSmoothMin) {
    float m = in[(i + lo) * stride];
    for (int k = lo + 1; k <= hi; ++k) {
      float v = in[(i + k) * stride];
      m = op == kSmoothMax ? (v > m ? v : m) : (v < m ? v : m);
    }
    return m;
  }
  float acc = 0.f, wsum = 0.f;
  for (int k = lo; k <= hi; ++k) {
    float w = op == kSmoothGaussian ? taps[k + R] : 1.f;
    acc = fmaf(w, in[(i + k) * stride], acc);
    wsum += w;
  }
  return acc / wsum;
}

}  // namespace pw::kernels::common
