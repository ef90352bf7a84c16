// Loss kernels on raw buffers. Each loss is a mean over the counted elements: the forward writes
// loss[0] and denom[0] (the denominator: count or weight sum; when it is 0 the loss is 0 and the
// gradient 0); the backward reads them with dloss[0] (upstream gradient) and WRITES the gradient.
// mask (nullable) holds 1 (counts) or 0 (don't care) per target element.
// Every pointer is on the backend's device (loss, denom, dloss and class_weight included).
// Logits/probs are [N][K][S] (S = spatial size). Soft Dice has no denom (its mean is over groups).
// The per-element formulas live in kernels/common/loss_math.h.
#pragma once
#include <cstdint>

#include "kernels/op_list.h"

// The family's kernels: X(return type, name, (parameters)), expanded for both backends below
// (kernels/op_list.h).
#define PW_KERNELS_LOSS(X)                                                                                         \
  /* Sigmoid binary cross-entropy with logits, elementwise over n values: */                                       \
  /* l = max(z,0) - z*t + log1p(exp(-|z|)); an element counts when mask != 0 and t is not NaN. */                  \
  /* dz = dloss*(sigmoid(z) - t)/denom on counted elements, 0 elsewhere. */                                        \
  X(void, bce_with_logits_forward,                                                                                 \
    (const float* z, const float* t, const float* mask, int64_t n, float* loss, float* denom))                     \
  X(void, bce_with_logits_backward, (const float* z, const float* t, const float* mask, int64_t n,                 \
                                     const float* dloss, const float* denom, float* dz))                           \
  /* Softmax cross-entropy over K classes. target [N][S] int32 in [0, K) or -1 (ignored); mask [N][S]; */          \
  /* class_weight (K values) nullable. A voxel counts when target != -1 and mask != 0, with weight */              \
  /* w = class_weight[target] (1 without weights); loss = sum w*nll / sum w, denom = sum w. */                     \
  /* dlogits = dloss*w*(softmax - onehot(target))/denom on counted voxels, 0 elsewhere. */                         \
  X(void, cross_entropy_forward, (const float* logits, const int32_t* target, const float* class_weight,           \
                                  const float* mask, int64_t N, int64_t K, int64_t S, float* loss, float* denom))  \
  X(void, cross_entropy_backward, (const float* logits, const int32_t* target, const float* class_weight,          \
                                   const float* mask, int64_t N, int64_t K, int64_t S, const float* dloss,         \
                                   const float* denom, float* dlogits))                                            \
  /* Soft Dice of probs p and one-hot target t, both [N][K][S]; mask [N][K][S] (nullable) multiplies */            \
  /* p and t. Groups: per channel over N and S (per_sample = false, G = K) or per (n, k) over S */                 \
  /* (per_sample = true, G = N*K). sums (3*G values) <- [I_g = sum p*t | P_g = sum p | T_g = sum t], */            \
  /* kept for the backward. loss = mean_g (1 - (2 I_g + smooth)/(P_g + T_g + smooth)). */                          \
  /* dp = -dloss/G * mask * (2 t (P_g+T_g+smooth) - (2 I_g+smooth)) / (P_g+T_g+smooth)^2. */                       \
  X(void, soft_dice_forward, (const float* p, const float* t, const float* mask, int64_t N, int64_t K, int64_t S,  \
                              bool per_sample, float smooth, float* sums, float* loss))                            \
  X(void, soft_dice_backward, (const float* p, const float* t, const float* mask, int64_t N, int64_t K, int64_t S, \
                               bool per_sample, float smooth, const float* sums, const float* dloss, float* dp))

namespace pw::kernels::cpu {
PW_KERNELS_LOSS(PW_DECLARE_KERNEL)
}  // namespace pw::kernels::cpu

#ifdef PW_HAVE_CUDA
// The CUDA twins: identical signatures, pointers in device memory.
namespace pw::kernels::cuda {
PW_KERNELS_LOSS(PW_DECLARE_KERNEL)
}  // namespace pw::kernels::cuda
#endif
