// Affine patch gather ("crop"): resamples P patches out of a source volume (or, nested, out of
// their own parent patch in a batch of parents) through per-patch matrices. Raw pointers, C-order,
// identical API for the CPU and CUDA backends. Per-voxel math: kernels/common/patch_math.h.
//
// Layouts
//   source   Q, C, D, H, W  (Q = num_vols: 1 for a plain gather, the parent count for a nested one;
//                            2D: D = 1)
//   patches  P, C', s0, s1, s2  (C' = C, or C + 1 with the inside mask as the last channel)
//   matrices P, (d+1), (d+1) row-major float: patch voxel index -> source voxel index, both in
//            ARRAY AXIS ORDER (component 0 = D, 1 = H, 2 = W; 2D: (H, W)). See patch_math.h for how
//            this relates to grid_sample's (x, y, z) and to NIfTI's (i, j, k).
//   parent   P int32 (source index q of each patch), or nullptr: every patch reads source 0.
//
// Sampling: nearest (round half to even) or (bi/tri)linear; outside the source the value is 0
// (linear: outside neighbours contribute 0, weights not renormalised). Inside mask: 1 where the
// sample point's nearest voxel lies in the source, else 0. Integer sources are read as they are
// (no conversion pass) and produce float patches; integer LABELS go through gather_affine_labels,
// which is always nearest.
// Threading: CPU over patch rows; CUDA one thread per patch voxel. All kernels OVERWRITE `out`,
// except the backward, which ADDS into grad_src.
#pragma once
#include <cstdint>

#include "kernels/op_list.h"

namespace pw::kernels {

enum class Interp : uint8_t { nearest, linear };

struct PatchGeom {
  int ndim = 3;                         // spatial dims: 2 or 3
  int64_t channels = 1;                 // C
  int64_t num_vols = 1;                 // Q: volumes (parents) in the source batch
  int64_t vol[3] = {1, 1, 1};           // source (gather) / target (scatter) size, axis order; 2D: vol[0] = 1
  int64_t num_patches = 0;              // P
  int64_t patch[3] = {1, 1, 1};         // patch size s, axis order; 2D: patch[0] = 1
  // Scatter only (kernels/scatter.h; gathers require 0): the target's first voxel in the matrices'
  // coordinates, when the target is a brick of a larger grid. Every computed coordinate has the
  // origin subtracted after the matrix product. With every entry 0 or >= 2, that subtraction is exact
  // for every coordinate within a voxel of the brick (x > o - 1 >= 1: x - o is a multiple of x's ulp
  // below 2^24 of them), so a brick receives exactly the contributions, in the same order, that the
  // whole grid would. (An origin of 1 is not exact for coordinates below 0.5.)
  int64_t origin[3] = {0, 0, 0};

  int64_t vol_numel() const { return vol[0] * vol[1] * vol[2]; }
  int64_t patch_numel() const { return patch[0] * patch[1] * patch[2]; }
};

// The family's kernels: X(return type, name, (parameters)), expanded for both backends below
// (kernels/op_list.h).
#define PW_KERNELS_GATHER(X)                                                                                            \
  /* One entry per source type (overloads); integer sources produce float patches. */                                   \
  X(void, gather_affine, (const float* src, const PatchGeom& g, const float* mats, const int32_t* parent,               \
                          Interp mode, bool inside_mask, float* out))                                                   \
  X(void, gather_affine, (const uint8_t* src, const PatchGeom& g, const float* mats, const int32_t* parent,             \
                          Interp mode, bool inside_mask, float* out))                                                   \
  X(void, gather_affine, (const int16_t* src, const PatchGeom& g, const float* mats, const int32_t* parent,             \
                          Interp mode, bool inside_mask, float* out))                                                   \
  X(void, gather_affine, (const int32_t* src, const PatchGeom& g, const float* mats, const int32_t* parent,             \
                          Interp mode, bool inside_mask, float* out))                                                   \
  /* Label maps: nearest only, int32 patches, 0 outside. */                                                             \
  X(void, gather_affine_labels, (const uint8_t* src, const PatchGeom& g, const float* mats, const int32_t* parent,      \
                                 int32_t* out))                                                                         \
  X(void, gather_affine_labels, (const int16_t* src, const PatchGeom& g, const float* mats, const int32_t* parent,      \
                                 int32_t* out))                                                                         \
  X(void, gather_affine_labels, (const int32_t* src, const PatchGeom& g, const float* mats, const int32_t* parent,      \
                                 int32_t* out))                                                                         \
  /* The adjoint of gather_affine (float source): grad_src[q] += scatter of grad_out with the same */                   \
  /* sampling weights. grad_out has C + 1 channels when inside_mask (the mask channel is ignored). */                   \
  /* CPU: no atomics (threads own disjoint slabs of the source); CUDA: atomicAdd into grad_src. */                      \
  X(void, gather_affine_backward, (const float* grad_out, const PatchGeom& g, const float* mats, const int32_t* parent, \
                                   Interp mode, bool inside_mask, float* grad_src))

namespace cpu {
PW_KERNELS_GATHER(PW_DECLARE_KERNEL)
}  // namespace cpu

#ifdef PW_HAVE_CUDA
namespace cuda {
PW_KERNELS_GATHER(PW_DECLARE_KERNEL)
}  // namespace cuda
#endif

}  // namespace pw::kernels
