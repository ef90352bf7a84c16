// CUDA bodies of kernels/norm.h. Statistics are deterministic double-precision group reductions
// (kernels/cuda/reduce.cuh): mean first, then the sum of squared deviations (two passes, as the
// CPU bodies); the normalisation and dx are elementwise kernels with the CPU bodies' formulas.
#include "kernels/cuda/context.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/norm.h"

namespace pw::kernels::cuda {

namespace {

__device__ inline float weight_of(const float* w, int64_t c) { return w ? w[c] : 1.f; }
__device__ inline float bias_of(const float* b, int64_t c) { return b ? b[c] : 0.f; }

// Items of group g: per plane (g = n*C + c, S values) or per channel (g = c, N*S values).
struct PlaneIndex {
  int64_t S;
  __device__ int64_t operator()(int64_t g, int64_t i) const { return g * S + i; }
};
struct ChannelIndex {
  int64_t C, S;
  __device__ int64_t operator()(int64_t c, int64_t i) const { return ((i / S) * C + c) * S + i % S; }
};

template <class Index>
struct SumItem {
  const float* x;
  Index at;
  __device__ void operator()(int64_t g, int64_t i, double* acc) const { acc[0] += x[at(g, i)]; }
};
template <class Index>
struct SqDevItem {
  const float* x;
  const double* mean;
  Index at;
  __device__ void operator()(int64_t g, int64_t i, double* acc) const {
    const double d = x[at(g, i)] - mean[g];
    acc[0] += d * d;
  }
};
// The gradient at the normalised values: dy itself (act none), or dy through the activation whose output is
// y (the fused nodes): common::activation_grad_at, as the CPU.

// acc[0] += dy, acc[1] += dy * (x - mean) * rstd (float xhat, as the CPU).
template <class Index>
struct GradItem {
  const float *x, *dy, *y, *mean, *rstd;
  common::Act act;
  float slope;
  Index at;
  int64_t stat_mod;  // statistics index = g % stat_mod
  __device__ void operator()(int64_t g, int64_t i, double* acc) const {
    const int64_t j = at(g, i), s = g % stat_mod;
    const float d = common::activation_grad_at(act, y, dy, j, slope);
    acc[0] += d;
    acc[1] += double(d) * ((x[j] - mean[s]) * rstd[s]);
  }
};

struct StoreMean {
  double* mean;
  double count;
  __device__ void operator()(int64_t g, const double* tot) const { mean[g] = tot[0] / count; }
};
// Writes float mean and, from the sum of squared deviations, rstd or the variance.
struct StoreStats {
  const double* mean;
  double count;
  float eps;
  float* mean_out;
  float* rstd_out;  // instance norm: 1/sqrt(var + eps)
  float* var_out;   // batch norm: the biased variance
  __device__ void operator()(int64_t g, const double* tot) const {
    const double var = tot[0] / count;
    mean_out[g] = float(mean[g]);
    if (rstd_out) rstd_out[g] = float(1.0 / sqrt(var + eps));
    if (var_out) var_out[g] = float(var);
  }
};
struct StoreGradSums {
  double* sums;  // [2][groups]
  int64_t groups;
  __device__ void operator()(int64_t g, const double* tot) const {
    sums[g] = tot[0];
    sums[groups + g] = tot[1];
  }
};

// y = act((x - mean)*rstd*w + b), written as act(x*a + c) like the CPU; stats per plane or per channel.
__global__ void normalise_k(const float* x, const float* weight, const float* bias, const float* mean,
                            const float* rstd, float* y, int64_t C, int64_t S, bool per_plane, common::Act act,
                            float slope, int64_t total) {
  PW_CUDA_LOOP(i, total) {
    const int64_t p = i / S, c = p % C, s = per_plane ? p : c;
    const float w = weight_of(weight, c), a = rstd[s] * w, k = bias_of(bias, c) - mean[s] * rstd[s] * w;
    y[i] = common::activate(act, x[i] * a + k, slope);
  }
}

// dx = (w*rstd) * (dy - sum_dy/M - xhat*sum_dy_xhat/M); sums per plane (instance) or channel (batch).
__global__ void norm_dx_k(const float* x, const float* weight, const float* mean, const float* rstd,
                          const float* dy, const float* y, common::Act act, float slope, const double* sums,
                          int64_t groups, float* dx, int64_t C, int64_t S, bool per_plane, double M, int64_t total) {
  PW_CUDA_LOOP(i, total) {
    const int64_t p = i / S, c = p % C, s = per_plane ? p : c;
    const float k = weight_of(weight, c) * rstd[s];
    const float mdy = float(sums[s] / M), mdx = float(sums[groups + s] / M);
    dx[i] = k * (common::activation_grad_at(act, y, dy, i, slope) - mdy - (x[i] - mean[s]) * rstd[s] * mdx);
  }
}

__global__ void batch_norm_eval_dx_k(const float* weight, const float* rstd, const float* dy, const float* y,
                                     common::Act act, float slope, float* dx, int64_t C, int64_t S, int64_t total) {
  PW_CUDA_LOOP(i, total) {
    const int64_t c = (i / S) % C;
    dx[i] = weight_of(weight, c) * rstd[c] * common::activation_grad_at(act, y, dy, i, slope);
  }
}

// Per channel: dweight = sum over n of the plane sums of dy*xhat, dbias = of dy (in order of n).
__global__ void instance_param_grads_k(const double* sums, int64_t N, int64_t C, float* dweight, float* dbias) {
  PW_CUDA_LOOP(c, C) {
    double gw = 0.0, gb = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      gb += sums[n * C + c];
      gw += sums[N * C + n * C + c];
    }
    if (dweight) dweight[c] = float(gw);
    if (dbias) dbias[c] = float(gb);
  }
}

__global__ void batch_param_grads_k(const double* sums, int64_t C, float* dweight, float* dbias) {
  PW_CUDA_LOOP(c, C) {
    if (dweight) dweight[c] = float(sums[C + c]);
    if (dbias) dbias[c] = float(sums[c]);
  }
}

__global__ void update_running_k(float* rm, float* rv, const float* mean, const float* var, int64_t C, double unbias,
                                 float momentum) {
  PW_CUDA_LOOP(c, C) {
    rm[c] = float((1.0 - momentum) * rm[c] + momentum * mean[c]);
    rv[c] = float((1.0 - momentum) * rv[c] + momentum * var[c] * unbias);
  }
}

__global__ void rstd_k(const float* var, float* rstd, int64_t C, float eps) {
  PW_CUDA_LOOP(c, C) rstd[c] = float(1.0 / sqrt(double(var[c]) + eps));
}

// mean/rstd-or-var of each group from two passes.
template <class Index>
void group_stats(const float* x, Index at, int64_t groups, int64_t count, float eps, float* mean_out,
                 float* rstd_out, float* var_out) {
  Scratch mean(size_t(groups) * sizeof(double));
  group_reduce<1>(groups, count, SumItem<Index>{x, at}, StoreMean{mean.as<double>(), double(count)});
  group_reduce<1>(groups, count, SqDevItem<Index>{x, mean.as<double>(), at},
                  StoreStats{mean.as<double>(), double(count), eps, mean_out, rstd_out, var_out});
}

}  // namespace

void instance_norm_forward(const float* x, const float* weight, const float* bias, float* y, float* mean,
                           float* rstd, int64_t N, int64_t C, int64_t S, float eps, common::Act act, float slope) {
  if (N * C == 0 || S == 0) return;
  group_stats(x, PlaneIndex{S}, N * C, S, eps, mean, rstd, nullptr);
  PW_LAUNCH(normalise_k, N * C * S, x, weight, bias, mean, rstd, y, C, S, true, act, slope, N * C * S);
}

void instance_norm_backward(const float* x, const float* weight, const float* mean, const float* rstd,
                            const float* dy, const float* y, common::Act act, float slope, float* dx, float* dweight,
                            float* dbias, int64_t N, int64_t C, int64_t S) {
  if (N * C == 0) return;
  Scratch sums(size_t(2 * N * C) * sizeof(double));
  group_reduce<2>(N * C, S, GradItem<PlaneIndex>{x, dy, y, mean, rstd, act, slope, PlaneIndex{S}, N * C},
                  StoreGradSums{sums.as<double>(), N * C});
  if (dx && S > 0)
    PW_LAUNCH(norm_dx_k, N * C * S, x, weight, mean, rstd, dy, y, act, slope, sums.as<double>(), N * C, dx, C, S,
              true, double(S), N * C * S);
  if (dweight || dbias) PW_LAUNCH(instance_param_grads_k, C, sums.as<double>(), N, C, dweight, dbias);
}

void batch_norm_stats(const float* x, float* mean, float* var, int64_t N, int64_t C, int64_t S) {
  if (C == 0 || N * S == 0) return;
  group_stats(x, ChannelIndex{C, S}, C, N * S, 0.f, mean, nullptr, var);
}

void batch_norm_update_running(float* running_mean, float* running_var, const float* mean, const float* var,
                               int64_t C, int64_t M, float momentum) {
  if (C == 0) return;
  const double unbias = M > 1 ? double(M) / double(M - 1) : 1.0;
  PW_LAUNCH(update_running_k, C, running_mean, running_var, mean, var, C, unbias, momentum);
}

void batch_norm_forward(const float* x, const float* weight, const float* bias, const float* mean,
                        const float* var, float* y, float* rstd, int64_t N, int64_t C, int64_t S, float eps,
                        common::Act act, float slope) {
  if (C == 0) return;
  PW_LAUNCH(rstd_k, C, var, rstd, C, eps);
  if (N * S > 0)
    PW_LAUNCH(normalise_k, N * C * S, x, weight, bias, mean, rstd, y, C, S, false, act, slope, N * C * S);
}

void batch_norm_backward(const float* x, const float* weight, const float* mean, const float* rstd,
                         const float* dy, const float* y, common::Act act, float slope, float* dx, float* dweight,
                         float* dbias, int64_t N, int64_t C, int64_t S, bool training) {
  if (C == 0) return;
  Scratch sums(size_t(2 * C) * sizeof(double));
  group_reduce<2>(C, N * S, GradItem<ChannelIndex>{x, dy, y, mean, rstd, act, slope, ChannelIndex{C, S}, C},
                  StoreGradSums{sums.as<double>(), C});
  if (dweight || dbias) PW_LAUNCH(batch_param_grads_k, C, sums.as<double>(), C, dweight, dbias);
  if (!dx || N * S == 0) return;
  if (training)
    PW_LAUNCH(norm_dx_k, N * C * S, x, weight, mean, rstd, dy, y, act, slope, sums.as<double>(), C, dx, C, S, false,
              double(N * S), N * C * S);
  else
    PW_LAUNCH(batch_norm_eval_dx_k, N * C * S, weight, rstd, dy, y, act, slope, dx, C, S, N * C * S);
}

}  // namespace pw::kernels::cuda
