// CUDA bodies of kernels/conv.h.
//
// Convolutions run through cuDNN with N-d descriptors (4-d for 2D, 5-d for 3D). Every shape gets
// a Plan: its descriptors and, per direction (forward, backward-data, backward-filter), the
// algorithm picked once by cudnnFind*AlgorithmEx (timed on the real buffers) among those whose
// workspace fits the cap (conv_workspace_cap(), default 1 GiB). Plans are cached by shape and
// TF32 mode. Workspace comes from the caching allocator.
//
// Transposed convolution is the adjoint of a convolution whose input is y (cout channels, `out`)
// and whose output is x (cin channels, `in`), with filter w: cin,cout,k = cuDNN's K,C,k:
//   forward         = that convolution's backward-data   (dx <- y)
//   backward-data   = that convolution's forward
//   backward-weight = that convolution's backward-filter, with x and dy in swapped roles.
// 1x1 convolutions (stride 1, no padding) are GEMMs per sample, run by cuBLAS.
// Bias forward and backward are custom kernels (the bias gradient is a deterministic reduction).
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/reduce.cuh"

namespace pw::kernels::cuda {

namespace {

// A forward convolution in cuDNN's terms: x (n, c, in) * w (k, c, ks) -> y (n, k, out).
struct CudnnConv {
  bool is2d = false;
  int64_t n = 0, c = 0, k = 0;
  int64_t in[3], out[3];
  int ks[3], stride[3], pad[3];
};

CudnnConv as_conv(const ConvGeom& g) {
  CudnnConv s;
  s.is2d = g.ndim == 2;
  s.n = g.n;
  s.c = g.cin;
  s.k = g.cout;
  for (int d = 0; d < 3; ++d) {
    s.in[d] = g.in[d];
    s.out[d] = g.out[d];
    s.ks[d] = g.k[d];
    s.stride[d] = g.stride[d];
    s.pad[d] = g.pad[d];
  }
  return s;
}

// The convolution whose backward-data is g's transposed convolution.
CudnnConv as_transposed(const ConvGeom& g) {
  CudnnConv s = as_conv(g);
  s.c = g.cout;
  s.k = g.cin;
  for (int d = 0; d < 3; ++d) {
    s.in[d] = g.out[d];
    s.out[d] = g.in[d];
  }
  return s;
}

enum Dir { kFwd = 0, kBwdData = 1, kBwdFilter = 2 };

struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool chosen[3] = {false, false, false};
  int algo[3] = {0, 0, 0};
  size_t workspace[3] = {0, 0, 0};
  cudnnMathType_t math[3] = {CUDNN_FMA_MATH, CUDNN_FMA_MATH, CUDNN_FMA_MATH};
};

std::string conv_str(const CudnnConv& s) {
  std::string r = "x[" + std::to_string(s.n) + "," + std::to_string(s.c);
  for (int d = s.is2d ? 1 : 0; d < 3; ++d) r += "," + std::to_string(s.in[d]);
  r += "] w[" + std::to_string(s.k) + "," + std::to_string(s.c);
  for (int d = s.is2d ? 1 : 0; d < 3; ++d) r += "," + std::to_string(s.ks[d]);
  r += "] stride " + std::to_string(s.stride[2]) + " pad " + std::to_string(s.pad[2]);
  return r;
}

int to_int(int64_t v, const CudnnConv& s) {
  if (v > INT_MAX) throw std::invalid_argument("convolution too large for cuDNN (a size exceeds 2^31): " + conv_str(s));
  return int(v);
}

void set_tensor(cudnnTensorDescriptor_t d, const CudnnConv& s, int64_t channels, const int64_t* spatial) {
  const int nb = s.is2d ? 4 : 5;
  int dims[5], strides[5];
  dims[0] = to_int(s.n, s);
  dims[1] = to_int(channels, s);
  for (int i = 0; i < nb - 2; ++i) dims[2 + i] = to_int(spatial[3 - (nb - 2) + i], s);
  int64_t st = 1;
  for (int i = nb - 1; i >= 0; --i) {
    strides[i] = to_int(st, s);
    st *= dims[i];
  }
  to_int(st, s);  // the whole tensor must be addressable with int strides
  PW_CUDNN_CHECK(cudnnSetTensorNdDescriptor(d, CUDNN_DATA_FLOAT, nb, dims, strides));
}

Plan* make_plan(const CudnnConv& s) {
  auto p = std::make_unique<Plan>();
  const int nsp = s.is2d ? 2 : 3, off = 3 - nsp;
  PW_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
  PW_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
  PW_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
  PW_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
  set_tensor(p->x, s, s.c, s.in);
  set_tensor(p->y, s, s.k, s.out);
  int fdims[5] = {to_int(s.k, s), to_int(s.c, s), 1, 1, 1};
  int pad[3], stride[3], dil[3] = {1, 1, 1};
  for (int i = 0; i < nsp; ++i) {
    fdims[2 + i] = s.ks[off + i];
    pad[i] = s.pad[off + i];
    stride[i] = s.stride[off + i];
  }
  PW_CUDNN_CHECK(cudnnSetFilterNdDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, nsp + 2, fdims));
  PW_CUDNN_CHECK(
      cudnnSetConvolutionNdDescriptor(p->conv, nsp, pad, stride, dil, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  return p.release();
}

// Plans by (shape, tf32); never erased, so a returned pointer stays valid.
Plan* get_plan(const CudnnConv& s) {
  static std::mutex mu;
  static std::map<std::vector<int64_t>, Plan*> plans;
  std::vector<int64_t> key = {s.is2d, s.n, s.c, s.k, tf32()};
  for (int d = 0; d < 3; ++d) key.insert(key.end(), {s.in[d], s.out[d], s.ks[d], s.stride[d], s.pad[d]});
  std::lock_guard<std::mutex> lock(mu);
  Plan*& p = plans[key];
  if (!p) p = make_plan(s);
  return p;
}

cudnnMathType_t requested_math() { return tf32() ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH; }

// PW_CUDNN_VERBOSE=1: every algorithm search prints its candidates on stderr.
bool verbose() {
  static const bool on = [] {
    const char* v = std::getenv("PW_CUDNN_VERBOSE");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

// A search result that may be used: it ran, fits the workspace, and with TF32 off it was timed with
// FMA math (a tensor-op result would run a different, often much slower, kernel once forced to FMA).
template <class Perf>
bool usable(const Perf& p, size_t ws) {
  if (p.status != CUDNN_STATUS_SUCCESS || p.memory > ws) return false;
  return tf32() || p.mathType == CUDNN_FMA_MATH || p.mathType == CUDNN_DEFAULT_MATH;
}

// Picks the algorithm of one direction: the heuristics give the candidates and their workspace
// needs; the search workspace is the largest need within the cap; cudnnFind*Ex times them on the
// real buffers and the fastest that fits is kept.
template <class Perf, class Heuristic, class Find>
void choose(Plan& p, Dir dir, const CudnnConv& s, int max_count, Heuristic heuristic, Find find) {
  const size_t cap = conv_workspace_cap();
  PW_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, requested_math()));
  std::vector<Perf> perf(size_t(std::max(max_count, 1)));
  int got = 0;
  heuristic(perf.data(), int(perf.size()), &got);
  size_t ws = 0;
  for (int i = 0; i < got; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= cap) ws = std::max(ws, perf[i].memory);
  std::unique_ptr<Scratch> scratch;
  try {
    scratch = std::make_unique<Scratch>(ws);
  } catch (const std::runtime_error&) {  // not enough memory for the search: search without workspace
    ws = 0;
    scratch = std::make_unique<Scratch>(0);
  }
  got = 0;
  find(perf.data(), int(perf.size()), &got, scratch->get(), ws);
  static const char* names[3] = {"forward", "backward-data", "backward-filter"};
  if (verbose())
    for (int i = 0; i < got; ++i)
      std::fprintf(stderr, "cudnn %s %s: algo %d status %d %.3f ms %zu B math %d%s\n", names[dir], conv_str(s).c_str(),
                   int(perf[i].algo), int(perf[i].status), perf[i].time, perf[i].memory, int(perf[i].mathType),
                   usable(perf[i], ws) ? "" : " (not usable)");
  for (int i = 0; i < got; ++i) {
    if (!usable(perf[i], ws)) continue;
    p.algo[dir] = int(perf[i].algo);
    p.workspace[dir] = perf[i].memory;
    // With TF32 off every algorithm runs restricted to FMA math.
    p.math[dir] = tf32() ? perf[i].mathType : CUDNN_FMA_MATH;
    p.chosen[dir] = true;
    return;
  }
  throw std::runtime_error(std::string("cuDNN found no convolution ") + names[dir] + " algorithm within the " +
                           std::to_string(cap >> 20) + " MiB workspace cap for " + conv_str(s));
}

const float kOne = 1.f, kZero = 0.f;

// y = conv(x, w) in cuDNN terms (overwrites y).
void cudnn_forward(const CudnnConv& s, const float* x, const float* w, float* y) {
  Context& ctx = context();
  Plan& p = *get_plan(s);
  if (!p.chosen[kFwd]) {
    int max_count = 0;
    PW_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(ctx.cudnn, &max_count));
    choose<cudnnConvolutionFwdAlgoPerf_t>(
        p, kFwd, s, max_count,
        [&](cudnnConvolutionFwdAlgoPerf_t* r, int n, int* got) {
          PW_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(ctx.cudnn, p.x, p.w, p.conv, p.y, n, got, r));
        },
        [&](cudnnConvolutionFwdAlgoPerf_t* r, int n, int* got, void* ws, size_t wsb) {
          PW_CUDNN_CHECK(
              cudnnFindConvolutionForwardAlgorithmEx(ctx.cudnn, p.x, x, p.w, w, p.conv, p.y, y, n, got, r, ws, wsb));
        });
  }
  Scratch ws(p.workspace[kFwd]);
  PW_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.math[kFwd]));
  PW_CUDNN_CHECK(cudnnConvolutionForward(ctx.cudnn, &kOne, p.x, x, p.w, w, p.conv,
                                         cudnnConvolutionFwdAlgo_t(p.algo[kFwd]), ws.get(), p.workspace[kFwd],
                                         &kZero, p.y, y));
}

// dx = backward-data(dy, w) in cuDNN terms (overwrites dx).
void cudnn_backward_data(const CudnnConv& s, const float* dy, const float* w, float* dx) {
  Context& ctx = context();
  Plan& p = *get_plan(s);
  if (!p.chosen[kBwdData]) {
    int max_count = 0;
    PW_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(ctx.cudnn, &max_count));
    choose<cudnnConvolutionBwdDataAlgoPerf_t>(
        p, kBwdData, s, max_count,
        [&](cudnnConvolutionBwdDataAlgoPerf_t* r, int n, int* got) {
          PW_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx.cudnn, p.w, p.y, p.conv, p.x, n, got, r));
        },
        [&](cudnnConvolutionBwdDataAlgoPerf_t* r, int n, int* got, void* ws, size_t wsb) {
          PW_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(ctx.cudnn, p.w, w, p.y, dy, p.conv, p.x, dx, n,
                                                                     got, r, ws, wsb));
        });
  }
  Scratch ws(p.workspace[kBwdData]);
  PW_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.math[kBwdData]));
  PW_CUDNN_CHECK(cudnnConvolutionBackwardData(ctx.cudnn, &kOne, p.w, w, p.y, dy, p.conv,
                                              cudnnConvolutionBwdDataAlgo_t(p.algo[kBwdData]), ws.get(),
                                              p.workspace[kBwdData], &kZero, p.x, dx));
}

// dw = backward-filter(x, dy) in cuDNN terms (overwrites dw).
void cudnn_backward_filter(const CudnnConv& s, const float* x, const float* dy, float* dw) {
  Context& ctx = context();
  Plan& p = *get_plan(s);
  if (!p.chosen[kBwdFilter]) {
    int max_count = 0;
    PW_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(ctx.cudnn, &max_count));
    choose<cudnnConvolutionBwdFilterAlgoPerf_t>(
        p, kBwdFilter, s, max_count,
        [&](cudnnConvolutionBwdFilterAlgoPerf_t* r, int n, int* got) {
          PW_CUDNN_CHECK(
              cudnnGetConvolutionBackwardFilterAlgorithm_v7(ctx.cudnn, p.x, p.y, p.conv, p.w, n, got, r));
        },
        [&](cudnnConvolutionBwdFilterAlgoPerf_t* r, int n, int* got, void* ws, size_t wsb) {
          PW_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(ctx.cudnn, p.x, x, p.y, dy, p.conv, p.w, dw,
                                                                       n, got, r, ws, wsb));
        });
  }
  Scratch ws(p.workspace[kBwdFilter]);
  PW_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.math[kBwdFilter]));
  PW_CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx.cudnn, &kOne, p.x, x, p.y, dy, p.conv,
                                                cudnnConvolutionBwdFilterAlgo_t(p.algo[kBwdFilter]), ws.get(),
                                                p.workspace[kBwdFilter], &kZero, p.w, dw));
}

// ---- 1x1 convolutions as GEMMs (cuBLAS, column-major view of C-order buffers) -----------------
// Per sample: y (cout x vol) = w (cout x cin) * x (cin x vol). In column-major terms a C-order
// a x b matrix is a b x a matrix, so y^T = x^T w^T is gemm(N, N, vol, cout, cin).
bool is_pointwise(const ConvGeom& g) {
  for (int d = 0; d < 3; ++d)
    if (g.k[d] != 1 || g.stride[d] != 1 || g.pad[d] != 0) return false;
  return g.in_vol() <= INT_MAX && g.cin <= INT_MAX && g.cout <= INT_MAX && g.n <= INT_MAX;
}

cublasHandle_t blas() {
  Context& ctx = context();
  PW_CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return ctx.cublas;
}

void gemm_forward(const ConvGeom& g, const float* x, const float* w, float* y) {
  const int vol = int(g.in_vol()), cin = int(g.cin), cout = int(g.cout);
  PW_CUBLAS_CHECK(cublasSgemmStridedBatched(blas(), CUBLAS_OP_N, CUBLAS_OP_N, vol, cout, cin, &kOne, x, vol,
                                            int64_t(cin) * vol, w, cin, 0, &kZero, y, vol, int64_t(cout) * vol,
                                            int(g.n)));
}

// dx (cin x vol) = w^T dy: column-major dx^T = dy^T w, gemm(N, T... ) with w^T's column-major view.
void gemm_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  const int vol = int(g.in_vol()), cin = int(g.cin), cout = int(g.cout);
  PW_CUBLAS_CHECK(cublasSgemmStridedBatched(blas(), CUBLAS_OP_N, CUBLAS_OP_T, vol, cin, cout, &kOne, dy, vol,
                                            int64_t(cout) * vol, w, cin, 0, &kZero, dx, vol, int64_t(cin) * vol,
                                            int(g.n)));
}

// dw (cout x cin) = sum_n dy_n x_n^T: column-major dw^T = x_n dy_n^T accumulated over the batch.
void gemm_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const int vol = int(g.in_vol()), cin = int(g.cin), cout = int(g.cout);
  cublasHandle_t h = blas();
  for (int64_t n = 0; n < g.n; ++n)
    PW_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, cin, cout, vol, &kOne, x + n * cin * vol, vol,
                                dy + n * cout * vol, vol, n == 0 ? &kZero : &kOne, dw, cin));
}

// ---- bias -------------------------------------------------------------------------------------
__global__ void add_bias_k(float* y, const float* b, int64_t channels, int64_t vol, int64_t total) {
  PW_CUDA_LOOP(i, total) y[i] += b[(i / vol) % channels];
}

void add_bias(float* y, const float* b, int64_t n, int64_t channels, int64_t vol) {
  const int64_t total = n * channels * vol;
  if (!b || total == 0) return;
  add_bias_k<<<grid_for(total), kBlock, 0, stream()>>>(y, b, channels, vol, total);
  PW_CUDA_CHECK_LAUNCH("add_bias_k");
}

struct BiasItem {
  const float* dy;
  int64_t channels, vol;
  __device__ void operator()(int64_t c, int64_t i, double* acc) const {
    acc[0] += dy[((i / vol) * channels + c) * vol + i % vol];
  }
};
struct BiasFinish {
  float* db;
  __device__ void operator()(int64_t c, const double* tot) const { db[c] = float(tot[0]); }
};

}  // namespace

void conv_forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y) {
  if (g.n * g.cout * g.out_vol() == 0) return;
  if (is_pointwise(g))
    gemm_forward(g, x, w, y);
  else
    cudnn_forward(as_conv(g), x, w, y);
  add_bias(y, b, g.n, g.cout, g.out_vol());
}

void conv_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  if (g.n * g.cin * g.in_vol() == 0) return;
  if (is_pointwise(g))
    gemm_backward_data(g, dy, w, dx);
  else
    cudnn_backward_data(as_conv(g), dy, w, dx);
}

void conv_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  if (g.cout * g.cin * g.k_vol() == 0) return;
  if (g.n * g.out_vol() == 0) {
    memset_zero(dw, size_t(g.cout * g.cin * g.k_vol()) * sizeof(float));
    return;
  }
  if (is_pointwise(g))
    gemm_backward_weight(g, x, dy, dw);
  else
    cudnn_backward_filter(as_conv(g), x, dy, dw);
}

void conv_backward_bias(const ConvGeom& g, const float* dy, float* db) {
  if (g.cout == 0) return;
  group_reduce<1>(g.cout, g.n * g.out_vol(), BiasItem{dy, g.cout, g.out_vol()}, BiasFinish{db});
}

void conv_transpose_forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y) {
  if (g.n * g.cout * g.out_vol() == 0) return;
  cudnn_backward_data(as_transposed(g), x, w, y);
  add_bias(y, b, g.n, g.cout, g.out_vol());
}

// cuDNN's kernels one after the other (the CPU's reason for one kernel, a pass over dy, does not apply).
void conv_transpose_backward(const ConvGeom& g, const float* x, const float* dy, const float* w, float* dx, float* dw,
                             float* db) {
  if (dx && g.n * g.cin * g.in_vol() != 0) cudnn_forward(as_transposed(g), dy, w, dx);
  if (dw && g.cout * g.cin * g.k_vol() != 0) {
    if (g.n * g.in_vol() == 0) memset_zero(dw, size_t(g.cout * g.cin * g.k_vol()) * sizeof(float));
    else cudnn_backward_filter(as_transposed(g), dy, x, dw);  // in the adjoint, dy is the input, x the output gradient
  }
  if (db) conv_backward_bias(g, dy, db);
}

}  // namespace pw::kernels::cuda
