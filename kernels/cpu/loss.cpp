#include "kernels/loss.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/exp_math.h"
#include "kernels/common/loss_math.h"
#include "kernels/parallel.h"

// Reductions use fixed chunks summed in double and combined in order, so a loss does not
// depend on the thread count.
namespace pw::kernels::cpu {
namespace {

constexpr int64_t kChunk = 1 << 14;

bool counts(const float* mask, int64_t i) { return !mask || mask[i] != 0.f; }

// Calls body(n, s0, len) for blocks of voxels [s0, s0+len) of sample n, in parallel.
template <class F>
void for_voxel_blocks(int64_t N, int64_t S, F&& body) {
  const int64_t block = 1024;
  const int64_t blocks = (S + block - 1) / block;
  parallel_for(N * blocks, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t n = t / blocks, s0 = (t % blocks) * block;
      body(n, s0, std::min(block, S - s0), t);
    }
  }, 1);
}

int64_t voxel_blocks(int64_t S) { return (S + 1023) / 1024; }

}  // namespace

void bce_with_logits_forward(const float* z, const float* t, const float* mask, int64_t n, float* loss,
                             float* denom) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part_loss(static_cast<size_t>(chunks)), part_count(static_cast<size_t>(chunks));
  parallel_for(chunks, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      double l = 0.0, k = 0.0;
      for (int64_t i = c * kChunk, end = std::min(n, i + kChunk); i < end; ++i) {
        if (!counts(mask, i) || std::isnan(t[i])) continue;
        l += common::bce_with_logits(z[i], t[i]);
        k += 1.0;
      }
      part_loss[c] = l;
      part_count[c] = k;
    }
  }, 1);
  double l = 0.0, k = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    l += part_loss[c];
    k += part_count[c];
  }
  loss[0] = k > 0 ? static_cast<float>(l / k) : 0.f;
  denom[0] = static_cast<float>(k);
}

void bce_with_logits_backward(const float* z, const float* t, const float* mask, int64_t n, const float* dloss,
                              const float* denom, float* dz) {
  const float k = denom[0] > 0 ? dloss[0] / denom[0] : 0.f;
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      dz[i] = (counts(mask, i) && !std::isnan(t[i])) ? k * common::bce_with_logits_grad(z[i], t[i]) : 0.f;
  }, kChunk);
}

// Per block of voxels: mx[s] = max_k x[k][s], lse[s] = log sum_k exp(x[k][s] - mx[s]), with the
// class loop outside so that the voxel loops run over contiguous memory.
static void block_logsumexp(const float* x, int64_t K, int64_t S, int64_t s0, int64_t len, float* mx, float* lse) {
  std::copy(x + s0, x + s0 + len, mx);
  for (int64_t k = 1; k < K; ++k)
    for (int64_t s = 0; s < len; ++s) mx[s] = std::max(mx[s], x[k * S + s0 + s]);
  std::fill(lse, lse + len, 0.f);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t s = 0; s < len; ++s) lse[s] += common::exp_f32(x[k * S + s0 + s] - mx[s]);
  for (int64_t s = 0; s < len; ++s) lse[s] = std::log(lse[s]);
}

void cross_entropy_forward(const float* logits, const int32_t* target, const float* class_weight,
                           const float* mask, int64_t N, int64_t K, int64_t S, float* loss, float* denom) {
  const int64_t tasks = N * voxel_blocks(S);
  std::vector<double> part_loss(static_cast<size_t>(tasks)), part_w(static_cast<size_t>(tasks));
  for_voxel_blocks(N, S, [&](int64_t n, int64_t s0, int64_t len, int64_t task) {
    const float* x = logits + n * K * S;
    float mx[1024], lse[1024];
    block_logsumexp(x, K, S, s0, len, mx, lse);
    double l = 0.0, wsum = 0.0;
    for (int64_t s = 0; s < len; ++s) {
      const int64_t v = n * S + s0 + s;
      const int32_t cls = target[v];
      if (cls < 0 || !counts(mask, v)) continue;
      const double w = class_weight ? class_weight[cls] : 1.0;
      l += w * (static_cast<double>(lse[s]) + mx[s] - x[cls * S + s0 + s]);
      wsum += w;
    }
    part_loss[task] = l;
    part_w[task] = wsum;
  });
  double l = 0.0, w = 0.0;
  for (int64_t t = 0; t < tasks; ++t) {
    l += part_loss[t];
    w += part_w[t];
  }
  loss[0] = w > 0 ? static_cast<float>(l / w) : 0.f;
  denom[0] = static_cast<float>(w);
}

void cross_entropy_backward(const float* logits, const int32_t* target, const float* class_weight,
                            const float* mask, int64_t N, int64_t K, int64_t S, const float* dloss,
                            const float* denom, float* dlogits) {
  const float scale = denom[0] > 0 ? dloss[0] / denom[0] : 0.f;
  for_voxel_blocks(N, S, [&](int64_t n, int64_t s0, int64_t len, int64_t) {
    const float* x = logits + n * K * S;
    float* dx = dlogits + n * K * S;
    float mx[1024], lse[1024], w[1024];
    block_logsumexp(x, K, S, s0, len, mx, lse);
    for (int64_t s = 0; s < len; ++s) {
      const int64_t v = n * S + s0 + s;
      const int32_t cls = target[v];
      const bool counted = cls >= 0 && counts(mask, v);
      w[s] = counted ? (class_weight ? class_weight[cls] : 1.f) * scale : 0.f;
      mx[s] += lse[s];  // softmax_k = exp(x_k - (mx + lse))
    }
    for (int64_t k = 0; k < K; ++k)
      for (int64_t s = 0; s < len; ++s) dx[k * S + s0 + s] = w[s] * common::exp_f32(x[k * S + s0 + s] - mx[s]);
    for (int64_t s = 0; s < len; ++s) {
      const int32_t cls = target[n * S + s0 + s];
      if (w[s] != 0.f) dx[cls * S + s0 + s] -= w[s];
    }
  });
}

void soft_dice_forward(const float* p, const float* t, const float* mask, int64_t N, int64_t K, int64_t S,
                       bool per_sample, float smooth, float* sums, float* loss) {
  // Per (n, k) plane sums first, then per group.
  std::vector<double> plane(static_cast<size_t>(3 * N * K));
  parallel_for(N * K, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) {
      const float* pq = p + q * S;
      const float* tq = t + q * S;
      const float* mq = mask ? mask + q * S : nullptr;
      double I = 0.0, P = 0.0, T = 0.0;
      for (int64_t i = 0; i < S; ++i) {
        const float m = mq ? mq[i] : 1.f;
        const float pv = pq[i] * m, tv = tq[i] * m;
        I += pv * tv;
        P += pv;
        T += tv;
      }
      plane[3 * q] = I;
      plane[3 * q + 1] = P;
      plane[3 * q + 2] = T;
    }
  }, 1);
  const int64_t G = per_sample ? N * K : K;
  double total = 0.0;
  for (int64_t g = 0; g < G; ++g) {
    double I = 0.0, P = 0.0, T = 0.0;
    for (int64_t n = 0; n < (per_sample ? 1 : N); ++n) {
      const int64_t q = per_sample ? g : n * K + g;
      I += plane[3 * q];
      P += plane[3 * q + 1];
      T += plane[3 * q + 2];
    }
    sums[g] = static_cast<float>(I);
    sums[G + g] = static_cast<float>(P);
    sums[2 * G + g] = static_cast<float>(T);
    total += 1.0 - (2.0 * I + smooth) / (P + T + smooth);
  }
  loss[0] = static_cast<float>(total / static_cast<double>(G));
}

void soft_dice_backward(const float* p, const float* t, const float* mask, int64_t N, int64_t K, int64_t S,
                        bool per_sample, float smooth, const float* sums, const float* dloss, float* dp) {
  (void)p;  // the Dice gradient depends on p only through the group sums
  const int64_t G = per_sample ? N * K : K;
  const float k = dloss[0] / static_cast<float>(G);
  parallel_for(N * K, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) {
      const int64_t g = per_sample ? q : q % K;
      const float I = sums[g], P = sums[G + g], T = sums[2 * G + g];
      const float* tq = t + q * S;
      const float* mq = mask ? mask + q * S : nullptr;
      float* dq = dp + q * S;
      for (int64_t i = 0; i < S; ++i) {
        const float m = mq ? mq[i] : 1.f;
        // p and t both enter multiplied by the mask: d/dp = m * grad(t*m)
        dq[i] = k * m * common::soft_dice_grad(tq[i] * m, I, P, T, smooth);
      }
    }
  }, 1);
}

}  // namespace pw::kernels::cpu
