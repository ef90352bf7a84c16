// CUDA bodies of kernels/scatter.h (and the splatting behind gather_affine_backward): one thread
// per patch voxel, atomicAdd into the target and weight volumes. Per-voxel math from
// kernels/common/patch_math.h, the same as the CPU's (only the order of the additions differs).
#include <stdexcept>

#include "kernels/common/patch_math.h"
#include "kernels/cuda/context.h"
#include "kernels/scatter.h"

namespace pw::kernels::cuda {

void scatter_affine_impl(const float* patches, int64_t patch_channels, const PatchGeom& g, const float* mats,
                         const int32_t* parent, Interp mode, int window, float* acc, float* weight);

namespace {

using common::PatchMatrix;

template <bool kLinear, int ND>
__global__ void scatter_kernel(const float* __restrict__ patches, int64_t PC, PatchGeom g,
                               const float* __restrict__ mats, const int32_t* __restrict__ parent, int window,
                               float* acc, float* weight) {
  const int64_t s0 = g.patch[0], s1 = g.patch[1], s2 = g.patch[2];
  const int64_t n0 = g.vol[0], n1 = g.vol[1], n2 = g.vol[2];
  const int64_t PN = s0 * s1 * s2, V = n0 * n1 * n2, C = g.channels;
  const int64_t total = g.num_patches * PN;
  PW_CUDA_LOOP(t, total) {
    const int64_t p = t / PN, v = t % PN;
    const int64_t x2 = v % s2, x1 = (v / s2) % s1, x0 = v / (s1 * s2);
    const float w = (common::window_axis(window, x0, s0) * common::window_axis(window, x1, s1)) *
                    common::window_axis(window, x2, s2);
    if (w == 0.f) continue;
    const PatchMatrix M = common::load_patch_matrix(mats + p * (g.ndim + 1) * (g.ndim + 1), g.ndim);
    // Coordinates relative to the target's origin (a brick of a larger grid; exact, see kernels/gather.h).
    const float z = common::coord(common::row_start(M, 0, float(x0), float(x1)), float(x2), M.m[0][2]) - float(g.origin[0]);
    const float y = common::coord(common::row_start(M, 1, float(x0), float(x1)), float(x2), M.m[1][2]) - float(g.origin[1]);
    const float x = common::coord(common::row_start(M, 2, float(x0), float(x1)), float(x2), M.m[2][2]) - float(g.origin[2]);
    const int64_t q = parent ? int64_t(parent[p]) : 0;
    float* accq = acc + q * C * V;
    float* wq = weight ? weight + q * V : nullptr;
    const float* pv = patches + p * PC * PN + v;
    if (!kLinear) {
      bool inz, iny, inx;
      const int64_t iz = common::nearest_axis(z, n0, inz), iy = common::nearest_axis(y, n1, iny),
                    ix = common::nearest_axis(x, n2, inx);
      if (!(inz & iny & inx)) continue;
      const int64_t id = (iz * n1 + iy) * n2 + ix;
      for (int64_t c = 0; c < C; ++c) atomicAdd(accq + c * V + id, w * pv[c * PN]);
      if (wq) atomicAdd(wq + id, w);
    } else {
      common::LinearAxis az = common::linear_axis(z, n0);
      const common::LinearAxis ay = common::linear_axis(y, n1), ax = common::linear_axis(x, n2);
      if (ND == 2) az = {0, 0, 1.f, 0.f};
      for (int a = 0; a < 2; ++a) {
        const int64_t iz = a ? az.i1 : az.i0;
        const float wz = a ? az.w1 : az.w0;
        if (wz == 0.f) continue;
        for (int b = 0; b < 2; ++b) {
          const int64_t iy = b ? ay.i1 : ay.i0;
          const float wy = b ? ay.w1 : ay.w0;
          if (wy == 0.f) continue;
          for (int d = 0; d < 2; ++d) {
            const float kw = (wz * wy) * (d ? ax.w1 : ax.w0);
            if (kw == 0.f) continue;
            const float wk = w * kw;
            const int64_t id = (iz * n1 + iy) * n2 + (d ? ax.i1 : ax.i0);
            for (int64_t c = 0; c < C; ++c) atomicAdd(accq + c * V + id, wk * pv[c * PN]);
            if (wq) atomicAdd(wq + id, wk);
          }
        }
      }
    }
  }
}

__global__ void normalize_kernel(const float* acc, const float* weight, int64_t channels, int64_t n, float alpha,
                                 float* out) {
  PW_CUDA_LOOP(t, channels * n)
    out[t] = common::stitch_normalize(acc[t], weight[t % n], alpha);
}

}  // namespace

void scatter_affine_impl(const float* patches, int64_t patch_channels, const PatchGeom& g, const float* mats,
                         const int32_t* parent, Interp mode, int window, float* acc, float* weight) {
  if (g.ndim != 2 && g.ndim != 3) throw std::invalid_argument("scatter_affine: ndim must be 2 or 3");
  const int64_t total = g.num_patches * g.patch[0] * g.patch[1] * g.patch[2];
  if (total == 0) return;
  const unsigned blocks = grid_for(total);
  const bool lin = mode == Interp::linear;
  if (g.ndim == 3 && lin)
    scatter_kernel<true, 3><<<blocks, kBlock, 0, stream()>>>(patches, patch_channels, g, mats, parent, window, acc, weight);
  else if (g.ndim == 3)
    scatter_kernel<false, 3><<<blocks, kBlock, 0, stream()>>>(patches, patch_channels, g, mats, parent, window, acc, weight);
  else if (lin)
    scatter_kernel<true, 2><<<blocks, kBlock, 0, stream()>>>(patches, patch_channels, g, mats, parent, window, acc, weight);
  else
    scatter_kernel<false, 2><<<blocks, kBlock, 0, stream()>>>(patches, patch_channels, g, mats, parent, window, acc, weight);
  PW_CUDA_CHECK(cudaGetLastError());
}

void scatter_affine(const float* patches, const PatchGeom& g, const float* mats, const int32_t* parent,
                    Interp mode, Window window, float* acc, float* weight) {
  const int w = window == Window::cos ? common::kWindowCos
                : window == Window::cos2 ? common::kWindowCos2 : common::kWindowFlat;
  scatter_affine_impl(patches, g.channels, g, mats, parent, mode, w, acc, weight);
}

void stitch_normalize(const float* acc, const float* weight, int64_t channels, int64_t n, float alpha, float* out) {
  if (channels * n == 0) return;
  normalize_kernel<<<grid_for(channels * n), kBlock, 0, stream()>>>(acc, weight, channels, n, alpha, out);
  PW_CUDA_CHECK(cudaGetLastError());
}

}  // namespace pw::kernels::cuda
