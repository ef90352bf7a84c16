// Helpers for the patch kernel tests: random volumes and matrices, and the grid_sample fixture
// convention turned into patch matrices.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/test_util.h"
#include "kernels/gather.h"

namespace pw::test::patch {

using pw::test::random_values;  // tests/common/test_util.h

inline kernels::PatchGeom geom3(int64_t C, int64_t Q, std::vector<int64_t> vol, int64_t P, std::vector<int64_t> s) {
  kernels::PatchGeom g;
  g.ndim = 3;
  g.channels = C;
  g.num_vols = Q;
  g.num_patches = P;
  for (int a = 0; a < 3; ++a) {
    g.vol[a] = vol[a];
    g.patch[a] = s[a];
  }
  return g;
}
inline kernels::PatchGeom geom2(int64_t C, int64_t Q, std::vector<int64_t> vol, int64_t P, std::vector<int64_t> s) {
  kernels::PatchGeom g = geom3(C, Q, {1, vol[0], vol[1]}, P, {1, s[0], s[1]});
  g.ndim = 2;
  return g;
}

// A random rotation times per-axis scaling in [smin, smax], placed so that the patch centre maps to
// `centre` (d x d, in axis order); appended to `mats` as a (d+1)x(d+1) row-major matrix.
inline void push_random_matrix(std::vector<float>& mats, int d, const std::vector<double>& centre,
                               const std::vector<int64_t>& s, double smin, double smax, std::mt19937_64& rng) {
  std::normal_distribution<double> nd;
  std::uniform_real_distribution<double> us(smin, smax);
  double R[3][3];
  // Gram-Schmidt on random vectors: a random orthonormal basis.
  for (int i = 0; i < d; ++i) {
    for (;;) {
      for (int j = 0; j < d; ++j) R[i][j] = nd(rng);
      for (int k = 0; k < i; ++k) {
        double dot = 0;
        for (int j = 0; j < d; ++j) dot += R[i][j] * R[k][j];
        for (int j = 0; j < d; ++j) R[i][j] -= dot * R[k][j];
      }
      double n = 0;
      for (int j = 0; j < d; ++j) n += R[i][j] * R[i][j];
      if (n > 1e-6) {
        for (int j = 0; j < d; ++j) R[i][j] /= std::sqrt(n);
        break;
      }
    }
  }
  double sc[3];
  for (int j = 0; j < d; ++j) sc[j] = us(rng);
  const int off = 3 - d;
  std::vector<double> m((d + 1) * (d + 1), 0.0);
  for (int r = 0; r < d; ++r) {
    double t = centre[r];
    for (int c = 0; c < d; ++c) {
      m[r * (d + 1) + c] = R[r][c] * sc[c];
      t -= R[r][c] * sc[c] * (double(s[off + c]) - 1) / 2;
    }
    m[r * (d + 1) + d] = t;
  }
  m[d * (d + 1) + d] = 1;
  for (double v : m) mats.push_back(float(v));
}

// P such matrices for patches of size s (axis order, d = s.size() axes) with centres drawn in the middle
// of a volume of size `vol` (d axes): an f32 tensor P,(d+1),(d+1) on the CPU, as the engine's patch ops
// (engine/ops_patch.h) take them.
inline Tensor random_patch_mats(int64_t P, const std::vector<int64_t>& vol, const std::vector<int64_t>& s,
                                uint64_t seed, double smin = 0.7, double smax = 1.4) {
  const int d = int(s.size());
  std::mt19937_64 rng(seed);
  std::vector<int64_t> s3(3 - d, 1);
  s3.insert(s3.end(), s.begin(), s.end());
  std::vector<float> m;
  for (int64_t p = 0; p < P; ++p) {
    std::vector<double> centre;
    for (int a = 0; a < d; ++a)
      centre.push_back(std::uniform_real_distribution<double>(0.2, 0.8)(rng) * double(vol[a] - 1));
    push_random_matrix(m, d, centre, s3, smin, smax, rng);
  }
  return Tensor::from_vector({P, d + 1, d + 1}, m);
}

// The grid_sample fixture's affine (normalised, align_corners=True) as our patch matrix for
// input (D, H, W) and output (Do, Ho, Wo): ours = U * theta * N, where N maps our patch index
// (d, h, w) to the normalised output grid (x, y, z) = (w, h, d)/(size-1)*2-1, and U maps the
// normalised input coordinate (x, y, z) = (W, H, D) back to our (D, H, W) voxel index.
inline std::vector<float> grid_sample_matrix(const double* theta4, const int64_t in[3], const int64_t out[3]) {
  double N[4][4] = {{0}}, U[4][4] = {{0}}, T[4][4], UT[4][4], M[4][4];
  // N: rows x, y, z, 1 of (d, h, w, 1)
  N[0][2] = 2.0 / double(out[2] - 1); N[0][3] = -1;
  N[1][1] = 2.0 / double(out[1] - 1); N[1][3] = -1;
  N[2][0] = 2.0 / double(out[0] - 1); N[2][3] = -1;
  N[3][3] = 1;
  // U: rows D, H, W, 1 of (x, y, z, 1)
  U[0][2] = (double(in[0]) - 1) / 2; U[0][3] = (double(in[0]) - 1) / 2;
  U[1][1] = (double(in[1]) - 1) / 2; U[1][3] = (double(in[1]) - 1) / 2;
  U[2][0] = (double(in[2]) - 1) / 2; U[2][3] = (double(in[2]) - 1) / 2;
  U[3][3] = 1;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) T[i][j] = theta4[i * 4 + j];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      UT[i][j] = 0;
      for (int k = 0; k < 4; ++k) UT[i][j] += U[i][k] * T[k][j];
    }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      M[i][j] = 0;
      for (int k = 0; k < 4; ++k) M[i][j] += UT[i][k] * N[k][j];
    }
  std::vector<float> m(16);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) m[i * 4 + j] = float(M[i][j]);
  m[12] = m[13] = m[14] = 0;
  m[15] = 1;
  return m;
}

}  // namespace pw::test::patch
