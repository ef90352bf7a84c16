// CPU convolution: register-blocked SIMD micro-kernels written with Eigen's packet math (SSE, AVX
// or AVX-512, whichever the build targets), threaded over (sample, tile) work items with
// pw::parallel_for. Eigen's own threading is off; no allocation happens inside the tile loops.
//
// Per sample, y (cout x P) = w (cout x K) * col (K x P) with K = cin*kD*kH*kW and P = the output
// volume. The output is cut into tiles of whole output rows (d, h).
//   stride 1 ("direct"): no column matrix at all. x is copied once, zero-padded; column (k, p)
//                  of the implicit col matrix is xpad[tap offset k + position offset p], so the
//                  micro-kernels load SIMD vectors of kVec outputs of one row straight from xpad.
//                  (A 1x1x1 convolution has a single tap: no k-expansion at all.)
//   other strides: col is built per tile by im2col (about 1 MB, stays in L2), packed in panels of
//                  NR columns for the forward micro-kernel.
//   forward:       w is packed in blocks of MR output channels; the micro-kernel keeps an
//                  MR x (NV vectors) block of y in registers for a whole chunk of taps.
//   weight grad:   dw (cout x K) += dy (cout x cols) * col^T, vectorised along the columns, with
//                  per-worker vector partial sums reduced at the end.
//   data grad:     with stride 1 it is itself a forward convolution (flipped, transposed weights,
//                  padding k-1-p), so it shares the fast path; other strides compute
//                  dcol = w^T dy with Eigen's GEMM and scatter it with col2im, one sample per item.
#define EIGEN_DONT_PARALLELIZE  // we thread ourselves (pw::parallel_for)
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_ps) when Eigen's packets inline.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/conv.h"

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/parallel.h"

namespace pw::kernels::cpu {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;
using MatMap = Eigen::Map<RowMat, Eigen::Unaligned, Stride>;
using ConstMatMap = Eigen::Map<const RowMat, Eigen::Unaligned, Stride>;

// SIMD packet of the build's widest float vector, and the micro-kernel's register blocking.
using Packet = Eigen::internal::packet_traits<float>::type;
constexpr int kVec = static_cast<int>(sizeof(Packet) / sizeof(float));
constexpr bool kWide = kVec >= 16;         // AVX-512: 32 vector registers
constexpr int MR = kWide ? 8 : 4;          // forward: output channels per block
constexpr int NV = 3;                      // forward: vectors of columns per block
constexpr int NR = NV * kVec;              // forward: columns per panel
constexpr int MO = kWide ? 8 : 2;          // weight grad: output channels per block
constexpr int NK = kWide ? 3 : 6;          // weight grad: kernel rows per block

// Columns per tile: im2col tiles hold about 1 MB of columns (they stay in L2); direct tiles
// have no column block and are sized for the weight-gradient partial sums and load balance.
int64_t im2col_tile_cols(int64_t K) { return std::max<int64_t>(256, (int64_t(1) << 18) / std::max<int64_t>(1, K)); }
constexpr int64_t direct_tile_cols() { return 4096; }
// Direct forward: taps per chunk (whole input channels), about 16 channels of a 3x3x3 kernel.
constexpr int64_t kChunkTaps = 512;
// Direct weight gradient: SIMD positions per chunk (MO x 48 vectors of dy = 24 KB with AVX-512).
constexpr int64_t kWeightChunk = 48;

int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

// Per-thread buffers (0: columns, 1: dy copy, 2: padded input, 3: weight-gradient partial sums,
// the last two owned by the calling thread); each grows to the largest size asked and is kept
// (pool threads live on), so no allocation happens per tile.
float* thread_buffer(int slot, int64_t n) {
  thread_local std::vector<float, Eigen::aligned_allocator<float>> buf[4];
  if (static_cast<int64_t>(buf[slot].size()) < n) buf[slot].resize(static_cast<size_t>(n));
  return buf[slot].data();
}

// Runs f(worker, item) for every item in [0, items), dealt round-robin to `workers` workers.
template <class F>
void run_items(int64_t items, int workers, const F& f) {
  parallel_for(
      workers,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t)
          for (int64_t i = t; i < items; i += workers) f(static_cast<int>(t), i);
      },
      1);
}

int workers_for(int64_t items) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), items)));
}

// The output is tiled by whole output rows (d, h), each of out[2] columns.
struct Tiling {
  int64_t rows = 0, rows_per_tile = 0, ntiles = 0, row_len = 0;
  // About `cols` columns per tile (at least one row).
  Tiling(const ConvGeom& g, int64_t cols) {
    rows = g.out[0] * g.out[1];
    row_len = g.out[2];
    rows_per_tile = std::clamp<int64_t>(cols / std::max<int64_t>(1, row_len), 1, std::max<int64_t>(1, rows));
    ntiles = (rows + rows_per_tile - 1) / rows_per_tile;
  }
  int64_t begin(int64_t t) const { return t * rows_per_tile; }
  int64_t end(int64_t t) const { return std::min(rows, (t + 1) * rows_per_tile); }
};

// The outputs o in [lo, hi) of a row whose source index o*s + off lies inside [0, n_in).
inline void valid_range(int64_t n_in, int64_t n_out, int s, int64_t off, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : std::min<int64_t>(n_out, (-off + s - 1) / s);
  hi = n_in - off <= 0 ? lo : std::clamp<int64_t>((n_in - off + s - 1) / s, lo, n_out);
}

// One (kernel row, output row) pair of a tile: output o of the row reads x[xoff + o*s] for o in
// [lo, hi) and zero elsewhere; inside = false when the whole input row is zero padding.
struct RowRead {
  int64_t xoff = 0, lo = 0, hi = 0;
  bool inside = false;
};

// Visits every (kernel row, output row) pair of the tile [r0, r1): fn(krow, r - r0, read).
template <class F>
void for_tile_rows(const ConvGeom& g, int64_t r0, int64_t r1, const F& fn) {
  int64_t krow = 0;
  for (int64_t c = 0; c < g.cin; ++c)
    for (int kd = 0; kd < g.k[0]; ++kd)
      for (int kh = 0; kh < g.k[1]; ++kh)
        for (int kw = 0; kw < g.k[2]; ++kw, ++krow) {
          RowRead rr;
          valid_range(g.in[2], g.out[2], g.stride[2], int64_t(kw) - g.pad[2], rr.lo, rr.hi);
          int64_t od = r0 / g.out[1], oh = r0 % g.out[1];
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t id = od * g.stride[0] - g.pad[0] + kd;
            const int64_t ih = oh * g.stride[1] - g.pad[1] + kh;
            rr.inside = id >= 0 && id < g.in[0] && ih >= 0 && ih < g.in[1];
            rr.xoff = ((c * g.in[0] + id) * g.in[1] + ih) * g.in[2] + kw - g.pad[2];
            fn(krow, r - r0, rr);
            if (++oh == g.out[1]) {
              oh = 0;
              ++od;
            }
          }
        }
}

// d[0, len) = outputs [o0, o0 + len) of one pair's row (zero where it reads padding).
inline void gather_segment(const float* x, const RowRead& rr, int s, int64_t o0, int64_t len, float* d) {
  const int64_t e = o0 + len;
  const int64_t a = rr.inside ? std::clamp(rr.lo, o0, e) : e;
  const int64_t b = rr.inside ? std::clamp(rr.hi, a, e) : e;
  std::fill(d, d + (a - o0), 0.0f);
  if (s == 1) {
    if (b > a) std::memcpy(d + (a - o0), x + rr.xoff + a, static_cast<size_t>(b - a) * sizeof(float));
  } else {
    for (int64_t o = a; o < b; ++o) d[o - o0] = x[rr.xoff + o * s];
  }
  std::fill(d + (b - o0), d + len, 0.0f);
}

// Row-major col (K rows of pitch ld >= cols, zero beyond cols) for output rows [r0, r1) of sample x.
// Callers keep ld off powers of two (L1 set conflicts).
void im2col(const ConvGeom& g, const float* x, int64_t r0, int64_t r1, float* col, int64_t ld) {
  const int64_t W = g.out[2], cols = (r1 - r0) * W;
  for_tile_rows(g, r0, r1, [&](int64_t krow, int64_t rl, const RowRead& rr) {
    float* d = col + krow * ld;
    gather_segment(x, rr, g.stride[2], 0, W, d + rl * W);
    if (rl == r1 - r0 - 1) std::fill(d + cols, d + ld, 0.0f);
  });
}

// The same columns packed in panels of NR: element (k, q) at ((q / NR) * K + k) * NR + q % NR;
// the last panel is zero-padded.
void im2col_panels(const ConvGeom& g, const float* x, int64_t r0, int64_t r1, float* cp) {
  const int64_t W = g.out[2], K = g.cin * g.k_vol(), cols = (r1 - r0) * W;
  for_tile_rows(g, r0, r1, [&](int64_t krow, int64_t rl, const RowRead& rr) {
    for (int64_t o = 0; o < W;) {
      const int64_t q = rl * W + o, j = q % NR, len = std::min(NR - j, W - o);
      gather_segment(x, rr, g.stride[2], o, len, cp + ((q / NR) * K + krow) * NR + j);
      o += len;
    }
  });
  if (const int64_t tail = cols % NR) {
    float* last = cp + (cols / NR) * K * NR;
    for (int64_t k = 0; k < K; ++k) std::fill(last + k * NR + tail, last + (k + 1) * NR, 0.0f);
  }
}

// dx (one sample) += col2im(col) for output rows [r0, r1) (col row-major, pitch ld): the adjoint
// of im2col.
void col2im_add(const ConvGeom& g, const float* col, int64_t ld, int64_t r0, int64_t r1, float* dx) {
  const int64_t W = g.out[2];
  const int s = g.stride[2];
  for_tile_rows(g, r0, r1, [&](int64_t krow, int64_t rl, const RowRead& rr) {
    if (!rr.inside) return;
    const float* d = col + krow * ld + rl * W;
    for (int64_t o = rr.lo; o < rr.hi; ++o) dx[rr.xoff + o * s] += d[o];
  });
}

// w (cout x K) packed in blocks of MR output channels, k-major: element (o, k) at
// ((o / MR) * K + k) * MR + o % MR; rows beyond cout are zero.
std::vector<float> pack_weights(const float* w, int64_t cout, int64_t K) {
  std::vector<float> wp(static_cast<size_t>(round_up(cout, MR) * K), 0.0f);
  for (int64_t o = 0; o < cout; ++o)
    for (int64_t k = 0; k < K; ++k) wp[((o / MR) * K + k) * MR + o % MR] = w[o * K + k];
  return wp;
}

// y block (rows x ncols of MR x NR, row pitch ldy) = w block (packed, MR x K) * col panel (K x NR)
// + bias. The MR x NR sums stay in registers for the whole K loop.
inline void micro_forward(int64_t K, const float* wp, const float* cp, const float* bias, float* y, int64_t ldy,
                          int rows, int64_t ncols) {
  using namespace Eigen::internal;
  Packet acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = pset1<Packet>(0.0f);
  for (int64_t k = 0; k < K; ++k, wp += MR, cp += NR) {
    const Packet c0 = pload<Packet>(cp), c1 = pload<Packet>(cp + kVec), c2 = pload<Packet>(cp + 2 * kVec);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const Packet wr = pset1<Packet>(wp[r]);
      acc[r][0] = pmadd(wr, c0, acc[r][0]);
      acc[r][1] = pmadd(wr, c1, acc[r][1]);
      acc[r][2] = pmadd(wr, c2, acc[r][2]);
    }
  }
  for (int r = 0; r < rows; ++r) {
    const Packet b = pset1<Packet>(bias ? bias[r] : 0.0f);
    float* yr = y + r * ldy;
    if (ncols == NR) {
      for (int v = 0; v < NV; ++v) pstoreu(yr + v * kVec, padd(acc[r][v], b));
    } else {
      alignas(64) float tmp[NR];
      for (int v = 0; v < NV; ++v) pstore(tmp + v * kVec, padd(acc[r][v], b));
      std::copy(tmp, tmp + ncols, yr);
    }
  }
}

// part (MO x NK vector partial sums, element (o, k) at (o * kp + k) * kVec) += dy rows (MO, pitch
// ld) * col rows (NK, pitch ld)^T over ld columns (ld a multiple of kVec, both 64-byte aligned).
inline void micro_weight(int64_t ld, const float* dy, const float* col, float* part, int64_t kp) {
  using namespace Eigen::internal;
  Packet acc[MO][NK];
#pragma GCC unroll 8
  for (int o = 0; o < MO; ++o)
    for (int k = 0; k < NK; ++k) acc[o][k] = pload<Packet>(part + (o * kp + k) * kVec);
  for (int64_t p = 0; p < ld; p += kVec) {
    Packet d[MO];
#pragma GCC unroll 8
    for (int o = 0; o < MO; ++o) d[o] = pload<Packet>(dy + o * ld + p);
#pragma GCC unroll 8
    for (int k = 0; k < NK; ++k) {
      const Packet c = pload<Packet>(col + k * ld + p);
      for (int o = 0; o < MO; ++o) acc[o][k] = pmadd(d[o], c, acc[o][k]);
    }
  }
#pragma GCC unroll 8
  for (int o = 0; o < MO; ++o)
    for (int k = 0; k < NK; ++k) pstore(part + (o * kp + k) * kVec, acc[o][k]);
}

// ---- stride-1 direct path ---------------------------------------------------------------------

bool unit_stride(const ConvGeom& g) { return g.stride[0] == 1 && g.stride[1] == 1 && g.stride[2] == 1; }

// x zero-padded by g.pad on every side: n*cin planes of Dp x Hp x Wp, plus kVec + kW floats of
// slack at the end (a row's last vector may read past its row). Lives in the caller's buffer 2.
struct Padded {
  const float* data;
  int64_t Dp, Hp, Wp, vol;
};

Padded pad_input(const ConvGeom& g, const float* x) {
  Padded p;
  p.Dp = g.in[0] + 2 * g.pad[0];
  p.Hp = g.in[1] + 2 * g.pad[1];
  p.Wp = g.in[2] + 2 * g.pad[2];
  p.vol = p.Dp * p.Hp * p.Wp;
  const int64_t planes = g.n * g.cin, slack = kVec + g.k[2];
  float* xp = thread_buffer(2, planes * p.vol + slack);
  std::fill(xp + planes * p.vol, xp + planes * p.vol + slack, 0.0f);
  const int64_t in_vol = g.in_vol();
  parallel_for(
      planes,
      [&](int64_t b, int64_t e) {
        for (int64_t pl = b; pl < e; ++pl) {
          float* dst = xp + pl * p.vol;
          const float* src = x + pl * in_vol;
          for (int64_t d = 0; d < p.Dp; ++d)
            for (int64_t h = 0; h < p.Hp; ++h) {
              float* row = dst + (d * p.Hp + h) * p.Wp;
              const int64_t id = d - g.pad[0], ih = h - g.pad[1];
              if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1]) {
                std::fill(row, row + p.Wp, 0.0f);
                continue;
              }
              std::fill(row, row + g.pad[2], 0.0f);
              std::memcpy(row + g.pad[2], src + (id * g.in[1] + ih) * g.in[2], sizeof(float) * g.in[2]);
              std::fill(row + g.pad[2] + g.in[2], row + p.Wp, 0.0f);
            }
        }
      },
      8);
  p.data = xp;
  return p;
}

// Offset in xpad (one sample) of tap k = (c, kd, kh, kw), padded to a multiple of `mult` with 0.
std::vector<int64_t> tap_offsets(const ConvGeom& g, const Padded& p, int64_t mult) {
  std::vector<int64_t> off;
  for (int64_t c = 0; c < g.cin; ++c)
    for (int kd = 0; kd < g.k[0]; ++kd)
      for (int kh = 0; kh < g.k[1]; ++kh)
        for (int kw = 0; kw < g.k[2]; ++kw) off.push_back(((c * p.Dp + kd) * p.Hp + kh) * p.Wp + kw);
  off.resize(static_cast<size_t>(round_up(static_cast<int64_t>(off.size()), mult)), 0);
  return off;
}

// The SIMD vector positions of output rows [r0, r1): each row is cut into ceil(W/kVec) vectors.
// For position i: src[i] = its offset in xpad (tap 0), dst[i] = its offset in y's channel plane,
// valid[i] = how many of its kVec lanes are real outputs.
struct Positions {
  std::vector<int64_t> src, dst;
  std::vector<int> valid;
  void build(const ConvGeom& g, const Padded& p, int64_t r0, int64_t r1) {
    src.clear();
    dst.clear();
    valid.clear();
    const int64_t W = g.out[2];
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t od = r / g.out[1], oh = r % g.out[1];
      for (int64_t ow = 0; ow < W; ow += kVec) {
        src.push_back((od * p.Hp + oh) * p.Wp + ow);
        dst.push_back(r * W + ow);
        valid.push_back(static_cast<int>(std::min<int64_t>(kVec, W - ow)));
      }
    }
  }
  int64_t size() const { return static_cast<int64_t>(src.size()); }
};

Positions& thread_positions() {
  thread_local Positions pos;
  return pos;
}

// y vectors (NV positions starting at i, `rows` output channels of pitch P) = w block (packed,
// MR x K) * implicit columns xs[tap offset + position offset] + bias, or (add = true) y += the
// product (a later chunk of taps; bias is then nullptr).
inline void micro_direct(int64_t K, const int64_t* off, const float* wp, const float* xs, const Positions& pos,
                         int64_t i, const float* bias, float* y, int64_t P, int rows, bool add) {
  using namespace Eigen::internal;
  const int nv = static_cast<int>(std::min<int64_t>(NV, pos.size() - i));
  const float* s0 = xs + pos.src[i];
  const float* s1 = xs + pos.src[i + (nv > 1 ? 1 : 0)];
  const float* s2 = xs + pos.src[i + (nv > 2 ? 2 : 0)];
  Packet acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = pset1<Packet>(0.0f);
  for (int64_t k = 0; k < K; ++k, wp += MR) {
    const int64_t o = off[k];
    const Packet c0 = ploadu<Packet>(s0 + o), c1 = ploadu<Packet>(s1 + o), c2 = ploadu<Packet>(s2 + o);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const Packet wr = pset1<Packet>(wp[r]);
      acc[r][0] = pmadd(wr, c0, acc[r][0]);
      acc[r][1] = pmadd(wr, c1, acc[r][1]);
      acc[r][2] = pmadd(wr, c2, acc[r][2]);
    }
  }
  for (int r = 0; r < rows; ++r) {
    const Packet b = pset1<Packet>(bias ? bias[r] : 0.0f);
    for (int v = 0; v < nv; ++v) {
      float* yv = y + r * P + pos.dst[i + v];
      const int valid = pos.valid[i + v];
      if (valid == kVec) {
        pstoreu(yv, padd(acc[r][v], add ? ploadu<Packet>(yv) : b));
      } else {
        alignas(64) float tmp[kVec] = {};
        if (add) std::copy(yv, yv + valid, tmp);
        pstore(tmp, padd(acc[r][v], add ? pload<Packet>(tmp) : b));
        std::copy(tmp, tmp + valid, yv);
      }
    }
  }
}

// part (MO x NK vector partial sums, element (o, k) at (o * kp + k) * kVec) += dy vectors (MO rows
// of pitch ld, one kVec slot per position, zero in invalid lanes) * implicit columns of taps
// off[0..NK) over positions [i0, i1).
// (Invalid lanes of a row's last vector read x values of the next row: dy is zero there.)
inline void micro_weight_direct(const Positions& pos, int64_t i0, int64_t i1, const float* dy, int64_t ld,
                                const float* xs, const int64_t* off, float* part, int64_t kp) {
  using namespace Eigen::internal;
  Packet acc[MO][NK];
#pragma GCC unroll 8
  for (int o = 0; o < MO; ++o)
    for (int k = 0; k < NK; ++k) acc[o][k] = pload<Packet>(part + (o * kp + k) * kVec);
  int64_t tap[NK];
  for (int k = 0; k < NK; ++k) tap[k] = off[k];
  for (int64_t i = i0; i < i1; ++i) {
    Packet d[MO];
#pragma GCC unroll 8
    for (int o = 0; o < MO; ++o) d[o] = pload<Packet>(dy + o * ld + i * kVec);
    const float* s = xs + pos.src[i];
#pragma GCC unroll 8
    for (int k = 0; k < NK; ++k) {
      const Packet c = ploadu<Packet>(s + tap[k]);
      for (int o = 0; o < MO; ++o) acc[o][k] = pmadd(d[o], c, acc[o][k]);
    }
  }
#pragma GCC unroll 8
  for (int o = 0; o < MO; ++o)
    for (int k = 0; k < NK; ++k) pstore(part + (o * kp + k) * kVec, acc[o][k]);
}

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

void add_bias(const ConvGeom& g, const float* b, float* y) {
  const int64_t P = g.out_vol();
  parallel_for(
      g.n * g.cout,
      [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          float v = b[i % g.cout];
          float* p = y + i * P;
          for (int64_t j = 0; j < P; ++j) p[j] += v;
        }
      },
      4);
}

}  // namespace

void conv_forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y) {
  const int64_t K = g.cin * g.k_vol(), P = g.out_vol(), in_vol = g.in_vol();
  const Tiling t(g, unit_stride(g) ? direct_tile_cols() : im2col_tile_cols(K));
  const int64_t items = g.n * t.ntiles;
  const std::vector<float> wp = pack_weights(w, g.cout, K);
  if (unit_stride(g)) {
    const Padded xp = pad_input(g, x);
    const std::vector<int64_t> off = tap_offsets(g, xp, 1);
    const int64_t kvol = g.k_vol(), chunk = std::max<int64_t>(1, kChunkTaps / kvol) * kvol;
    run_items(items, workers_for(items), [&](int, int64_t item) {
      const int64_t n = item / t.ntiles, r0 = t.begin(item % t.ntiles), r1 = t.end(item % t.ntiles);
      Positions& pos = thread_positions();
      pos.build(g, xp, r0, r1);
      const float* xs = xp.data + n * g.cin * xp.vol;
      float* ys = y + n * g.cout * P;
      // Taps in chunks of whole channels, so that the input rows one chunk reads stay in L1.
      for (int64_t k0 = 0; k0 < K; k0 += chunk)
        for (int64_t i = 0; i < pos.size(); i += NV)
          for (int64_t o = 0; o < g.cout; o += MR)
            micro_direct(std::min(chunk, K - k0), off.data() + k0, wp.data() + o * K + k0 * MR, xs, pos, i,
                         (b && k0 == 0) ? b + o : nullptr, ys + o * P, P,
                         static_cast<int>(std::min<int64_t>(MR, g.cout - o)), k0 > 0);
    });
    return;
  }
  run_items(items, workers_for(items), [&](int, int64_t item) {
    const int64_t n = item / t.ntiles, r0 = t.begin(item % t.ntiles), r1 = t.end(item % t.ntiles);
    const int64_t c0 = r0 * t.row_len, cols = (r1 - r0) * t.row_len;
    float* cp = thread_buffer(0, round_up(cols, NR) * K);
    im2col_panels(g, x + n * g.cin * in_vol, r0, r1, cp);
    float* ys = y + n * g.cout * P + c0;
    for (int64_t q = 0; q < cols; q += NR)
      for (int64_t o = 0; o < g.cout; o += MR)
        micro_forward(K, wp.data() + o * K, cp + q * K, b ? b + o : nullptr, ys + o * P + q, P,
                      static_cast<int>(std::min<int64_t>(MR, g.cout - o)), std::min<int64_t>(NR, cols - q));
  });
}

void conv_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  const int64_t kvol = g.k_vol();
  bool as_forward = true;
  for (int i = 0; i < 3; ++i) as_forward = as_forward && g.stride[i] == 1 && g.pad[i] <= g.k[i] - 1;
  if (as_forward) {
    // dx = conv(dy, w') with w'[c, o, k] = w[o, c, flipped k] and padding k - 1 - p.
    ConvGeom f = as_conv(g);
    for (int i = 0; i < 3; ++i) f.pad[i] = g.k[i] - 1 - g.pad[i];
    std::vector<float> wf(static_cast<size_t>(g.cin * g.cout * kvol));
    for (int64_t o = 0; o < g.cout; ++o)
      for (int64_t c = 0; c < g.cin; ++c)
        for (int64_t k = 0; k < kvol; ++k) wf[(c * g.cout + o) * kvol + (kvol - 1 - k)] = w[(o * g.cin + c) * kvol + k];
    conv_forward(f, dy, wf.data(), nullptr, dx);
    return;
  }
  // General strides: dcol = w^T dy per tile, scattered into dx; one sample per work item.
  const int64_t K = g.cin * kvol, P = g.out_vol(), in_vol = g.in_vol();
  const Tiling t(g, im2col_tile_cols(K));
  ConstMatMap Wt(w, g.cout, K, Stride(K));
  run_items(g.n, workers_for(g.n), [&](int, int64_t n) {
    float* dxs = dx + n * g.cin * in_vol;
    std::fill(dxs, dxs + g.cin * in_vol, 0.0f);
    for (int64_t tile = 0; tile < t.ntiles; ++tile) {
      const int64_t r0 = t.begin(tile), r1 = t.end(tile);
      const int64_t c0 = r0 * t.row_len, cols = (r1 - r0) * t.row_len;
      float* col = thread_buffer(0, K * cols);
      MatMap C(col, K, cols, Stride(cols));
      C.noalias() = Wt.transpose() * ConstMatMap(dy + n * g.cout * P + c0, g.cout, cols, Stride(P));
      col2im_add(g, col, cols, r0, r1, dxs);
    }
  });
}

void conv_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const int64_t K = g.cin * g.k_vol(), P = g.out_vol(), in_vol = g.in_vol();
  const int64_t kp = round_up(K, NK), op = round_up(g.cout, MO);
  const Tiling t(g, unit_stride(g) ? direct_tile_cols() : im2col_tile_cols(K));
  const int64_t items = g.n * t.ntiles;
  const int workers = workers_for(items);
  const int64_t part_size = op * kp * kVec;
  float* const partial = thread_buffer(3, workers * part_size);
  std::fill(partial, partial + workers * part_size, 0.0f);
  // dy rows of the tile into buffer 1: op rows of pitch ld, zero beyond cout; `slot(i)` gives the
  // offset of the i-th kVec-wide piece of the tile's columns.
  auto copy_dy = [&](int64_t n, int64_t nslots, int64_t ld, const auto& piece) {
    float* dyb = thread_buffer(1, op * ld);
    for (int64_t o = 0; o < op; ++o) {
      float* d = dyb + o * ld;
      if (o >= g.cout) {
        std::fill(d, d + ld, 0.0f);
        continue;
      }
      const float* src = dy + (n * g.cout + o) * P;
      for (int64_t i = 0; i < nslots; ++i) {
        int64_t at, valid;
        piece(i, at, valid);
        std::copy(src + at, src + at + valid, d + i * kVec);
        std::fill(d + i * kVec + valid, d + (i + 1) * kVec, 0.0f);
      }
      std::fill(d + nslots * kVec, d + ld, 0.0f);
    }
    return dyb;
  };
  if (unit_stride(g)) {
    const Padded xp = pad_input(g, x);
    const std::vector<int64_t> off = tap_offsets(g, xp, NK);
    run_items(items, workers, [&](int worker, int64_t item) {
      const int64_t n = item / t.ntiles, r0 = t.begin(item % t.ntiles), r1 = t.end(item % t.ntiles);
      Positions& pos = thread_positions();
      pos.build(g, xp, r0, r1);
      const int64_t ld = (pos.size() + 1) * kVec;  // +1: rows not a power of two apart (L1 sets)
      const float* dyb = copy_dy(n, pos.size(), ld, [&](int64_t i, int64_t& at, int64_t& valid) {
        at = pos.dst[i];
        valid = pos.valid[i];
      });
      const float* xs = xp.data + n * g.cin * xp.vol;
      float* part = partial + worker * part_size;
      // Positions in chunks so that one block of dy rows (MO x chunk vectors) stays in L1.
      for (int64_t i0 = 0; i0 < pos.size(); i0 += kWeightChunk)
        for (int64_t o = 0; o < op; o += MO)
          for (int64_t k = 0; k < kp; k += NK)
            micro_weight_direct(pos, i0, std::min(pos.size(), i0 + kWeightChunk), dyb + o * ld, ld, xs,
                                off.data() + k, part + (o * kp + k) * kVec, kp);
    });
  } else {
    run_items(items, workers, [&](int worker, int64_t item) {
      const int64_t n = item / t.ntiles, r0 = t.begin(item % t.ntiles), r1 = t.end(item % t.ntiles);
      const int64_t c0 = r0 * t.row_len, cols = (r1 - r0) * t.row_len, ld = round_up(cols, kVec) + kVec;
      float* col = thread_buffer(0, kp * ld);
      im2col(g, x + n * g.cin * in_vol, r0, r1, col, ld);
      std::fill(col + K * ld, col + kp * ld, 0.0f);
      const float* dyb = copy_dy(n, ld / kVec, ld, [&](int64_t i, int64_t& at, int64_t& valid) {
        at = c0 + i * kVec;
        valid = std::clamp<int64_t>(cols - i * kVec, 0, kVec);
      });
      float* part = partial + worker * part_size;
      for (int64_t k = 0; k < kp; k += NK)
        for (int64_t o = 0; o < op; o += MO)
          micro_weight(ld, dyb + o * ld, col + k * ld, part + (o * kp + k) * kVec, kp);
    });
  }
  for (int64_t o = 0; o < g.cout; ++o)
    for (int64_t k = 0; k < K; ++k) {
      float s = 0.0f;
      for (int wk = 0; wk < workers; ++wk) {
        const float* v = partial + wk * part_size + (o * kp + k) * kVec;
        for (int l = 0; l < kVec; ++l) s += v[l];
      }
      dw[o * K + k] = s;
    }
}

void conv_backward_bias(const ConvGeom& g, const float* dy, float* db) {
  const int64_t P = g.out_vol();
  parallel_for(
      g.cout,
      [&](int64_t lo, int64_t hi) {
        for (int64_t o = lo; o < hi; ++o) {
          double s = 0.0;
          for (int64_t n = 0; n < g.n; ++n)
            s += Eigen::Map<const Eigen::VectorXf>(dy + (n * g.cout + o) * P, P).sum();
          db[o] = static_cast<float>(s);
        }
      },
      1);
}

void conv_transpose_forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y) {
  conv_backward_data(as_conv(g), x, w, y);
  if (b) add_bias(g, b, y);
}

void conv_transpose_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  conv_forward(as_conv(g), dy, w, nullptr, dx);
}

void conv_transpose_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  conv_backward_weight(as_conv(g), dy, x, dw);
}

}  // namespace pw::kernels::cpu
