// CPU bodies of kernels/gather.h. Threaded over blocks of patch rows (p, x0, x1) -- whole planes, at
// most one whole patch per block -- handed out dynamically to the threads of pw::parallel_for.
//
// Fast paths, all computing exactly the per-voxel arithmetic of kernels/common/patch_math.h (tests
// compare them bit for bit with it):
//   - A patch whose corners all sample safely inside the source (patch_inside) needs no border test;
//     otherwise each row tests its two ends (coordinates are linear along a row) and, inside, takes the
//     same branch-free loops. Rows touching the border take the checked path, voxel by voxel.
//   - Nearest, one channel: indices and loads in one vectorised loop (vector gathers); several
//     channels: the indices once into a buffer, then one gather loop per channel.
//   - (Bi/tri)linear: corner index and fractions per voxel into buffers, then the interpolation; for a
//     float source with AVX2, each corner's two x-neighbours come with one 64-bit gather element.
//   - How the trilinear rows of a float source read their x-pairs is chosen per CPU at run time
//     (kernels/cpu_paths.h): 64-bit vector gathers (fast on Intel) or one 64-bit scalar load per pair
//     (AMD Zen, where gathers are micro-coded). Same arithmetic, same results. Nearest rows keep the
//     vector gathers everywhere: on Zen 4 they measured as fast as scalar loads (AVX2) or faster
//     (AVX-512).
//   - Rows of a patch inside the source prefetch the lines of the row two patch planes ahead.
//   - Patches inside the source with rows of a multiple of 8 voxels (AVX2: nearest with int32 indices,
//     trilinear of a float source) go plane by plane in strips instead of row by row: 8 voxels of a
//     row, then the same 8 of the next row (RowGather::strips), which read mostly the same lines. Nearest
//     strips compute each plane's indices once, two planes ahead while prefetching its lines, and gather
//     from them later (RowGather::nearest_strips); outputs too big for the caches are written a plane at
//     a time by non-temporal stores (to_plane).
// Loop counters of vectorised loops are int: GCC converts int, not int64, to float in vectors.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define PW_GATHER_PAIRS 1
#endif

#include "kernels/common/patch_math.h"
#include "kernels/cpu/prefetch.h"
#include "kernels/cpu/work_items.h"
#include "kernels/cpu_paths.h"
#include "kernels/gather.h"
#include "kernels/parallel.h"

namespace pw::kernels::cpu {
void scatter_affine_impl(const float* patches, int64_t patch_channels, const PatchGeom& g, const float* mats,
                         const int32_t* parent, Interp mode, int window, float* acc, float* weight);
}

namespace pw::kernels::cpu {
namespace {

using common::PatchMatrix;

void check_geom(const PatchGeom& g, const char* what) {
  if (g.ndim != 2 && g.ndim != 3) throw std::invalid_argument(std::string(what) + ": ndim must be 2 or 3");
  if (g.ndim == 2 && (g.vol[0] != 1 || g.patch[0] != 1))
    throw std::invalid_argument(std::string(what) + ": a 2D geometry needs vol[0] = patch[0] = 1");
  for (int a = 0; a < 3; ++a)
    if (g.vol[a] < 1 || g.patch[a] < 1) throw std::invalid_argument(std::string(what) + ": empty volume or patch");
}

// Source index of voxel (iz, iy, ix) within one (q, c) volume.
template <class Idx>
inline Idx vox(Idx iz, Idx iy, Idx ix, Idx H, Idx W) {
  return (iz * H + iy) * W + ix;
}

// out[i] = src[idx[i]]: restrict parameters, so that the compiler emits vector gathers.
template <class T, class O, class Idx>
inline void gather_row(const T* __restrict__ src, const Idx* __restrict__ idx, int64_t n, O* __restrict__ out) {
  for (int64_t i = 0; i < n; ++i) out[i] = O(src[idx[i]]);
}

// The source index of voxel i of a nearest row inside the source (all coordinates >= -0.5, so that
// truncating x + 0.5 is common::round_nearest).
template <int ND, class Idx>
inline Idx nearest_index(float r0, float r1, float r2, float t0, float t1, float t2, int i, Idx H, Idx W) {
  const float fi = float(i);
  const Idx iz = ND == 3 ? Idx(common::coord(r0, fi, t0) + 0.5f) : Idx(0);
  const Idx iy = Idx(common::coord(r1, fi, t1) + 0.5f);
  const Idx ix = Idx(common::coord(r2, fi, t2) + 0.5f);
  return vox<Idx>(iz, iy, ix, H, W);
}

// A nearest row inside the source, one channel: indices and loads in one vectorised loop.
template <int ND, class T, class O, class Idx>
inline void nearest_row(const T* __restrict__ src, const float r[3], const float st[3], int64_t n, Idx H, Idx W,
                        O* __restrict__ out) {
  const float r0 = r[0], r1 = r[1], r2 = r[2], t0 = st[0], t1 = st[1], t2 = st[2];
  const int ni = int(n);  // an int counter: int -> float converts in vectors, int64 -> float does not
  for (int i = 0; i < ni; ++i) out[i] = O(src[nearest_index<ND>(r0, r1, r2, t0, t1, t2, i, H, W)]);
}

// Phase 1 of a nearest row inside the source with several channels: the source index per voxel.
template <int ND, class Idx>
inline void nearest_row_indices(const float r[3], const float st[3], int64_t n, Idx H, Idx W, Idx* __restrict__ idx) {
  const float r0 = r[0], r1 = r[1], r2 = r[2], t0 = st[0], t1 = st[1], t2 = st[2];
  const int ni = int(n);
  for (int i = 0; i < ni; ++i) idx[i] = nearest_index<ND>(r0, r1, r2, t0, t1, t2, i, H, W);
}

// Phase 1 of a (bi/tri)linear row inside the source (all coordinates >= 0): corner-0 index and
// fractions per voxel.
template <int ND, class Idx>
inline void linear_row_coords(const float r[3], const float st[3], int64_t n, Idx H, Idx W, Idx* __restrict__ idx,
                              float* __restrict__ fz, float* __restrict__ fy, float* __restrict__ fx) {
  const float r0 = r[0], r1 = r[1], r2 = r[2], t0 = st[0], t1 = st[1], t2 = st[2];
  const int ni = int(n);  // an int counter: int -> float converts in vectors, int64 -> float does not
  for (int i = 0; i < ni; ++i) {
    const float fi = float(i);
    const float z = ND == 3 ? common::coord(r0, fi, t0) : 0.f;
    const float y = common::coord(r1, fi, t1);
    const float x = common::coord(r2, fi, t2);
    // Coordinates are >= 0 here, so truncation is floor (and it vectorises; floorf does not
    // without -fno-trapping-math).
    const Idx iz = Idx(z), iy = Idx(y), ix = Idx(x);
    fz[i] = z - float(iz);
    fy[i] = y - float(iy);
    fx[i] = x - float(ix);
    idx[i] = vox<Idx>(iz, iy, ix, H, W);
  }
}

// Rows of a patch plane at most, for strips (plane_strips and nearest_plane_from keep a start per row on the
// stack); larger planes go row by row.
constexpr int64_t kMaxStripRows = 256;

// A row read later (RowGather::operator()), whose source lines the row being read prefetches: its
// indices (linear: of corner 0) and the step between its prefetched voxels; idx nullptr: none.
template <class Idx>
struct Ahead {
  const Idx* idx = nullptr;
  int64_t step = 1;
};

// Prefetches (into L2, prefetch_sample) the lines that voxels from, from + step, ... (< to) of a row read,
// voxel i at src + idx[i], and with `last` voxel to - 1 (the row's last) where the step skipped it.
template <bool kLinear, int ND, class T, class Idx>
inline void prefetch_voxels(const T* src, const Idx* idx, int64_t from, int64_t to, int64_t step, bool last, Idx W,
                            Idx HW) {
  int64_t i = from;
  for (; i < to; i += step) prefetch_sample<kLinear, ND>(src + idx[i], W, HW);
  if (last && from < to && i - step != to - 1) prefetch_sample<kLinear, ND>(src + idx[to - 1], W, HW);  // no division
}

#ifdef PW_GATHER_PAIRS
// Trilinear rows of a float source, 8 voxels at a time: the two x-neighbours of a corner are
// adjacent in memory, so one 64-bit gather element fetches both -- half the gather elements of
// fetching the 8 corners one by one (gathers cost per element). With AVX-512 one gather takes the
// pairs of all 8 voxels; with AVX2 two take 4 each. The arithmetic is common::trilinear's term for
// term (same products, FMAs and order), so the result is bit-identical to the scalar loop.

// The 8 voxel indices at idx, prepared for corner_pairs.
struct PairIndex {
#if defined(__AVX512F__)
  __m256i all;
  explicit PairIndex(const int32_t* idx) : all(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx))) {}
#else
  __m128i a, b;  // voxels (0,1,4,5) and (2,3,6,7): de-interleaving per 128-bit lane then gives 0..7 in order
  explicit PairIndex(const int32_t* idx) {
    const __m256i id = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)),
                                                   _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
    a = _mm256_castsi256_si128(id);
    b = _mm256_extracti128_si256(id, 1);
  }
#endif
};

// lo[v] = base[idx[v]], hi[v] = base[idx[v] + 1] for the 8 voxels v, by vector gathers.
inline void corner_pairs(const float* base, const PairIndex& ix, __m256& lo, __m256& hi) {
#if defined(__AVX512F__)
  const __m512 g = _mm512_castpd_ps(_mm512_i32gather_pd(ix.all, reinterpret_cast<const double*>(base), 4));
  const __m512 sorted = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15), g);
  lo = _mm512_castps512_ps256(sorted);
  hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sorted), 1));
#else
  const long long* b64 = reinterpret_cast<const long long*>(base);
  const __m256 a = _mm256_castsi256_ps(_mm256_i32gather_epi64(b64, ix.a, 4));
  const __m256 b = _mm256_castsi256_ps(_mm256_i32gather_epi64(b64, ix.b, 4));
  lo = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  hi = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
#endif
}

// idx[0] sign-extended by a load (movslq): GCC otherwise takes the indices that it has just computed in a
// vector register out lane by lane (vpextrd, two micro-ops each on Zen 2) instead of reading them back.
inline int64_t index_at(const int32_t* idx) {
#if defined(__x86_64__)
  int64_t v;
  asm("movslq %1, %0" : "=r"(v) : "m"(*idx));
  return v;
#else
  return *idx;
#endif
}

// The same by one 64-bit scalar load per pair (the scalar-loads path): two pairs per 128-bit lane,
// voxels (0,1,4,5) in a and (2,3,6,7) in b, de-interleaved as the AVX2 gathers above.
inline void corner_pairs(const float* base, const int32_t* idx, __m256& lo, __m256& hi) {
  auto two = [&](int u, int v) {
    const __m128 l = _mm_loadl_pi(_mm_setzero_ps(), reinterpret_cast<const __m64*>(base + index_at(idx + u)));
    return _mm_loadh_pi(l, reinterpret_cast<const __m64*>(base + index_at(idx + v)));
  };
  const __m256 a = _mm256_set_m128(two(4, 5), two(0, 1)), b = _mm256_set_m128(two(6, 7), two(2, 3));
  lo = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  hi = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

// The trilinear values of 8 voxels, corner 0 of voxel v at src[idx[v]], fractions z1, y1, x1.
template <bool kScalar>
inline __m256 lerp8(const float* src, const int32_t* idx, __m256 z1, __m256 y1, __m256 x1, int32_t W, int32_t HW) {
  const __m256 one = _mm256_set1_ps(1.f);
  const int32_t offset[4] = {0, W, HW, HW + W};  // corner rows (dz, dy) = (0,0), (0,1), (1,0), (1,1)
  __m256 lo[4], hi[4];
  if constexpr (kScalar) {
    for (int k = 0; k < 4; ++k) corner_pairs(src + offset[k], idx, lo[k], hi[k]);
  } else {
    const PairIndex ix(idx);
    for (int k = 0; k < 4; ++k) corner_pairs(src + offset[k], ix, lo[k], hi[k]);
  }
  const __m256 z0 = _mm256_sub_ps(one, z1), y0 = _mm256_sub_ps(one, y1), x0 = _mm256_sub_ps(one, x1);
  __m256 e[4];
  for (int k = 0; k < 4; ++k) e[k] = _mm256_fmadd_ps(x1, hi[k], _mm256_mul_ps(x0, lo[k]));
  const __m256 r = _mm256_fmadd_ps(z1, _mm256_fmadd_ps(y1, e[3], _mm256_mul_ps(y0, e[2])),
                                   _mm256_mul_ps(z0, _mm256_fmadd_ps(y1, e[1], _mm256_mul_ps(y0, e[0]))));
  return _mm256_add_ps(r, _mm256_setzero_ps());
}

// Returns the number of voxels done (a multiple of 8); the caller finishes the row. Each step of 8 voxels
// prefetches the lines of the ahead row's voxels among the same 8 (prefetch_voxels' voxels and lines):
// spread between the loads, not in a burst before the row (bench_gather trilinear, Zen 4: one thread
// 7.80 -> 6.96 ms, two 3.65 -> 3.45).
template <bool kScalar>
inline int64_t lerp_row_pairs3(const float* src, const int32_t* idx, const float* fz, const float* fy,
                               const float* fx, int64_t n, int32_t W, int32_t HW, float* out, Ahead<int32_t> ahead) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    if (ahead.idx) prefetch_voxels<true, 3>(src, ahead.idx, i, i + 8, ahead.step, i + 8 == n, W, HW);
    const __m256 z1 = _mm256_loadu_ps(fz + i), y1 = _mm256_loadu_ps(fy + i), x1 = _mm256_loadu_ps(fx + i);
    _mm256_storeu_ps(out + i, lerp8<kScalar>(src, idx + i, z1, y1, x1, W, HW));
  }
  return i;
}

// Coordinate k (common::coord) of the 8 voxels x2 = b..b+7 of the row starting at r with steps st.
inline __m256 coord8(const float r[3], const float st[3], int32_t b, int k) {
  const __m256 fi = _mm256_add_ps(_mm256_set1_ps(float(b)), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_fmadd_ps(fi, _mm256_set1_ps(st[k]), _mm256_set1_ps(r[k]));
}

// idx[v] = (i3[0][v] * H + i3[1][v]) * W + i3[2][v] (vox) for the 8 voxels.
inline void vox8(const __m256i i3[3], int32_t H, int32_t W, int32_t* idx) {
  const __m256i id = _mm256_add_epi32(
      _mm256_mullo_epi32(_mm256_add_epi32(_mm256_mullo_epi32(i3[0], _mm256_set1_epi32(H)), i3[1]), _mm256_set1_epi32(W)),
      i3[2]);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx), id);
}

// Corner-0 indices (into idx[8]) and fractions of the 8 voxels x2 = b..b+7 of the row starting at r
// (common::row_start) with steps st: linear_row_coords' arithmetic, in registers.
inline void coords8(const float r[3], const float st[3], int32_t b, int32_t H, int32_t W, int32_t* idx, __m256& fz,
                    __m256& fy, __m256& fx) {
  __m256i i3[3];
  __m256 f3[3];
  for (int k = 0; k < 3; ++k) {  // truncation = floor (coordinates >= 0)
    const __m256 c = coord8(r, st, b, k);
    i3[k] = _mm256_cvttps_epi32(c);
    f3[k] = _mm256_sub_ps(c, _mm256_cvtepi32_ps(i3[k]));
  }
  vox8(i3, H, W, idx);
  fz = f3[0], fy = f3[1], fx = f3[2];
}

// Nearest source indices (into idx[8]) of the 8 voxels x2 = b..b+7 of the row starting at r with steps st:
// nearest_index's arithmetic, in registers.
template <int ND>
inline void nearest8(const float r[3], const float st[3], int32_t b, int32_t H, int32_t W, int32_t* idx) {
  __m256i i3[3];
  for (int k = 0; k < 3; ++k) i3[k] = _mm256_cvttps_epi32(_mm256_add_ps(coord8(r, st, b, k), _mm256_set1_ps(0.5f)));
  if (ND == 2) i3[0] = _mm256_setzero_si256();
  vox8(i3, H, W, idx);
}

// Index arithmetic one group ahead of the loads that use it. A group's indices go through memory (idx[8],
// stored by a vector store, read back by scalar loads); computed in the same step they are read, every load
// of the group (and every prefetch) waited for that chain of ~6 dependent vector operations and the store,
// and out-of-order execution, ~1.5 groups deep here, could not hide it. Computing the next group's indices
// (and the ahead group's that a prefetch reads) a step before their use takes them off the loads' path:
// trilinear strips with the source in L1, Zen 2, 67 -> 54 cycles per 8 voxels (57 -> 39 without
// prefetches); bench_gather trilinear 4.10 -> 3.87 ms. Two buffers, the current and the next.
struct GroupIndices {
  alignas(32) int32_t buf[2][8];
  int32_t *now = buf[0], *next = buf[1];
  GroupIndices() = default;
  GroupIndices(const GroupIndices&) = delete;  // now and next point into this object's buf
  GroupIndices& operator=(const GroupIndices&) = delete;
  void advance() { std::swap(now, next); }
};

// Trilinear plane x0 of a patch M (s1 rows of s2 voxels, s2 a multiple of 8) inside a float source, by strips
// (RowGather::strips): the voxels x2 = b..b+7 of rows x1 = 0, 1, ..., s1 - 1, then the next 8 columns
// (coords8, a group ahead, then lerp8; kScalar as lerp8). out: the plane's first voxel. ahead_x0 >= 0: the
// plane whose groups to prefetch alongside, those of rows `step` apart (and the last), in them voxels `step`
// apart (and the row's last), as the row path; each prefetch is issued a group after its indices are
// computed (GroupIndices). (Nearest planes: nearest_plane_from.)
template <bool kScalar>
void plane_strips(const float* __restrict__ src, const PatchMatrix& M, int64_t x0, int64_t s1, int64_t s2, int32_t H,
                  int32_t W, float* __restrict__ out, int64_t ahead_x0, int64_t step) {
  const float st[3] = {M.m[0][2], M.m[1][2], M.m[2][2]};
  float starts[kMaxStripRows][3];  // the plane's row starts, once per plane
  for (int64_t x1 = 0; x1 < s1; ++x1)
    for (int k = 0; k < 3; ++k) starts[x1][k] = common::row_start(M, k, float(x0), float(x1));
  GroupIndices idx, aidx;
  bool pending = false, pending_last = false;  // aidx.now holds an ahead group still to prefetch
  __m256 fz, fy, fx;  // the current group's fractions
  coords8(starts[0], st, 0, H, W, idx.now, fz, fy, fx);
  for (int64_t b = 0; b < s2; b += 8)
    for (int64_t x1 = 0; x1 < s1; ++x1) {
      __m256 nz = fz, ny = fy, nx = fx, gz, gy, gx;  // the next group's fractions (g: the ahead group's, unused)
      const bool row_end = x1 + 1 == s1;  // the next group: (x1 + 1, b), or (0, b + 8) after the last row
      if (!row_end || b + 8 < s2)
        coords8(starts[row_end ? 0 : x1 + 1], st, int32_t(row_end ? b + 8 : b), H, W, idx.next, nz, ny, nx);
      if (pending) prefetch_voxels<true, 3>(src, aidx.now, 0, 8, step, pending_last, W, H * W);
      pending = ahead_x0 >= 0 && ((x1 & (step - 1)) == 0 || row_end);  // step 1 or 2 (prefetch_step)
      if (pending) {
        float ra[3];
        for (int k = 0; k < 3; ++k) ra[k] = common::row_start(M, k, float(ahead_x0), float(x1));
        coords8(ra, st, int32_t(b), H, W, aidx.next, gz, gy, gx);
        aidx.advance();
        pending_last = b + 8 == s2;
      }
      _mm256_storeu_ps(out + x1 * s2 + b, lerp8<kScalar>(src, idx.now, fz, fy, fx, W, H * W));
      idx.advance();
      fz = nz, fy = ny, fx = nx;
    }
  if (pending) prefetch_voxels<true, 3>(src, aidx.now, 0, 8, step, pending_last, W, H * W);
}

// Nearest planes by strips from indices computed earlier (NearestRing): the indices of a plane are
// computed once, kAheadPlanes planes before its turn, while its source lines are prefetched -- not once
// to prefetch and again to gather.
// The nearest source indices of plane x0 of patch M (s1 rows of s2 voxels, s2 a multiple of 8), into idx
// (row-major).
template <int ND>
void nearest_plane_indices(const PatchMatrix& M, int64_t x0, int64_t s1, int64_t s2, int32_t H, int32_t W,
                           int32_t* idx) {
  const float st[3] = {M.m[0][2], M.m[1][2], M.m[2][2]};
  for (int64_t x1 = 0; x1 < s1; ++x1) {
    float r[3];
    for (int k = 0; k < 3; ++k) r[k] = common::row_start(M, k, float(x0), float(x1));
    for (int64_t b = 0; b < s2; b += 8) nearest8<ND>(r, st, int32_t(b), H, W, idx + x1 * s2 + b);
  }
}

// One channel of plane x0 by strips (plane_strips' order) from its indices idx. With ahead (channel 0),
// also the indices of the plane ahead_x0, group by group into ahead, and prefetches of the lines its
// groups of rows `step` apart (and the last row) read, in each of `channels` channels V apart.
template <int ND, class T, class O>
void nearest_plane_from(const T* __restrict__ src, const PatchMatrix& M, int64_t s1, int64_t s2, int32_t H,
                        int32_t W, const int32_t* __restrict__ idx, O* __restrict__ out, int32_t* ahead,
                        int64_t ahead_x0, int64_t step, int64_t channels, int64_t V) {
  if (!ahead) {
    for (int64_t b = 0; b < s2; b += 8)
      for (int64_t x1 = 0; x1 < s1; ++x1) gather_row(src, idx + x1 * s2 + b, 8, out + x1 * s2 + b);
    return;
  }
  const float st[3] = {M.m[0][2], M.m[1][2], M.m[2][2]};
  float starts[kMaxStripRows][3];  // the ahead plane's row starts, once per plane
  for (int64_t x1 = 0; x1 < s1; ++x1)
    for (int k = 0; k < 3; ++k) starts[x1][k] = common::row_start(M, k, float(ahead_x0), float(x1));
  for (int64_t b = 0; b < s2; b += 8)
    for (int64_t x1 = 0; x1 < s1; ++x1) {
      const int64_t at = x1 * s2 + b;
      nearest8<ND>(starts[x1], st, int32_t(b), H, W, ahead + at);
      if ((x1 & (step - 1)) == 0 || x1 == s1 - 1) {
        // One channel without the loop: for the loop GCC set up 8 offsets per group (~30 instructions).
        if (channels == 1) prefetch_voxels<false, ND>(src, ahead + at, 0, 8, 1, false, W, H * W);
        else
          for (int64_t c = 0; c < channels; ++c)
            prefetch_voxels<false, ND>(src + c * V, ahead + at, 0, 8, 1, false, W, H * W);
      }
      gather_row(src, idx + at, 8, out + at);
    }
}

// Where the strips of a plane of n voxels at out write: the strips fill 8 voxels of each row in turn, so an
// output that cannot stay in the caches anyway (streamed_output) is gathered into an L1 buffer and then
// written by non-temporal stores, whole lines, without reading each line first (bench_gather nearest,
// Zen 2, 2 threads: 2.88 -> 2.77 ms). body(dst) writes the plane at dst.
constexpr int64_t kPlaneBuffer = 4096;
template <class O, class F>
void to_plane(O* out, int64_t n, bool stream, const F& body) {
  if constexpr (std::is_same_v<O, float>) {
    if (stream && n <= kPlaneBuffer && n % 8 == 0 && (reinterpret_cast<uintptr_t>(out) & 31) == 0) {
      alignas(32) float buf[kPlaneBuffer];
      body(buf);
      for (int64_t i = 0; i < n; i += 8) _mm256_stream_ps(out + i, _mm256_load_ps(buf + i));
      return;
    }
  }
  body(out);
}
#endif
// The (bi/tri)linear row: corner 0 of voxel i at src[idx[i]], fractions f*, row strides W, HW.
// One base pointer per corner, so that each corner is a plain indexed load (a vector gather). Prefetches
// the lines of `ahead` (within the pairs loop, else before the row).
template <bool kScalar, int ND, class T, class O, class Idx>
inline void lerp_row(const T* __restrict__ src, const Idx* __restrict__ idx, const float* __restrict__ fz,
                     const float* __restrict__ fy, const float* __restrict__ fx, int64_t n, Idx W, Idx HW,
                     O* __restrict__ out, Ahead<Idx> ahead) {
  const T* __restrict__ c1 = src + 1;
  const T* __restrict__ c2 = src + W;
  const T* __restrict__ c3 = src + W + 1;
  if (ND == 3) {
    const T* __restrict__ c4 = src + HW;
    const T* __restrict__ c5 = src + HW + 1;
    const T* __restrict__ c6 = src + HW + W;
    const T* __restrict__ c7 = src + HW + W + 1;
    int64_t i = 0;
#ifdef PW_GATHER_PAIRS
    if constexpr (std::is_same_v<T, float> && std::is_same_v<O, float> && std::is_same_v<Idx, int32_t>)
      i = lerp_row_pairs3<kScalar>(src, idx, fz, fy, fx, n, W, HW, out, ahead);
#endif
    if (ahead.idx) prefetch_voxels<true, ND>(src, ahead.idx, i, n, ahead.step, true, W, HW);  // the rest of the row
    for (; i < n; ++i) {
      const Idx j = idx[i];
      const float v[8] = {float(src[j]), float(c1[j]), float(c2[j]), float(c3[j]),
                          float(c4[j]),  float(c5[j]), float(c6[j]), float(c7[j])};
      out[i] = O(common::trilinear(v, 1.f - fz[i], fz[i], 1.f - fy[i], fy[i], 1.f - fx[i], fx[i]));
    }
  } else {
    if (ahead.idx) prefetch_voxels<true, ND>(src, ahead.idx, 0, n, ahead.step, true, W, HW);
    for (int64_t i = 0; i < n; ++i) {
      const Idx j = idx[i];
      const float v[4] = {float(src[j]), float(c1[j]), float(c2[j]), float(c3[j])};
      out[i] = O(common::bilinear(v, 1.f - fy[i], fy[i], 1.f - fx[i], fx[i]));
    }
  }
}

// Whether every voxel of patch M (sizes s) samples safely inside a source of sizes n, so that its rows
// may skip the per-row test: nearest needs every coordinate in [-0.5, n - 0.5) (then int(x + 0.5) is
// the rounding and the voxel exists), linear in [0, n - 1). The coordinates are linear in the patch
// index, so their extremes lie at the patch corners; they are bounded here in double precision with a
// margin covering the rounding of the float evaluation (three FMAs per component, each within half an
// ulp of the sum of the absolute terms). Axes before first_axis are not tested (2D: the unit D axis).
// Patches that fail take the per-row test.
bool patch_inside(const PatchMatrix& M, const int64_t s[3], const int64_t n[3], bool linear, int first_axis) {
  for (int k = first_axis; k < 3; ++k) {
    double lo = M.m[k][3], hi = M.m[k][3], mag = std::fabs(M.m[k][3]);
    for (int a = 0; a < 3; ++a) {
      const double t = double(M.m[k][a]) * double(s[a] - 1);
      (t < 0 ? lo : hi) += t;
      mag += std::fabs(t);
    }
    const double margin = 4.0 * 1.1920929e-7 * mag + 1e-6;
    const double first = linear ? 0.0 : -0.5, end = linear ? double(n[k] - 1) : double(n[k]) - 0.5;
    if (!(lo >= first + margin && hi <= end - margin)) return false;
  }
  return true;
}


template <class T, class O, bool kLinear, int ND, class Idx>
struct RowGather {
  const T* src;
  const PatchGeom& g;
  const float* mats;
  const int32_t* parent;
  bool inside_mask;
  O* out;
  bool scalar_loads = gather_loads() == GatherLoads::scalar;
  // Whether whole planes of strips are written by non-temporal stores (to_plane).
  bool stream = !kLinear && streamed_output(g.num_patches * (g.channels + (inside_mask ? 1 : 0)) * g.patch_numel());

  // A row inside the source (the fast path), all channels; idx, f* are row buffers. kScalar: the
  // trilinear x-pairs by scalar loads (kernels/cpu_paths.h). Prefetches the lines of `ahead`.
  template <bool kScalar>
  void fast_row(const T* sq, const float r[3], const float st[3], O* op, Idx* idx, float* fz, float* fy,
                float* fx, Ahead<Idx> ahead) const {
    const int64_t s2 = g.patch[2], V = g.vol_numel(), PN = g.patch_numel(), C = g.channels;
    const Idx H = Idx(g.vol[1]), W = Idx(g.vol[2]);
    if (!kLinear) {
      if (ahead.idx)
        for (int64_t c = 0; c < C; ++c) prefetch_voxels<false, ND>(sq + c * V, ahead.idx, 0, s2, ahead.step, true, W, H * W);
      if (C == 1) {
        nearest_row<ND>(sq, r, st, s2, H, W, op);
      } else {  // the indices once, then a gather per channel
        nearest_row_indices<ND>(r, st, s2, H, W, idx);
        for (int64_t c = 0; c < C; ++c) gather_row(sq + c * V, idx, s2, op + c * PN);
      }
    } else {
      linear_row_coords<ND>(r, st, s2, H, W, idx, fz, fy, fx);
      for (int64_t c = 0; c < C; ++c)
        lerp_row<kScalar, ND>(sq + c * V, idx, fz, fy, fx, s2, W, H * W, op + c * PN, ahead);
    }
  }

  // Rows of a patch inside the source prefetch (into L2) the source lines of the row kAheadPlanes patch
  // planes on (~2 * s1 * s2 voxels before its turn): a rotated patch row meets a new source line every
  // few voxels, and the hardware prefetchers follow none of them. bench_gather (Zen 4): one thread
  // nearest 4.9 -> 3.7 ms, trilinear 11.4 -> 8.6; two threads 1.0-1.5x (the more, the busier the
  // memory). 1, 3 or 4 planes ahead: no better.
  // Linear rows whose steps along the row and to the next row are at most a voxel and a quarter on every
  // axis (patch voxels about the size of source voxels or smaller) prefetch only for every other row (and
  // the last), and in it every other voxel (and the last). Voxel i + 1 lies between voxels i and i + 2 on
  // every axis, row x1 + 1 between rows x1 and x1 + 2, and a linear voxel reads the 2x2x2 block around
  // it, so nearly all of its lines are among theirs (all of them for steps up to one voxel). A quarter of
  // the prefetch instructions for almost the same lines: bench_gather trilinear (Zen 4, 2 threads) 4.39
  // -> 3.76 ms. Larger steps (coarser sampling) and nearest voxels, which read one voxel that their
  // neighbours' lines need not hold, prefetch every voxel (nearest subsampled: one thread lost 10-30%);
  // by strips (below), nearest groups may skip every other row: the voxel of row x1 + 1 lies between
  // those of rows x1 and x1 + 2, and the next row's group follows at once (bench_gather nearest, Zen 4,
  // 2 threads: 1.50 -> 1.33 ms; on Zen 2 every row is faster: nearest_prefetch_all_rows).
  static constexpr int64_t kAheadPlanes = 2;
  static bool unit_steps(const PatchMatrix& M) {
    for (int k = 0; k < 3; ++k)
      if (std::fabs(M.m[k][1]) > 1.25f || std::fabs(M.m[k][2]) > 1.25f) return false;
    return true;
  }
  // 1 or 2 (never more): the rows test x1 & (step - 1), not x1 % step, a 64-bit division per row (per group of 8
  // voxels in strips; 14-46 cycles on Zen 2, where it cost the gathers 6-9%).
  static int64_t prefetch_step(const PatchMatrix& M) { return kLinear && unit_steps(M) ? 2 : 1; }
  // The same for strips (plane_strips, nearest_plane_from), where unit-step nearest groups may skip every
  // other row too, on CPUs that prefer it (kernels/cpu_paths.h).
  static int64_t strip_prefetch_step(const PatchMatrix& M) {
    return unit_steps(M) && (kLinear || !nearest_prefetch_all_rows()) ? 2 : 1;
  }
  // Whether a patch's planes go by strips (plane_strips; AVX2 bodies): patches
  // inside the source, nearest with int32 indices, trilinear of a float source. A rotated row meets new
  // source lines at almost every voxel unless it runs along the source's x axis, and the next row, 32
  // voxels on, reads most of them again, from L2; the next group of 8 of a strip reads them again right
  // away, from L1. One rotated patch again and again (L2), trilinear, ns per voxel, Zen 4, rows / strips, by
  // how much of the row runs along x: 0.90 -> 1.46 / 1.72, 0.83 -> 1.55 / 1.77, 0.65 -> 1.85 / 1.81,
  // 0.46 -> 2.20 / 1.94, 0.13 -> 2.97 / 1.94, 0.06 -> 2.63 / 1.93. In bench_gather (2 threads, from memory)
  // strips for every patch beat strips only for rows under 70% along x: 2.46 / 2.68 ms.
#ifdef PW_GATHER_PAIRS
  static constexpr bool kStripNearest = !kLinear && std::is_same_v<Idx, int32_t>;
  static constexpr bool kStripLinear = kLinear && ND == 3 && std::is_same_v<T, float> && std::is_same_v<O, float> &&
                                       std::is_same_v<Idx, int32_t>;
#else
  static constexpr bool kStripNearest = false, kStripLinear = false;
#endif
  bool strips(bool inside) const {
    return (kStripLinear || kStripNearest) && inside && g.patch[1] <= kMaxStripRows && g.patch[2] % 8 == 0;
  }
  // Trilinear plane x0 of patch M by strips (strips()), all channels; op: the plane's first voxel. With unit
  // steps the groups of every other row prefetch, every other voxel of them, as the row path.
  void linear_strips(const T* sq, const PatchMatrix& M, int64_t x0, O* op) const {
#ifdef PW_GATHER_PAIRS
    if constexpr (kStripLinear) {
      const int64_t s0 = g.patch[0], s1 = g.patch[1], s2 = g.patch[2], V = g.vol_numel(), PN = g.patch_numel();
      const int64_t ahead = x0 + kAheadPlanes < s0 ? x0 + kAheadPlanes : -1, step = strip_prefetch_step(M);
      const int32_t H = int32_t(g.vol[1]), W = int32_t(g.vol[2]);
      for (int64_t c = 0; c < g.channels; ++c) {
        if (scalar_loads) plane_strips<true>(sq + c * V, M, x0, s1, s2, H, W, op + c * PN, ahead, step);
        else plane_strips<false>(sq + c * V, M, x0, s1, s2, H, W, op + c * PN, ahead, step);
      }
    }
#endif
  }
  // Index planes of nearest strips (nearest_strips): kAheadPlanes + 1 slots of `plane` indices; plane x0
  // goes to slot x0 % (kAheadPlanes + 1), tagged with the (patch, plane) it holds.
  struct NearestRing {
    static constexpr int64_t kSlots = kAheadPlanes + 1;
    std::vector<int32_t> idx;
    int64_t plane = 0, tag[kSlots][2];
    NearestRing() {
      for (auto& t : tag) t[0] = t[1] = -1;
    }
    int32_t* slot(int64_t x0) { return idx.data() + x0 % kSlots * plane; }
    bool holds(int64_t p, int64_t x0) const { return tag[x0 % kSlots][0] == p && tag[x0 % kSlots][1] == x0; }
    void mark(int64_t p, int64_t x0) { tag[x0 % kSlots][0] = p, tag[x0 % kSlots][1] = x0; }
  };
  // Nearest plane x0 of patch p (M) by strips, all channels, from the indices the ring holds for it (else
  // computed now); meanwhile the indices of plane x0 + kAheadPlanes go into the ring, and its source lines
  // are prefetched (with unit steps, those of every other row: see kAheadPlanes).
  void nearest_strips(const T* sq, const PatchMatrix& M, int64_t p, int64_t x0, O* op, NearestRing& ring) const {
#ifdef PW_GATHER_PAIRS
    if constexpr (kStripNearest) {
      const int64_t s0 = g.patch[0], s1 = g.patch[1], s2 = g.patch[2], V = g.vol_numel(), PN = g.patch_numel();
      const int32_t H = int32_t(g.vol[1]), W = int32_t(g.vol[2]);
      if (ring.idx.empty()) ring.plane = s1 * s2, ring.idx.resize(size_t(NearestRing::kSlots * ring.plane));
      int32_t* idx = ring.slot(x0);
      if (!ring.holds(p, x0)) nearest_plane_indices<ND>(M, x0, s1, s2, H, W, idx), ring.mark(p, x0);
      const int64_t a = x0 + kAheadPlanes;
      int32_t* ahead = nullptr;
      if (a < s0) ahead = ring.slot(a), ring.mark(p, a);  // filled by channel 0's pass below
      const int64_t step = strip_prefetch_step(M);
      for (int64_t c = 0; c < g.channels; ++c)
        to_plane(op + c * PN, s1 * s2, stream, [&](O* dst) {
          nearest_plane_from<ND>(sq + c * V, M, s1, s2, H, W, idx, dst, c == 0 ? ahead : nullptr, a, step,
                                 g.channels - c, V);
        });
    }
#endif
  }
  // The source indices (linear: of corner 0) of row (x0, x1) of patch M, into aidx; f*: scratch.
  void row_indices(const PatchMatrix& M, int64_t x0, int64_t x1, Idx* aidx, float* fz, float* fy, float* fx) const {
    const int64_t s2 = g.patch[2];
    const Idx H = Idx(g.vol[1]), W = Idx(g.vol[2]);
    float r[3], st[3];
    for (int k = 0; k < 3; ++k) {
      r[k] = common::row_start(M, k, float(x0), float(x1));
      st[k] = M.m[k][2];
    }
    if (kLinear) linear_row_coords<ND>(r, st, s2, H, W, aidx, fz, fy, fx);
    else nearest_row_indices<ND>(r, st, s2, H, W, aidx);
  }

  // Whether a row starting at r with steps st lies inside the source (its two ends do: coordinates are
  // monotonic along a row), so that the fast loops may run without checks.
  bool row_inside(const float r[3], const float st[3]) const {
    const int64_t n[3] = {g.vol[0], g.vol[1], g.vol[2]};
    bool fast = true;
    for (int k = (ND == 3 ? 0 : 1); k < 3; ++k) {
      float a = r[k], b = common::coord(r[k], float(g.patch[2] - 1), st[k]);
      float lo = common::min2(a, b), hi = common::max2(a, b);
      if (kLinear)
        fast &= (floorf(lo) >= 0.f) & (floorf(hi) <= float(n[k] - 2));
      else
        fast &= (common::round_nearest(lo) >= 0.f) & (common::round_nearest(hi) <= float(n[k] - 1));
    }
    return fast;
  }
  // A row that may leave the source: every voxel checked (0 outside, linear corners outside weighted 0). Out of
  // line: the row loop stays small (inlined, the trilinear gather of bench_gather ran 1-3% slower).
  [[gnu::noinline]] void checked_row(const T* sq, const float r[3], const float st[3], O* op) const {
    const int64_t s2 = g.patch[2], n0 = g.vol[0], n1 = g.vol[1], n2 = g.vol[2];
    const int64_t V = g.vol_numel(), PN = g.patch_numel(), C = g.channels;
    const Idx H = Idx(n1), W = Idx(n2);
    for (int64_t i = 0; i < s2; ++i) {
      float fi = float(i);
      float z = common::coord(r[0], fi, st[0]);
      float y = common::coord(r[1], fi, st[1]);
      float x = common::coord(r[2], fi, st[2]);
      bool inz, iny, inx;
      Idx nz = common::nearest_axis(z, n0, inz), ny = common::nearest_axis(y, n1, iny),
          nx = common::nearest_axis(x, n2, inx);
      bool inside = inz & iny & inx;
      if (!kLinear) {
        Idx id = vox<Idx>(nz, ny, nx, H, W);
        for (int64_t c = 0; c < C; ++c) op[c * PN + i] = inside ? O(sq[c * V + id]) : O(0);
      } else {
        common::LinearAxis az = common::linear_axis(z, n0), ay = common::linear_axis(y, n1),
                           ax = common::linear_axis(x, n2);
        if (ND == 2) az = {0, 0, 1.f, 0.f};
        const Idx c000 = vox<Idx>(az.i0, ay.i0, ax.i0, H, W), c001 = vox<Idx>(az.i0, ay.i0, ax.i1, H, W),
                  c010 = vox<Idx>(az.i0, ay.i1, ax.i0, H, W), c011 = vox<Idx>(az.i0, ay.i1, ax.i1, H, W),
                  c100 = vox<Idx>(az.i1, ay.i0, ax.i0, H, W), c101 = vox<Idx>(az.i1, ay.i0, ax.i1, H, W),
                  c110 = vox<Idx>(az.i1, ay.i1, ax.i0, H, W), c111 = vox<Idx>(az.i1, ay.i1, ax.i1, H, W);
        for (int64_t c = 0; c < C; ++c) {
          const T* sc = sq + c * V;
          if (ND == 3) {
            float v[8] = {float(sc[c000]), float(sc[c001]), float(sc[c010]), float(sc[c011]),
                          float(sc[c100]), float(sc[c101]), float(sc[c110]), float(sc[c111])};
            op[c * PN + i] = O(common::trilinear(v, az.w0, az.w1, ay.w0, ay.w1, ax.w0, ax.w1));
          } else {
            float v[4] = {float(sc[c000]), float(sc[c001]), float(sc[c010]), float(sc[c011])};
            op[c * PN + i] = O(common::bilinear(v, ay.w0, ay.w1, ax.w0, ax.w1));
          }
        }
      }
      if (inside_mask) op[C * PN + i] = inside ? O(1) : O(0);
    }
  }

  void operator()(int64_t begin, int64_t end) const {
    const int64_t s0 = g.patch[0], s1 = g.patch[1], s2 = g.patch[2];
    const int64_t n0 = g.vol[0], n1 = g.vol[1], n2 = g.vol[2];
    const int64_t V = g.vol_numel(), PN = g.patch_numel(), C = g.channels;
    const int64_t Cout = C + (inside_mask ? 1 : 0);
    std::vector<Idx> idx(s2), aidx(s2);  // the row's indices, the ahead row's
    std::vector<float> fz(kLinear ? s2 : 0), fy(kLinear ? s2 : 0), fx(kLinear ? s2 : 0);
    const int64_t sizes[3] = {s0, s1, s2}, n[3] = {n0, n1, n2};
    int64_t cached_p = -1;
    NearestRing ring;
    bool patch_fast = false;
    int64_t pf_step = 1;       // prefetch_step of the patch
    bool patch_strips = false;  // strips() of the patch
    PatchMatrix M{};
    // (p, x0, x1) of the first row once, then stepped row by row: no division per row.
    int64_t p = begin / (s0 * s1), x0 = (begin / s1) % s0, x1 = begin % s1;
    auto next_row = [&] {
      if (++x1 == s1) {
        x1 = 0;
        if (++x0 == s0) x0 = 0, ++p;
      }
    };
    for (int64_t row = begin; row < end; ++row, next_row()) {
      if (p != cached_p) {
        M = common::load_patch_matrix(mats + p * (g.ndim + 1) * (g.ndim + 1), g.ndim);
        cached_p = p;
        patch_fast = patch_inside(M, sizes, n, kLinear, ND == 3 ? 0 : 1);  // 2D: axis 0 is the unit one
        pf_step = prefetch_step(M);
        patch_strips = strips(patch_fast);
      }
      const int64_t q = parent ? parent[p] : 0;
      const T* sq = src + q * C * V;
      O* op = out + p * Cout * PN + (x0 * s1 + x1) * s2;
      float r[3], st[3];
      for (int k = 0; k < 3; ++k) {
        r[k] = common::row_start(M, k, float(x0), float(x1));
        st[k] = M.m[k][2];
      }
      const bool fast = patch_fast || row_inside(r, st);
      // Rows of an inside patch prefetch the source lines of the row kAheadPlanes patch planes on.
      if (patch_strips && x1 == 0 && row + s1 <= end) {  // the whole plane by strips
        if (kStripNearest) nearest_strips(sq, M, p, x0, op, ring);
        else linear_strips(sq, M, x0, op);
        if (inside_mask) std::fill(op + C * PN, op + C * PN + s1 * s2, O(1));
        row += s1 - 1, x1 = s1 - 1;  // next_row() moves on to the next plane
        continue;
      }
      Ahead<Idx> ahead;
      if (patch_fast && x0 + kAheadPlanes < s0 && ((x1 & (pf_step - 1)) == 0 || x1 == s1 - 1)) {
        row_indices(M, x0 + kAheadPlanes, x1, aidx.data(), fz.data(), fy.data(), fx.data());
        ahead = {aidx.data(), pf_step};
      }
      if (fast) {
        if (kLinear && scalar_loads) fast_row<true>(sq, r, st, op, idx.data(), fz.data(), fy.data(), fx.data(), ahead);
        else fast_row<false>(sq, r, st, op, idx.data(), fz.data(), fy.data(), fx.data(), ahead);
        if (inside_mask) {
          O* om = op + C * PN;
          for (int64_t i = 0; i < s2; ++i) om[i] = O(1);
        }
        continue;
      }
      checked_row(sq, r, st, op);  // voxel by voxel
    }
#ifdef PW_GATHER_PAIRS
    if (stream) _mm_sfence();  // the streamed planes are visible before the block counts as done
#endif
  }
};

template <class T, class O, bool kLinear, int ND>
void run_rows(const T* src, const PatchGeom& g, const float* mats, const int32_t* parent, bool inside_mask, O* out) {
  const int64_t rows = g.num_patches * g.patch[0] * g.patch[1];
  // Dynamic blocks: each pool thread takes the next block until none is left, so a thread that
  // the OS preempts delays the call by one block, not by half of it. A block is at most one whole
  // patch (with many patches, each patch is read by one thread only: its source lines are fetched
  // into one core's caches, not two -- measured 7-14% faster at 2 threads) and small enough for
  // about 8 blocks per thread.
  const int64_t rows_per_patch = g.patch[0] * g.patch[1];
  int64_t block = std::max<int64_t>(1, std::min(rows_per_patch, rows / (8 * int64_t(num_threads()))));
  if (block >= g.patch[1]) block -= block % g.patch[1];  // whole planes, which strips need
  std::atomic<int64_t> next{0};
  auto run = [&](const auto& body) {
    parallel_for(
        num_threads(),
        [&](int64_t, int64_t) {
          for (int64_t b; (b = next.fetch_add(block)) < rows;) body(b, std::min(b + block, rows));
        },
        1);
  };
  if (g.vol_numel() < (int64_t(1) << 31))
    run(RowGather<T, O, kLinear, ND, int32_t>{src, g, mats, parent, inside_mask, out});
  else
    run(RowGather<T, O, kLinear, ND, int64_t>{src, g, mats, parent, inside_mask, out});
}

template <class T, class O>
void gather_any(const T* src, const PatchGeom& g, const float* mats, const int32_t* parent, Interp mode,
                bool inside_mask, O* out) {
  check_geom(g, "gather_affine");
  if (g.num_patches == 0) return;
  if (parent)
    for (int64_t p = 0; p < g.num_patches; ++p)
      if (parent[p] < 0 || parent[p] >= g.num_vols)
        throw std::invalid_argument("gather_affine: parent index " + std::to_string(parent[p]) + " of patch " +
                                    std::to_string(p) + " is outside [0, " + std::to_string(g.num_vols) + ")");
  const bool lin = mode == Interp::linear;
  if (g.ndim == 3) {
    if (lin) run_rows<T, O, true, 3>(src, g, mats, parent, inside_mask, out);
    else run_rows<T, O, false, 3>(src, g, mats, parent, inside_mask, out);
  } else {
    if (lin) run_rows<T, O, true, 2>(src, g, mats, parent, inside_mask, out);
    else run_rows<T, O, false, 2>(src, g, mats, parent, inside_mask, out);
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
  check_geom(g, "gather_affine_backward");
  scatter_affine_impl(grad_out, g.channels + (inside_mask ? 1 : 0), g, mats, parent, mode, common::kWindowFlat,
                      grad_src, nullptr);
}

}  // namespace pw::kernels::cpu
