// Per-voxel math of the candidate-sampling loss and of the class decision of an embedded-class model,
// shared by the CPU and CUDA bodies (kernels/candidate.h).
//
// A voxel's network output is a feature vector f (m channels, stride S apart in memory); class c has
// the embedding row e_c (m values) and a bias b_c; its response is z_c = <f, e_c> + b_c.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/exp_math.h"
#include "kernels/common/hd.h"

namespace pw::kernels::common {

constexpr int kMaxCandidateSlots = 64;  // the true class + at most 63 sampled candidates
constexpr int kMaxEmbeddingDim = 32;    // m

// The response of class c: <f, e_c> + b_c; f strided by S.
PW_HD inline float class_response(const float* f, int64_t S, int64_t m, const float* E, const float* b, int32_t c) {
  const float* e = E + c * m;
  float z = b[c];
  for (int64_t j = 0; j < m; ++j) z += f[j * S] * e[j];
  return z;
}

// The T logits of one voxel's candidate slots (cand strided by S; slot 0 = the true class) into z;
// the sampled slots t >= 1 get `neg_offset` added (the sampling correction). Returns log sum exp(z).
PW_HD inline float candidate_logits(const float* f, int64_t S, int64_t m, const float* E, const float* b,
                                    const int32_t* cand, int T, float neg_offset, float* z) {
  float mx = -INFINITY;
  for (int t = 0; t < T; ++t) {
    z[t] = class_response(f, S, m, E, b, cand[t * S]) + (t > 0 ? neg_offset : 0.f);
    mx = fmaxf(mx, z[t]);
  }
  float s = 0.f;
  for (int t = 0; t < T; ++t) s += exp_f32(z[t] - mx);
  return mx + logf(s);
}

// dz_t = w * (softmax_t - [t == 0]) in place of the logits z (lse = their log sum exp).
PW_HD inline void candidate_logit_grad(float* z, int T, float lse, float w) {
  for (int t = 0; t < T; ++t) z[t] = w * (exp_f32(z[t] - lse) - (t == 0 ? 1.f : 0.f));
}

// The class with the maximal response over C classes (ties: the lower index). A voxel whose m
// features are all exactly 0 (no patch reached it) is background 0. With min_prob > 0 the best
// foreground class (c >= 1) is kept only when its softmax probability over all C classes reaches
// min_prob, else background.
PW_HD inline int32_t max_response_class(const float* f, int64_t S, int64_t m, const float* E, const float* b,
                                        int64_t C, float min_prob) {
  bool covered = false;
  for (int64_t j = 0; j < m; ++j) covered = covered || f[j * S] != 0.f;
  if (!covered) return 0;
  int32_t best = 0, best_fg = -1;
  float zbest = -INFINITY, zfg = -INFINITY, mx = -INFINITY, sum = 0.f;
  for (int32_t c = 0; c < C; ++c) {
    const float z = class_response(f, S, m, E, b, c);
    if (z > zbest) zbest = z, best = c;
    if (c > 0 && z > zfg) zfg = z, best_fg = c;
    // running log-sum-exp
    if (z > mx) sum = sum * exp_f32(mx - z) + 1.f, mx = z;
    else sum += exp_f32(z - mx);
  }
  if (min_prob <= 0.f) return best;
  return best_fg > 0 && exp_f32(zfg - mx) / sum >= min_prob ? best_fg : 0;
}

}  // namespace pw::kernels::common
