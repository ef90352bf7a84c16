// CUDA bodies of kernels/loss.h. Sums are deterministic double-precision reductions
// (kernels/cuda/reduce.cuh); loss and denominator stay on the device. Per-element math is
// kernels/common/loss_math.h, shared with the CPU bodies.
#include "kernels/common/loss_math.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/loss.h"

namespace pw::kernels::cuda {

namespace {

__device__ inline bool counts(const float* mask, int64_t i) { return !mask || mask[i] != 0.f; }

// Writes loss = sum / count (0 when count is 0) and denom = count.
struct MeanFinish {
  float* loss;
  float* denom;
  __device__ void operator()(int64_t, const double* tot) const {
    loss[0] = tot[1] > 0 ? float(tot[0] / tot[1]) : 0.f;
    denom[0] = float(tot[1]);
  }
};

struct BceItem {
  const float *z, *t, *mask;
  __device__ void operator()(int64_t, int64_t i, double* acc) const {
    if (!counts(mask, i) || isnan(t[i])) return;
    acc[0] += common::bce_with_logits(z[i], t[i]);
    acc[1] += 1.0;
  }
};

__global__ void bce_bwd_k(const float* z, const float* t, const float* mask, int64_t n, const float* dloss,
                          const float* denom, float* dz) {
  const float k = denom[0] > 0 ? dloss[0] / denom[0] : 0.f;
  PW_CUDA_LOOP(i, n) dz[i] = (counts(mask, i) && !isnan(t[i])) ? k * common::bce_with_logits_grad(z[i], t[i]) : 0.f;
}

// One voxel v = n*S + s: acc[0] += w*nll, acc[1] += w.
struct CeItem {
  const float* logits;
  const int32_t* target;
  const float *class_weight, *mask;
  int64_t K, S;
  __device__ void operator()(int64_t, int64_t v, double* acc) const {
    const int32_t cls = target[v];
    if (cls < 0 || cls >= K || !counts(mask, v)) return;  // >= K: never read out of bounds
    const int64_t n = v / S, s = v % S;
    const float* x = logits + n * K * S + s;
    float mx = x[0];
    for (int64_t k = 1; k < K; ++k) mx = fmaxf(mx, x[k * S]);
    double e = 0.0;
    for (int64_t k = 0; k < K; ++k) e += exp(double(x[k * S] - mx));
    const double nll = log(e) + mx - x[cls * S];
    const double w = class_weight ? class_weight[cls] : 1.0;
    acc[0] += w * nll;
    acc[1] += w;
  }
};

__global__ void ce_bwd_k(const float* logits, const int32_t* target, const float* class_weight, const float* mask,
                         int64_t N, int64_t K, int64_t S, const float* dloss, const float* denom, float* dlogits) {
  const float scale = denom[0] > 0 ? dloss[0] / denom[0] : 0.f;
  PW_CUDA_LOOP(v, N * S) {
    const int64_t n = v / S, s = v % S;
    const float* x = logits + n * K * S + s;
    float* dx = dlogits + n * K * S + s;
    const int32_t cls = target[v];
    if (cls < 0 || cls >= K || !counts(mask, v)) {
      for (int64_t k = 0; k < K; ++k) dx[k * S] = 0.f;
      continue;
    }
    float mx = x[0];
    for (int64_t k = 1; k < K; ++k) mx = fmaxf(mx, x[k * S]);
    float e = 0.f;
    for (int64_t k = 0; k < K; ++k) {
      const float p = expf(x[k * S] - mx);
      dx[k * S] = p;
      e += p;
    }
    const float w = (class_weight ? class_weight[cls] : 1.f) * scale;
    const float inv = w / e;
    for (int64_t k = 0; k < K; ++k) dx[k * S] *= inv;
    dx[cls * S] -= w;
  }
}

// Element i of Dice group g: per_sample, g = n*K + k over S; else g = k over N*S.
struct DiceIndex {
  int64_t K, S;
  bool per_sample;
  __device__ int64_t operator()(int64_t g, int64_t i) const {
    return per_sample ? g * S + i : ((i / S) * K + g) * S + i % S;
  }
};
struct DiceItem {
  const float *p, *t, *mask;
  DiceIndex at;
  __device__ void operator()(int64_t g, int64_t i, double* acc) const {
    const int64_t j = at(g, i);
    const float m = mask ? mask[j] : 1.f;
    const float pv = p[j] * m, tv = t[j] * m;
    acc[0] += pv * tv;
    acc[1] += pv;
    acc[2] += tv;
  }
};
struct DiceFinish {
  float* sums;
  double* exact;  // the double sums, for the loss
  int64_t G;
  __device__ void operator()(int64_t g, const double* tot) const {
    for (int k = 0; k < 3; ++k) {
      sums[k * G + g] = float(tot[k]);
      exact[k * G + g] = tot[k];
    }
  }
};

__global__ void dice_loss_k(const double* exact, int64_t G, float smooth, float* loss) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double total = 0.0;
  for (int64_t g = 0; g < G; ++g)
    total += 1.0 - (2.0 * exact[g] + smooth) / (exact[G + g] + exact[2 * G + g] + smooth);
  loss[0] = float(total / double(G));
}

__global__ void dice_bwd_k(const float* t, const float* mask, int64_t K, int64_t S, bool per_sample, float smooth,
                           const float* sums, const float* dloss, int64_t G, float* dp, int64_t total) {
  const float k = dloss[0] / float(G);
  PW_CUDA_LOOP(i, total) {
    const int64_t q = i / S, g = per_sample ? q : q % K;
    const float m = mask ? mask[i] : 1.f;
    // p and t both enter multiplied by the mask: d/dp = m * grad(t*m)
    dp[i] = k * m * common::soft_dice_grad(t[i] * m, sums[g], sums[G + g], sums[2 * G + g], smooth);
  }
}

}  // namespace

void bce_with_logits_forward(const float* z, const float* t, const float* mask, int64_t n, float* loss,
                             float* denom) {
  group_reduce<2>(1, n, BceItem{z, t, mask}, MeanFinish{loss, denom});
}

void bce_with_logits_backward(const float* z, const float* t, const float* mask, int64_t n, const float* dloss,
                              const float* denom, float* dz) {
  if (n <= 0) return;
  bce_bwd_k<<<grid_for(n), kBlock, 0, stream()>>>(z, t, mask, n, dloss, denom, dz);
  PW_CUDA_CHECK_LAUNCH("bce_bwd_k");
}

void cross_entropy_forward(const float* logits, const int32_t* target, const float* class_weight,
                           const float* mask, int64_t N, int64_t K, int64_t S, float* loss, float* denom) {
  group_reduce<2>(1, N * S, CeItem{logits, target, class_weight, mask, K, S}, MeanFinish{loss, denom});
}

void cross_entropy_backward(const float* logits, const int32_t* target, const float* class_weight,
                            const float* mask, int64_t N, int64_t K, int64_t S, const float* dloss,
                            const float* denom, float* dlogits) {
  if (N * S <= 0) return;
  ce_bwd_k<<<grid_for(N * S), kBlock, 0, stream()>>>(logits, target, class_weight, mask, N, K, S, dloss, denom,
                                                     dlogits);
  PW_CUDA_CHECK_LAUNCH("ce_bwd_k");
}

void soft_dice_forward(const float* p, const float* t, const float* mask, int64_t N, int64_t K, int64_t S,
                       bool per_sample, float smooth, float* sums, float* loss) {
  const int64_t G = per_sample ? N * K : K;
  if (G <= 0) return;
  Scratch exact(size_t(3 * G) * sizeof(double));
  group_reduce<3>(G, per_sample ? S : N * S, DiceItem{p, t, mask, DiceIndex{K, S, per_sample}},
                  DiceFinish{sums, exact.as<double>(), G});
  dice_loss_k<<<1, 32, 0, stream()>>>(exact.as<double>(), G, smooth, loss);
  PW_CUDA_CHECK_LAUNCH("dice_loss_k");
}

void soft_dice_backward(const float* p, const float* t, const float* mask, int64_t N, int64_t K, int64_t S,
                        bool per_sample, float smooth, const float* sums, const float* dloss, float* dp) {
  (void)p;  // the Dice gradient depends on p only through the group sums
  const int64_t G = per_sample ? N * K : K, total = N * K * S;
  if (total <= 0) return;
  dice_bwd_k<<<grid_for(total), kBlock, 0, stream()>>>(t, mask, K, S, per_sample, smooth, sums, dloss, G, dp, total);
  PW_CUDA_CHECK_LAUNCH("dice_bwd_k");
}

}  // namespace pw::kernels::cuda
