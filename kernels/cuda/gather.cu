// CUDA bodies of kernels/gather.h: one thread per patch voxel, the per-voxel math of
// kernels/common/patch_math.h (so nearest results equal the CPU's bit for bit). Pointers are device
// pointers (matrices and parent indices too); parent indices are validated by the engine op.
#include <stdexcept>

#include "kernels/common/patch_math.h"
#include "kernels/cuda/context.h"
#include "kernels/gather.h"

namespace pw::kernels::cuda {

// In scatter.cu: the splatting shared by gather_affine_backward and scatter_affine.
void scatter_affine_impl(const float* patches, int64_t patch_channels, const PatchGeom& g, const float* mats,
                         const int32_t* parent, Interp mode, int window, float* acc, float* weight);

namespace {

using common::PatchMatrix;

template <class T, class O, bool kLinear, int ND>
__global__ void gather_kernel(const T* __restrict__ src, PatchGeom g, const float* __restrict__ mats,
                              const int32_t* __restrict__ parent, bool inside_mask, O* __restrict__ out) {
  const int64_t s1 = g.patch[1], s2 = g.patch[2];
  const int64_t n0 = g.vol[0], n1 = g.vol[1], n2 = g.vol[2];
  const int64_t PN = g.patch[0] * s1 * s2, V = n0 * n1 * n2, C = g.channels;
  const int64_t Cout = C + (inside_mask ? 1 : 0);
  const int64_t total = g.num_patches * PN;
  PW_CUDA_LOOP(t, total) {
    const int64_t p = t / PN, v = t % PN;
    const int64_t x2 = v % s2, x1 = (v / s2) % s1, x0 = v / (s1 * s2);
    const PatchMatrix M = common::load_patch_matrix(mats + p * (g.ndim + 1) * (g.ndim + 1), g.ndim);
    const float z = common::coord(common::row_start(M, 0, float(x0), float(x1)), float(x2), M.m[0][2]);
    const float y = common::coord(common::row_start(M, 1, float(x0), float(x1)), float(x2), M.m[1][2]);
    const float x = common::coord(common::row_start(M, 2, float(x0), float(x1)), float(x2), M.m[2][2]);
    const T* sq = src + (parent ? int64_t(parent[p]) : 0) * C * V;
    O* op = out + p * Cout * PN + v;
    bool inz, iny, inx;
    const int64_t nz = common::nearest_axis(z, n0, inz), ny = common::nearest_axis(y, n1, iny),
                  nx = common::nearest_axis(x, n2, inx);
    const bool inside = inz & iny & inx;
    if (!kLinear) {
      const int64_t id = (nz * n1 + ny) * n2 + nx;
      for (int64_t c = 0; c < C; ++c) op[c * PN] = inside ? O(sq[c * V + id]) : O(0);
    } else {
      common::LinearAxis az = common::linear_axis(z, n0);
      const common::LinearAxis ay = common::linear_axis(y, n1), ax = common::linear_axis(x, n2);
      if (ND == 2) az = {0, 0, 1.f, 0.f};
      const int64_t r00 = (az.i0 * n1 + ay.i0) * n2, r01 = (az.i0 * n1 + ay.i1) * n2;
      const int64_t r10 = (az.i1 * n1 + ay.i0) * n2, r11 = (az.i1 * n1 + ay.i1) * n2;
      for (int64_t c = 0; c < C; ++c) {
        const T* sc = sq + c * V;
        if (ND == 3) {
          const float vv[8] = {float(sc[r00 + ax.i0]), float(sc[r00 + ax.i1]), float(sc[r01 + ax.i0]),
                               float(sc[r01 + ax.i1]), float(sc[r10 + ax.i0]), float(sc[r10 + ax.i1]),
                               float(sc[r11 + ax.i0]), float(sc[r11 + ax.i1])};
          op[c * PN] = O(common::trilinear(vv, az.w0, az.w1, ay.w0, ay.w1, ax.w0, ax.w1));
        } else {
          const float vv[4] = {float(sc[r00 + ax.i0]), float(sc[r00 + ax.i1]), float(sc[r01 + ax.i0]),
                               float(sc[r01 + ax.i1])};
          op[c * PN] = O(common::bilinear(vv, ay.w0, ay.w1, ax.w0, ax.w1));
        }
      }
    }
    if (inside_mask) op[C * PN] = inside ? O(1) : O(0);
  }
}

template <class T, class O, bool kLinear, int ND>
void launch(const T* src, const PatchGeom& g, const float* mats, const int32_t* parent, bool inside_mask, O* out) {
  const int64_t total = g.num_patches * g.patch[0] * g.patch[1] * g.patch[2];
  gather_kernel<T, O, kLinear, ND><<<grid_for(total), kBlock, 0, stream()>>>(src, g, mats, parent, inside_mask, out);
  PW_CUDA_CHECK(cudaGetLastError());
}

template <class T, class O>
void gather_any(const T* src, const PatchGeom& g, const float* mats, const int32_t* parent, Interp mode,
                bool inside_mask, O* out) {
  if (g.ndim != 2 && g.ndim != 3) throw std::invalid_argument("gather_affine: ndim must be 2 or 3");
  if (g.num_patches == 0) return;
  const bool lin = mode == Interp::linear;
  if (g.ndim == 3) {
    if (lin) launch<T, O, true, 3>(src, g, mats, parent, inside_mask, out);
    else launch<T, O, false, 3>(src, g, mats, parent, inside_mask, out);
  } else {
    if (lin) launch<T, O, true, 2>(src, g, mats, parent, inside_mask, out);
    else launch<T, O, false, 2>(src, g, mats, parent, inside_mask, out);
  }
}

}  // namespace

void gather_affine(const float* src, const PatchGeom& g, const float* mats, const int32_t* parent, Interp mode,
                   bool inside_mask, float* out) {
  gather_any(src, g, mats, parent, mode, inside_mask, out);
}
void gather_affine(const uint8_t* src, const PatchGeom& g, const float* mats, const int32_t* parent, Interp mode,
                   bool inside_mask, float* out) {
  gather_any(src, g, mats, parent, mode, inside_mask, out);
}
void gather_affine(const int16_t* src, const PatchGeom& g, const float* mats, const int32_t* parent, Interp mode,
                   bool inside_mask, float* out) {
  gather_any(src, g, mats, parent, mode, inside_mask, out);
}
void gather_affine(const int32_t* src, const PatchGeom& g, const float* mats, const int32_t* parent, Interp mode,
                   bool inside_mask, float* out) {
  gather_any(src, g, mats, parent, mode, inside_mask, out);
}
void gather_affine_labels(const uint8_t* src, const PatchGeom& g, const float* mats, const int32_t* parent,
                          int32_t* out) {
  gather_any(src, g, mats, parent, Interp::nearest, false, out);
}
void gather_affine_labels(const int16_t* src, const PatchGeom& g, const float* mats, const int32_t* parent,
                          int32_t* out) {
  gather_any(src, g, mats, parent, Interp::nearest, false, out);
}
void gather_affine_labels(const int32_t* src, const PatchGeom& g, const float* mats, const int32_t* parent,
                          int32_t* out) {
  gather_any(src, g, mats, parent, Interp::nearest, false, out);
}

void gather_affine_backward(const float* grad_out, const PatchGeom& g, const float* mats, const int32_t* parent,
                            Interp mode, bool inside_mask, float* grad_src) {
  scatter_affine_impl(grad_out, g.channels + (inside_mask ? 1 : 0), g, mats, parent, mode, common::kWindowFlat,
                      grad_src, nullptr);
}

}  // namespace pw::kernels::cuda
