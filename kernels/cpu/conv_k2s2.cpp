// k2 s2 convolutions without copies (see conv_k2s2.h). Output voxel (z, y, x) of a k2 s2 convolution
// reads the input block (kd*z + a, 2y + b, 2x + d), a < kd, b, d < 2: per input channel c and row
// (a, b) -- a "tap" t = (c*kd + a)*2 + b -- two neighbours d = 0, 1 that lie side by side in memory.
// So a SIMD vector of L consecutive input floats of one row holds the pairs of L/2 consecutive
// outputs, and every lane is used:
//   forward:  acc += (w[o,t,0], w[o,t,1], w[o,t,0], ...) * x-vector, summed over the taps; at the end
//             the sum of lanes 2j and 2j+1 is output j (one shuffle per L/2 outputs).
//   adjoint:  dx-vector of tap t += (w[o,t,0], w[o,t,1], ...) * (dy[j], dy[j], dy[j+1], dy[j+1], ...),
//             summed over the output channels o: every dx value gets its one contribution, no sums.
//   weights:  dw[o,t,d] = sum of the lanes of parity d of (dy duplicated as above) * x-vector, summed
//             over all positions, with per-worker vector partial sums.
// A row whose output length is no multiple of L/2 ends with a vector shifted left to end at the row's
// end (never reading past it); it recomputes some outputs (forward, adjoint: the same values again) and
// its duplicated dy lanes of outputs already counted are zero (weights).
// L is the widest vector (16 lanes with AVX-512, 8 with AVX2) whose L/2 outputs fit in a row, halved
// for short rows (8^3, 4^3 levels). Threaded over (sample, tile of output rows) work items.
#include "kernels/cpu/conv_k2s2.h"

#define EIGEN_DONT_PARALLELIZE  // we thread ourselves (pw::parallel_for)
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_ps) when Eigen's packets inline.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Packet types as template arguments lose their may_alias attribute (harmless here; Eigen does the same).
#pragma GCC diagnostic ignored "-Wignored-attributes"
#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "kernels/cpu/bias_sum.h"
#include "kernels/cpu/work_items.h"
#include "kernels/cpu_paths.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define PW_K2S2 1
#endif

namespace pw::kernels::cpu::k2s2 {

#ifdef PW_K2S2
namespace {

// ---- vectors of L floats: Eigen's packets, plus the two pair operations -------------------------
template <int L>
struct PacketOf;
template <>
struct PacketOf<4> {
  using type = Eigen::internal::Packet4f;
};
template <>
struct PacketOf<8> {
  using type = Eigen::internal::Packet8f;
};
#ifdef __AVX512F__
template <>
struct PacketOf<16> {
  using type = Eigen::internal::Packet16f;
};
#endif

template <int L>
struct Vec {
  using T = typename PacketOf<L>::type;
  static T zero() { return Eigen::internal::pset1<T>(0.0f); }
  static T set1(float v) { return Eigen::internal::pset1<T>(v); }
  static T load(const float* p) { return Eigen::internal::ploadu<T>(p); }
  static void store(float* p, T v) { Eigen::internal::pstoreu(p, v); }
  static void stream(float* p, T v);  // non-temporal, p aligned to the vector
  static T fma(T a, T b, T c) { return Eigen::internal::pmadd(a, b, c); }
  static T add(T a, T b) { return Eigen::internal::padd(a, b); }
  static T dup(const float* p) { return Eigen::internal::ploaddup<T>(p); }  // p0 p0 p1 p1 ... (L/2 floats)
  static T pair(const float* p);                                           // p0 p1 p0 p1 ...
  static void store_pair_sums(float* p, T v, float base);                  // p[j] = base + v[2j] + v[2j+1]
};

inline double load_pair(const float* p) {
  double d;
  std::memcpy(&d, p, sizeof d);
  return d;
}

template <>
inline void Vec<4>::stream(float* p, T v) {
  _mm_stream_ps(p, v);
}
template <>
inline void Vec<8>::stream(float* p, T v) {
  _mm256_stream_ps(p, v);
}
#ifdef __AVX512F__
template <>
inline void Vec<16>::stream(float* p, T v) {
  _mm512_stream_ps(p, v);
}
#endif

template <>
inline Vec<4>::T Vec<4>::pair(const float* p) {
  return _mm_castpd_ps(_mm_set1_pd(load_pair(p)));
}
template <>
inline void Vec<4>::store_pair_sums(float* p, T v, float base) {
  const T s = _mm_add_ps(v, _mm_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  const T c = _mm_shuffle_ps(s, s, _MM_SHUFFLE(2, 0, 2, 0));
  _mm_store_sd(reinterpret_cast<double*>(p), _mm_castps_pd(_mm_add_ps(c, _mm_set1_ps(base))));
}

#ifdef __AVX2__
// A plain 16-byte load and three shuffles, no constant register. (Written when micro_adjoint duplicated dy
// in its loop: Eigen's ploaddup, a vbroadcastf128 builtin, made GCC store all 12 accumulators on every step
// there; now dup_positions and the weight pass's copy use it, outside the micro-kernels.)
template <>
inline Vec<8>::T Vec<8>::dup(const float* p) {
  const __m128 x = _mm_loadu_ps(p);                                                          // p0 p1 p2 p3
  const __m256 xx = _mm256_insertf128_ps(_mm256_castps128_ps256(x), _mm_movehl_ps(x, x), 1);  // p0 p1 p2 p3 | p2 p3 p2 p3
  return _mm256_unpacklo_ps(xx, xx);                                                         // p0 p0 p1 p1 | p2 p2 p3 p3
}
#endif
template <>
inline Vec<8>::T Vec<8>::pair(const float* p) {
  return _mm256_castpd_ps(_mm256_set1_pd(load_pair(p)));
}
template <>
inline void Vec<8>::store_pair_sums(float* p, T v, float base) {
  const T s = _mm256_add_ps(v, _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
  const __m128 c = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(s, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
  _mm_storeu_ps(p, _mm_add_ps(c, _mm_set1_ps(base)));
}

#ifdef __AVX512F__
template <>
inline Vec<16>::T Vec<16>::pair(const float* p) {
  return _mm512_castpd_ps(_mm512_set1_pd(load_pair(p)));
}
template <>
inline void Vec<16>::store_pair_sums(float* p, T v, float base) {
  const T s = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
  const __m256 c = _mm512_castps512_ps256(_mm512_permutexvar_ps(even, s));
  _mm256_storeu_ps(p, _mm256_add_ps(c, _mm256_set1_ps(base)));
}
constexpr int kMaxLanes = 16;
constexpr int MR = 8, NV = 3;  // forward and adjoint: rows x vectors of accumulators (of 32 registers)
#else
constexpr int kMaxLanes = 8;
constexpr int MR = 4, NV = 3;  // of 16 registers
#endif
constexpr int MO = kMaxLanes == 16 ? 4 : 2, NK = 6;  // weights: output channels x taps per block
constexpr int64_t kTileOutputs = 2048;               // outputs per work item (per sample)

int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

// Calls f(Vec<L>{}) with the widest L whose L/2 outputs fit in an output row of w >= 2 voxels.
template <class F>
void with_lanes(int64_t w, const F& f) {
#ifdef __AVX512F__
  if (w >= 8) return f(Vec<16>{});
#endif
  if (w >= 4) return f(Vec<8>{});
  f(Vec<4>{});
}

// The geometry seen from the input: sizes and the tap offsets t -> c*in_vol + a*H*W + b*W.
struct Layout {
  int64_t kd = 1, taps = 0, in_vol = 0, out_vol = 0;
  std::vector<int64_t> off;
  explicit Layout(const ConvGeom& g) : kd(g.k[0]), taps(g.cin * g.k[0] * 2), in_vol(g.in_vol()), out_vol(g.out_vol()) {
    for (int64_t c = 0; c < g.cin; ++c)
      for (int64_t a = 0; a < kd; ++a)
        for (int64_t b = 0; b < 2; ++b) off.push_back(c * in_vol + (a * g.in[1] + b) * g.in[2]);
  }
};

// One vector position: its first input float (tap 0) in a sample's x, its first output in a y channel
// plane, and how many of its L/2 outputs an earlier vector of the row already covers (a shifted tail).
struct Pos {
  int64_t src, dst;
  int covered;
};

// The vector positions of output rows [r0, r1) (row r = z * out[1] + y), L/2 outputs each.
void build_positions(const ConvGeom& g, int64_t kd, int64_t r0, int64_t r1, int half, std::vector<Pos>& pos) {
  pos.clear();
  const int64_t w = g.out[2], full = w / half * half;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t z = r / g.out[1], y = r % g.out[1];
    const int64_t row_src = (kd * z * g.in[1] + 2 * y) * g.in[2];
    for (int64_t x = 0; x < full; x += half) pos.push_back({row_src + 2 * x, r * w + x, 0});
    if (full < w) pos.push_back({row_src + 2 * (w - half), r * w + w - half, static_cast<int>(full - (w - half))});
  }
}

// The positions two micro-kernel calls (of NV positions) after position i, whose lines the forward and
// adjoint kernels prefetch while they compute (null near the tile's end). The forward reads, per
// position, one line from each of 2 * cin * kd rows: more streams than the hardware prefetcher follows.
const Pos* positions_ahead(const std::vector<Pos>& pos, int64_t i) {
  const int64_t a = i + 2 * NV;
  return a + NV <= static_cast<int64_t>(pos.size()) ? pos.data() + a : nullptr;
}

// noinline: see thread_buffer in conv.cpp (thread-local addresses in hot loops).
[[gnu::noinline]] std::vector<Pos>& thread_positions() {
  thread_local std::vector<Pos> pos;
  return pos;
}

// The work items of conv g, (sample s, tile of output rows), each worker taking a contiguous range of them
// (run_ranges: consecutive items share source lines). run(f) calls f(worker, s, pos, last) per item with
// its vector positions pos (build_positions, L/2 outputs each); last: the item is its sample's last tile.
template <int L>
struct Items {
  const ConvGeom& g;
  const Tiling tiles;
  const int64_t count;
  const int workers;
  explicit Items(const ConvGeom& g_)
      : g(g_), tiles(g_.out, kTileOutputs), count(g_.n * tiles.ntiles), workers(workers_for(count)) {}
  template <class F>
  void run(const F& f) const {
    run_ranges(count, workers, [&](int worker, int64_t item) {
      const int64_t s = item / tiles.ntiles, t = item % tiles.ntiles;
      std::vector<Pos>& pos = thread_positions();
      build_positions(g, g.k[0], tiles.begin(t), tiles.end(t), L / 2, pos);
      f(worker, s, static_cast<const std::vector<Pos>&>(pos), t == tiles.ntiles - 1);
    });
  }
};

// ---- forward ----------------------------------------------------------------------------------

// The weight pairs of an R x K matrix (pair_at(r, k): a pointer to 2 floats) packed in blocks of MR rows,
// K-major: pair (r, k) at (((r / MR) * K + k) * MR + r % MR) * 2; rows beyond R are zero. The forward
// pass packs (output channel, tap), the adjoint (tap, output channel).
template <class F>
std::vector<float> pack_pairs(int64_t R, int64_t K, const F& pair_at) {
  std::vector<float> packed(static_cast<size_t>(round_up(R, MR) * K * 2), 0.0f);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t k = 0; k < K; ++k)
      for (int d = 0; d < 2; ++d) packed[(((r / MR) * K + k) * MR + r % MR) * 2 + d] = pair_at(r, k)[d];
  return packed;
}

// y rows [0, rows) of pitch P at the nv positions p (+ bias) from all K taps of x. (All taps in one
// call: a shifted tail's outputs are stored twice, with the same value, never accumulated.) kPrefetch:
// also fetches the x lines of the NV positions `ahead` into L2.
template <int L, bool kPrefetch>
inline void micro_forward(int64_t K, const int64_t* off, const float* wp, const float* xs, const Pos* p, int nv,
                          const Pos* ahead, const float* bias, float* y, int64_t P, int rows) {
  using V = Vec<L>;
  typename V::T acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  const float* s0 = xs + p[0].src;
  const float* s1 = xs + p[nv > 1 ? 1 : 0].src;
  const float* s2 = xs + p[nv > 2 ? 2 : 0].src;
  for (int64_t k = 0; k < K; ++k, wp += MR * 2) {
    const typename V::T c0 = V::load(s0 + off[k]), c1 = V::load(s1 + off[k]), c2 = V::load(s2 + off[k]);
    if (kPrefetch)  // the intrinsic, not prefetch_l2: its asm here made k2 s2 fwd+bwd 2.83 -> 3.37 ms (same spills)
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(xs + ahead[v].src + off[k]), _MM_HINT_T1);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const typename V::T wr = V::pair(wp + 2 * r);
      acc[r][0] = V::fma(wr, c0, acc[r][0]);
      acc[r][1] = V::fma(wr, c1, acc[r][1]);
      acc[r][2] = V::fma(wr, c2, acc[r][2]);
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int v = 0; v < nv; ++v) V::store_pair_sums(y + r * P + p[v].dst, acc[r][v], bias ? bias[r] : 0.0f);
}

// The forward pass by work items (sample s, tile t of output rows): the weights packed once, then per item
// y's outputs of the positions pos (build_positions) from all taps of x.
template <int L>
struct ForwardPass {
  const ConvGeom& g;
  const Layout lay;
  const std::vector<float> wp;
  ForwardPass(const ConvGeom& g_, const float* w)
      : g(g_), lay(g_),
        wp(pack_pairs(g_.cout, lay.taps, [&](int64_t o, int64_t t) { return w + (o * lay.taps + t) * 2; })) {}
  void item(int64_t s, const std::vector<Pos>& pos, const float* x, const float* b, float* y) const {
    const int64_t K = lay.taps, P = lay.out_vol, npos = static_cast<int64_t>(pos.size());
    const float* xs = x + s * g.cin * lay.in_vol;
    float* ys = y + s * g.cout * P;
    for (int64_t i = 0; i < npos; i += NV)
      for (int64_t o = 0; o < g.cout; o += MR) {
        const int nv = static_cast<int>(std::min<int64_t>(NV, npos - i));
        const int rows = static_cast<int>(std::min<int64_t>(MR, g.cout - o));
        const Pos* ahead = o == 0 ? positions_ahead(pos, i) : nullptr;  // once per position group
        (ahead ? micro_forward<L, true> : micro_forward<L, false>)(K, lay.off.data(), wp.data() + o * K * 2, xs,
                                                                   pos.data() + i, nv, ahead, b ? b + o : nullptr,
                                                                   ys + o * P, P, rows);
      }
  }
};

// ---- adjoint (data gradient, transposed convolution) --------------------------------------------

// How the adjoint writes dx: plain stores; the same, with the lines of the positions `ahead` fetched
// for writing first; or non-temporal stores for aligned vectors (a dx of kStreamBytes or more: it cannot
// stay in the caches, and streaming saves each line's read before its write).
enum class Store { plain, prefetched, streamed };

// dx of taps [t0, t0 + rows) at the nv positions p, from all K = cout channels of dy (+ bias per tap),
// stored as S says (prefetched: a tap row per channel o). dq: the positions' dy, duplicated (dup_positions),
// K vectors per position.
template <int L, Store S>
inline void micro_adjoint(int64_t K, const float* wq, const float* dq, const Pos* p, int nv, const Pos* ahead,
                          const int64_t* off, const float* bias, float* dxs, int rows) {
  using V = Vec<L>;
  typename V::T acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  const int64_t q1 = nv > 1 ? K * L : 0, q2 = nv > 2 ? 2 * K * L : 0;
  for (int64_t o = 0; o < K; ++o, wq += MR * 2, dq += L) {
    typename V::T c0 = V::load(dq), c1 = V::load(dq + q1), c2 = V::load(dq + q2);
    asm("" : "+x"(c0), "+x"(c1), "+x"(c2));  // in registers: GCC otherwise folds each into its 4 FMAs (16 loads)
    if constexpr (S == Store::prefetched) {  // tap row min(o, rows - 1): no branch (GCC then keeps acc in registers)
      const int64_t row = off[std::min<int64_t>(o, rows - 1)];
      // The intrinsic, not prefetch_w: an asm statement reading memory made GCC store all 12 accumulators
      // on every step (as micro_forward's comment says); with -march=native this is prefetchw too.
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(dxs + row + ahead[v].src), _MM_HINT_ET0);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const typename V::T wr = V::pair(wq + 2 * r);
      acc[r][0] = V::fma(wr, c0, acc[r][0]);
      acc[r][1] = V::fma(wr, c1, acc[r][1]);
      acc[r][2] = V::fma(wr, c2, acc[r][2]);
    }
  }
  for (int r = 0; r < rows; ++r) {
    const typename V::T base = V::set1(bias ? bias[r] : 0.0f);
    for (int v = 0; v < nv; ++v) {
      float* d = dxs + off[r] + p[v].src;
      if (S == Store::streamed && reinterpret_cast<uintptr_t>(d) % (L * sizeof(float)) == 0)
        V::stream(d, V::add(acc[r][v], base));
      else
        V::store(d, V::add(acc[r][v], base));
    }
  }
}

// The dy vectors of one sample's positions, duplicated (lanes 2j, 2j+1 = output j), position-major: the
// vector of (position i, channel o) at (i * cout + o) * L. Built once per tile, so the adjoint's loop
// over the tap blocks reads plain vectors (duplicating there cost three shuffles per vector and tap
// block, which share the FMA ports: the data gradient ran at ~75% of the forward's rate).
template <int L>
void dup_positions(const std::vector<Pos>& pos, const float* dys, int64_t cout, int64_t P, std::vector<float>& dq) {
  const int64_t npos = static_cast<int64_t>(pos.size());
  dq.resize(static_cast<size_t>(npos * cout * L));
  float* const q = dq.data();
  for (int64_t o = 0; o < cout; ++o) {  // channel by channel: dy's reads run along one plane
    const float* const plane = dys + o * P;
    for (int64_t i = 0; i < npos; ++i) Vec<L>::store(q + (i * cout + o) * L, Vec<L>::dup(plane + pos[i].dst));
  }
}

// A thread's copy of dy, duplicated (the adjoint's dup_positions, the weight pass's rows); noinline as
// thread_positions.
[[gnu::noinline]] std::vector<float>& thread_dy_copy() {
  thread_local std::vector<float> buf;
  return buf;
}

template <int L>
void adjoint_lanes(const ConvGeom& g, const float* dy, const float* w, const float* b, float* dx) {
  const Layout lay(g);
  const std::vector<float> wq =
      pack_pairs(lay.taps, g.cout, [&](int64_t t, int64_t o) { return w + (o * lay.taps + t) * 2; });
  std::vector<float> tap_bias;  // the bias of each tap's input channel
  if (b)
    for (int64_t t = 0; t < lay.taps; ++t) tap_bias.push_back(b[t / (2 * lay.kd)]);
  const int64_t P = lay.out_vol;
  const bool stream = streamed_output(g.n * g.cin * lay.in_vol);
  Items<L>(g).run([&](int, int64_t s, const std::vector<Pos>& pos, bool) {
    std::vector<float>& dq = thread_dy_copy();
    dup_positions<L>(pos, dy + s * g.cout * P, g.cout, P, dq);
    float* dxs = dx + s * g.cin * lay.in_vol;
    const int64_t npos = static_cast<int64_t>(pos.size());
    for (int64_t t0 = 0; t0 < lay.taps; t0 += MR)
      for (int64_t i = 0; i < npos; i += NV) {
        const int nv = static_cast<int>(std::min<int64_t>(NV, npos - i));
        const int rows = static_cast<int>(std::min<int64_t>(MR, lay.taps - t0));
        const Pos* ahead = positions_ahead(pos, i);
        auto micro = stream  ? micro_adjoint<L, Store::streamed>
                     : ahead ? micro_adjoint<L, Store::prefetched>
                             : micro_adjoint<L, Store::plain>;
        micro(g.cout, wq.data() + t0 * g.cout * 2, dq.data() + i * g.cout * L, pos.data() + i, nv, ahead,
              lay.off.data() + t0, b ? tap_bias.data() + t0 : nullptr, dxs, rows);
      }
    if (stream) _mm_sfence();  // the streamed lines are visible before the item counts as done
  });
}

// ---- weight gradient -------------------------------------------------------------------------

// part (MO x NK vectors, (o, k) at (o * kp + k) * L) += dy vectors (duplicated, MO rows of pitch ld,
// one L slot per position) * x-vectors of the taps off[0..NK) over positions [i0, i1).
template <int L>
inline void micro_weight(const Pos* p, int64_t i0, int64_t i1, const float* dyb, int64_t ld, const float* xs,
                         const int64_t* off, float* part, int64_t kp) {
  using V = Vec<L>;
  typename V::T acc[MO][NK];
  for (int o = 0; o < MO; ++o)
    for (int k = 0; k < NK; ++k) acc[o][k] = V::load(part + (o * kp + k) * L);
  int64_t tap[NK];
  for (int k = 0; k < NK; ++k) tap[k] = off[k];
  for (int64_t i = i0; i < i1; ++i) {
    typename V::T d[MO];
#pragma GCC unroll 8
    for (int o = 0; o < MO; ++o) d[o] = V::load(dyb + o * ld + i * L);
    const float* s = xs + p[i].src;
#pragma GCC unroll 8
    for (int k = 0; k < NK; ++k) {
      const typename V::T c = V::load(s + tap[k]);
#pragma GCC unroll 8
      for (int o = 0; o < MO; ++o) acc[o][k] = V::fma(d[o], c, acc[o][k]);
    }
  }
  for (int o = 0; o < MO; ++o)
    for (int k = 0; k < NK; ++k) V::store(part + (o * kp + k) * L, acc[o][k]);
}

// The weight gradient by work items, with per-worker vector partial sums (part: MO x NK blocks of lanes per
// output channel and tap): item() adds the positions pos of sample s in order, finish() sums the workers'
// parts (in worker order) and the lanes of each parity into dw.
template <int L>
struct WeightPass {
  const ConvGeom& g;
  const Layout lay;
  const int64_t kp, op, part_size;
  std::vector<int64_t> off;
  std::vector<float> partial;
  WeightPass(const ConvGeom& g_, int workers)
      : g(g_), lay(g_), kp(round_up(lay.taps, NK)), op(round_up(g_.cout, MO)), part_size(op * kp * L), off(lay.off),
        partial(static_cast<size_t>(workers * part_size), 0.0f) {
    off.resize(static_cast<size_t>(kp), 0);  // padded taps read tap 0 (their sums are dropped)
  }
  void item(int worker, int64_t s, const std::vector<Pos>& pos, const float* x, const float* dy) {
    const int64_t npos = static_cast<int64_t>(pos.size()), ld = (npos + 1) * L;  // +1: rows not 2^k apart
    std::vector<float>& dyb = thread_dy_copy();
    copy_dy(pos, dy + s * g.cout * lay.out_vol, ld, dyb);
    const float* xs = x + s * g.cin * lay.in_vol;
    float* part = partial.data() + worker * part_size;
    for (int64_t k = 0; k < kp; k += NK)
      for (int64_t o = 0; o < op; o += MO)
        micro_weight<L>(pos.data(), 0, npos, dyb.data() + o * ld, ld, xs, off.data() + k, part + (o * kp + k) * L, kp);
  }
  // dy of the positions, duplicated (lanes 2j, 2j+1 = output j), zero for covered outputs and o >= cout.
  // Written once each: zeroing the whole buffer first (256 KB per tile) cost ~1% of the k2 s2 passes.
  void copy_dy(const std::vector<Pos>& pos, const float* dys, int64_t ld, std::vector<float>& dyb) const {
    const int64_t npos = static_cast<int64_t>(pos.size());
    dyb.resize(static_cast<size_t>(op * ld));
    for (int64_t o = 0; o < g.cout; ++o) {
      const float* src = dys + o * lay.out_vol;
      float* row = dyb.data() + o * ld;
      for (int64_t i = 0; i < npos; ++i) {
        if (pos[i].covered == 0) {
          Vec<L>::store(row + i * L, Vec<L>::dup(src + pos[i].dst));
          continue;
        }
        for (int j = 0; j < L / 2; ++j) {
          const float v = j < pos[i].covered ? 0.0f : src[pos[i].dst + j];
          row[i * L + 2 * j] = row[i * L + 2 * j + 1] = v;
        }
      }
      std::fill(row + npos * L, row + ld, 0.0f);
    }
    std::fill(dyb.data() + g.cout * ld, dyb.data() + op * ld, 0.0f);
  }
  void finish(int workers, float* dw) const {
    for (int64_t o = 0; o < g.cout; ++o)
      for (int64_t t = 0; t < lay.taps; ++t)
        for (int d = 0; d < 2; ++d) {
          float sum = 0.0f;
          for (int wk = 0; wk < workers; ++wk)
            for (int l = d; l < L; l += 2) sum += partial[wk * part_size + (o * kp + t) * L + l];
          dw[(o * lay.taps + t) * 2 + d] = sum;
        }
  }
};

// The k2 s2 passes over x in one sweep of its work items: per item the forward's outputs y (+ bias b), the
// weight pass's sums with dy (dw), and after a sample's last item that sample's channel sums of x (db, in
// conv_backward_bias's order: bias_sum.h); each skipped where its output is null. Alone, y is the forward
// pass and dw the weight gradient; together they are the transposed convolution's three gradients (x: its
// output gradient, the largest of its tensors), which then read x from memory once instead of three times
// (a tile is still in L3 for the sums): N8 16->16 16^3 -> 32^3 (Zen 2, 2 threads), the three gradients
// 2.96-3.02 -> 2.63-2.68 ms, bench_conv's transposed fwd + bwd 4.19-4.27 -> 3.98-4.05. The same items,
// workers and orders either way, so the same floats.
template <int L>
void fused_lanes(const ConvGeom& g, const float* x, const float* w, const float* b, const float* dy, float* y,
                 float* dw, float* db) {
  const Items<L> items(g);
  std::optional<ForwardPass<L>> fwd;
  if (y) fwd.emplace(g, w);
  WeightPass<L> wgt(g, dw ? items.workers : 0);
  const int64_t in_vol = g.in_vol();
  std::vector<float> sums(static_cast<size_t>(db ? g.n * g.cin : 0));
  items.run([&](int worker, int64_t s, const std::vector<Pos>& pos, bool last) {
    if (y) fwd->item(s, pos, x, b, y);
    if (dw) wgt.item(worker, s, pos, x, dy);
    if (db && last)
      for (int64_t c = 0; c < g.cin; ++c) sums[s * g.cin + c] = plane_sum(x + (s * g.cin + c) * in_vol, in_vol);
  });
  if (dw) wgt.finish(items.workers, dw);
  if (db)
    for (int64_t c = 0; c < g.cin; ++c) db[c] = bias_sum(g.n, [&](int64_t s) { return sums[s * g.cin + c]; });
}

}  // namespace

bool suits(const ConvGeom& g) {
  if (conv_path() == ConvPath::direct) return false;
  const bool kd_ok = (g.k[0] == 2 && g.stride[0] == 2) || (g.k[0] == 1 && g.stride[0] == 1);
  if (!kd_ok || g.k[1] != 2 || g.k[2] != 2 || g.stride[1] != 2 || g.stride[2] != 2) return false;
  for (int d = 0; d < 3; ++d)
    if (g.pad[d] != 0 || g.out[d] < 1 || g.in[d] != g.out[d] * g.k[d]) return false;
  return g.n > 0 && g.cin > 0 && g.cout > 0 && g.out[2] >= 2;
}

void forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y) {
  with_lanes(g.out[2], [&](auto v) {
    fused_lanes<sizeof(typename decltype(v)::T) / 4>(g, x, w, b, nullptr, y, nullptr, nullptr);
  });
}

void backward_data(const ConvGeom& g, const float* dy, const float* w, const float* b, float* dx) {
  with_lanes(g.out[2], [&](auto v) { adjoint_lanes<sizeof(typename decltype(v)::T) / 4>(g, dy, w, b, dx); });
}

void backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  with_lanes(g.out[2], [&](auto v) {
    fused_lanes<sizeof(typename decltype(v)::T) / 4>(g, x, nullptr, nullptr, dy, nullptr, dw, nullptr);
  });
}

void transposed_backward(const ConvGeom& g, const float* x, const float* w, const float* dy, float* y, float* dw,
                         float* db) {
  with_lanes(g.out[2], [&](auto v) {
    fused_lanes<sizeof(typename decltype(v)::T) / 4>(g, x, w, nullptr, dy, y, dw, db);
  });
}

#else  // no AVX2: the general strided path (conv.cpp) runs these

bool suits(const ConvGeom&) { return false; }
void forward(const ConvGeom&, const float*, const float*, const float*, float*) {}
void backward_data(const ConvGeom&, const float*, const float*, const float*, float*) {}
void backward_weight(const ConvGeom&, const float*, const float*, float*) {}
void transposed_backward(const ConvGeom&, const float*, const float*, const float*, float*, float*, float*) {}

#endif

}  // namespace pw::kernels::cpu::k2s2
