// Patch resampling ops: crop patches through per-patch matrices (differentiable
// with respect to the source, so a level's loss reaches the level before it), stitch patches
// back, and pre-smooth before a downsampling crop. Kernels: kernels/gather.h, kernels/scatter.h,
// kernels/smooth.h (their header comments define the conventions).
//
// Matrices: `mats` is an f32 tensor P,(d+1),(d+1) (any device; copied to the data's device), row-
// major, mapping a patch voxel index to a source voxel index, both in ARRAY AXIS ORDER: for a
// C,D,H,W source the index is (d, h, w); for C,H,W it is (h, w). (grid_sample's (x, y, z) is the
// reverse; a NIfTI index (i, j, k) is (k, j, i) here.) `patch_size` is s in the same order.
#pragma once
#include <vector>

#include "engine/autograd.h"
#include "kernels/gather.h"
#include "kernels/scatter.h"
#include "kernels/smooth.h"

namespace pw {

using kernels::Interp;
using kernels::SmoothKind;
using kernels::Window;

// Crop: src C,D,H,W (3D) or C,H,W (2D), f32 (u8/i32 read directly, then without gradient) ->
// patches P,C',s with C' = C, or C + 1 with the inside mask (1 where the sample's nearest voxel
// lies in the source) as the last channel. Outside the source the value is 0. Backward: the
// scatter-add of the incoming gradient into src with the same weights (the mask gets none).
Var gather_patches(const Var& src, const Tensor& mats, const std::vector<int64_t>& patch_size,
                   Interp mode = Interp::nearest, bool inside_mask = false);

// Nested crop C_n = R(X_{n-1}, p_n): parents Q,C,spatial (the previous level's output), patch p
// cut from parents[parent_index[p]] (parent_index: i32 tensor of P entries, in [0, Q)), its
// matrix in the parent's patch voxel coordinates. Backward scatter-adds into the parents.
Var gather_patches_nested(const Var& parents, const Tensor& parent_index, const Tensor& mats,
                          const std::vector<int64_t>& patch_size, Interp mode = Interp::nearest,
                          bool inside_mask = false);

// The central `size` voxels (array order) of every row of x N,C,spatial (f32): y[..., i] = x[..., (S - s) / 2 + i];
// every S - s must be >= 0 and even. A nested gather at an integer shift (exact), with its gradient.
Var crop_centre(const Var& x, const std::vector<int64_t>& size);

// Labels: C,spatial u8 or i32 -> P,C,s i32, always nearest, 0 outside. No gradient.
Tensor gather_labels(const Tensor& labels, const Tensor& mats, const std::vector<int64_t>& patch_size);

// The same crops written into a caller's tensor, with no gradient: `out` is P,C',s (f32 for
// gather_patches_into, i32 for gather_labels_into) on the source's device, e.g. rows of a larger batch
// (Tensor::rows); the patch size is out's spatial shape.
void gather_patches_into(const Tensor& src, const Tensor& mats, Interp mode, Tensor& out, bool inside_mask = false);
void gather_labels_into(const Tensor& labels, const Tensor& mats, Tensor& out);

// Stitching: adds patches P,C,s (f32) into acc C,spatial and weight spatial (both f32, same
// device, zero them first), with nearest or linear splatting and the window (flat, cos, cos2).
// `origin` (empty, or one entry per spatial axis, array order): acc and weight are the brick of a
// larger grid starting at that voxel, the matrices map into the larger grid; the brick receives
// bit for bit what the same voxels of the whole grid would (kernels/gather.h, PatchGeom::origin).
// Each entry must be 0 or >= 2 (so that the offset is exact).
void stitch_accumulate(const Tensor& patches, const Tensor& mats, Interp mode, Window window, Tensor& acc,
                       Tensor& weight, const std::vector<int64_t>& origin = {});
// Y = acc / sqrt(weight^2 + 3 alpha) (alpha = sparse_suppression; 0: weighted mean; 0 where
// nothing landed).
Tensor stitch_normalize(const Tensor& acc, const Tensor& weight, float alpha = 0.f);

// Pre-smoothing of a source C,spatial (f32) before a crop that undersamples it by u[a] along
// axis a (axis order; kernels::undersampling computes u from a patch matrix; 2D: u[0] ignored).
//   none: src itself
//   gaussian: sigma_a = smoothfac * u_a along the axes where u_a > 1 (no filter where u_a <= 1)
//   box / max / min: width round(u_a) along each axis
//   mixture: channels [box, max, min] (3C channels)
Tensor presmooth(const Tensor& src, SmoothKind kind, const float u[3], float smoothfac = 1.f);

}  // namespace pw
