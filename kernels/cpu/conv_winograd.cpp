// CPU convolution by Winograd's minimal filtering F(2x2x2, 3x3x3) (Lavin and Gray, 2016), with the
// channels in the SIMD lanes.
//
// In one dimension, two outputs of a 3-tap correlation of a 4-element input tile d with taps g are
//   y = A^T [ (G g) .* (B^T d) ]     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//                                    G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//                                    A^T = [1 1 1 0; 0 1 -1 -1]
// In 3D every transform runs along each axis: a 4x4x4 input tile becomes 64 "positions", and per
// position the channels mix by one small matrix product, M (tiles x cout) = V (tiles x cin) *
// U (cin x cout); the output transform turns the 64 positions of M into the tile's 2x2x2 outputs:
// 64 multiplications per output tile and channel pair instead of 8 * 27 = 216.
//   data gradient:   the same convolution of dy with the flipped, transposed kernel (padding 2 - pad).
//   weight gradient: its adjoint: dU (cin x cout) += V^T (A dy A^T) per position over every tile (held
//                    transposed, cout x cin), then dw = G^T dU G.
// The transforms and products hold the channels in SIMD lanes (kVec channels of one voxel per vector:
// the widest vector, or half of it where that pads fewer channels, e.g. 8 -> 16 with AVX-512; Lanes).
// Work items are slabs (one plane of tiles, two output planes) of one sample. A slab transposes the rows
// of its four source planes into zero-padded channel-last rows just before its tiles read them
// (SlabRows; consecutive slabs share two planes), runs in blocks of kTiles tiles whose V and M stay in
// L2, and writes its outputs through a channel-last slab buffer into y's planes.
// Measured on Zen 4 (one thread, N2 32^3, forward / data / weight gradient against the direct loops):
// 16->16 1.9x / 1.9x / 2.0x, 48->16 2.1x / 2.1x / 2.3x (bench/RESULTS.md).
#define EIGEN_DONT_PARALLELIZE  // we thread ourselves (pw::parallel_for)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wignored-attributes"
#include "kernels/cpu/conv_winograd.h"

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/work_items.h"
#include "kernels/cpu_paths.h"
#include "kernels/parallel.h"

namespace pw::kernels::cpu::winograd {
namespace {

using namespace Eigen::internal;
using Wide = packet_traits<float>::type;               // the build's widest float vector
using Half = typename unpacket_traits<Wide>::half;      // half of it (AVX-512: 8 lanes)
template <class Pk>
constexpr int lanes = unpacket_traits<Pk>::size;
constexpr int kPos = 64;     // positions of a transformed 4x4x4 tile
constexpr int kTiles = 16;   // tiles per block

using Buffer = std::vector<float, Eigen::aligned_allocator<float>>;
float* grow(Buffer& b, int64_t n) {
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}
// Per thread (pool threads live on, so nothing is allocated per call once the sizes are reached).
struct Scratch {
  Buffer v, m, slab, src, dy;  // a block's V and M, a slab's outputs, its source and dy rows (workers)
  Buffer u, part;              // transformed weights, partial sums (calling thread)
};
// noinline: see thread_buffer in conv.cpp (thread-local addresses in hot loops).
[[gnu::noinline]] Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// ---- transforms (per axis; a 3D transform applies one along each axis) ----------------------------

// B^T of one axis, in place on four values.
template <class Packet>
inline void input_1d(Packet& a, Packet& b, Packet& c, Packet& d) {
  const Packet t0 = psub(a, c), t1 = padd(b, c), t2 = psub(c, b), t3 = psub(b, d);
  a = t0, b = t1, c = t2, d = t3;
}
// A^T of one axis: four values to two.
template <class Packet>
inline void output_1d(const Packet& a, const Packet& b, const Packet& c, const Packet& d, Packet& y0, Packet& y1) {
  y0 = padd(padd(a, b), c);
  y1 = psub(psub(b, c), d);
}
// A of one axis (the adjoint of A^T): two values to four.
template <class Packet>
inline void output_adjoint_1d(const Packet& y0, const Packet& y1, Packet* m, int s) {
  m[0] = y0, m[s] = padd(y0, y1), m[2 * s] = psub(y0, y1), m[3 * s] = pnegate(y1);
}
// G of one axis: three taps to four values, and its adjoint G^T: four values to three taps (T: a
// float, or a vector of floats of several channel pairs).
template <class T>
inline void weight_1d(const T* g, int si, T* u, int so) {
  u[0] = g[0], u[so] = 0.5f * (g[0] + g[si] + g[2 * si]), u[2 * so] = 0.5f * (g[0] - g[si] + g[2 * si]);
  u[3 * so] = g[2 * si];
}
template <class T>
inline void weight_adjoint_1d(const T* u, int si, T* g, int so) {
  g[0] = u[0] + 0.5f * (u[si] + u[2 * si]), g[so] = 0.5f * (u[si] - u[2 * si]);
  g[2 * so] = 0.5f * (u[si] + u[2 * si]) + u[3 * si];
}
// A K^3 cube (x fastest) to an M^3 cube by the one-axis transform f(in, in stride, out, out stride)
// along x, y and z.
template <int K, int M, class T, class F>
void separable(const T* in, T* out, const F& f) {
  T a[K * K * M], b[K * M * M];
  for (int i = 0; i < K * K; ++i) f(in + i * K, 1, a + i * M, 1);
  for (int z = 0; z < K; ++z)
    for (int x = 0; x < M; ++x) f(a + z * K * M + x, M, b + z * M * M + x, M);
  for (int i = 0; i < M * M; ++i) f(b + i, M * M, out + i, M * M);
}
// The weight transforms run on 8 output channels at once (Co is a multiple of 8 wherever the lanes
// are 8 or 16 wide; a scalar loop covers the rest): a GCC vector, plain arithmetic on any ISA.
using Vec8 = float __attribute__((vector_size(32)));

// ---- padded channel-last rows --------------------------------------------------------------------

// Whole 2x2x2 output tiles of an `out` grid, and the extents of a source copy that covers them.
struct Tiles {
  int64_t t[3], p[3];
  explicit Tiles(const int64_t out[3]) {
    for (int d = 0; d < 3; ++d) t[d] = (out[d] + 1) / 2, p[d] = 2 * t[d] + 2;
  }
  int64_t per_slab() const { return t[1] * t[2]; }
};

// Transposes between (channel, x) rows and channel-last rows go in blocks of at most 8 x 8: a block of
// 16 rows reads or writes 16 rows one channel plane apart (a multiple of 4 KiB), which share a cache
// set; 8 of them fit its ways (Zen 4, 48 channels of 2 x 32^3: 2.7 -> 1.7 ms).
using TPacket = std::conditional_t<(lanes<Wide> > 8), Half, Wide>;
constexpr int kT = unpacket_traits<TPacket>::size;

// dst[j * dld + i] = src[i * sld + j] for i < rows, j < cols: blocks of kT x kT in registers, the
// edges one by one. Both directions between (channel, x) rows and channel-last rows.
void transpose(const float* src, int64_t sld, int64_t rows, int64_t cols, float* dst, int64_t dld) {
  int64_t i0 = 0;
  for (; i0 + kT <= rows; i0 += kT) {
    int64_t j = 0;
    for (; j + kT <= cols; j += kT) {
      PacketBlock<TPacket, kT> b;
      for (int k = 0; k < kT; ++k) b.packet[k] = ploadu<TPacket>(src + (i0 + k) * sld + j);
      ptranspose(b);
      for (int k = 0; k < kT; ++k) pstoreu(dst + (j + k) * dld + i0, b.packet[k]);
    }
    for (; j < cols; ++j)
      for (int k = 0; k < kT; ++k) dst[j * dld + i0 + k] = src[(i0 + k) * sld + j];
  }
  for (int64_t i = i0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * dld + i] = src[i * sld + j];
}

// A padded channel-last view of one sample: element (i, j, l, ch) = src(ch, i - lo0, j - lo1, l - lo2)
// where that lies inside src and ch < c, else 0, for i, j, l < e and ch < C. Rows of it are made on
// demand (SlabRows), never the whole volume: a slab's rows are transposed just before its tiles read them.
struct ChannelLast {
  const float* src = nullptr;  // one sample, (c, in)
  int64_t c = 0, C = 0, in[3] = {1, 1, 1}, e[3] = {1, 1, 1};
  int lo[3] = {0, 0, 0};

  // Row (i, j) (e[2] * C floats) into dst.
  void row(int64_t i, int64_t j, float* dst) const {
    const int64_t iz = i - lo[0], iy = j - lo[1], len = e[2] * C;
    if (iz < 0 || iz >= in[0] || iy < 0 || iy >= in[1]) {
      std::fill(dst, dst + len, 0.0f);
      return;
    }
    const int64_t x0 = std::clamp<int64_t>(lo[2], 0, e[2]), x1 = std::clamp<int64_t>(lo[2] + in[2], x0, e[2]);
    std::fill(dst, dst + x0 * C, 0.0f);
    std::fill(dst + x1 * C, dst + len, 0.0f);
    transpose(src + (iz * in[1] + iy) * in[2] - lo[2] + x0, in[0] * in[1] * in[2], c, x1 - x0, dst + x0 * C, C);
    if (c < C)  // the padding channels
      for (int64_t l = x0; l < x1; ++l) std::fill(dst + l * C + c, dst + (l + 1) * C, 0.0f);
  }
};

// Planes of a channel-last view in `slots` slots of a per-thread buffer (plane z in slot z % slots),
// rows filled in order on demand. Consecutive slabs of one sample share planes: a slab of 4 source
// planes starts 2 planes after the previous one, whose last 2 planes stay in their slots.
struct SlabRows {
  ChannelLast view;
  float* buf = nullptr;
  int slots;
  int64_t z0 = 0, plane[4] = {-1, -1, -1, -1}, filled[4] = {0, 0, 0, 0};
  explicit SlabRows(int n) : slots(n) {}
  int64_t row_len() const { return view.e[2] * view.C; }
  int64_t plane_len() const { return view.e[1] * row_len(); }
  // Planes [z, z + slots) of view v, held in b (a buffer of the running thread; the views of one call
  // share their extents). A view of another sample: no plane carries over.
  void start(const ChannelLast& v, int64_t z, Buffer& b) {
    if (view.src != v.src)
      for (int k = 0; k < 4; ++k) plane[k] = -1;
    view = v, z0 = z;
    buf = grow(b, slots * plane_len());
    for (int64_t p = z; p < z + slots; ++p)
      if (plane[p % slots] != p) plane[p % slots] = p, filled[p % slots] = 0;
  }
  const float* at(int k) const { return buf + ((z0 + k) % slots) * plane_len(); }
  // Makes rows [0, rows) of every plane valid.
  void need(int64_t rows) {
    rows = std::min(rows, view.e[1]);
    for (int k = 0; k < slots; ++k) {
      const int slot = static_cast<int>((z0 + k) % slots);
      float* base = buf + slot * plane_len();
      for (; filled[slot] < rows; ++filled[slot])
        view.row(z0 + k, filled[slot], base + filled[slot] * row_len());
    }
  }
};

// U = G w G^T for every channel pair (0 beyond cin, cout); w_at(o, i, k) is tap k (kd*9 + kh*3 + kw) of
// the kernel between input channel i and output channel o. U holds per position (C * Co floats apart), per
// block of Wd output channels, per input channel Wd floats: (p, i, o) at p * C * Co + ((o / Wd) * C + i) * Wd +
// o % Wd, so that the products read a block's weight rows at constant offsets (Wd: Lanes::block_width).
// Input channels in parallel (serial, the transform of 64 -> 64 channels took ~10% of an 8^3 convolution's
// time); 8 output channels at once where a block holds whole groups of 8, else one by one.
template <class W>
void transform_weights(int64_t cin, int64_t cout, int64_t C, int64_t Co, int64_t Wd, const W& w_at, float* u) {
  const int64_t ps = C * Co;  // between positions
  const auto at = [&](int64_t i, int64_t o) { return u + ((o / Wd) * C + i) * Wd + o % Wd; };  // position 0
  parallel_for(C, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      for (int64_t o = 0; o < Co; o += Wd)
        for (int p = 0; p < kPos; ++p) std::fill_n(at(i, o) + p * ps, Wd, 0.0f);
      int64_t o = 0;
      for (; i < cin && Wd % 8 == 0 && o < cout; o += 8) {
        Vec8 g[27], t[kPos];
        for (int k = 0; k < 27; ++k)
          for (int l = 0; l < 8; ++l) g[k][l] = o + l < cout ? w_at(o + l, i, k) : 0.0f;
        separable<3, 4>(g, t, weight_1d<Vec8>);
        float* dst = at(i, o);
        for (int p = 0; p < kPos; ++p) std::memcpy(dst + p * ps, &t[p], sizeof(Vec8));
      }
      for (; i < cin && o < cout; ++o) {
        float g[27], t[kPos];
        for (int k = 0; k < 27; ++k) g[k] = w_at(o, i, k);
        separable<3, 4>(g, t, weight_1d<float>);
        float* dst = at(i, o);
        for (int p = 0; p < kPos; ++p) dst[p * ps] = t[p];
      }
    }
  });
}

// The channel-last view of sample s of x (n, cin, in) for conv g, padded to whole tiles and C channels.
ChannelLast source_view(const ConvGeom& g, const Tiles& tl, int64_t C, const float* x, int64_t s) {
  ChannelLast v;
  v.src = x + s * g.cin * g.in_vol(), v.c = g.cin, v.C = C;
  for (int d = 0; d < 3; ++d) v.in[d] = g.in[d], v.e[d] = tl.p[d], v.lo[d] = g.pad[d];
  return v;
}

// Rows a block's tiles read: whole tile rows up to the block's last (SlabRows::need of 2 * row + extra).
int64_t rows_through(const Tiles& tl, int64_t blk, int nt, int extra) { return 2 * ((blk + nt - 1) / tl.t[2]) + extra; }

// Everything that depends on the packet whose lanes hold the channels: the widest (Wide) or, where
// that would pad few channels to many, half of it (Half; see lanes_for).
template <class Packet>
struct Lanes {
  static constexpr int kVec = lanes<Packet>;
  static constexpr int kRows = kVec;  // rows of the one-column register block (see product_block)
  static_assert(kTiles % kRows == 0, "blocks of whole register blocks");

  // A block's V holds per position, per group of kVec input channels, per tile kVec floats:
  // V[p][c / kVec][t][c % kVec] (so the products broadcast V from one pointer and constant offsets);
  // M holds per position, per tile, the cout outputs: M[p][t][o].
  // Floats between two positions of V (c = cin) or M (c = cout): one cache line more than the block,
  // so that one tile's 64 positions do not all fall into a few L1 sets.
  static constexpr int64_t pitch(int64_t c) { return kTiles * c + kVec; }
  // Channels as the transforms and products hold them: a multiple of kVec, zero beyond the real ones.
  static constexpr int64_t padded(int64_t c) { return (c + kVec - 1) / kVec * kVec; }

  // ---- one tile -----------------------------------------------------------------------------------

  // Column x of one tile's V (the positions (z, y, x) for all z, y), channels [c0, c0 + kVec): B^T
  // along x makes column x from two source columns (x 0: d0 - d2, 1: d1 + d2, 2: d2 - d1, 3: d1 - d3),
  // then B^T runs along y and z. Column by column, the 16 values stay in registers.
  template <int X>
  static inline void input_column(const float* const* pl, int64_t off, int64_t C, int64_t sy, float* v, int64_t ps) {
    constexpr int first = X == 0 ? 0 : X == 2 ? 2 : 1, second = X == 0 ? 2 : X == 1 ? 2 : X == 2 ? 1 : 3;
    Packet e[16];  // (z, y)
    for (int zy = 0; zy < 16; ++zy) {
      const float* r = pl[zy / 4] + off + (zy % 4) * sy;
      const Packet a = pload<Packet>(r + first * C), b = pload<Packet>(r + second * C);
      e[zy] = X == 1 ? padd(a, b) : psub(a, b);
    }
    for (int z = 0; z < 4; ++z) input_1d(e[z * 4], e[z * 4 + 1], e[z * 4 + 2], e[z * 4 + 3]);
    for (int y = 0; y < 4; ++y) input_1d(e[y], e[4 + y], e[8 + y], e[12 + y]);
    // The 16 positions, 4 apart, by a running pointer. Written as v + (zy * 4 + X) * ps, GCC kept the 16
    // offsets on the stack (too few general registers beside the loads' addresses) and reloaded one per
    // store; the empty asm keeps it from folding them back (Zen 2, bench_conv forward N8 32^3: 16->16
    // 13.6 -> 12.8 ms, 8->16 7.9 -> 7.0 ms).
    float* q = v + X * ps;
    const int64_t step = 4 * ps;
    for (int zy = 0; zy < 16; ++zy) {
      pstore(q, e[zy]);
      q += step;
      asm("" : "+r"(q));
    }
  }

  // One tile's V for channels [c0, c0 + kVec): v[p * pitch(C)] = position p of B^T d B (all three
  // axes) of the 4x4x4 source tile at offset off (tile and c0) of the four source planes pl (row pitch sy).
  static inline void input_tile(const float* const* pl, int64_t off, int64_t C, int64_t sy, float* v) {
    const int64_t ps = pitch(C);
    input_column<0>(pl, off, C, sy, v, ps);
    input_column<1>(pl, off, C, sy, v, ps);
    input_column<2>(pl, off, C, sy, v, ps);
    input_column<3>(pl, off, C, sy, v, ps);
  }

  // The 2x2x2 outputs of one tile for channels [o0, o0 + kVec) from its M rows (m[p * pitch(Co)], m
  // offset by the tile and o0), plus the bias, into the slab buffer at y (offset; strides sy, sz).
  static inline void output_tile(const float* m, int64_t Co, const Packet& bias, float* y, int64_t sy, int64_t sz) {
    const int64_t ps = pitch(Co);
    Packet a[32], b[16];
    for (int zy = 0; zy < 16; ++zy) {
      const float* r = m + zy * 4 * ps;
      output_1d(pload<Packet>(r), pload<Packet>(r + ps), pload<Packet>(r + 2 * ps), pload<Packet>(r + 3 * ps),
                a[zy * 2], a[zy * 2 + 1]);
    }
    for (int z = 0; z < 4; ++z)
      for (int x = 0; x < 2; ++x)
        output_1d(a[z * 8 + x], a[z * 8 + 2 + x], a[z * 8 + 4 + x], a[z * 8 + 6 + x], b[z * 4 + x], b[z * 4 + 2 + x]);
    for (int yx = 0; yx < 4; ++yx) {
      Packet o0, o1;
      output_1d(b[yx], b[4 + yx], b[8 + yx], b[12 + yx], o0, o1);
      float* q = y + (yx / 2) * sy + (yx % 2) * Co;
      pstore(q, padd(o0, bias));
      pstore(q + sz, padd(o1, bias));
    }
  }

  // The M rows of one tile of dy (the adjoint of output_tile): m[p * pitch(Co)] = position p of
  // A dy A^T for the 2x2x2 dy tile at y (offset; strides sy, sz), channels [o0, o0 + kVec).
  static inline void dy_tile(const float* y, int64_t Co, int64_t sy, int64_t sz, float* m) {
    const int64_t ps = pitch(Co);
    Packet d[8];  // (z, y, x)
    for (int i = 0; i < 8; ++i) d[i] = pload<Packet>(y + (i / 4) * sz + ((i / 2) % 2) * sy + (i % 2) * Co);
    for (int z = 0; z < 4; ++z) {  // A along z: the plane z from the two dy planes
      Packet q[4], r[8], e[16];
      for (int i = 0; i < 4; ++i)
        q[i] = z == 0 ? d[i] : z == 1 ? padd(d[i], d[4 + i]) : z == 2 ? psub(d[i], d[4 + i]) : pnegate(d[4 + i]);
      for (int x = 0; x < 2; ++x) output_adjoint_1d(q[x], q[2 + x], r + x, 2);  // along y: (y 4, x 2)
      for (int yy = 0; yy < 4; ++yy) output_adjoint_1d(r[yy * 2], r[yy * 2 + 1], e + yy * 4, 1);
      for (int i = 0; i < 16; ++i) pstore(m + (z * 16 + i) * ps, e[i]);
    }
  }

  // ---- the per-position products ------------------------------------------------------------------

  // Register blocks of the products: R rows (tiles of M, or output channels of dU^T) by NC vectors (of
  // output channels of M, or input channels of dU^T). Per step R broadcasts and NC loads feed R * NC FMAs.
  // With 16 vector registers (no AVX-512) kVec x 1 needs 9 loads per 8 FMAs, more than Zen 2's two loads
  // per cycle can feed its two FMAs; 4 x 2 needs 6 (forward 16->16 at 32^3 on Zen 2: bench/RESULTS.md), 6 x
  // 2 8 per 12 (12 accumulators, two loaded vectors and a broadcast: 15 of the 16 registers; the products
  // alone ran 8-14% faster than 4 x 2 on Zen 2), so rows go in blocks of 6 (row_blocks). The weight
  // gradient holds dU transposed (output channels by input channels) for this: its rows are then output
  // channels, read as broadcasts from one dM row at constant offsets, where rows of input channels would
  // straddle V's groups of kVec. With AVX-512's 32 registers the kVec x 1 block stays.
#ifdef __AVX512F__
  static constexpr bool kTwoColumns = false;
#else
  static constexpr bool kTwoColumns = true;
#endif
  static constexpr bool two_columns(int64_t Co) { return kTwoColumns && Co % (2 * kVec) == 0; }

  // A loaded vector the compiler must keep in a register: without this GCC folds the load into every
  // FMA that uses it (R loads instead of one), which undoes the blocking.
  static inline Packet in_register(Packet v) {
#if defined(__x86_64__) || defined(__i386__)
    asm("" : "+x"(v));
#endif
    return v;
  }

  // Columns of U per block (see transform_weights): the width of the register block's outputs.
  static constexpr int64_t block_width(int64_t Co) { return two_columns(Co) ? 2 * kVec : kVec; }

  // Calls f(R, r0) for the register blocks [r0, r0 + R) of NC columns that cover rows [0, rows) (tiles of M,
  // or output channels of dU^T): with two columns blocks of 6, then one of 4 or 2 (rows is even: kTiles
  // tiles, or channels padded to kVec); with one, blocks of kRows. R comes as a std::integral_constant.
  template <int NC, class F>
  static void row_blocks(int64_t rows, const F& f) {
    int64_t r0 = 0;
    if constexpr (NC == 2) {
      for (; r0 + 6 <= rows; r0 += 6) f(std::integral_constant<int, 6>{}, r0);
      if (rows - r0 == 4) f(std::integral_constant<int, 4>{}, r0);
      if (rows - r0 == 2) f(std::integral_constant<int, 2>{}, r0);
    } else {
      for (; r0 < rows; r0 += kRows) f(std::integral_constant<int, kRows>{}, r0);
    }
  }

  // Rows [t0, t0 + R) of M (one position) for outputs [o, o + NC * kVec): M = V * U over C channels;
  // wo: U's rows of the block of outputs o (row i at wo + i * NC * kVec), mo: M's column o.
  template <int R, int NC>
  __attribute__((always_inline)) static inline void product_block(const float* vp, const float* wo, int64_t C,
                                                                  int64_t Co, int t0, float* mo) {
    constexpr int kW = NC * kVec;
    Packet acc[R][NC];
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < NC; ++n) acc[r][n] = pset1<Packet>(0.0f);
    for (int64_t c = 0; c < C; c += kVec) {
      const float* vb = vp + c * kTiles + t0 * kVec;
      const float* wb = wo + c * kW;
#pragma GCC unroll 16
      for (int j = 0; j < kVec; ++j) {
        Packet w[NC];
        for (int n = 0; n < NC; ++n) w[n] = in_register(pload<Packet>(wb + j * kW + n * kVec));
        for (int r = 0; r < R; ++r) {
          const Packet b = pset1<Packet>(vb[r * kVec + j]);
          for (int n = 0; n < NC; ++n) acc[r][n] = pmadd(b, w[n], acc[r][n]);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < NC; ++n) pstore(mo + (t0 + r) * Co + n * kVec, acc[r][n]);
  }

  template <int NC>
  static void multiply_blocks(const float* v, const float* u, int64_t C, int64_t Co, float* m) {
    for (int p = 0; p < kPos; ++p)
      for (int64_t o = 0; o < Co; o += NC * kVec)
        row_blocks<NC>(kTiles, [&](auto R, int64_t t0) {
          product_block<decltype(R)::value, NC>(v + p * pitch(C), u + (p * Co + o) * C, C, Co, int(t0),
                                                m + p * pitch(Co) + o);
        });
  }

  // M (kPos, kTiles, Co) = V (kPos, kTiles, C) * U (see transform_weights), position by position.
  __attribute__((noinline)) static void multiply(const float* v, const float* u, int64_t C, int64_t Co, float* m) {
    if (two_columns(Co))
      multiply_blocks<2>(v, u, C, Co, m);
    else
      multiply_blocks<1>(v, u, C, Co, m);
  }

  // dU^T rows [o0, o0 + R) (output channels, one position) for input channels [i0, i0 + NC * kVec) += dM^T V
  // over nt tiles: per tile R broadcasts of dM and NC vectors of V (kVec input channels each). dU^T (Co x C per
  // position, input channels fastest) at up.
  template <int R, int NC>
  __attribute__((always_inline)) static inline void adjoint_block(const float* vp, const float* dp, int nt,
                                                                  int64_t C, int64_t Co, int64_t o0, int64_t i0,
                                                                  float* up) {
    Packet acc[R][NC];
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < NC; ++n) acc[r][n] = pload<Packet>(up + (o0 + r) * C + i0 + n * kVec);
    const float* vb = vp + i0 * kTiles;  // V[p][i0 / kVec + n][t] at vb + (n * kTiles + t) * kVec
    for (int t = 0; t < nt; ++t) {
      Packet v[NC];
      for (int n = 0; n < NC; ++n) v[n] = in_register(pload<Packet>(vb + (n * kTiles + t) * kVec));
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const Packet b = pset1<Packet>(dp[t * Co + o0 + r]);
        for (int n = 0; n < NC; ++n) acc[r][n] = pmadd(b, v[n], acc[r][n]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < NC; ++n) pstore(up + (o0 + r) * C + i0 + n * kVec, acc[r][n]);
  }

  template <int NC>
  static void adjoint_blocks(const float* v, const float* dm, int nt, int64_t C, int64_t Co, float* du) {
    for (int p = 0; p < kPos; ++p)
      for (int64_t i0 = 0; i0 < C; i0 += NC * kVec)
        row_blocks<NC>(Co, [&](auto R, int64_t o0) {
          adjoint_block<decltype(R)::value, NC>(v + p * pitch(C), dm + p * pitch(Co), nt, C, Co, o0, i0,
                                                du + p * C * Co);
        });
  }

  // dU^T (kPos, Co, C) += dM^T * V over the block's first nt tiles, position by position.
  __attribute__((noinline)) static void multiply_adjoint(const float* v, const float* dm, int nt, int64_t C,
                                                         int64_t Co, float* du) {
    if (two_columns(C))
      adjoint_blocks<2>(v, dm, nt, C, Co, du);
    else
      adjoint_blocks<1>(v, dm, nt, C, Co, du);
  }

  // ---- slabs ---------------------------------------------------------------------------------------

  // One block of a slab: tiles [blk, blk + nt) of the slab's plane of tiles, transformed into V (rows
  // nt..kTiles zero), from the slab's four source planes (C channels, extents tl.p).
  static void input_block(const Tiles& tl, const SlabRows& rows, int64_t C, int64_t blk, int nt, float* v) {
    const int64_t sy = tl.p[2] * C;
    const float* const pl[4] = {rows.at(0), rows.at(1), rows.at(2), rows.at(3)};
    for (int t = 0; t < nt; ++t) {
      const int64_t ty = (blk + t) / tl.t[2], tx = (blk + t) % tl.t[2];
      for (int64_t c = 0; c < C; c += kVec)
        input_tile(pl, 2 * ty * sy + 2 * tx * C + c, C, sy, v + c * kTiles + t * kVec);
    }
    for (int p = 0; p < kPos; ++p)
      for (int64_t c = 0; c < C; c += kVec) {
        float* group = v + p * pitch(C) + c * kTiles;
        std::fill(group + nt * kVec, group + kTiles * kVec, 0.0f);
      }
  }

  // y (n, cout, out) = conv g of x with transformed weights u (see transform_weights), plus bias b (Co values).
  static void forward_slabs(const ConvGeom& g, int64_t C, int64_t Co, const float* x, const float* u,
                            const float* b, float* y) {
    const Tiles tl(g.out);
    const int64_t W2 = 2 * tl.t[2], H2 = 2 * tl.t[1], oplane = g.out[1] * g.out[2], ovol = g.out_vol();
    parallel_for(
        g.n * tl.t[0],
        [&](int64_t lo, int64_t hi) {
          Scratch& sc = scratch();
          float* v = grow(sc.v, kPos * pitch(C));
          float* m = grow(sc.m, kPos * pitch(Co));
          float* slab = grow(sc.slab, 2 * H2 * W2 * Co);
          SlabRows rows(4);
          for (int64_t item = lo; item < hi; ++item) {
            const int64_t s = item / tl.t[0], tz = item % tl.t[0];
            rows.start(source_view(g, tl, C, x, s), 2 * tz, sc.src);
            for (int64_t blk = 0; blk < tl.per_slab(); blk += kTiles) {
              const int nt = static_cast<int>(std::min<int64_t>(kTiles, tl.per_slab() - blk));
              rows.need(rows_through(tl, blk, nt, 4));
              input_block(tl, rows, C, blk, nt, v);
              multiply(v, u, C, Co, m);
              for (int t = 0; t < nt; ++t) {
                const int64_t ty = (blk + t) / tl.t[2], tx = (blk + t) % tl.t[2];
                for (int64_t o = 0; o < Co; o += kVec)
                  output_tile(m + t * Co + o, Co, pload<Packet>(b + o),
                              slab + (2 * ty * W2 + 2 * tx) * Co + o, W2 * Co, H2 * W2 * Co);
              }
            }
            for (int64_t dz = 0; dz < 2 && 2 * tz + dz < g.out[0]; ++dz)
              for (int64_t yy = 0; yy < g.out[1]; ++yy)
                transpose(slab + (dz * H2 + yy) * W2 * Co, Co, g.out[2], g.cout,
                          y + s * g.cout * ovol + (2 * tz + dz) * oplane + yy * g.out[2], ovol);
          }
        },
        1);
  }

  // The forward pass of a convolution of geometry g whose kernel is w_at (see transform_weights).
  template <class W>
  static void run_forward(const ConvGeom& g, const float* x, const W& w_at, const float* b, float* y) {
    const int64_t C = padded(g.cin), Co = padded(g.cout);
    float* u = grow(scratch().u, kPos * C * Co + Co);
    transform_weights(g.cin, g.cout, C, Co, block_width(Co), w_at, u);
    float* bias = u + kPos * C * Co;
    for (int64_t o = 0; o < Co; ++o) bias[o] = b && o < g.cout ? b[o] : 0.0f;
    forward_slabs(g, C, Co, x, u, bias, y);
  }

  // dw of conv g (see the top of the file).
  static void weight_gradient(const ConvGeom& g, const float* x, const float* dy, float* dw) {
    const Tiles tl(g.out);
    const int64_t C = padded(g.cin), Co = padded(g.cout);
    const int64_t items = g.n * tl.t[0], psize = kPos * C * Co;
    const int workers = workers_for(items);
    float* part = grow(scratch().part, workers * psize);
    std::fill(part, part + workers * psize, 0.0f);
    std::vector<SlabRows> xr(workers, SlabRows(4)), dr(workers, SlabRows(2));  // per worker: x's, dy's rows
    run_ranges(items, workers, [&](int worker, int64_t item) {  // consecutive slabs share source planes
      Scratch& ws = scratch();
      float* v = grow(ws.v, kPos * pitch(C));
      float* m = grow(ws.m, kPos * pitch(Co));
      const int64_t s = item / tl.t[0], tz = item % tl.t[0];
      ChannelLast dview;  // dy, zero beyond out up to whole tiles
      dview.src = dy + s * g.cout * g.out_vol(), dview.c = g.cout, dview.C = Co;
      for (int d = 0; d < 3; ++d) dview.in[d] = g.out[d], dview.e[d] = 2 * tl.t[d];
      SlabRows &xrows = xr[worker], &dyrows = dr[worker];
      xrows.start(source_view(g, tl, C, x, s), 2 * tz, ws.src);
      dyrows.start(dview, 2 * tz, ws.dy);
      const int64_t dsy = dview.e[2] * Co, dsz = dview.e[1] * dsy;
      for (int64_t blk = 0; blk < tl.per_slab(); blk += kTiles) {
        const int nt = static_cast<int>(std::min<int64_t>(kTiles, tl.per_slab() - blk));
        xrows.need(rows_through(tl, blk, nt, 4));
        dyrows.need(rows_through(tl, blk, nt, 2));
        input_block(tl, xrows, C, blk, nt, v);
        for (int t = 0; t < nt; ++t) {
          const int64_t ty = (blk + t) / tl.t[2], tx = (blk + t) % tl.t[2];
          for (int64_t o = 0; o < Co; o += kVec)
            dy_tile(dyrows.at(0) + 2 * ty * dsy + 2 * tx * Co + o, Co, dsy, dsz, m + t * Co + o);
        }
        multiply_adjoint(v, m, nt, C, Co, part + worker * psize);
      }
    });
    parallel_for(psize, [&](int64_t lo, int64_t hi) {  // the workers' sums, then dw = G^T dU G
      for (int wk = 1; wk < workers; ++wk)
        for (int64_t i = lo; i < hi; ++i) part[i] += part[wk * psize + i];
    }, 4096);
    // dU^T (kPos, Co, C): 8 input channels at once, else one by one.
    const int64_t groups = C % 8 == 0 ? (g.cin + 7) / 8 : 0;
    parallel_for(g.cout, [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; ++o) {
        for (int64_t ig = 0; ig < groups; ++ig) {
          Vec8 t[kPos], k[27];
          for (int p = 0; p < kPos; ++p) std::memcpy(&t[p], part + (p * Co + o) * C + ig * 8, sizeof(Vec8));
          separable<4, 3>(t, k, weight_adjoint_1d<Vec8>);
          for (int64_t i = ig * 8; i < std::min(ig * 8 + 8, g.cin); ++i)
            for (int kk = 0; kk < 27; ++kk) dw[(o * g.cin + i) * 27 + kk] = k[kk][i - ig * 8];
        }
        for (int64_t i = groups * 8; i < g.cin; ++i) {
          float t[kPos], k[27];
          for (int p = 0; p < kPos; ++p) t[p] = part[(p * Co + o) * C + i];
          separable<4, 3>(t, k, weight_adjoint_1d<float>);
          std::copy(k, k + 27, dw + (o * g.cin + i) * 27);
        }
      }
    });
  }
};

// Whether channel counts padded to multiples of n add at most a quarter to the work.
bool pads_little(const ConvGeom& g, int64_t n) {
  const int64_t c = (g.cin + n - 1) / n * n, co = (g.cout + n - 1) / n * n;
  return 4 * c * co <= 5 * g.cin * g.cout;
}

// The lanes that hold the channels of conv g: the widest vector, or half of it (8 lanes with AVX-512)
// where that pads few enough channels (8 -> 16: Zen 4 runs two 256-bit FMAs per cycle, as many flops
// as one 512-bit FMA), or 0 where neither does (padding 8 channels to 16 made the forward pass and
// the weight gradient slower than the direct loops: 0.92x and 0.98x at 32^3).
int lanes_for(const ConvGeom& g) {
  if (pads_little(g, lanes<Wide>)) return lanes<Wide>;
  if (lanes<Half> >= 8 && pads_little(g, lanes<Half>)) return lanes<Half>;
  return 0;
}

// Calls f(Lanes<P>{}) for the packet P of lanes_for(g) (nonzero).
template <class F>
void with_lanes(const ConvGeom& g, const F& f) {
  if (lanes_for(g) == lanes<Wide>)
    f(Lanes<Wide>{});
  else
    f(Lanes<Half>{});
}

}  // namespace

bool suits(const ConvGeom& g) {
  if (conv_path() != ConvPath::special) return false;
  for (int d = 0; d < 3; ++d)
    if (g.k[d] != 3 || g.stride[d] != 1 || g.pad[d] < 0 || g.pad[d] > 2 || g.out[d] < 1) return false;
  // A slab (plane of tiles) of fewer than kTiles tiles would leave most of the block's products empty
  // (a 4^3 level: 0.6-0.8x the direct loops' speed).
  const Tiles out(g.out), in(g.in);  // the forward's tiles and the data gradient's
  return g.n > 0 && lanes_for(g) > 0 && out.per_slab() >= kTiles && in.per_slab() >= kTiles;
}

void forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y) {
  const int64_t cin = g.cin;
  with_lanes(g, [&](auto l) {
    l.run_forward(g, x, [&](int64_t o, int64_t i, int k) { return w[(o * cin + i) * 27 + k]; }, b, y);
  });
}

void backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  ConvGeom f = g;  // dx = dy convolved with the flipped kernel, channels swapped, padding 2 - pad
  f.cin = g.cout, f.cout = g.cin;
  for (int d = 0; d < 3; ++d) f.in[d] = g.out[d], f.out[d] = g.in[d], f.pad[d] = 2 - g.pad[d];
  const int64_t cin = g.cin;
  with_lanes(g, [&](auto l) {
    l.run_forward(f, dy, [&](int64_t o, int64_t i, int k) { return w[(i * cin + o) * 27 + 26 - k]; }, nullptr, dx);
  });
}

void backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  with_lanes(g, [&](auto l) { l.weight_gradient(g, x, dy, dw); });
}

}  // namespace pw::kernels::cpu::winograd
