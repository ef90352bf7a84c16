#include "kernels/candidate.h"

#include <algorithm>
#include <vector>

#include "kernels/common/candidate_math.h"
#include "kernels/parallel.h"

// Sums go through fixed voxel blocks, each summed in double and combined in block order, so the
// results do not depend on the thread count.
namespace pw::kernels::cpu {
namespace {

constexpr int64_t kBlock = 1024;

// Calls body(n, s0, len, task) for the voxel blocks [s0, s0+len) of every sample n, in parallel.
template <class F>
void for_blocks(int64_t N, int64_t S, F&& body) {
  const int64_t blocks = (S + kBlock - 1) / kBlock;
  parallel_for(N * blocks, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t n = t / blocks, s0 = (t % blocks) * kBlock;
      body(n, s0, std::min(kBlock, S - s0), t);
    }
  }, 1);
}

int64_t tasks(int64_t N, int64_t S) { return N * ((S + kBlock - 1) / kBlock); }

}  // namespace

void candidate_ce_forward(const float* f, const float* E, const float* b, const int32_t* cand, int64_t N, int64_t m,
                          int64_t T, int64_t S, float neg_offset, float* loss, float* denom) {
  std::vector<double> part_loss(tasks(N, S)), part_count(tasks(N, S));
  for_blocks(N, S, [&](int64_t n, int64_t s0, int64_t len, int64_t task) {
    double l = 0.0, k = 0.0;
    float z[common::kMaxCandidateSlots];
    for (int64_t s = s0; s < s0 + len; ++s) {
      const int32_t* c = cand + n * T * S + s;
      if (c[0] < 0) continue;
      const float lse = common::candidate_logits(f + n * m * S + s, S, m, E, b, c, int(T), neg_offset, z);
      l += static_cast<double>(lse) - z[0];
      k += 1.0;
    }
    part_loss[task] = l;
    part_count[task] = k;
  });
  double l = 0.0, k = 0.0;
  for (size_t t = 0; t < part_loss.size(); ++t) l += part_loss[t], k += part_count[t];
  loss[0] = k > 0 ? static_cast<float>(l / k) : 0.f;
  denom[0] = static_cast<float>(k);
}

void candidate_ce_backward(const float* f, const float* E, const float* b, const int32_t* cand, int64_t N, int64_t m,
                           int64_t T, int64_t S, int64_t C, float neg_offset, const float* dloss, const float* denom,
                           float* df, float* dE, float* db) {
  const float w = denom[0] > 0 ? dloss[0] / denom[0] : 0.f;
  // Per task a table [C][m + 1] of the embedding (m) and bias (1) gradients, in double.
  const int64_t row = m + 1;
  std::vector<double> part(static_cast<size_t>(tasks(N, S) * C * row), 0.0);
  for_blocks(N, S, [&](int64_t n, int64_t s0, int64_t len, int64_t task) {
    double* g = part.data() + task * C * row;
    float z[common::kMaxCandidateSlots];
    for (int64_t s = s0; s < s0 + len; ++s) {
      const int32_t* c = cand + n * T * S + s;
      const float* fv = f + n * m * S + s;
      float* dfv = df + n * m * S + s;
      for (int64_t j = 0; j < m; ++j) dfv[j * S] = 0.f;
      if (c[0] < 0 || w == 0.f) continue;
      const float lse = common::candidate_logits(fv, S, m, E, b, c, int(T), neg_offset, z);
      common::candidate_logit_grad(z, int(T), lse, w);
      for (int64_t t = 0; t < T; ++t) {
        const int32_t k = c[t * S];
        const float* e = E + k * m;
        double* gk = g + k * row;
        for (int64_t j = 0; j < m; ++j) {
          dfv[j * S] += z[t] * e[j];
          gk[j] += static_cast<double>(z[t]) * fv[j * S];
        }
        gk[m] += z[t];
      }
    }
  });
  const int64_t nt = tasks(N, S);
  for (int64_t k = 0; k < C; ++k)
    for (int64_t j = 0; j < row; ++j) {
      double acc = 0.0;
      for (int64_t t = 0; t < nt; ++t) acc += part[(t * C + k) * row + j];
      (j < m ? dE[k * m + j] : db[k]) = static_cast<float>(acc);
    }
}

void max_response_class(const float* f, const float* E, const float* b, int64_t m, int64_t C, int64_t n,
                        float min_prob, int32_t* cls) {
  parallel_for(n, [&](int64_t lo, int64_t hi) {
    for (int64_t s = lo; s < hi; ++s) cls[s] = common::max_response_class(f + s, n, m, E, b, C, min_prob);
  }, 4096);
}

}  // namespace pw::kernels::cpu
