// CPU bodies of kernels/scatter.h, and the adjoint of the gather (gather_affine_backward), which is
// the same splatting with a flat window and no weight volume.
//
// No atomics on the values: the target planes along the partition axis (D in 3D, H in 2D; all Q
// volumes one after the other) are cut into slabs of equal estimated work (each patch spreads its
// voxel count evenly over the planes its bounding box spans), one per thread, handed out
// dynamically. A thread visits only the patches and rows whose extent meets its slab and adds only
// the contributions whose target plane lies in it, so every target voxel is written by one thread
// at a time, and the sums do not depend on the number of threads.
//
// Within a slab, rows are added in patch and row order (the order of the sums); rotated rows are
// batched (PendingRows) so that their target lines can be prefetched ahead of the read-modify-writes.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__FMA__) && defined(__SSE4_1__)
#include <immintrin.h>
// Linear corners in x-pairs (PendingRows::add_pair): with FMA, where the scalar loop's `+= w * v` is an FMA too.
#define PW_SCATTER_PAIRS 1
#endif

#include "kernels/common/patch_math.h"
#include "kernels/cpu/prefetch.h"
#include "kernels/parallel.h"
#include "kernels/scatter.h"

namespace pw::kernels::cpu {

void scatter_affine_impl(const float* patches, int64_t patch_channels, const PatchGeom& g, const float* mats,
                         const int32_t* parent, Interp mode, int window, float* acc, float* weight);

namespace {

using common::PatchMatrix;

// Whether linear rows along the target's x axis keep their corners in registers (add_linear_row1). Where the
// x-pairs are built, the pair path is faster on them too (axis-aligned patches scaled 0.5, linear stitch, Zen 2:
// 12.1 -> 10.3 ms); both give the same floats.
#ifdef PW_SCATTER_PAIRS
constexpr bool kRegisterRows = false;
#else
constexpr bool kRegisterRows = true;
#endif

struct PatchInfo {
  PatchMatrix M;
  int64_t q;
  int64_t lo, hi;  // planes [lo, hi] along the partition axis that the patch may touch; lo > hi: none
};

// Prefetches (for writing) the `len` floats at first + 2 * step of a target of V floats, if inside: the
// row two ahead of a contiguous row, `step` = the target offset between a patch's consecutive rows.
// The rows of an aligned patch are a target row (1 KiB at 256^3) apart, which the hardware prefetchers
// of Zen 4 do not follow: the aligned stitch of bench_gather took 7.2-8.0 ms without this, 4.3-4.6 ms
// with it (2 threads; one row ahead 5.9, three 4.8, four 5.4). On Sapphire Rapids an earlier try measured
// no difference; for the rows of rotated patches (a few voxels two rows ahead) none either.
inline void prefetch_ahead(const float* target, int64_t first, int64_t step, int64_t len, int64_t V) {
  const int64_t at = first + 2 * step;
  if (step == 0 || at < 0 || at + len > V) return;
  for (int64_t l = 0; l < len; l += 16) prefetch_w(target + at + l);
}

// c ? x : y by bits, both evaluated: a loop of these vectorises with AVX2 too. (GCC turned the plain
// conditional sum, and a select between sums, into a branch per voxel unless AVX-512 masks it: the aligned
// stitch of the portable x86-64-v3 build ran 1.5x slower than with AVX-512.)
inline float select(bool c, float x, float y) {
  uint32_t xb, yb;
  std::memcpy(&xb, &x, 4);
  std::memcpy(&yb, &y, 4);
  const uint32_t m = 0u - uint32_t(c), r = (xb & m) | (yb & ~m);
  float out;
  std::memcpy(&out, &r, 4);
  return out;
}

// Adds the len weighted voxels of a patch row (its channels PN floats apart) to len consecutive target
// voxels from `first` (channels V floats apart), and their weights to the weight target wq (may be
// nullptr); zero weights leave the target untouched. Prefetches the row two ahead (prefetch_ahead).
[[gnu::noinline]] void add_contiguous_row(float* accq, float* wq, int64_t C, int64_t V, int64_t first, int64_t row_step,
                               const float* prow, int64_t PN, const float* __restrict__ w, int len) {
  for (int64_t c = 0; c < C; ++c) prefetch_ahead(accq + c * V, first, row_step, len, V);
  if (wq) prefetch_ahead(wq, first, row_step, len, V);
  for (int64_t c = 0; c < C; ++c) {
    float* __restrict__ a = accq + c * V + first;
    const float* __restrict__ pr = prow + c * PN;
    for (int i = 0; i < len; ++i) a[i] = select(w[i] != 0.f, a[i] + w[i] * pr[i], a[i]);
  }
  if (wq) {
    float* __restrict__ a = wq + first;
    for (int i = 0; i < len; ++i) a[i] = select(w[i] != 0.f, a[i] + w[i], a[i]);
  }
}

// Whether a nearest row starting at r (target coordinates less the origin o) with steps st lands on
// consecutive target voxels from the exact integer start: axis-aligned (st = 0, 0, 1) at whole-voxel
// offsets small enough that every coordinate r + i is exact, so the per-voxel rounding of the general
// loop gives start + i (tree tiling at the source's voxel size; the bench's aligned stitch).
inline bool whole_voxel_row(const float r[3], const float st[3], const float o[3]) {
  if (st[0] != 0.f || st[1] != 0.f || st[2] != 1.f) return false;
  for (int k = 0; k < 3; ++k) {
    const float v = r[k] - o[k];
    if (v != floorf(v) || fabsf(v) > 4194304.f) return false;  // 2^22
  }
  return true;
}

// Rotated (nearest) and linear rows that lie inside the target, also those crossing the owned planes'
// border (with weight 0 beyond it), gathered before their read-modify-writes: per
// row its patch values and, per voxel, the target index (linear: of corner 0, and the fractions) and
// weight. flush() adds them in row order, exactly as the row-at-a-time loop did (the same sums), and
// prefetches the target lines of the row kAhead rows on. A rotated patch meets a new target line every
// few voxels; with the index arithmetic between them, the row-at-a-time loop kept too few line misses
// in flight. bench_gather (Zen 4, 2 threads, medians, with the later changes): gather backward nearest
// 6.4-9.0 -> 2.9 ms, linear 30-36 -> 14; rotated stitch nearest 9.8-11.1 -> 5.5, linear 37-38 -> 18.
// The buffers of PendingRows, per thread: kept between calls (apply stitches thousands of small bricks), grown
// as needed, never cleared.
struct PendingBuffers {
  std::vector<int64_t> idx;
  std::vector<float> ww, fz, fy, fx;
};
template <class T>
T* at_least(std::vector<T>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
  return v.data();
}

template <bool kLinear, int ND>
struct PendingRows {
  static constexpr int kRows = 128, kAhead = 32;
  int64_t len = 0;  // voxels per row
  int rows = 0;     // pending rows
  int64_t* idx;
  float *ww, *fz = nullptr, *fy = nullptr, *fx = nullptr;  // fractions: linear only
  int64_t lo = 0, hi = 0;  // linear: the owned planes [lo, hi), for rows that cross their border
  const float* prow[kRows] = {};
  bool along_x[kRows] = {};  // the row runs along the target's x axis (linear: add_linear_row1, see kRegisterRows)
  bool crosses[kRows] = {};  // linear: some corners lie beyond the owned planes (weight 0 there)
  bool dense[kRows] = {};    // nearest: no voxel of the row has weight 0 (no test per voxel)
  explicit PendingRows(int64_t s2) : len(s2) {
    thread_local PendingBuffers b;
    idx = at_least(b.idx, kRows * s2);
    ww = at_least(b.ww, kRows * s2);
    if (kLinear) fz = at_least(b.fz, kRows * s2), fy = at_least(b.fy, kRows * s2), fx = at_least(b.fx, kRows * s2);
  }
  // Where the next row's voxels go in idx, ww and the fractions.
  int64_t next() const { return int64_t(rows) * len; }
  void push(const float* patch_row, bool x_row = false, bool crossing = false, bool no_zero = false) {
    along_x[rows] = x_row;
    crosses[rows] = crossing;
    dense[rows] = no_zero;
    prow[rows++] = patch_row;
  }
  bool full() const { return rows == kRows; }
  void flush(float* accq, float* wq, int64_t C, int64_t V, int64_t PN, int64_t n1, int64_t n2) {
    if (rows == 0) return;  // inlined: no call for the rows that come one at a time (aligned stitches)
    if (C == 1) add<1>(accq, wq, 1, V, PN, n1, n2);  // one channel (a gather's adjoint, a stitched image)
    else add<0>(accq, wq, C, V, PN, n1, n2);
    rows = 0;
  }

 private:
  // Into L2 (prefetcht1): 5-10% faster than prefetchw or prefetcht0 into L1 (bench_gather, Zen 4).
  static void prefetch_voxel(float* t, int64_t n1, int64_t n2) { prefetch_sample<kLinear, ND>(t, n2, n1 * n2); }
  template <int kC>  // kC: the channel count when known at compile time, else 0
  void add(float* accq, float* wq, int64_t C, int64_t V, int64_t PN, int64_t n1, int64_t n2) const {
    if (kC) C = kC;
    for (int r = 0; r < rows; ++r) {
      if (r + kAhead < rows) {
        const int64_t* ahead = idx + (r + kAhead) * len;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t i = 0; i < len; ++i) prefetch_voxel(accq + c * V + ahead[i], n1, n2);
        if (wq)
          for (int64_t i = 0; i < len; ++i) prefetch_voxel(wq + ahead[i], n1, n2);
      }
      const int64_t at = int64_t(r) * len;
      if (kLinear && kRegisterRows && along_x[r]) {  // channel by channel (the weight volume with the first)
        if (wq) add_linear_row1<true>(accq, wq, n1, n2, at, prow[r]);
        else add_linear_row1<false>(accq, nullptr, n1, n2, at, prow[r]);
        for (int64_t c = 1; c < C; ++c) add_linear_row1<false>(accq + c * V, nullptr, n1, n2, at, prow[r] + c * PN);
      } else if (kLinear) {
        add_linear_row(accq, wq, C, V, PN, n1, n2, at, prow[r], crosses[r]);
      } else {
        if (dense[r] && C == 1 && !wq) add_dense_row(accq, at, prow[r]);
        else add_nearest_row(accq, wq, C, V, PN, at, prow[r]);
      }
    }
  }
  void add_nearest_row(float* accq, float* wq, int64_t C, int64_t V, int64_t PN, int64_t at, const float* pr) const {
    const int64_t* id = idx + at;
    const float* w = ww + at;
    for (int64_t i = 0; i < len; ++i) {
      if (w[i] == 0.f) continue;
      for (int64_t c = 0; c < C; ++c) accq[c * V + id[i]] += w[i] * pr[c * PN + i];
      if (wq) wq[id[i]] += w[i];
    }
  }
  // add_nearest_row for a row without zero weights, one channel, no weight volume (a gather's adjoint): the
  // same sums without a test per voxel.
  void add_dense_row(float* acc, int64_t at, const float* __restrict__ pr) const {
    const int64_t* __restrict__ id = idx + at;
    const float* __restrict__ w = ww + at;
    for (int64_t i = 0; i < len; ++i) acc[id[i]] += w[i] * pr[i];
  }
  // add_linear_row for one channel (kW: and a weight volume), for rows along the target's x axis (on
  // rotated rows its branches cost more than it saves: 15%), in builds without the x-pairs (kRegisterRows;
  // with them add_linear_row is faster on such rows too). Consecutive voxels of a row share corners
  // (the same corner 0, or one voxel apart along x); those stay in registers from one voxel to the next
  // instead of each addition waiting for the previous one's store. Every corner sees the same additions
  // in the same order (other corners are other voxels), and a corner with weight 0 is stored back as it
  // was loaded: the same floats as add_linear_row.
  template <bool kW>
  [[gnu::always_inline]] void add_linear_row1(float* acc, float* wt, int64_t n1, int64_t n2, int64_t at,
                                              const float* pr) const {
    constexpr int K = ND == 3 ? 4 : 2;  // corner rows (dz, dy), each holding the pair x, x + 1
    int64_t off[K];
    for (int k = 0; k < K; ++k) off[k] = (ND == 3 ? (k >> 1) * n1 * n2 : 0) + (k & 1) * n2;
    float v0[K] = {}, v1[K] = {}, u0[K] = {}, u1[K] = {};  // values (u: weights) at x and x + 1
    int64_t base = -1;
    auto put = [&](int k, int d) {
      (d ? acc[base + off[k] + 1] : acc[base + off[k]]) = d ? v1[k] : v0[k];
      if (kW) (d ? wt[base + off[k] + 1] : wt[base + off[k]]) = d ? u1[k] : u0[k];
    };
    auto get = [&](int k, int d) {
      (d ? v1[k] : v0[k]) = acc[base + off[k] + d];
      if (kW) (d ? u1[k] : u0[k]) = wt[base + off[k] + d];
    };
    for (int64_t i = 0; i < len; ++i) {
      const float w = ww[at + i];
      if (w == 0.f) continue;
      const int64_t b = idx[at + i];
      if (b != base) {
        if (base >= 0 && b == base + 1) {  // x + 1: the pair's upper half becomes its lower half
          for (int k = 0; k < K; ++k) {
            put(k, 0);
            v0[k] = v1[k], u0[k] = u1[k];
          }
          base = b;
          for (int k = 0; k < K; ++k) get(k, 1);
        } else if (base >= 0 && b == base - 1) {
          for (int k = 0; k < K; ++k) {
            put(k, 1);
            v1[k] = v0[k], u1[k] = u0[k];
          }
          base = b;
          for (int k = 0; k < K; ++k) get(k, 0);
        } else {
          if (base >= 0)
            for (int k = 0; k < K; ++k) put(k, 0), put(k, 1);
          base = b;
          for (int k = 0; k < K; ++k) get(k, 0), get(k, 1);
        }
      }
      const float z1 = fz[at + i], y1 = fy[at + i], x1 = fx[at + i];
      const float wz[2] = {ND == 3 ? 1.f - z1 : 1.f, ND == 3 ? z1 : 0.f};
      const float wy[2] = {1.f - y1, y1}, wx[2] = {1.f - x1, x1};
      const float p = pr[i];
      for (int k = 0; k < K; ++k) {
        const float wzy = ND == 3 ? wz[k >> 1] * wy[k & 1] : wz[0] * wy[k & 1];
        const float k0 = wzy * wx[0], k1 = wzy * wx[1];
        if (k0 != 0.f) {
          v0[k] += (w * k0) * p;
          if (kW) u0[k] += w * k0;
        }
        if (k1 != 0.f) {
          v1[k] += (w * k1) * p;
          if (kW) u1[k] += w * k1;
        }
      }
    }
    if (base >= 0)
      for (int k = 0; k < K; ++k) put(k, 0), put(k, 1);
  }
  // Each voxel's 4 (2D) or 8 (3D) corners with weight w * (wz * wy) * wx, skipping zero ones. A row that
  // `crossing`s the owned planes' border gets weight 0 in the corner planes beyond it (along z in 3D, y in 2D):
  // a corner's plane lies in [lo, hi) exactly when its index lies in [lo, hi) planes of P floats.
  void add_linear_row(float* accq, float* wq, int64_t C, int64_t V, int64_t PN, int64_t n1, int64_t n2, int64_t at,
                      const float* pr, bool crossing) const {
    const int64_t HW = n1 * n2, P = ND == 3 ? HW : n2, first = lo * P, end = hi * P;
    for (int64_t i = 0; i < len; ++i) {
      const float w = ww[at + i];
      if (w == 0.f) continue;
      const float z1 = fz[at + i], y1 = fy[at + i], x1 = fx[at + i];
      float wz[2] = {ND == 3 ? 1.f - z1 : 1.f, ND == 3 ? z1 : 0.f};
      float wy[2] = {1.f - y1, y1};
      const float wx[2] = {1.f - x1, x1};
      if (crossing) {
        float* wp = ND == 3 ? wz : wy;
        for (int a = 0; a < 2; ++a)
          if (idx[at + i] + a * P < first || idx[at + i] + a * P >= end) wp[a] = 0.f;
      }
      for (int a = 0; a < (ND == 3 ? 2 : 1); ++a)
        for (int b = 0; b < 2; ++b) {
          const int64_t id = idx[at + i] + a * HW + b * n2;
#ifdef PW_SCATTER_PAIRS
          add_pair(accq, wq, C, V, PN, id, pr + i, w, wz[a] * wy[b], wx);
#else
          for (int d = 0; d < 2; ++d) {
            const float kw = (wz[a] * wy[b]) * wx[d];
            if (kw == 0.f) continue;
            const float wk = w * kw;
            for (int64_t c = 0; c < C; ++c) accq[c * V + id + d] += wk * pr[c * PN + i];
            if (wq) wq[id + d] += wk;
          }
#endif
        }
    }
  }
#ifdef PW_SCATTER_PAIRS
  // The two corners (x, x + 1) at id of one corner row, as one 64-bit read-modify-write per channel (and of
  // the weight volume): lane d adds w * (wzy * wx[d]) times the voxel's value, by the same FMA as the
  // scalar loop; a lane whose corner weight is 0 keeps its value, as the scalar loop skips it. Each corner
  // still gets its additions in voxel order, so the sums are the same floats.
  static void add_pair(float* accq, float* wq, int64_t C, int64_t V, int64_t PN, int64_t id, const float* p, float w,
                       float wzy, const float wx[2]) {
    const __m128 kw = _mm_mul_ps(_mm_set1_ps(wzy), _mm_setr_ps(wx[0], wx[1], 0.f, 0.f));
    const __m128 live = _mm_cmpneq_ps(kw, _mm_setzero_ps());
    const int mask = _mm_movemask_ps(live) & 3;
    if (mask == 0) return;
    const __m128 wk = _mm_mul_ps(_mm_set1_ps(w), kw);
    auto load2 = [](const float* t) { return _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(t))); };
    auto store2 = [](float* t, __m128 v) { _mm_store_sd(reinterpret_cast<double*>(t), _mm_castps_pd(v)); };
    for (int64_t c = 0; c < C; ++c) {
      float* t = accq + c * V + id;
      const __m128 old = load2(t), sum = _mm_fmadd_ps(wk, _mm_set1_ps(p[c * PN]), old);
      store2(t, mask == 3 ? sum : _mm_blendv_ps(old, sum, live));
    }
    if (wq) {
      const __m128 old = load2(wq + id), sum = _mm_add_ps(old, wk);
      store2(wq + id, mask == 3 ? sum : _mm_blendv_ps(old, sum, live));
    }
  }
#endif
};

// A nearest row inside the target (coordinates >= -0.5, so truncating x + 0.5 is common::round_nearest):
// per voxel the target index and the weight w01 * w2[i]. A row that `crosses` the border of the owned
// planes [lo, hi) along the partition axis gets weight 0 beyond it, and there an index clamped into them
// (flush prefetches it: never a line another thread writes). int32 coordinates, restrict, and the mask in
// a second loop: the first vectorises with AVX2 too (float -> int64 conversions and int64 min/max need
// AVX-512; a select of floats by int compares kept GCC from vectorising it). I: the type of the index
// arithmetic, int32_t for targets under 2^31 voxels (AVX2 multiplies int64 by three 32-bit products:
// the nearest gather backward of bench_gather took 6.2 -> 5.4 ms on Zen 2 in int32), else int64_t.
template <int ND, class I>
inline void nearest_row_voxels_as(const float r[3], const float st[3], const float o[3], int64_t s2, int64_t n1,
                               int64_t n2, int64_t lo, int64_t hi, bool crosses, float w01,
                               const float* __restrict__ w2, int64_t* __restrict__ id, float* __restrict__ ww) {
  const int32_t lo32 = int32_t(lo), last = int32_t(hi - 1);  // plane indices of one volume: < 2^31
  const I m1 = I(n1), m2 = I(n2);
  auto axis = [&](int k, float fi) { return int32_t((common::coord(r[k], fi, st[k]) - o[k]) + 0.5f); };
  for (int i = 0; i < int(s2); ++i) {  // an int counter: int -> float vectorises
    const float fi = float(i);
    const int32_t iz = ND == 3 ? axis(0, fi) : 0, iy = axis(1, fi), ix = axis(2, fi);
    const int32_t ipc = std::min(std::max(ND == 3 ? iz : iy, lo32), last);  // the partition axis, clamped
    id[i] = (I(ND == 3 ? ipc : iz) * m1 + (ND == 3 ? iy : ipc)) * m2 + ix;
    ww[i] = w01 * w2[i];
  }
  if (!crosses) return;
  for (int i = 0; i < int(s2); ++i) {
    const int32_t ip = axis(ND == 3 ? 0 : 1, float(i));
    if (ip < lo32 || ip > last) ww[i] = 0.f;
  }
}
// The same for a target of V voxels per volume, in int32 arithmetic where V < 2^31.
template <int ND>
inline void nearest_row_voxels(int64_t V, const float r[3], const float st[3], const float o[3], int64_t s2, int64_t n1,
                               int64_t n2, int64_t lo, int64_t hi, bool crosses, float w01, const float* w2, int64_t* id,
                               float* ww) {
  if (V < (int64_t(1) << 31)) nearest_row_voxels_as<ND, int32_t>(r, st, o, s2, n1, n2, lo, hi, crosses, w01, w2, id, ww);
  else nearest_row_voxels_as<ND, int64_t>(r, st, o, s2, n1, n2, lo, hi, crosses, w01, w2, id, ww);
}

// A linear row inside the target (coordinates >= 0, so truncation is floor): per voxel the index of
// corner 0, the fractions and the weight w01 * w2[i]. int32 <-> float converts in vectors, int64 -> float
// does not; restrict: the loop vectorises. I: the index arithmetic's type (nearest_row_voxels_as).
template <int ND, class I>
inline void linear_row_corners_as(const float r[3], const float st[3], const float o[3], int64_t s2, int64_t n1,
                                  int64_t n2, float w01, const float* __restrict__ w2, int64_t* __restrict__ id,
                                  float* __restrict__ ww, float* __restrict__ fz, float* __restrict__ fy,
                                  float* __restrict__ fx) {
  const I m1 = I(n1), m2 = I(n2);
  for (int i = 0; i < int(s2); ++i) {  // an int counter: int -> float vectorises
    const float fi = float(i);
    const float z = ND == 3 ? (common::coord(r[0], fi, st[0]) - o[0]) : 0.f;
    const float y = (common::coord(r[1], fi, st[1]) - o[1]);
    const float x = (common::coord(r[2], fi, st[2]) - o[2]);
    const int32_t iz = int32_t(z), iy = int32_t(y), ix = int32_t(x);
    fz[i] = z - float(iz);
    fy[i] = y - float(iy);
    fx[i] = x - float(ix);
    id[i] = (I(iz) * m1 + iy) * m2 + ix;
    ww[i] = w01 * w2[i];
  }
}
template <int ND>
inline void linear_row_corners(int64_t V, const float r[3], const float st[3], const float o[3], int64_t s2, int64_t n1,
                               int64_t n2, float w01, const float* w2, int64_t* id, float* ww, float* fz, float* fy,
                               float* fx) {
  if (V < (int64_t(1) << 31)) linear_row_corners_as<ND, int32_t>(r, st, o, s2, n1, n2, w01, w2, id, ww, fz, fy, fx);
  else linear_row_corners_as<ND, int64_t>(r, st, o, s2, n1, n2, w01, w2, id, ww, fz, fy, fx);
}

// The target of one thread's scatter in volume q: its C channels of V floats (accq; wq the weight volume or
// nullptr), sizes n, the brick origin o (exact floats) and the planes [lo, hi) it owns along the partition
// axis (D in 3D, H in 2D). PN: floats per patch channel.
struct Slab {
  float* accq;
  float* wq;
  int64_t C, V, PN;
  int64_t n[3];
  float o[3];
  int64_t lo, hi;
};

// A patch row: start r and steps st (target coordinates), s2 voxels (values prow, channels PN floats apart)
// with weights w01 * w2[i].
struct Row {
  float r[3], st[3];
  int64_t s2;
  float w01;
  const float* w2;
  const float* prow;
};

// Where a row lies: `inside` the target, `fast` when also inside the owned planes, `skip` when it misses them
// (from the rounded extent of its first and last voxel on each axis).
struct RowExtent {
  bool inside, fast, skip;
};

template <bool kLinear, int ND>
RowExtent row_extent(const Row& row, const Slab& t) {
  constexpr int pa = ND == 3 ? 0 : 1;
  bool inside = true, fast = true, skip = false;
  for (int k = pa; k < 3; ++k) {
    float a = row.r[k] - t.o[k], b = common::coord(row.r[k], float(row.s2 - 1), row.st[k]) - t.o[k];
    float rlo = common::min2(a, b), rhi = common::max2(a, b);
    float flo = kLinear ? floorf(rlo) : common::round_nearest(rlo);
    float fhi = kLinear ? floorf(rhi) + 1.f : common::round_nearest(rhi);
    inside &= (flo >= 0.f) & (fhi <= float(t.n[k] - 1));
    if (k == pa) {
      skip = !(fhi >= float(t.lo) && flo < float(t.hi));
      fast = (flo >= float(t.lo)) & (fhi < float(t.hi));
    }
  }
  return {inside, fast && inside, skip};
}

// Per-thread scratch for the rows added one at a time (nearest rows at a border, aligned rows).
struct RowScratch {
  std::vector<int64_t> idx;
  std::vector<char> inb;  // the voxel lands inside the target and the owned planes
  std::vector<float> ww;
  explicit RowScratch(int64_t s2) : idx(s2), inb(s2, 1), ww(s2) {}
};

// An axis-aligned nearest row crossing a border of the target or of the owned planes: the voxels inside
// form one run [a, b) along x (y and z are constant). Fills s.idx, s.inb and s.ww (0 outside the run).
template <int ND>
void aligned_border_voxels(const Row& row, const Slab& t, RowScratch& s) {
  constexpr int pa = ND == 3 ? 0 : 1;
  const float *r = row.r, *st = row.st, *o = t.o;
  bool inz, iny;
  const int64_t iz = common::nearest_axis(r[0] - o[0], t.n[0], inz);
  const int64_t iy = common::nearest_axis(r[1] - o[1], t.n[1], iny);
  const int64_t ipa = pa == 0 ? iz : iy;
  auto inside_x = [&](int64_t i) {
    bool in;
    common::nearest_axis(common::coord(r[2], float(i), st[2]) - o[2], t.n[2], in);
    return in;
  };
  int64_t a = 0, b = inz & iny & (ipa >= t.lo) & (ipa < t.hi) ? row.s2 : 0;
  while (a < b && !inside_x(a)) ++a;
  while (b > a && !inside_x(b - 1)) --b;
  std::fill(s.inb.begin(), s.inb.end(), 0);
  std::fill(s.ww.begin(), s.ww.end(), 0.f);
  for (int i = int(a); i < int(b); ++i) {  // coordinates >= -0.5: truncating x + 0.5 rounds
    const int64_t ix = int64_t((common::coord(r[2], float(i), st[2]) - o[2]) + 0.5f);
    s.idx[i] = (iz * t.n[1] + iy) * t.n[2] + ix;
    s.inb[i] = 1;
    s.ww[i] = row.w01 * row.w2[i];
  }
}

// Any other nearest row crossing a border: each voxel checked on every axis.
template <int ND>
void general_border_voxels(const Row& row, const Slab& t, RowScratch& s) {
  constexpr int pa = ND == 3 ? 0 : 1;
  const float *r = row.r, *st = row.st, *o = t.o;
  for (int64_t i = 0; i < row.s2; ++i) {
    const float fi = float(i);
    bool inz, iny, inx;
    const int64_t iz = common::nearest_axis((common::coord(r[0], fi, st[0]) - o[0]), t.n[0], inz);
    const int64_t iy = common::nearest_axis((common::coord(r[1], fi, st[1]) - o[1]), t.n[1], iny);
    const int64_t ix = common::nearest_axis((common::coord(r[2], fi, st[2]) - o[2]), t.n[2], inx);
    const int64_t ipa = pa == 0 ? iz : iy;
    const bool ok = inz & iny & inx & (ipa >= t.lo) & (ipa < t.hi);
    s.inb[i] = ok;
    s.idx[i] = (iz * t.n[1] + iy) * t.n[2] + ix;
    s.ww[i] = ok ? row.w01 * row.w2[i] : 0.f;
  }
}

// A nearest row at whole-voxel offsets inside the owned planes (whole_voxel_row): consecutive target voxels
// from the exact start, no per-voxel indices, no contiguity test.
template <int ND>
inline void add_whole_voxel_row(const Row& row, const Slab& t, int64_t row_step, RowScratch& s) {
  const float *r = row.r, *o = t.o;
  const int64_t first =
      ((ND == 3 ? int64_t(r[0] - o[0]) : 0) * t.n[1] + int64_t(r[1] - o[1])) * t.n[2] + int64_t(r[2] - o[2]);
  for (int i = 0; i < int(row.s2); ++i) s.ww[i] = row.w01 * row.w2[i];
  add_contiguous_row(t.accq, t.wq, t.C, t.V, first, row_step, row.prow, t.PN, s.ww.data(), int(row.s2));
}

// Any other nearest row that is not pending (PendingRows): axis-aligned, or crossing a border. Axis-aligned rows
// (tree tiling at the source's voxel size) land on consecutive target voxels: then the read-modify-write is
// a plain vectorised loop (same sums, same skips), also over the inside part [i0, i1) of a row that crosses
// the target's border (a brick's). row_step: the target offset between the patch's consecutive rows.
template <int ND>
void add_nearest_row_checked(const Row& row, const Slab& t, bool fast, bool aligned, int64_t row_step, RowScratch& s) {
  const float *r = row.r, *o = t.o;
  const int64_t n1 = t.n[1], n2 = t.n[2], s2 = row.s2;
  if (fast)
    nearest_row_voxels<ND>(t.V, r, row.st, o, s2, n1, n2, t.lo, t.hi, false, row.w01, row.w2, s.idx.data(),
                           s.ww.data());
  else if (aligned)
    aligned_border_voxels<ND>(row, t, s);
  else
    general_border_voxels<ND>(row, t, s);
  int64_t i0 = 0, i1 = s2;
  if (!fast) {
    while (i0 < i1 && !s.inb[i0]) ++i0;
    while (i1 > i0 && !s.inb[i1 - 1]) --i1;
    if (i0 == i1) return;  // nothing of the row lands here
  }
  bool contiguous = aligned && i0 < i1;
  if (contiguous) {
    int64_t off = 0;
    for (int64_t i = i0; i < i1; ++i) off |= (fast ? 0 : !s.inb[i]) | (s.idx[i] ^ (s.idx[i0] + i - i0));
    contiguous = off == 0;
  }
  if (contiguous) {
    add_contiguous_row(t.accq, t.wq, t.C, t.V, s.idx[i0], row_step, row.prow + i0, t.PN, s.ww.data() + i0,
                       int(i1 - i0));
    return;
  }
  for (int64_t i = 0; i < s2; ++i) {
    const float w = s.ww[i];
    if (w == 0.f) continue;
    const int64_t id = s.idx[i];
    for (int64_t c = 0; c < t.C; ++c) t.accq[c * t.V + id] += w * row.prow[c * t.PN + i];
    if (t.wq) t.wq[id] += w;
  }
}

// A linear row crossing a border of the target or of the owned planes: each voxel's corners checked.
template <int ND>
void add_linear_row_checked(const Row& row, const Slab& t) {
  constexpr int pa = ND == 3 ? 0 : 1;
  const float *r = row.r, *st = row.st, *o = t.o;
  for (int64_t i = 0; i < row.s2; ++i) {
    const float w = row.w01 * row.w2[i];
    if (w == 0.f) continue;
    const float fi = float(i);
    const float z = (common::coord(r[0], fi, st[0]) - o[0]);
    const float y = (common::coord(r[1], fi, st[1]) - o[1]);
    const float x = (common::coord(r[2], fi, st[2]) - o[2]);
    common::LinearAxis az = common::linear_axis(z, t.n[0]), ay = common::linear_axis(y, t.n[1]),
                       ax = common::linear_axis(x, t.n[2]);
    if (ND == 2) az = {0, 0, 1.f, 0.f};
    for (int a = 0; a < 2; ++a) {
      const int64_t iz = a ? az.i1 : az.i0;
      const float wz = a ? az.w1 : az.w0;
      if (wz == 0.f || (pa == 0 && (iz < t.lo || iz >= t.hi))) continue;
      for (int b = 0; b < 2; ++b) {
        const int64_t iy = b ? ay.i1 : ay.i0;
        const float wy = b ? ay.w1 : ay.w0;
        if (wy == 0.f || (pa == 1 && (iy < t.lo || iy >= t.hi))) continue;
        for (int d = 0; d < 2; ++d) {
          const int64_t ix = d ? ax.i1 : ax.i0;
          const float kw = (wz * wy) * (d ? ax.w1 : ax.w0);
          if (kw == 0.f) continue;
          const float wk = w * kw;
          const int64_t id = (iz * t.n[1] + iy) * t.n[2] + ix;
          for (int64_t c = 0; c < t.C; ++c) t.accq[c * t.V + id] += wk * row.prow[c * t.PN + i];
          if (t.wq) t.wq[id] += wk;
        }
      }
    }
  }
}

// The rows of patch p that meet the slab t, in row order. Rotated nearest rows and linear rows inside the
// target wait in `pending` (flushed before any other row, so the additions keep the row order).
template <bool kLinear, int ND>
void scatter_patch(const float* pp, const PatchGeom& g, const PatchMatrix& M, const std::vector<float>* wt,
                   float w2_min, const Slab& t, PendingRows<kLinear, ND>& pending, RowScratch& s) {
  const int64_t s1 = g.patch[1], s2 = g.patch[2], n1 = t.n[1], n2 = t.n[2];
  // Target offset between consecutive rows (x1 + 1), exact for axis-aligned patches.
  const int64_t row_step =
      (ND == 3 ? std::lround(M.m[0][1]) * n1 * n2 : 0) + std::lround(M.m[1][1]) * n2 + std::lround(M.m[2][1]);
  for (int64_t x0 = 0; x0 < g.patch[0]; ++x0)
    for (int64_t x1 = 0; x1 < s1; ++x1) {
      Row row{{}, {}, s2, wt[0][x0] * wt[1][x1], wt[2].data(), pp + (x0 * s1 + x1) * s2};
      for (int k = 0; k < 3; ++k) {
        row.r[k] = common::row_start(M, k, float(x0), float(x1));
        row.st[k] = M.m[k][2];
      }
      const RowExtent e = row_extent<kLinear, ND>(row, t);
      if (e.skip || row.w01 == 0.f) continue;  // w01 = 0: a window's zero border row adds nothing
      const bool along_x = row.st[0] == 0.f && row.st[1] == 0.f, aligned = along_x && row.st[2] == 1.f;
      if (!kLinear && e.inside && !aligned) {  // a rotated row inside the target: pending until a flush
        nearest_row_voxels<ND>(t.V, row.r, row.st, t.o, s2, n1, n2, t.lo, t.hi, !e.fast, row.w01, row.w2,
                               pending.idx + pending.next(), pending.ww + pending.next());
        pending.push(row.prow, false, false, e.fast && row.w01 * w2_min != 0.f);  // dense: no weight is 0
        if (pending.full()) pending.flush(t.accq, t.wq, t.C, t.V, t.PN, n1, n2);
        continue;
      }
      if (kLinear && e.inside) {  // a linear row inside the target: pending (masked beyond the owned planes)
        const int64_t at = pending.next();
        linear_row_corners<ND>(t.V, row.r, row.st, t.o, s2, n1, n2, row.w01, row.w2, pending.idx + at,
                               pending.ww + at, pending.fz + at, pending.fy + at, pending.fx + at);
        pending.push(row.prow, along_x && e.fast, !e.fast);
        if (pending.full()) pending.flush(t.accq, t.wq, t.C, t.V, t.PN, n1, n2);
        continue;
      }
      pending.flush(t.accq, t.wq, t.C, t.V, t.PN, n1, n2);  // the rows before this one first: the same order
      if (!kLinear && e.fast && whole_voxel_row(row.r, row.st, t.o)) {
        add_whole_voxel_row<ND>(row, t, row_step, s);
      } else if (kLinear) {
        add_linear_row_checked<ND>(row, t);
      } else {
        add_nearest_row_checked<ND>(row, t, e.fast, aligned, row_step, s);
      }
    }
}

// Splats the patch voxels that land in planes [plane_begin, plane_end) (flattened over Q volumes).
// Each row runs in two phases: first the target indices and weights of all its voxels (a
// branch-free loop when the row lies inside the target, vectorised), then the read-modify-write loop
// over them. Rotated nearest rows and linear rows inside the target wait in
// PendingRows until 128 are pending or another kind of row comes (which flushes them first, so the
// additions keep the row order).
// Contiguous rows (axis-aligned patches) prefetch the target lines of the row two ahead (prefetch_ahead).
template <bool kLinear, int ND>
void scatter_range(const float* patches, int64_t PC, const PatchGeom& g, const std::vector<PatchInfo>& info,
                   const std::vector<float>* wt, int64_t plane_begin, int64_t plane_end, float* acc, float* weight) {
  const int64_t npa = g.vol[ND == 3 ? 0 : 1], V = g.vol_numel(), PN = g.patch_numel(), C = g.channels;
  PendingRows<kLinear, ND> pending(g.patch[2]);
  RowScratch scratch(g.patch[2]);
  const float w2_min = *std::min_element(wt[2].begin(), wt[2].end());  // window weights are >= 0
  for (int64_t q = plane_begin / npa; q * npa < plane_end; ++q) {
    const int64_t lo = std::max(plane_begin, q * npa) - q * npa;
    const int64_t hi = std::min(plane_end, (q + 1) * npa) - q * npa;  // own planes [lo, hi)
    const Slab t{acc + q * C * V, weight ? weight + q * V : nullptr, C, V, PN, {g.vol[0], g.vol[1], g.vol[2]},
                 {float(g.origin[0]), float(g.origin[1]), float(g.origin[2])}, lo, hi};
    pending.lo = lo, pending.hi = hi;
    for (size_t p = 0; p < info.size(); ++p) {
      const PatchInfo& pi = info[p];
      if (pi.q != q || pi.hi < lo || pi.lo >= hi) continue;
      scatter_patch<kLinear, ND>(patches + int64_t(p) * PC * PN, g, pi.M, wt, w2_min, t, pending, scratch);
    }
    pending.flush(t.accq, t.wq, C, V, PN, g.vol[1], g.vol[2]);
  }
}

// Per patch: its matrix, volume and the planes its bounding box may touch along the partition axis
// (pa); and into work (Q * npa planes), each patch's voxel count spread evenly over those planes.
std::vector<PatchInfo> patch_infos(const PatchGeom& g, const float* mats, const int32_t* parent, bool lin,
                                   std::vector<double>& work) {
  const int pa = g.ndim == 3 ? 0 : 1;
  const int64_t npa = g.vol[pa], Q = g.num_vols;
  const int64_t s[3] = {g.patch[0], g.patch[1], g.patch[2]};
  std::vector<PatchInfo> info(g.num_patches);
  work.assign(Q * npa + 1, 0.0);
  for (int64_t p = 0; p < g.num_patches; ++p) {
    PatchInfo& pi = info[p];
    pi.M = common::load_patch_matrix(mats + p * (g.ndim + 1) * (g.ndim + 1), g.ndim);
    pi.q = parent ? parent[p] : 0;
    if (pi.q < 0 || pi.q >= Q)
      throw std::invalid_argument("scatter_affine: parent index " + std::to_string(pi.q) + " of patch " +
                                  std::to_string(p) + " is outside [0, " + std::to_string(Q) + ")");
    float cmin = INFINITY, cmax = -INFINITY;
    for (int corner = 0; corner < 8; ++corner) {
      float x0 = (corner & 4) ? float(s[0] - 1) : 0.f, x1 = (corner & 2) ? float(s[1] - 1) : 0.f,
            x2 = (corner & 1) ? float(s[2] - 1) : 0.f;
      float c = common::coord(common::row_start(pi.M, pa, x0, x1), x2, pi.M.m[pa][2]) - float(g.origin[pa]);
      cmin = common::min2(cmin, c);
      cmax = common::max2(cmax, c);
    }
    pi.lo = 1;
    pi.hi = 0;
    if (!(cmin <= cmax)) continue;  // NaN matrix: nothing lands
    float flo = (lin ? floorf(cmin) : common::round_nearest(cmin)) - 1.f;
    float fhi = (lin ? floorf(cmax) + 1.f : common::round_nearest(cmax)) + 1.f;
    if (fhi < 0.f || flo > float(npa - 1)) continue;
    pi.lo = int64_t(common::max2(flo, 0.f));
    pi.hi = int64_t(common::min2(fhi, float(npa - 1)));
    const double per_plane = double(g.patch_numel()) / double(pi.hi - pi.lo + 1);
    for (int64_t z = pi.lo; z <= pi.hi; ++z) work[pi.q * npa + z] += per_plane;
  }
  return info;
}

// Contiguous plane ranges ("slabs") of equal estimated work (work per plane, over `planes` planes), one per
// thread: slab u is planes [cut[u], cut[u + 1]). Every slab scans the rows of every patch meeting it, and a
// row that crosses a slab border takes the checked (per-voxel) path in each slab it meets: few, thick slabs.
// With 4 per thread (which bounded the delay of a preempted thread to a quarter of its share) the rotated
// stitch of bench_gather took 20.7-21.8 ms and the nearest gather backward 17-20 ms on 2 Zen 4 threads; with
// 1, 10.7-12.3 and 9.1-9.6 ms (aligned patches: the same). A small target (a brick) gets at least 8 planes
// per slab.
std::vector<int64_t> slab_cuts(const std::vector<double>& work, int64_t planes) {
  const int64_t U = std::max<int64_t>(1, std::min<int64_t>(int64_t(num_threads()), planes / 8));
  std::vector<double> cum(planes + 1, 0.0);
  for (int64_t z = 0; z < planes; ++z) cum[z + 1] = cum[z] + work[z];
  std::vector<int64_t> cut(U + 1, 0);
  cut[U] = planes;
  for (int64_t u = 1; u < U; ++u) {
    double goal = cum[planes] * double(u) / double(U);
    cut[u] = std::max(cut[u - 1], int64_t(std::lower_bound(cum.begin(), cum.end(), goal) - cum.begin()));
    cut[u] = std::min(cut[u], planes);
  }
  return cut;
}

}  // namespace

void scatter_affine_impl(const float* patches, int64_t patch_channels, const PatchGeom& g, const float* mats,
                         const int32_t* parent, Interp mode, int window, float* acc, float* weight) {
  if (g.ndim != 2 && g.ndim != 3) throw std::invalid_argument("scatter_affine: ndim must be 2 or 3");
  if (g.ndim == 2 && (g.vol[0] != 1 || g.patch[0] != 1))
    throw std::invalid_argument("scatter_affine: a 2D geometry needs vol[0] = patch[0] = 1");
  if (g.num_patches == 0) return;
  const bool lin = mode == Interp::linear;
  const int64_t s[3] = {g.patch[0], g.patch[1], g.patch[2]};
  std::vector<double> work;
  const std::vector<PatchInfo> info = patch_infos(g, mats, parent, lin, work);
  // Each slab belongs to one thread while it is processed (the threads take the next free slab until none is
  // left), so no two threads ever add into the same voxel.
  const std::vector<int64_t> cut = slab_cuts(work, g.num_vols * g.vol[g.ndim == 3 ? 0 : 1]);
  const int64_t U = int64_t(cut.size()) - 1;

  std::vector<float> wt[3];
  for (int a = 0; a < 3; ++a) {
    wt[a].resize(s[a]);
    for (int64_t x = 0; x < s[a]; ++x) wt[a][x] = common::window_axis(window, x, s[a]);
  }
  std::atomic<int64_t> next{0};
  parallel_for(
      num_threads(),
      [&](int64_t, int64_t) {
        for (int64_t u; (u = next.fetch_add(1)) < U;) {
          if (cut[u] >= cut[u + 1]) continue;
          if (g.ndim == 3) {
            if (lin) scatter_range<true, 3>(patches, patch_channels, g, info, wt, cut[u], cut[u + 1], acc, weight);
            else scatter_range<false, 3>(patches, patch_channels, g, info, wt, cut[u], cut[u + 1], acc, weight);
          } else {
            if (lin) scatter_range<true, 2>(patches, patch_channels, g, info, wt, cut[u], cut[u + 1], acc, weight);
            else scatter_range<false, 2>(patches, patch_channels, g, info, wt, cut[u], cut[u + 1], acc, weight);
          }
        }
      },
      1);
}

void scatter_affine(const float* patches, const PatchGeom& g, const float* mats, const int32_t* parent,
                    Interp mode, Window window, float* acc, float* weight) {
  const int w = window == Window::cos ? common::kWindowCos
                : window == Window::cos2 ? common::kWindowCos2 : common::kWindowFlat;
  scatter_affine_impl(patches, g.channels, g, mats, parent, mode, w, acc, weight);
}

void stitch_normalize(const float* acc, const float* weight, int64_t channels, int64_t n, float alpha, float* out) {
  parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t c = 0; c < channels; ++c)
          for (int64_t i = b; i < e; ++i) out[c * n + i] = common::stitch_normalize(acc[c * n + i], weight[i], alpha);
      },
      1 << 14);
}

}  // namespace pw::kernels::cpu
