// Pre-smoothing of a volume before a downsampling crop (paper: smoothfac_data / smoothfac_label).
// Raw pointers, C-order, identical API for both backends; per-voxel math in
// kernels/common/smooth_math.h. Every filter is separable and applied along the axes in the order
// W, H, D, each over a centred window; values outside the volume are left out (the Gaussian and
// the boxcar renormalise over the voxels that exist, so a constant stays constant at the border).
//
// Layout: N, C, D, H, W (2D: D = 1); `vol` = {D, H, W}; nc = N*C independent volumes.
//   gaussian: sigma[a] voxels along axis a (0: that axis is not filtered), radius ceil(3 sigma).
//   box, max, min: width[a] voxels along axis a (1: not filtered); even widths reach one voxel
//   further to the right (offsets -(w-1)/2 .. w/2).
// `tmp` is scratch of the same size as `out` (device memory for CUDA). `out` must not alias `in`.
// smoothing_width() turns a patch matrix into the per-axis undersampling factors.
#pragma once
#include <cstdint>

#include "kernels/op_list.h"

namespace pw::kernels {

// The one smoothing enum of every layer. The kernels filter with gaussian, box, max or min; the engine's
// presmooth (engine/ops_patch.h) also takes none and mixture (box, max and min as three channel groups);
// train's smoothfac_data / smoothfac_label options name none, gaussian (a number), box ("boxcar"), max and
// mixture.
enum class SmoothKind : uint8_t { none, gaussian, box, max, min, mixture };

// The undersampling of a patch along each source axis: u_a = sqrt(sum_j M[a][j]^2), the length of
// the source-axis-a row of the patch matrix (patch voxel spacing seen along that axis, 1 for an
// unscaled rotation). Written in axis order into u[3] (2D: u[0] = 1).
void undersampling(const float* mat, int ndim, float u[3]);

// The separable passes both backends run (kind: gaussian, box, max or min; std::invalid_argument otherwise): the filter code (common::kSmooth*) and the filtered axes in
// order (W first); an axis is filtered when its sigma > 0 (gaussian) or width > 1, and it has > 1 voxel.
struct SmoothPlan {
  int op = 0;
  int num_axes = 0;
  int axes[3] = {0, 0, 0};
};
SmoothPlan smooth_plan(SmoothKind kind, const int64_t vol[3], const float sigma[3], const int width[3]);

// The family's kernels: X(return type, name, (parameters)), expanded for both backends below
// (kernels/op_list.h).
#define PW_KERNELS_SMOOTH(X)                                                                                    \
  /* Filters the nc volumes of `in` into `out` along the plan's axes (smooth_plan); tmp: scratch. */            \
  X(void, smooth, (const float* in, int64_t nc, const int64_t vol[3], SmoothKind kind, const float sigma[3],    \
                   const int width[3], float* tmp, float* out))

namespace cpu {
PW_KERNELS_SMOOTH(PW_DECLARE_KERNEL)
}  // namespace cpu

#ifdef PW_HAVE_CUDA
namespace cuda {
PW_KERNELS_SMOOTH(PW_DECLARE_KERNEL)
}  // namespace cuda
#endif

}  // namespace pw::kernels
