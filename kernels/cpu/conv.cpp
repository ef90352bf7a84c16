// CPU convolution: register-blocked SIMD micro-kernels written with Eigen's packet math (SSE, AVX
// or AVX-512, whichever the build targets), threaded over (sample, tile) work items with
// pw::parallel_for. Eigen's own threading is off; no allocation happens inside the tile loops.
//
// Per sample, y (cout x P) = w (cout x K) * col (K x P) with K = cin*kD*kH*kW and P = the output
// volume, without ever building col ("direct"): x is copied once, zero-padded and split into
// stride^3 phases (element i of a padded row goes to phase i % s at i / s; stride 1 has one phase),
// so that tap k of output position p reads xsplit[tap offset k + position offset p] for every
// stride, and the micro-kernels load SIMD vectors of kVec outputs of one row straight from it.
// The output is cut into tiles of whole output rows (d, h). For strides above 1 the copy is made per
// tile of whole output planes, of the source planes that tile reads, into a buffer that stays in L2
// (Source); the data gradient likewise computes and interleaves its phases per tile.
//   forward:       w is packed in blocks of MR output channels; the micro-kernel keeps an
//                  MR x (NV vectors) block of y in registers for a chunk of taps.
//   weight grad:   dw (cout x K) += dy (cout x positions) * col^T, vectorised along the positions,
//                  with per-worker vector partial sums reduced at the end.
//   data grad:     per phase r of dx (the input positions i = q*s + r), only the taps k = r + pad
//                  (mod s) reach it, from dy[q + (r + pad - k) / s]: a stride-1 correlation of
//                  (padded) dy with those taps, computed by the forward micro-kernel and interleaved
//                  into dx. The transposed convolution is this adjoint (forward) and the
//                  convolution (data grad), so it shares every path.
#define EIGEN_DONT_PARALLELIZE  // we thread ourselves (pw::parallel_for)
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_ps) when Eigen's packets inline.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Packet types as template arguments lose their may_alias attribute (harmless here; Eigen does the same).
#pragma GCC diagnostic ignored "-Wignored-attributes"
#include "kernels/conv.h"

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "kernels/cpu/bias_sum.h"
#include "kernels/cpu/conv_k2s2.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/work_items.h"
#include "kernels/cpu_paths.h"
#include "kernels/parallel.h"

namespace pw::kernels::cpu {
namespace {

// SIMD packet of the build's widest float vector, and the micro-kernel's register blocking.
using Packet = Eigen::internal::packet_traits<float>::type;
constexpr int kVec = static_cast<int>(sizeof(Packet) / sizeof(float));
constexpr bool kWide = kVec >= 16;         // AVX-512: 32 vector registers (for every width with AVX-512VL)
template <class Pk>
constexpr int lanes = Eigen::internal::unpacket_traits<Pk>::size;
constexpr int MR = kWide ? 8 : 4;          // forward: output channels per block
constexpr int NV = 3;                      // forward: vectors of columns per block
// Weight grad: output channels x taps per block. AVX-512 on Zen 4 (one thread, 48->16 and 16->16 k3
// at 32^3): 4 x 6 runs at 94-97 GFLOP/s, 8 x 3 at 66-70, 3 x 8 at 80, 6 x 4 at 60 (same 24 accumulators).
constexpr int MO = kWide ? 4 : 2;
constexpr int NK = 6;

// Columns per tile, sized for the weight-gradient partial sums and load balance.
constexpr int64_t direct_tile_cols() { return 4096; }
// Direct forward: taps per chunk (whole input channels), about 16 channels of a 3x3x3 kernel.
constexpr int64_t kChunkTaps = 512;
// Direct weight gradient: SIMD positions per chunk (MO x 96 vectors of dy = 24 KB with AVX-512).
constexpr int64_t kWeightChunk = 96;

int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

// Calls f(P{}) with the packet P whose vectors cut output rows of w columns: the widest, halved while a
// row fits in half a vector (8^3 and 4^3 levels of a U-Net with AVX-512: 16 lanes would hold 8 or 4
// real outputs). A half-width FMA does as many useful flops per cycle where 512-bit FMAs are as fast
// as two 256-bit ones (Intel), and twice as many where they are split into two (AMD Zen 4: the 8^3
// convolutions 48 -> 93-102 GFLOP/s per core, 4^3 22 -> 37-46).
template <class F>
void with_packet(int64_t w, const F& f) {
  using Half = typename Eigen::internal::unpacket_traits<Packet>::half;
  using Quarter = typename Eigen::internal::unpacket_traits<Half>::half;
  if (2 * w > lanes<Packet>)
    f(Packet{});
  else if (2 * w > lanes<Half>)
    f(Half{});
  else
    f(Quarter{});
}

// Per-thread buffers (0: phases of dx, 1: dy copy, 2: padded input -- a whole copy in the calling
// thread's, a tile's in each worker's --, 3: weight-gradient partial sums; 0 and 3 owned by the calling
// thread); each grows to the largest size asked and is kept (pool threads live on), so no allocation
// happens per tile.
// The thread-local accessors of the conv kernels are noinline: inlined, their variables' address in -fPIC
// code is a __tls_get_addr call, which GCC re-derived inside hot loops (rather than keep it in a register),
// each time with a vzeroupper and the vector registers saved around it: k3 s2 forward + both gradients
// 16.4 -> 15.4 ms, stride-1 direct 77.0 -> 73.6 (Zen 2, bench/RESULTS.md).
[[gnu::noinline]] float* thread_buffer(int slot, int64_t n) {
  thread_local std::vector<float, Eigen::aligned_allocator<float>> buf[4];
  if (static_cast<int64_t>(buf[slot].size()) < n) buf[slot].resize(static_cast<size_t>(n));
  return buf[slot].data();
}

// w (cout x K) packed in blocks of MR output channels, k-major: element (o, k) at
// ((o / MR) * K + k) * MR + o % MR; rows beyond cout are zero.
std::vector<float> pack_weights(const float* w, int64_t cout, int64_t K) {
  std::vector<float> wp(static_cast<size_t>(round_up(cout, MR) * K), 0.0f);
  for (int64_t o = 0; o < cout; ++o)
    for (int64_t k = 0; k < K; ++k) wp[((o / MR) * K + k) * MR + o % MR] = w[o * K + k];
  return wp;
}

// ---- the direct path --------------------------------------------------------------------------

// A source for the micro-kernels: `planes` planes (n samples of `channels`), each zero-padded by
// lo/hi per dimension and split into s0*s1*s2 phases: padded element (i, j, l) lives in phase
// (i % s0, j % s1, l % s2) at (i / s0, j / s1, l / s2) of a Dq x Hq x Wq phase plane (stride 1: one
// phase, the padded plane itself). Plus `slack` zero floats at the end (a row's last vector reads
// past its row). Lives in the calling thread's buffer 2.
struct Padded {
  const float* data = nullptr;
  int s[3] = {1, 1, 1};
  int64_t Dq = 0, Hq = 0, Wq = 0, vol = 0;  // one phase plane
  int64_t chan = 0, sample = 0;             // floats per channel (all phases) and per sample
  // Offset of padded element (i, j, l) of channel c, from the start of its sample.
  int64_t offset(int64_t c, int64_t i, int64_t j, int64_t l) const {
    const int64_t phase = ((i % s[0]) * s[1] + j % s[1]) * s[2] + l % s[2];
    return c * chan + phase * vol + ((i / s[0]) * Hq + j / s[1]) * Wq + l / s[2];
  }
};

// The elements [a, b) of a phase row of len elements, dst[q] = src[q*s + first], that lie inside a
// source row of n elements (the others are padding: 0).
inline void phase_range(int64_t n, int64_t s, int64_t first, int64_t len, int64_t& a, int64_t& b) {
  a = first >= 0 ? 0 : std::min<int64_t>(len, (-first + s - 1) / s);
  b = std::clamp<int64_t>((n - first + s - 1) / s, a, len);
}

// One phase row of a padded, split plane: dst[q] = src[q*s + first] where that lies in [0, n), else 0.
inline void split_row(const float* src, int64_t n, int64_t s, int64_t first, float* dst, int64_t len) {
  int64_t a, b;
  phase_range(n, s, first, len, a, b);
  std::fill(dst, dst + a, 0.0f);
  if (s == 1)
    std::memcpy(dst + a, src + first + a, static_cast<size_t>(b - a) * sizeof(float));
  else
    for (int64_t q = a; q < b; ++q) dst[q] = src[q * s + first];
  std::fill(dst + b, dst + len, 0.0f);
}

// dst[0, n) = 0 for the few padding elements at a row's ends: stores, not a call of memset per row.
inline void zero_pad(float* dst, int64_t n) {
  if (n > 0) dst[0] = 0.0f;
  if (n > 1) dst[1] = 0.0f;
  if (n > 2) std::fill(dst + 2, dst + n, 0.0f);
}

// Both x-phases of padded rows for stride 2: source rows of n elements, padding lo before each, phase
// rows of len elements. Padded element l = i + lo of source element i goes to phase l % 2 at l / 2, so
// the source's even elements fill one phase row from lo / 2 on and its odd ones the other from
// (lo + 1) / 2 on; the rest (padding) is 0. Worked out once per plane, applied per row.
struct SplitRow2 {
  bool swap;                          // the even elements go to phase 1 (lo odd)
  int64_t be, bo, ne, no, len;        // where the even / odd runs start, their lengths, the row length
  SplitRow2(int64_t n, int64_t lo, int64_t len_)
      : swap(lo & 1), be(lo / 2), bo((lo + 1) / 2), ne((n + 1) / 2), no(n / 2), len(len_) {}
  void operator()(const float* __restrict__ src, float* d0, float* d1) const {
    float* const row_e = swap ? d1 : d0;
    float* const row_o = swap ? d0 : d1;
    zero_pad(row_e, be);
    zero_pad(row_o, bo);
    float* __restrict__ de = row_e + be;
    float* __restrict__ dd = row_o + bo;
    int64_t k = 0;
#if defined(__AVX2__) && !defined(__AVX512F__)
    // 16 source floats -> 8 even, 8 odd: two shuffles, two lane permutes. GCC's own loop (a vpermd per 8 and
    // a run-time trip count's prologue and epilogue per row) split the k3 s2 16->16 32^3 source in 1.43-1.57
    // ms, this in 1.20-1.32; k3 s2 fwd 4.33 -> 4.04 ms, fwd + bwd 13.6 -> 12.9 (Zen 2, 2 threads). AVX-512
    // builds keep GCC's 16-wide loop (not measured on a machine with AVX-512 since).
    for (; k + 8 <= no; k += 8) {
      const __m256 a = _mm256_loadu_ps(src + 2 * k), b = _mm256_loadu_ps(src + 2 * k + 8);
      const __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 | a4 a6 b4 b6
      const __m256 od = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
      _mm256_storeu_ps(de + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xd8)));
      _mm256_storeu_ps(dd + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), 0xd8)));
    }
#endif
    for (; k < no; ++k) {  // vectorises: restrict pointers, no branches
      de[k] = src[2 * k];
      dd[k] = src[2 * k + 1];
    }
    if (ne > no) de[no] = src[2 * no];
    zero_pad(de + ne, len - be - ne);
    zero_pad(dd + no, len - bo - no);
  }
};

// The split geometry of planes of size `in` padded by lo/hi, with stride s; dq phase planes along d
// (dq < 0: all of the padded source).
Padded split_geometry(int64_t channels, const int64_t in[3], const int lo[3], const int hi[3], const int s[3],
                      int64_t dq = -1) {
  Padded p;
  int64_t q[3];
  for (int i = 0; i < 3; ++i) {
    p.s[i] = s[i];
    q[i] = (in[i] + lo[i] + hi[i] + s[i] - 1) / s[i];
  }
  p.Dq = dq < 0 ? q[0] : dq, p.Hq = q[1], p.Wq = q[2];
  p.vol = p.Dq * q[1] * q[2];
  p.chan = int64_t(s[0]) * s[1] * s[2] * p.vol;
  p.sample = channels * p.chan;
  return p;
}

// The padded planes [i0, i0 + p.Dq * s0) of one source plane (of size in, padded by lo), split into
// the phases of p, into `plane` (p.chan floats): padded plane i0 (a multiple of s0) becomes phase
// plane 0. Padded rows in memory order of the source, so that it streams in once; the bounds and
// addresses are worked out per plane, not per row (rows of a k3 s2 source are 32 floats).
void split_plane(const float* src, const int64_t in[3], const int lo[3], const Padded& p, int64_t i0, float* plane) {
  const int* s = p.s;
  const int64_t slice = p.Hq * p.Wq;  // one phase plane d of a phase
  const SplitRow2 split_row2(in[2], lo[2], p.Wq);
  for (int64_t d = 0; d < p.Dq; ++d)
    for (int pd = 0; pd < s[0]; ++pd) {
      float* const first = plane + pd * s[1] * s[2] * p.vol + d * slice;  // phase (pd, 0, 0), plane d
      const int64_t id = i0 + d * s[0] + pd - lo[0];
      if (id < 0 || id >= in[0]) {  // a padding plane: its slice of each phase (pd, ph, pw)
        for (int q = 0; q < s[1] * s[2]; ++q) std::fill(first + q * p.vol, first + q * p.vol + slice, 0.0f);
        continue;
      }
      // Padded row j (source row j - lo1) goes to the phase rows (pd, j % s1, pw) at j / s1.
      int ph = 0;
      int64_t h = 0;
      for (int64_t j = 0; j < p.Hq * s[1]; ++j) {
        float* const row0 = first + ph * s[2] * p.vol + h * p.Wq;
        const int64_t ih = j - lo[1];
        if (ih < 0 || ih >= in[1]) {
          for (int pw = 0; pw < s[2]; ++pw) std::fill(row0 + pw * p.vol, row0 + pw * p.vol + p.Wq, 0.0f);
        } else {
          const float* srow = src + (id * in[1] + ih) * in[2];
          if (s[2] == 1)
            split_row(srow, in[2], 1, -lo[2], row0, p.Wq);
          else if (s[2] == 2)  // both x-phases in one pass over the source row
            split_row2(srow, row0, row0 + p.vol);
          else
            for (int pw = 0; pw < s[2]; ++pw) split_row(srow, in[2], s[2], pw - lo[2], row0 + pw * p.vol, p.Wq);
        }
        if (++ph == s[1]) ph = 0, ++h;
      }
    }
}

Padded pad_split(const float* x, int64_t n, int64_t channels, const int64_t in[3], const int lo[3], const int hi[3],
                 const int s[3], int64_t slack) {
  Padded p = split_geometry(channels, in, lo, hi, s);
  const int64_t planes = n * channels, in_vol = in[0] * in[1] * in[2];
  float* xp = thread_buffer(2, planes * p.chan + slack);
  std::fill(xp + planes * p.chan, xp + planes * p.chan + slack, 0.0f);
  parallel_for(
      planes,
      [&](int64_t b, int64_t e) {
        for (int64_t pl = b; pl < e; ++pl) split_plane(x + pl * in_vol, in, lo, p, 0, xp + pl * p.chan);
      },
      8);
  p.data = xp;
  return p;
}

// Whether a source of planes of size `in`, to be padded by lo/hi for conv g, can be used in place: a
// 1x1x1 kernel, stride 1, no padding, and rows of a multiple of kVec columns, so that no vector reads
// past its row (the network heads' 1x1x1 convolutions: their source is read once instead of copied).
bool usable_in_place(const ConvGeom& g, const int64_t in[3], const int lo[3], const int hi[3]) {
  for (int d = 0; d < 3; ++d)
    if (g.k[d] != 1 || g.stride[d] != 1 || lo[d] != 0 || hi[d] != 0) return false;
  return in[2] % kVec == 0;
}
Padded in_place(const float* x, int64_t channels, const int64_t in[3]) {
  Padded p;
  p.data = x;
  p.Dq = in[0], p.Hq = in[1], p.Wq = in[2];
  p.vol = p.chan = in[0] * in[1] * in[2];
  p.sample = channels * p.chan;
  return p;
}

// Lines to prefetch while a micro-kernel runs: count (> 0) lines of 16 floats from p on, one per inner
// iteration, the last one again once all are done (a branch there made GCC keep the micro-kernel's
// accumulators in memory).
struct PrefetchRun {
  const float* p = nullptr;
  int64_t count = 0;
};

// Where the micro-kernels of a work item (sample n, output rows [r0, r1)) read their source.
//   - A whole copy, padded and split (pad_split), or the source itself (in_place).
//   - Per tile (strided convolutions): a strided convolution's source is s^3 times its output, and a
//     whole split copy costs one more write and read of that size through memory (a third of a k3 s2
//     forward pass here). Instead each work item splits the source planes its output planes read
//     into its thread's buffer (slot 2, about kTileSplitBytes: it stays in L2), and its micro-kernels
//     read them there. Tiles are then whole output planes, `tile_planes` of them.
struct Source {
  Padded p;                      // the geometry (per tile: of one tile) and, for a whole copy, the data
  const ConvGeom* g = nullptr;   // per tile: the convolution, and
  const float* x = nullptr;      // its unsplit source
  int64_t tile_planes = 0;       // per tile: output planes per tile (0: a whole copy)

  Tiling tiling(const int64_t out[3]) const {
    return Tiling(out, tile_planes ? tile_planes * out[1] * out[2] : direct_tile_cols());
  }
  // The source of sample n as its work item (output rows from r0 on) reads it; od0: the output plane
  // whose first source plane is its phase plane 0.
  const float* sample(int64_t n, int64_t r0, int64_t& od0) const {
    od0 = 0;
    if (!tile_planes) return p.data + n * p.sample;
    od0 = r0 / g->out[1];
    const int64_t slack = kVec + g->k[2], in_vol = g->in_vol();
    float* buf = thread_buffer(2, p.sample + slack);
    for (int64_t c = 0; c < g->cin; ++c)
      split_plane(x + (n * g->cin + c) * in_vol, g->in, g->pad, p, od0 * g->stride[0], buf + c * p.chan);
    std::fill(buf + p.sample, buf + p.sample + slack, 0.0f);
    return buf;
  }
  // Per tile: part `part` of `parts` of the source lines that work item `item` (of tiling t) will split
  // (a run of whole lines inside one channel; none past the last item). The micro-kernels of the item
  // before prefetch them, one line per inner iteration (this guest drops most of a burst of
  // prefetches): k3 s2 16->16 forward 3.75 -> 3.45 ms. Only where L2 holds both (tile_prefetch).
  PrefetchRun ahead(const Tiling& t, int64_t item, int64_t part, int64_t parts) const {
    if (!tile_planes || item >= g->n * t.ntiles || !tile_prefetch()) return {};
    const int64_t n = item / t.ntiles, first = t.begin(item % t.ntiles) / g->out[1] * g->stride[0] - g->pad[0];
    const int64_t i0 = std::max<int64_t>(0, first), i1 = std::min<int64_t>(g->in[0], first + p.Dq * g->stride[0]);
    const int64_t plane = g->in[1] * g->in[2], lines = ((i1 - i0) * plane + 15) / 16;  // 16 floats a line
    if (i1 <= i0) return {};
    const int64_t total = g->cin * lines, l0 = total * part / parts, c = l0 / lines;
    const int64_t l1 = std::min(total * (part + 1) / parts, (c + 1) * lines);  // within channel c
    return {x + (n * g->cin + c) * g->in_vol() + i0 * plane + (l0 - c * lines) * 16, l1 - l0};
  }
};

// Split copy of one tile's source: about this many bytes (L2 is 0.5-2 MB per core on current x86; on Zen 2,
// 512 KB, tiles of 384 KB-1 MB ran within noise of this, smaller ones re-split more halo planes).
constexpr int64_t kTileSplitBytes = 512 * 1024;

// Planes per tile for n samples of `planes` planes: `fit` (what fits the tile's buffer), fewer where
// that leaves fewer than two work items per thread.
int64_t planes_per_tile(int64_t fit, int64_t n, int64_t planes) {
  return std::clamp<int64_t>(std::min<int64_t>(fit, n * planes / (2 * num_threads())), 1, planes);
}

// x of conv g: in place where a 1x1x1 kernel allows it, split per tile for strides > 1 (where that
// gives two work items per thread), else one whole copy padded by g.pad.
Source conv_source(const ConvGeom& g, const float* x) {
  if (usable_in_place(g, g.in, g.pad, g.pad)) return Source{in_place(x, g.cin, g.in)};
  if (g.stride[0] * g.stride[1] * g.stride[2] == 1)
    return Source{pad_split(x, g.n, g.cin, g.in, g.pad, g.pad, g.stride, kVec + g.k[2])};
  Source src;
  src.g = &g;
  src.x = x;
  const Padded whole = split_geometry(g.cin, g.in, g.pad, g.pad, g.stride);
  const int64_t plane_bytes = whole.sample / whole.Dq * int64_t(sizeof(float));  // per output plane
  src.tile_planes = planes_per_tile(kTileSplitBytes / plane_bytes, g.n, g.out[0]);
  if (g.n * ((g.out[0] + src.tile_planes - 1) / src.tile_planes) < 2 * num_threads())  // too few work items
    return Source{pad_split(x, g.n, g.cin, g.in, g.pad, g.pad, g.stride, kVec + g.k[2])};
  const int64_t padded_planes = (src.tile_planes - 1) * g.stride[0] + g.k[0];
  src.p = split_geometry(g.cin, g.in, g.pad, g.pad, g.stride, (padded_planes + g.stride[0] - 1) / g.stride[0]);
  return src;
}

// Offset in x's split copy (one sample) of tap k = (c, kd, kh, kw), padded to a multiple of `mult` with 0.
std::vector<int64_t> tap_offsets(const ConvGeom& g, const Padded& p, int64_t mult) {
  std::vector<int64_t> off;
  for (int64_t c = 0; c < g.cin; ++c)
    for (int kd = 0; kd < g.k[0]; ++kd)
      for (int kh = 0; kh < g.k[1]; ++kh)
        for (int kw = 0; kw < g.k[2]; ++kw) off.push_back(p.offset(c, kd, kh, kw));
  off.resize(static_cast<size_t>(round_up(static_cast<int64_t>(off.size()), mult)), 0);
  return off;
}

// The SIMD vector positions of output rows [r0, r1) of an `out` grid: each row is cut into
// ceil(W/vec) vectors of `vec` lanes. For position i: src[i] = its offset in the source's phase planes (tap 0;
// output plane od0 reads phase plane 0), dst[i] = its offset in y's channel plane (row dst_row0 at 0),
// valid[i] = how many of its lanes are real outputs.
struct Positions {
  std::vector<int64_t> src, dst;
  std::vector<int> valid;
  void build(const int64_t out[3], const Padded& p, int64_t r0, int64_t r1, int vec, int64_t od0 = 0,
             int64_t dst_row0 = 0) {
    src.clear();
    dst.clear();
    valid.clear();
    const int64_t W = out[2];
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t od = r / out[1], oh = r % out[1];
      for (int64_t ow = 0; ow < W; ow += vec) {
        src.push_back(((od - od0) * p.Hq + oh) * p.Wq + ow);
        dst.push_back((r - dst_row0) * W + ow);
        valid.push_back(static_cast<int>(std::min<int64_t>(vec, W - ow)));
      }
    }
  }
  int64_t size() const { return static_cast<int64_t>(src.size()); }
};

[[gnu::noinline]] Positions& thread_positions() {
  thread_local Positions pos;
  return pos;
}

// y vectors (NV positions starting at i, `rows` output channels of pitch P) = w block (packed,
// MR x K) * implicit columns xs[tap offset + position offset] + bias, or (add = true) y += the
// product (a later chunk of taps; bias is then nullptr).
template <class Pk, bool kPrefetch>
inline void micro_direct(int64_t K, const int64_t* off, const float* wp, const float* xs, const Positions& pos,
                         int64_t i, const float* bias, float* y, int64_t P, int rows, bool add, const float* pf,
                         int64_t npf) {
  using namespace Eigen::internal;
  constexpr int V = lanes<Pk>;
  const int nv = static_cast<int>(std::min<int64_t>(NV, pos.size() - i));
  const float* s0 = xs + pos.src[i];
  const float* s1 = xs + pos.src[i + (nv > 1 ? 1 : 0)];
  const float* s2 = xs + pos.src[i + (nv > 2 ? 2 : 0)];
  Pk acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = pset1<Pk>(0.0f);
  for (int64_t k = 0; k < K; ++k, wp += MR) {
    const int64_t o = off[k];
    const Pk c0 = ploadu<Pk>(s0 + o), c1 = ploadu<Pk>(s1 + o), c2 = ploadu<Pk>(s2 + o);
    if constexpr (kPrefetch) __builtin_prefetch(pf + 16 * std::min(k, npf - 1), 0, 3);  // no branch: see PrefetchRun
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const Pk wr = pset1<Pk>(wp[r]);
      acc[r][0] = pmadd(wr, c0, acc[r][0]);
      acc[r][1] = pmadd(wr, c1, acc[r][1]);
      acc[r][2] = pmadd(wr, c2, acc[r][2]);
    }
  }
  for (int r = 0; r < rows; ++r) {
    const Pk b = pset1<Pk>(bias ? bias[r] : 0.0f);
    for (int v = 0; v < nv; ++v) {
      float* yv = y + r * P + pos.dst[i + v];
      const int valid = pos.valid[i + v];
      if (valid == V) {
        pstoreu(yv, padd(acc[r][v], add ? ploadu<Pk>(yv) : b));
      } else {
        alignas(64) float tmp[V] = {};
        if (add) std::copy(yv, yv + valid, tmp);
        pstore(tmp, padd(acc[r][v], add ? pload<Pk>(tmp) : b));
        std::copy(tmp, tmp + valid, yv);
      }
    }
  }
}

// part (MO x NK vector partial sums, element (o, k) at (o * kp + k) * V, V = lanes<Pk>) += dy vectors (MO rows
// of pitch ld, one V slot per position, zero in invalid lanes) * implicit columns of taps
// off[0..NK) over positions [i0, i1).
// (Invalid lanes of a row's last vector read x values of the next row: dy is zero there.)
template <class Pk, bool kPrefetch>
inline void micro_weight_direct(const Positions& pos, int64_t i0, int64_t i1, const float* dy, int64_t ld,
                                const float* xs, const int64_t* off, float* part, int64_t kp, const float* pf,
                                int64_t npf) {
  using namespace Eigen::internal;
  constexpr int V = lanes<Pk>;
  Pk acc[MO][NK];
#pragma GCC unroll 8
  for (int o = 0; o < MO; ++o)
    for (int k = 0; k < NK; ++k) acc[o][k] = pload<Pk>(part + (o * kp + k) * V);
  int64_t tap[NK];
  for (int k = 0; k < NK; ++k) tap[k] = off[k];
  for (int64_t i = i0; i < i1; ++i) {
    Pk d[MO];
#pragma GCC unroll 8
    for (int o = 0; o < MO; ++o) d[o] = pload<Pk>(dy + o * ld + i * V);
    const float* s = xs + pos.src[i];
    if constexpr (kPrefetch) __builtin_prefetch(pf + 16 * std::min(i - i0, npf - 1), 0, 3);
#pragma GCC unroll 8
    for (int k = 0; k < NK; ++k) {
      const Pk c = ploadu<Pk>(s + tap[k]);
#pragma GCC unroll 8
      for (int o = 0; o < MO; ++o) acc[o][k] = pmadd(d[o], c, acc[o][k]);
    }
  }
#pragma GCC unroll 8
  for (int o = 0; o < MO; ++o)
    for (int k = 0; k < NK; ++k) pstore(part + (o * kp + k) * V, acc[o][k]);
}

// The micro-kernels of one work item: y (`rows` channels of pitch P) at the positions pos = packed
// weights wp (rows x K) * the taps `off` (K > 0, in groups of `group` of one source channel) of the
// source sample xs + bias b (per row, may be nullptr).
// ahead(step, steps): the lines to prefetch during micro-kernel call `step` of `steps`.
template <class Pk, class F>
void direct_item(const Positions& pos, const float* xs, const std::vector<int64_t>& off, int64_t group, int64_t rows,
                 const float* wp, const float* b, float* y, int64_t P, const F& ahead) {
  const int64_t K = static_cast<int64_t>(off.size()), chunk = std::max<int64_t>(1, kChunkTaps / group) * group;
  const int64_t steps = (K + chunk - 1) / chunk * ((pos.size() + NV - 1) / NV) * ((rows + MR - 1) / MR);
  int64_t step = 0;
  // Taps in chunks of whole channels, so that the source rows one chunk reads stay in L1.
  for (int64_t k0 = 0; k0 < K; k0 += chunk)
    for (int64_t i = 0; i < pos.size(); i += NV)
      for (int64_t o = 0; o < rows; o += MR) {
        const PrefetchRun pf = ahead(step++, steps);
        const int64_t k1 = std::min(chunk, K - k0);
        const float* bo = (b && k0 == 0) ? b + o : nullptr;
        const int r = static_cast<int>(std::min<int64_t>(MR, rows - o));
        if (pf.count)
          micro_direct<Pk, true>(k1, off.data() + k0, wp + o * K + k0 * MR, xs, pos, i, bo, y + o * P, P, r,
                                 k0 > 0, pf.p, pf.count);
        else
          micro_direct<Pk, false>(k1, off.data() + k0, wp + o * K + k0 * MR, xs, pos, i, bo, y + o * P, P, r,
                                  k0 > 0, nullptr, 0);
      }
}

// y (n samples of `rows` channels, each an `out` grid) = packed weights wp (rows x K, pack_weights)
// * the taps `off` (K, in groups of `group` that belong to one source channel) of the source src
// + bias b (per row, may be nullptr), in vectors of packet Pk.
template <class Pk>
void direct_forward(int64_t n, int64_t rows, const int64_t out[3], const Source& src, const std::vector<int64_t>& off,
                    int64_t group, const std::vector<float>& wp, const float* b, float* y) {
  const int64_t K = static_cast<int64_t>(off.size()), P = out[0] * out[1] * out[2];
  if (K == 0) {  // no tap reaches y
    for (int64_t i = 0; i < n * rows; ++i) std::fill(y + i * P, y + (i + 1) * P, b ? b[i % rows] : 0.0f);
    return;
  }
  const Tiling t = src.tiling(out);
  const int64_t items = n * t.ntiles;
  run_ranges(items, workers_for(items), [&](int, int64_t item) {
    const int64_t s = item / t.ntiles, r0 = t.begin(item % t.ntiles), r1 = t.end(item % t.ntiles);
    int64_t od0 = 0;
    const float* xs = src.sample(s, r0, od0);
    Positions& pos = thread_positions();
    pos.build(out, src.p, r0, r1, lanes<Pk>, od0);
    direct_item<Pk>(pos, xs, off, group, rows, wp.data(), b, y + s * rows * P, P,
                    [&](int64_t step, int64_t steps) { return src.ahead(t, item + 1, step, steps); });
  });
}

// One dimension of a data-gradient phase r (conv kernel k, stride s, pad p, sizes in -> out): input
// positions i = q*s + r (q < count) receive the taps k0 + s*j (j < taps) from dy[q + shift - j].
struct PhaseDim {
  int64_t count = 0, taps = 0, k0 = 0, shift = 0;
  PhaseDim(int64_t in, int k, int s, int p, int r) {
    count = r < in ? (in - r + s - 1) / s : 0;
    k0 = (r + p) % s;
    taps = k0 < k ? (k - 1 - k0) / s + 1 : 0;
    shift = (r + p) / s;
  }
};

// The convolution whose backward data is the transposed convolution g (and vice versa).
ConvGeom as_conv(const ConvGeom& g) {
  ConvGeom c = g;
  c.cin = g.cout;
  c.cout = g.cin;
  for (int i = 0; i < 3; ++i) {
    c.in[i] = g.out[i];
    c.out[i] = g.in[i];
  }
  return c;
}

}  // namespace

void conv_forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y) {
  if (winograd::suits(g)) return winograd::forward(g, x, w, b, y);
  if (k2s2::suits(g)) return k2s2::forward(g, x, w, b, y);
  const Source src = conv_source(g, x);
  const std::vector<int64_t> off = tap_offsets(g, src.p, 1);
  const std::vector<float> wp = pack_weights(w, g.cout, g.cin * g.k_vol());
  with_packet(g.out[2], [&](auto packet) {
    direct_forward<decltype(packet)>(g.n, g.cout, g.out, src, off, g.k_vol(), wp, b, y);
  });
}

namespace {

// The taps of one data-gradient phase (per dimension ph[d]) over dy's padded copy yp: offsets of
// (o, jd, jh, jw), j descending so that they ascend, and the weights (cin x taps, row-major) w[o, c, k0 + s*j].
void phase_taps(const ConvGeom& g, const float* w, const Padded& yp, const int lo[3], const PhaseDim ph[3],
                std::vector<int64_t>& off, std::vector<float>& wt) {
  const int64_t kvol = g.k_vol(), taps = g.cout * ph[0].taps * ph[1].taps * ph[2].taps;
  wt.resize(static_cast<size_t>(g.cin * taps));
  for (int64_t o = 0; o < g.cout; ++o)
    for (int64_t jd = ph[0].taps - 1; jd >= 0; --jd)
      for (int64_t jh = ph[1].taps - 1; jh >= 0; --jh)
        for (int64_t jw = ph[2].taps - 1; jw >= 0; --jw) {
          const int64_t t = static_cast<int64_t>(off.size());
          off.push_back(yp.offset(o, ph[0].shift - jd + lo[0], ph[1].shift - jh + lo[1], ph[2].shift - jw + lo[2]));
          const int64_t k = ((ph[0].k0 + g.stride[0] * jd) * g.k[1] + ph[1].k0 + g.stride[1] * jh) * g.k[2] +
                            ph[2].k0 + g.stride[2] * jw;
          for (int64_t c = 0; c < g.cin; ++c) wt[c * taps + t] = w[(o * g.cin + c) * kvol + k];
        }
}

// One phase r = (rd, rh, rw) of dx: the input positions q*s + r (q < q[d] per dimension), the taps
// that reach them over dy's padded copy (none: only the bias does) and their packed weights.
struct Phase {
  int64_t q[3] = {0, 0, 0};
  std::vector<int64_t> off;
  std::vector<float> wp;
  int64_t group = 1;
};

// Every phase of dx, index (rd * s1 + rh) * s2 + rw.
std::vector<Phase> dx_phases(const ConvGeom& g, const float* w, const Padded& yp, const int lo[3]) {
  std::vector<Phase> phases;
  for (int rd = 0; rd < g.stride[0]; ++rd)
    for (int rh = 0; rh < g.stride[1]; ++rh)
      for (int rw = 0; rw < g.stride[2]; ++rw) {
        const PhaseDim ph[3] = {PhaseDim(g.in[0], g.k[0], g.stride[0], g.pad[0], rd),
                                PhaseDim(g.in[1], g.k[1], g.stride[1], g.pad[1], rh),
                                PhaseDim(g.in[2], g.k[2], g.stride[2], g.pad[2], rw)};
        Phase p;
        for (int d = 0; d < 3; ++d) p.q[d] = ph[d].count;
        std::vector<float> wt;
        phase_taps(g, w, yp, lo, ph, p.off, wt);
        const int64_t taps = static_cast<int64_t>(p.off.size());
        p.wp = pack_weights(wt.data(), g.cin, taps);
        p.group = std::max<int64_t>(1, taps / std::max<int64_t>(1, g.cout));
        phases.push_back(std::move(p));
      }
  return phases;
}

// Phase planes [a, b) (along d) of every phase of one sample's dx, computed into a work item's buffer:
// phase i at base[i], channel c's planes at + c * pitch[i], plane a first.
struct PhaseTile {
  std::vector<int64_t> base, pitch;
  int64_t size = 0, planes = 0;  // floats, phase planes per tile
  PhaseTile(const std::vector<Phase>& phases, int64_t cin, int64_t tile) : planes(tile) {
    for (const Phase& p : phases) {
      base.push_back(size);
      pitch.push_back(std::min(planes, p.q[0]) * p.q[1] * p.q[2]);
      size += cin * pitch.back();
    }
  }
};

// A dx of kStreamBytes or more (work_items.h) is interleaved by non-temporal stores where its rows allow
// (stride 2 along x, rows of a multiple of 2 * kStreamLanes floats; k3 s2 16->16 32^3, 16.8 MB: data
// gradient 4.0 -> 3.7 ms).
// dst[2q] = e[q], dst[2q + 1] = o[q] for q < kStreamLanes, dst aligned to a vector, bypassing the caches.
#if defined(__AVX512F__)
constexpr int kStreamLanes = 16;
inline void stream_interleaved(float* dst, const float* e, const float* o) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 ve = _mm512_loadu_ps(e), vo = _mm512_loadu_ps(o);
  _mm512_stream_ps(dst, _mm512_permutex2var_ps(ve, lo, vo));
  _mm512_stream_ps(dst + 16, _mm512_permutex2var_ps(ve, hi, vo));
}
#elif defined(__AVX__)
constexpr int kStreamLanes = 8;
inline void stream_interleaved(float* dst, const float* e, const float* o) {
  const __m256 ve = _mm256_loadu_ps(e), vo = _mm256_loadu_ps(o);
  const __m256 lo = _mm256_unpacklo_ps(ve, vo), hi = _mm256_unpackhi_ps(ve, vo);  // pairs 0,1 | 4,5 and 2,3 | 6,7
  _mm256_stream_ps(dst, _mm256_permute2f128_ps(lo, hi, 0x20));
  _mm256_stream_ps(dst + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}
#else
constexpr int kStreamLanes = 0;  // no streaming path
inline void stream_interleaved(float*, const float*, const float*) {}
#endif
inline void stream_fence() {
#if defined(__AVX__)
  _mm_sfence();  // the streamed lines are visible before the work item counts as done
#endif
}

// Channels [c0, c1) of the tile's phases (planes [a, b), buffer t) into dx planes [a * s0, b * s0) of
// sample n, one pass; by non-temporal stores where `stream` and the rows allow.
void interleave_tile(const ConvGeom& g, const std::vector<Phase>& phases, const PhaseTile& t, const float* buf,
                     int64_t n, int64_t a, int64_t b, int64_t c0, int64_t c1, bool stream, float* dx) {
  const int* s = g.stride;
  const int64_t d1 = std::min(b * s[0], g.in[0]);
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t d = a * s[0]; d < d1; ++d)
      for (int64_t h = 0; h < g.in[1]; ++h) {
        float* __restrict__ row = dx + (((n * g.cin + c) * g.in[0] + d) * g.in[1] + h) * g.in[2];
        const int64_t first = (d % s[0] * s[1] + h % s[1]) * s[2];  // phase (rd, rh, 0)
        auto src = [&](int rw) {
          const Phase& p = phases[first + rw];
          return buf + t.base[first + rw] + c * t.pitch[first + rw] + ((d / s[0] - a) * p.q[1] + h / s[1]) * p.q[2];
        };
        if (s[2] == 2 && g.in[2] >= 2) {  // both phases in one vectorised loop
          const float* __restrict__ p0 = src(0);
          const float* __restrict__ p1 = src(1);
          const int64_t pairs = phases[first + 1].q[2];  // phase 0 has one more when in[2] is odd
          if (stream && kStreamLanes && g.in[2] % (2 * kStreamLanes) == 0 &&
              reinterpret_cast<uintptr_t>(row) % (kStreamLanes * sizeof(float)) == 0) {
            for (int64_t q = 0; q < pairs; q += kStreamLanes) stream_interleaved(row + 2 * q, p0 + q, p1 + q);
            continue;
          }
          for (int64_t q = 0; q < pairs; ++q) {
            row[2 * q] = p0[q];
            row[2 * q + 1] = p1[q];
          }
          if (phases[first].q[2] > pairs) row[2 * pairs] = p0[pairs];
          continue;
        }
        for (int rw = 0; rw < s[2] && rw < g.in[2]; ++rw) {
          const float* p = src(rw);
          for (int64_t q = 0, c2 = phases[first + rw].q[2]; q < c2; ++q) row[q * s[2] + rw] = p[q];
        }
      }
}

// dx (+ bias b per input channel, may be nullptr) = the adjoint of conv g applied to dy, phase by
// phase of dx (see the top of the file): each phase is a stride-1 correlation of dy, padded by
// lo/hi so that every phase's reads stay inside. Stride 1: one phase, written straight into dx.
// Else work items (sample, tile of phase planes, block of channels) compute each phase's part of their
// tile into the thread's buffer 0 (about kTileSplitBytes: it stays in L2) and interleave it into dx.
void backward_data(const ConvGeom& g, const float* dy, const float* w, const float* b, float* dx) {
  int lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0}, one[3] = {1, 1, 1};
  for (int d = 0; d < 3; ++d)
    for (int r = 0; r < g.stride[d]; ++r) {
      const PhaseDim pd(g.in[d], g.k[d], g.stride[d], g.pad[d], r);
      if (pd.count == 0 || pd.taps == 0) continue;
      lo[d] = std::max<int>(lo[d], static_cast<int>(pd.taps - 1 - pd.shift));
      hi[d] = std::max<int>(hi[d], static_cast<int>(pd.count - 1 + pd.shift - (g.out[d] - 1)));
    }
  const Padded yp = usable_in_place(g, g.out, lo, hi) ? in_place(dy, g.cout, g.out)
                                                      : pad_split(dy, g.n, g.cout, g.out, lo, hi, one, kVec + g.k[2]);
  const std::vector<Phase> phases = dx_phases(g, w, yp, lo);
  if (phases.size() == 1) {
    const Phase& p = phases[0];
    with_packet(p.q[2], [&](auto packet) {
      direct_forward<decltype(packet)>(g.n, g.cin, p.q, Source{yp}, p.off, p.group, p.wp, b, dx);
    });
    return;
  }
  const int64_t plane_bytes = g.cin * g.stride[0] * g.in[1] * g.in[2] * int64_t(sizeof(float));
  const int64_t q0 = phases[0].q[0];  // phase 0 has the most planes
  const PhaseTile t(phases, g.cin, planes_per_tile(kTileSplitBytes / plane_bytes, g.n, q0));
  const int64_t ntiles = (q0 + t.planes - 1) / t.planes;
  // Too few (sample, tile) items for the threads (2D, few planes): split the channels too, in blocks of MR.
  const int64_t blocks = std::clamp<int64_t>((2 * num_threads() + g.n * ntiles - 1) / (g.n * ntiles), 1,
                                             (g.cin + MR - 1) / MR);
  const int64_t block = round_up((g.cin + blocks - 1) / blocks, MR), items = g.n * ntiles * blocks;
  const bool stream = streamed_output(g.n * g.cin * g.in_vol());
  run_ranges(items, workers_for(items), [&](int, int64_t item) {
    const int64_t n = item / (ntiles * blocks), tile = item / blocks % ntiles;
    const int64_t c0 = item % blocks * block, c1 = std::min(g.cin, c0 + block);
    const int64_t q_a = tile * t.planes, q_b = std::min(q0, q_a + t.planes);
    if (c0 >= c1) return;
    float* buf = thread_buffer(0, t.size);
    for (size_t i = 0; i < phases.size(); ++i) {
      const Phase& p = phases[i];
      const int64_t pb = std::min(q_b, p.q[0]);
      if (pb <= q_a || p.q[1] * p.q[2] == 0) continue;
      float* out = buf + t.base[i];
      if (p.off.empty()) {  // no tap reaches this phase: the bias
        for (int64_t c = c0; c < c1; ++c)
          std::fill(out + c * t.pitch[i], out + c * t.pitch[i] + (pb - q_a) * p.q[1] * p.q[2], b ? b[c] : 0.0f);
        continue;
      }
      with_packet(p.q[2], [&](auto packet) {
        using Pk = decltype(packet);
        Positions& pos = thread_positions();
        pos.build(p.q, yp, q_a * p.q[1], pb * p.q[1], lanes<Pk>, 0, q_a * p.q[1]);
        const int64_t K = static_cast<int64_t>(p.off.size());
        direct_item<Pk>(pos, yp.data + n * yp.sample, p.off, p.group, c1 - c0, p.wp.data() + c0 * K,
                        b ? b + c0 : nullptr, out + c0 * t.pitch[i], t.pitch[i],
                        [](int64_t, int64_t) { return PrefetchRun{}; });
      });
    }
    interleave_tile(g, phases, t, buf, n, q_a, q_b, c0, c1, stream, dx);
    if (stream) stream_fence();
  });
}

}  // namespace

void conv_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  if (winograd::suits(g)) return winograd::backward_data(g, dy, w, dx);
  if (k2s2::suits(g)) return k2s2::backward_data(g, dy, w, nullptr, dx);
  backward_data(g, dy, w, nullptr, dx);
}

namespace {

// The weight gradient in vectors of packet Pk (see the top of the file).
template <class Pk>
void weight_direct(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  constexpr int V = lanes<Pk>;
  const int64_t K = g.cin * g.k_vol(), P = g.out_vol();
  const int64_t kp = round_up(K, NK), op = round_up(g.cout, MO);
  const Source src = conv_source(g, x);
  const Tiling t = src.tiling(g.out);
  const int64_t items = g.n * t.ntiles;
  const int workers = workers_for(items);
  const int64_t part_size = op * kp * V;
  float* const partial = thread_buffer(3, workers * part_size);
  std::fill(partial, partial + workers * part_size, 0.0f);
  // dy of the tile's positions into buffer 1: op rows of pitch ld, one V slot per position,
  // zero in invalid lanes and beyond cout.
  auto copy_dy = [&](int64_t n, const Positions& pos, int64_t ld) {
    float* dyb = thread_buffer(1, op * ld);
    std::fill(dyb, dyb + op * ld, 0.0f);
    for (int64_t o = 0; o < g.cout; ++o) {
      const float* src = dy + (n * g.cout + o) * P;
      for (int64_t i = 0; i < pos.size(); ++i)
        std::copy(src + pos.dst[i], src + pos.dst[i] + pos.valid[i], dyb + o * ld + i * V);
    }
    return dyb;
  };
  const std::vector<int64_t> off = tap_offsets(g, src.p, NK);
  run_ranges(items, workers, [&](int worker, int64_t item) {
    const int64_t n = item / t.ntiles, r0 = t.begin(item % t.ntiles), r1 = t.end(item % t.ntiles);
    int64_t od0 = 0;
    const float* xs = src.sample(n, r0, od0);
    Positions& pos = thread_positions();
    pos.build(g.out, src.p, r0, r1, V, od0);
    const int64_t ld = (pos.size() + 1) * V;  // +1: rows not a power of two apart (L1 sets)
    const float* dyb = copy_dy(n, pos, ld);
    float* part = partial + worker * part_size;
    // Positions in chunks so that one block of dy rows (MO x chunk vectors) stays in L1.
    const int64_t steps = (pos.size() + kWeightChunk - 1) / kWeightChunk * (op / MO) * (kp / NK);
    int64_t step = 0;
    for (int64_t i0 = 0; i0 < pos.size(); i0 += kWeightChunk)
      for (int64_t o = 0; o < op; o += MO)
        for (int64_t k = 0; k < kp; k += NK) {
          const PrefetchRun pf = src.ahead(t, item + 1, step++, steps);
          const int64_t i1 = std::min(pos.size(), i0 + kWeightChunk);
          if (pf.count)
            micro_weight_direct<Pk, true>(pos, i0, i1, dyb + o * ld, ld, xs, off.data() + k, part + (o * kp + k) * V,
                                          kp, pf.p, pf.count);
          else
            micro_weight_direct<Pk, false>(pos, i0, i1, dyb + o * ld, ld, xs, off.data() + k, part + (o * kp + k) * V,
                                           kp, nullptr, 0);
        }
  });
  for (int64_t o = 0; o < g.cout; ++o)
    for (int64_t k = 0; k < K; ++k) {
      float s = 0.0f;
      for (int wk = 0; wk < workers; ++wk) {
        const float* v = partial + wk * part_size + (o * kp + k) * V;
        for (int l = 0; l < V; ++l) s += v[l];
      }
      dw[o * K + k] = s;
    }
}

}  // namespace

void conv_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  if (winograd::suits(g)) return winograd::backward_weight(g, x, dy, dw);
  if (k2s2::suits(g)) return k2s2::backward_weight(g, x, dy, dw);
  with_packet(g.out[2], [&](auto packet) { weight_direct<decltype(packet)>(g, x, dy, dw); });
}

void conv_backward_bias(const ConvGeom& g, const float* dy, float* db) {
  const int64_t P = g.out_vol();
  parallel_for(
      g.cout,
      [&](int64_t lo, int64_t hi) {
        for (int64_t o = lo; o < hi; ++o)
          db[o] = bias_sum(g.n, [&](int64_t n) { return plane_sum(dy + (n * g.cout + o) * P, P); });
      },
      1);
}

void conv_transpose_forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y) {
  if (k2s2::suits(as_conv(g))) return k2s2::backward_data(as_conv(g), x, w, b, y);
  backward_data(as_conv(g), x, w, b, y);
}

// The adjoint conv c = as_conv(g) reads dy as its input: dx = c's forward of dy, dw = c's weight gradient
// with dy as input and x as output gradient, db = dy's channel sums; by k2 s2 tap pairs all in one pass.
void conv_transpose_backward(const ConvGeom& g, const float* x, const float* dy, const float* w, float* dx, float* dw,
                             float* db) {
  const ConvGeom c = as_conv(g);
  if (k2s2::suits(c)) return k2s2::transposed_backward(c, dy, w, x, dx, dw, db);
  if (dx) conv_forward(c, dy, w, nullptr, dx);
  if (dw) conv_backward_weight(c, dy, x, dw);
  if (db) conv_backward_bias(g, dy, db);
}

}  // namespace pw::kernels::cpu
