// CPU convolution: im2col/vol2col + Eigen GEMM, threaded over (sample, tile) work items.
//
// Per sample, y (cout x P) = w (cout x K) * col (K x P) with K = cin*kD*kH*kW and P = the output
// volume. col is never built whole: the output is cut into tiles of whole output rows so that
// one tile's K x cols column block (about 1 MB) stays in L2; each worker reuses one column buffer.
// 1x1x1 convolutions with stride 1 and no padding read x directly (no column buffer).
// Backward data with stride 1 is itself a forward convolution (flipped, transposed weights,
// padding k-1-p), so it shares the fast path; other strides scatter with col2im per sample.
#define EIGEN_DONT_PARALLELIZE  // we thread ourselves (pw::parallel_for)
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

// Floats in one column tile (1 MB): the GEMM's right-hand block stays in L2.
constexpr int64_t kTileFloats = int64_t(1) << 18;

// Per-thread column buffer; it grows to the largest size asked and is kept (pool threads live on).
float* column_buffer(int64_t n) {
  thread_local std::vector<float, Eigen::aligned_allocator<float>> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// Runs f(worker, item) for every item in [0, items), dealt round-robin to the pool's workers.
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

int workers_for(int64_t items) { return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), items))); }

bool is_pointwise(const ConvGeom& g) {
  for (int i = 0; i < 3; ++i)
    if (g.k[i] != 1 || g.stride[i] != 1 || g.pad[i] != 0) return false;
  return true;
}

// The output is tiled by whole output rows (d, h), each of out[2] columns.
struct Tiling {
  int64_t rows = 0, rows_per_tile = 0, ntiles = 0, row_len = 0;
  Tiling(const ConvGeom& g, int64_t K) {
    rows = g.out[0] * g.out[1];
    row_len = g.out[2];
    int64_t cols = std::max<int64_t>(256, kTileFloats / std::max<int64_t>(1, K));
    rows_per_tile = std::clamp<int64_t>(cols / std::max<int64_t>(1, row_len), 1, std::max<int64_t>(1, rows));
    ntiles = (rows + rows_per_tile - 1) / rows_per_tile;
  }
  int64_t begin(int64_t t) const { return t * rows_per_tile; }
  int64_t end(int64_t t) const { return std::min(rows, (t + 1) * rows_per_tile); }
};

// d[o] = src[o*s + off] for o in [0, n_out), zero where the source index is outside [0, n_in).
inline void gather_row(const float* src, int64_t n_in, float* d, int64_t n_out, int s, int64_t off) {
  if (s == 1) {
    int64_t lo = std::clamp<int64_t>(-off, 0, n_out);
    int64_t hi = std::clamp<int64_t>(n_in - off, lo, n_out);
    std::fill(d, d + lo, 0.0f);
    std::memcpy(d + lo, src + lo + off, static_cast<size_t>(hi - lo) * sizeof(float));
    std::fill(d + hi, d + n_out, 0.0f);
    return;
  }
  for (int64_t o = 0; o < n_out; ++o) {
    int64_t i = o * s + off;
    d[o] = (i >= 0 && i < n_in) ? src[i] : 0.0f;
  }
}

// src[o*s + off] += d[o] where the index is inside [0, n_in) (the adjoint of gather_row).
inline void scatter_row(float* src, int64_t n_in, const float* d, int64_t n_out, int s, int64_t off) {
  for (int64_t o = 0; o < n_out; ++o) {
    int64_t i = o * s + off;
    if (i >= 0 && i < n_in) src[i] += d[o];
  }
}

// Visits every (column-row, output-row) pair of the tile [r0, r1): fn(kernel_row, dst_offset,
// x_row_offset_or_-1, kw) where x_row is the input row (c, id, ih) read by that pair.
template <class F>
void for_tile_rows(const ConvGeom& g, int64_t r0, int64_t r1, const F& fn) {
  const int64_t cols = (r1 - r0) * g.out[2];
  int64_t krow = 0;
  for (int64_t c = 0; c < g.cin; ++c)
    for (int kd = 0; kd < g.k[0]; ++kd)
      for (int kh = 0; kh < g.k[1]; ++kh)
        for (int kw = 0; kw < g.k[2]; ++kw, ++krow)
          for (int64_t r = r0; r < r1; ++r) {
            int64_t od = r / g.out[1], oh = r % g.out[1];
            int64_t id = od * g.stride[0] - g.pad[0] + kd;
            int64_t ih = oh * g.stride[1] - g.pad[1] + kh;
            bool inside = id >= 0 && id < g.in[0] && ih >= 0 && ih < g.in[1];
            int64_t xrow = inside ? ((c * g.in[0] + id) * g.in[1] + ih) * g.in[2] : -1;
            fn(krow * cols + (r - r0) * g.out[2], xrow, kw);
          }
}

// col (K x cols) for output rows [r0, r1) of one sample x (cin x in_vol).
void im2col(const ConvGeom& g, const float* x, int64_t r0, int64_t r1, float* col) {
  for_tile_rows(g, r0, r1, [&](int64_t dst, int64_t xrow, int kw) {
    if (xrow < 0)
      std::fill(col + dst, col + dst + g.out[2], 0.0f);
    else
      gather_row(x + xrow, g.in[2], col + dst, g.out[2], g.stride[2], int64_t(kw) - g.pad[2]);
  });
}

// dx (one sample) += col2im(col) for output rows [r0, r1).
void col2im_add(const ConvGeom& g, const float* col, int64_t r0, int64_t r1, float* dx) {
  for_tile_rows(g, r0, r1, [&](int64_t dst, int64_t xrow, int kw) {
    if (xrow >= 0) scatter_row(dx + xrow, g.in[2], col + dst, g.out[2], g.stride[2], int64_t(kw) - g.pad[2]);
  });
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
  const bool direct = is_pointwise(g);
  const Tiling t(g, K);
  const int64_t items = g.n * t.ntiles;
  ConstMatMap W(w, g.cout, K, Stride(K));
  run_items(items, workers_for(items), [&](int, int64_t item) {
    const int64_t n = item / t.ntiles, r0 = t.begin(item % t.ntiles), r1 = t.end(item % t.ntiles);
    const int64_t c0 = r0 * t.row_len, cols = (r1 - r0) * t.row_len;
    const float* xs = x + n * g.cin * in_vol;
    MatMap Y(y + n * g.cout * P + c0, g.cout, cols, Stride(P));
    if (direct) {
      Y.noalias() = W * ConstMatMap(xs + c0, K, cols, Stride(P));
    } else {
      float* col = column_buffer(K * cols);
      im2col(g, xs, r0, r1, col);
      Y.noalias() = W * ConstMatMap(col, K, cols, Stride(cols));
    }
    if (b)
      for (int64_t o = 0; o < g.cout; ++o) Y.row(o).array() += b[o];
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
  const Tiling t(g, K);
  ConstMatMap Wt(w, g.cout, K, Stride(K));
  run_items(g.n, workers_for(g.n), [&](int, int64_t n) {
    float* dxs = dx + n * g.cin * in_vol;
    std::fill(dxs, dxs + g.cin * in_vol, 0.0f);
    for (int64_t tile = 0; tile < t.ntiles; ++tile) {
      const int64_t r0 = t.begin(tile), r1 = t.end(tile);
      const int64_t c0 = r0 * t.row_len, cols = (r1 - r0) * t.row_len;
      float* col = column_buffer(K * cols);
      MatMap C(col, K, cols, Stride(cols));
      C.noalias() = Wt.transpose() * ConstMatMap(dy + n * g.cout * P + c0, g.cout, cols, Stride(P));
      col2im_add(g, col, r0, r1, dxs);
    }
  });
}

void conv_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const int64_t K = g.cin * g.k_vol(), P = g.out_vol(), in_vol = g.in_vol();
  const bool direct = is_pointwise(g);
  const Tiling t(g, K);
  const int64_t items = g.n * t.ntiles;
  const int workers = workers_for(items);
  std::vector<float> partial(static_cast<size_t>(workers * g.cout * K), 0.0f);
  run_items(items, workers, [&](int worker, int64_t item) {
    const int64_t n = item / t.ntiles, r0 = t.begin(item % t.ntiles), r1 = t.end(item % t.ntiles);
    const int64_t c0 = r0 * t.row_len, cols = (r1 - r0) * t.row_len;
    const float* xs = x + n * g.cin * in_vol;
    MatMap DW(partial.data() + worker * g.cout * K, g.cout, K, Stride(K));
    ConstMatMap DY(dy + n * g.cout * P + c0, g.cout, cols, Stride(P));
    if (direct) {
      DW.noalias() += DY * ConstMatMap(xs + c0, K, cols, Stride(P)).transpose();
    } else {
      float* col = column_buffer(K * cols);
      im2col(g, xs, r0, r1, col);
      DW.noalias() += DY * ConstMatMap(col, K, cols, Stride(cols)).transpose();
    }
  });
  const int64_t m = g.cout * K;
  std::copy(partial.begin(), partial.begin() + m, dw);
  for (int wk = 1; wk < workers; ++wk)
    for (int64_t i = 0; i < m; ++i) dw[i] += partial[wk * m + i];
}

void conv_backward_bias(const ConvGeom& g, const float* dy, float* db) {
  const int64_t P = g.out_vol();
  for (int64_t o = 0; o < g.cout; ++o) {
    double s = 0.0;
    for (int64_t n = 0; n < g.n; ++n)
      s += Eigen::Map<const Eigen::VectorXf>(dy + (n * g.cout + o) * P, P).sum();
    db[o] = static_cast<float>(s);
  }
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
