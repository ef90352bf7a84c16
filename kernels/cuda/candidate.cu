// CUDA bodies of kernels/candidate.h. The per-voxel math is kernels/common/candidate_math.h, shared
// with the CPU bodies; sums are deterministic double-precision reductions (kernels/cuda/reduce.cuh).
#include "kernels/candidate.h"
#include "kernels/common/candidate_math.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/reduce.cuh"

namespace pw::kernels::cuda {

namespace {

constexpr int kRow = common::kMaxEmbeddingDim + 1;  // dE row and db, per class

// One voxel v = n*S + s: acc[0] += logsumexp - z_0, acc[1] += 1 when it counts.
struct CandidateItem {
  const float *f, *E, *b;
  const int32_t* cand;
  int64_t m, T, S;
  float neg_offset;
  __device__ void operator()(int64_t, int64_t v, double* acc) const {
    const int64_t n = v / S, s = v % S;
    const int32_t* c = cand + n * T * S + s;
    if (c[0] < 0) return;
    float z[common::kMaxCandidateSlots];
    const float lse = common::candidate_logits(f + n * m * S + s, S, m, E, b, c, int(T), neg_offset, z);
    acc[0] += double(lse) - z[0];
    acc[1] += 1.0;
  }
};

struct MeanFinish {
  float *loss, *denom;
  __device__ void operator()(int64_t, const double* tot) const {
    loss[0] = tot[1] > 0 ? float(tot[0] / tot[1]) : 0.f;
    denom[0] = float(tot[1]);
  }
};

// Per voxel: the slot gradients dz [N][T][S] (0 for a voxel that does not count) and df.
__global__ void candidate_bwd_voxel_k(const float* f, const float* E, const float* b, const int32_t* cand, int64_t N,
                                      int64_t m, int64_t T, int64_t S, float neg_offset, const float* dloss,
                                      const float* denom, float* dz, float* df) {
  const float w = denom[0] > 0 ? dloss[0] / denom[0] : 0.f;
  PW_CUDA_LOOP(v, N * S) {
    const int64_t n = v / S, s = v % S;
    const int32_t* c = cand + n * T * S + s;
    float* dfv = df + n * m * S + s;
    float* dzv = dz + n * T * S + s;
    for (int64_t j = 0; j < m; ++j) dfv[j * S] = 0.f;
    if (c[0] < 0 || w == 0.f) {
      for (int64_t t = 0; t < T; ++t) dzv[t * S] = 0.f;
      continue;
    }
    float z[common::kMaxCandidateSlots];
    const float lse = common::candidate_logits(f + n * m * S + s, S, m, E, b, c, int(T), neg_offset, z);
    common::candidate_logit_grad(z, int(T), lse, w);
    for (int64_t t = 0; t < T; ++t) {
      const float* e = E + c[t * S] * m;
      for (int64_t j = 0; j < m; ++j) dfv[j * S] += z[t] * e[j];
      dzv[t * S] = z[t];
    }
  }
}

// Group k = class k, items = every slot (n, t, s): where cand == k, acc[j] += dz f_j (j < m), acc[m] += dz.
struct ClassGradItem {
  const float *f, *dz;
  const int32_t* cand;
  int64_t m, T, S;
  __device__ void operator()(int64_t k, int64_t i, double* acc) const {
    if (cand[i] != k) return;
    const int64_t n = i / (T * S), s = i % S;
    const float g = dz[i];
    const float* fv = f + n * m * S + s;
    for (int64_t j = 0; j < m; ++j) acc[j] += double(g) * fv[j * S];
    acc[m] += g;
  }
};

struct ClassGradFinish {
  float *dE, *db;
  int64_t m;
  __device__ void operator()(int64_t k, const double* tot) const {
    for (int64_t j = 0; j < m; ++j) dE[k * m + j] = float(tot[j]);
    db[k] = float(tot[m]);
  }
};

__global__ void max_response_k(const float* f, const float* E, const float* b, int64_t m, int64_t C, int64_t n,
                               float min_prob, int32_t* cls) {
  PW_CUDA_LOOP(s, n) cls[s] = common::max_response_class(f + s, n, m, E, b, C, min_prob);
}

}  // namespace

void candidate_ce_forward(const float* f, const float* E, const float* b, const int32_t* cand, int64_t N, int64_t m,
                          int64_t T, int64_t S, float neg_offset, float* loss, float* denom) {
  group_reduce<2>(1, N * S, CandidateItem{f, E, b, cand, m, T, S, neg_offset}, MeanFinish{loss, denom});
}

void candidate_ce_backward(const float* f, const float* E, const float* b, const int32_t* cand, int64_t N, int64_t m,
                           int64_t T, int64_t S, int64_t C, float neg_offset, const float* dloss, const float* denom,
                           float* df, float* dE, float* db) {
  Scratch dz(size_t(N * T * S) * sizeof(float));
  PW_LAUNCH(candidate_bwd_voxel_k, N * S, f, E, b, cand, N, m, T, S, neg_offset, dloss, denom, dz.as<float>(), df);
  group_reduce<kRow>(C, N * T * S, ClassGradItem{f, dz.as<float>(), cand, m, T, S}, ClassGradFinish{dE, db, m});
}

void max_response_class(const float* f, const float* E, const float* b, int64_t m, int64_t C, int64_t n,
                        float min_prob, int32_t* cls) {
  PW_LAUNCH(max_response_k, n, f, E, b, m, C, n, min_prob, cls);
}

}  // namespace pw::kernels::cuda
