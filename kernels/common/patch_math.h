// Per-voxel math of the affine patch kernels (gather = crop, scatter = stitch), shared by the CPU
// and CUDA bodies so that both evaluate exactly the same arithmetic.
//
// Index convention (read this once): a voxel index is written in ARRAY AXIS ORDER. For a 3D
// volume stored C-order as (D, H, W), index component 0 is the D axis (slowest), 1 is H, 2 is W
// (fastest). A 2D image (H, W) is handled as D = 1: component 0 is always 0 and the 2D matrix
// acts on components (1, 2) = (H, W).
//   - grid_sample's normalised (x, y, z) is (W, H, D): the REVERSE of this order.
//   - A NIfTI voxel index (i, j, k) (i fastest on disk) is (k, j, i) here, because NIfTI bytes read
//     as a C-order array have shape (K, J, I).
// A patch matrix M ((d+1)x(d+1), row-major, last row 0..0 1) maps a patch voxel index x to a source
// voxel index:  src = M[:d,:d] x + M[:d,d], both in this axis order. Voxel centres sit at integer
// indices (the first voxel's centre is 0, the last one's n-1).
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/hd.h"

namespace pw::kernels::common {

// A patch matrix in the internal 3D form: row r gives source component r as
// m[r][0]*x0 + m[r][1]*x1 + m[r][2]*x2 + m[r][3].
struct PatchMatrix {
  float m[3][4];
};

// Reads the (ndim+1)x(ndim+1) row-major matrix `a` (ndim 2 or 3) into the 3D form. For 2D, row 0
// and column 0 are zero, so component 0 (the unit D axis) is exactly 0 for every voxel.
PW_HD inline PatchMatrix load_patch_matrix(const float* a, int ndim) {
  PatchMatrix M;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) M.m[r][c] = 0.f;
  if (ndim == 3) {
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) M.m[r][c] = a[r * 4 + c];
  } else {
    for (int r = 0; r < 2; ++r) {
      M.m[r + 1][1] = a[r * 3 + 0];
      M.m[r + 1][2] = a[r * 3 + 1];
      M.m[r + 1][3] = a[r * 3 + 2];
    }
  }
  return M;
}

// Source coordinate r at the start (x2 = 0) of the patch row (x0, x1).
PW_HD inline float row_start(const PatchMatrix& M, int r, float x0, float x1) {
  return fmaf(x1, M.m[r][1], fmaf(x0, M.m[r][0], M.m[r][3]));
}

// Source coordinate r of voxel x2 in a row that starts at `start`: one FMA per component and
// voxel (the column step without the rounding drift of repeated additions). Every backend
// evaluates a voxel's coordinate as coord(row_start(...), x2, m[r][2]), so all agree bit for bit.
PW_HD inline float coord(float start, float x2, float step) { return fmaf(x2, step, start); }

// x clamped into [lo, hi], NaN -> lo. Plain compares (fminf/fmaxf are library calls on the CPU
// unless -ffast-math).
PW_HD inline float clamp_nan_lo(float x, float lo, float hi) {
  x = x >= lo ? x : lo;
  return x <= hi ? x : hi;
}
PW_HD inline float min2(float a, float b) { return a < b ? a : b; }
PW_HD inline float max2(float a, float b) { return a > b ? a : b; }

// The one nearest-neighbour rounding of every backend: half up, floor(x + 0.5). (grid_sample rounds
// half to even; that differs only exactly at .5.) Half up maps a row of voxels lying exactly half-way
// between grid voxels -- a patch offset by half a voxel, as tree tiling of an odd-sized axis gives --
// one to one onto the grid; half to even sends pairs to the same even voxel and leaves every other
// slice of a nearest stitch empty. Where x >= -0.5 is known, int(x + 0.5f) is the same value.
PW_HD inline float round_nearest(float x) { return floorf(x + 0.5f); }

// Nearest voxel along an axis of n voxels (round_nearest); `inside` tells whether that voxel
// exists. The returned index is clamped into [0, n-1] so that it can always be read; callers use
// `inside` to zero the value.
PW_HD inline int nearest_axis(float x, int64_t n, bool& inside) {
  float r = round_nearest(x);
  inside = (r >= 0.f) & (r <= float(n - 1));  // false for NaN too
  r = clamp_nan_lo(r, 0.f, float(n - 1));
  return int(r);
}

// Linear interpolation along an axis of n voxels: lower neighbour i0 = floor(x), fraction f; the
// neighbours i0 and i0+1 get weights (1-f) and f, zeroed where the neighbour is outside (zero
// padding, weights not renormalised: grid_sample's rule). Indices are clamped so they can always be
// read; their weights are then 0.
struct LinearAxis {
  int i0, i1;
  float w0, w1;
};
PW_HD inline LinearAxis linear_axis(float x, int64_t n) {
  float xc = clamp_nan_lo(x, -2.f, float(n) + 1.f);  // keeps int conversion defined; NaN -> -2
  float fl = floorf(xc);
  float f = xc - fl;
  int i = int(fl);
  LinearAxis a;
  bool in0 = (i >= 0) & (i < n), in1 = (i + 1 >= 0) & (i + 1 < n);
  a.w0 = in0 ? 1.f - f : 0.f;
  a.w1 = in1 ? f : 0.f;
  int last = int(n - 1);
  a.i0 = i < 0 ? 0 : (i > last ? last : i);
  a.i1 = i + 1 < 0 ? 0 : (i + 1 > last ? last : i + 1);
  return a;
}

// The trilinear combination of 8 corner values v[dz][dy][dx] with per-axis weights; the one
// summation order every backend uses. The final + 0 turns the -0 of an all-outside sample of
// negative neighbours into +0.
PW_HD inline float trilinear(const float v[8], float z0, float z1, float y0, float y1, float x0, float x1) {
  float a = fmaf(x1, v[1], x0 * v[0]);
  float b = fmaf(x1, v[3], x0 * v[2]);
  float c = fmaf(x1, v[5], x0 * v[4]);
  float d = fmaf(x1, v[7], x0 * v[6]);
  return fmaf(z1, fmaf(y1, d, y0 * c), z0 * fmaf(y1, b, y0 * a)) + 0.f;
}
PW_HD inline float bilinear(const float v[4], float y0, float y1, float x0, float x1) {
  return fmaf(y1, fmaf(x1, v[3], x0 * v[2]), y0 * fmaf(x1, v[1], x0 * v[0])) + 0.f;
}

// Stitching windows over a patch voxel index. cos: prod over axes of sin(pi * x_a / (s_a - 1));
// cos2: its square root (the original toolbox's names, kept for compatibility); flat: 1. An axis
// of size 1 contributes 1. The per-axis factor below multiplies up to the voxel's window as
// (f0 * f1) * f2, for cos2 with the square root taken per axis.
enum WindowKind : int { kWindowFlat = 0, kWindowCos = 1, kWindowCos2 = 2 };
PW_HD inline float window_axis(int kind, int64_t x, int64_t s) {
  if (kind == kWindowFlat || s <= 1) return 1.f;
  int64_t m = x < s - 1 - x ? x : s - 1 - x;  // symmetric, and exactly 0 at both ends
  double v = sin(3.14159265358979323846 * double(m) / double(s - 1));
  if (kind == kWindowCos2) v = sqrt(v);
  return float(v);
}

// The stitching normalisation Y = acc / sqrt(W^2 + 3 alpha); 0 where nothing landed.
PW_HD inline float stitch_normalize(float acc, float w, float alpha) {
  float d = sqrtf(fmaf(w, w, 3.f * alpha));
  return d > 0.f ? acc / d : 0.f;
}

}  // namespace pw::kernels::common
