// Candidate-sampling cross entropy for many classes embedded in a low-dimensional feature space
// (paper, "Training": for > 50 labels), and the class decision by maximal response.
//
// Layouts: features f [N][m][S] (S = spatial size), class embedding E [C][m], bias b [C],
// candidates cand [N][T][S] int32: slot 0 = the voxel's true class (-1: the voxel gives no loss),
// slots 1..T-1 = the sampled classes (drawn by the caller). T <= kMaxCandidateSlots, m <=
// kMaxEmbeddingDim (kernels/common/candidate_math.h, where the per-voxel math lives).
// Per counted voxel, z_t = <f, e_{cand_t}> + b_{cand_t} + (t >= 1 ? neg_offset : 0) and
// l = logsumexp_t z_t - z_0; loss[0] = mean over counted voxels, denom[0] = their count (loss 0 and
// zero gradients when none counts). The backward WRITES df, dE, db (dE and db summed over all
// voxels and slots, in a fixed order: deterministic on both backends).
#pragma once
#include <cstdint>

#include "kernels/op_list.h"

#define PW_KERNELS_CANDIDATE(X)                                                                                   \
  /* loss = mean over counted voxels of logsumexp_t z_t - z_0 */                                                   \
  X(void, candidate_ce_forward, (const float* f, const float* E, const float* b, const int32_t* cand, int64_t N,  \
                                 int64_t m, int64_t T, int64_t S, float neg_offset, float* loss, float* denom))    \
  /* dz_t = dloss/denom * (softmax_t - [t==0]); df = sum_t dz_t e_t; dE[c] += dz_t f; db[c] += dz_t */             \
  X(void, candidate_ce_backward, (const float* f, const float* E, const float* b, const int32_t* cand, int64_t N, \
                                  int64_t m, int64_t T, int64_t S, int64_t C, float neg_offset, const float* dloss, \
                                  const float* denom, float* df, float* dE, float* db))                            \
  /* cls[s] = argmax_c <f_s, e_c> + b_c over C classes for features f [m][n] (common::max_response_class) */      \
  X(void, max_response_class, (const float* f, const float* E, const float* b, int64_t m, int64_t C, int64_t n,   \
                               float min_prob, int32_t* cls))

namespace pw::kernels::cpu {
PW_KERNELS_CANDIDATE(PW_DECLARE_KERNEL)
}  // namespace pw::kernels::cpu

#ifdef PW_HAVE_CUDA
// The CUDA twins: identical signatures, pointers in device memory.
namespace pw::kernels::cuda {
PW_KERNELS_CANDIDATE(PW_DECLARE_KERNEL)
}  // namespace pw::kernels::cuda
#endif
