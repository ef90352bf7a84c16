// Affine patch scatter ("stitch"): accumulates P patches into a target volume and a weight
// volume, the inverse direction of kernels/gather.h (same PatchGeom, same matrices: patch voxel
// index -> target voxel index, array axis order), then normalises.
//
//   acc[q, c, v] += sum_{p with parent q, x}  w(x) * k(v, M_p x) * patches[p, c, x]
//   weight[q, v] += sum_{p with parent q, x}  w(x) * k(v, M_p x)
// k: nearest (the rounded voxel gets 1) or linear splatting (the 2^d neighbours get the
// (bi/tri)linear weights; neighbours outside the target are dropped). w: the window
// (patch_math.h: flat, cos = prod_a sin(pi x_a/(s_a-1)), cos2 = its square root).
// Then Y = acc / sqrt(weight^2 + 3 alpha) (alpha = sparse_suppression; 0: weighted mean).
//
// CPU: no atomics. Threads own disjoint slabs of the target along its slowest non-trivial axis
// (D in 3D, H in 2D) and each thread splats only the patch voxels that land in its slab, skipping
// patches and rows whose extent misses it. CUDA: one thread per patch voxel, atomicAdd.
#pragma once
#include <cstdint>

#include "kernels/op_list.h"

#include "kernels/gather.h"

namespace pw::kernels {

enum class Window : uint8_t { flat, cos, cos2 };

// The family's kernels: X(return type, name, (parameters)), expanded for both backends below
// (kernels/op_list.h).
#define PW_KERNELS_SCATTER(X)                                                                                   \
  /* Adds into acc (Q, C, vol) and, when weight != nullptr, into weight (Q, vol). */                            \
  X(void, scatter_affine, (const float* patches, const PatchGeom& g, const float* mats, const int32_t* parent,  \
                           Interp mode, Window window, float* acc, float* weight))                              \
  /* out[c, v] = acc[c, v] / sqrt(weight[v]^2 + 3 alpha) (0 where that is 0), for `channels` */                 \
  /* channels of n voxels each (out may alias acc). */                                                          \
  X(void, stitch_normalize,                                                                                     \
    (const float* acc, const float* weight, int64_t channels, int64_t n, float alpha, float* out))

namespace cpu {
PW_KERNELS_SCATTER(PW_DECLARE_KERNEL)
}  // namespace cpu

#ifdef PW_HAVE_CUDA
namespace cuda {
PW_KERNELS_SCATTER(PW_DECLARE_KERNEL)
}  // namespace cuda
#endif

}  // namespace pw::kernels
