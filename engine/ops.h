// Every engine op: forward on Vars, recording a backward on the autodiff graph.
// Spatial ops work on N,C,H,W (2D) and N,C,D,H,W (3D) tensors, chosen by the input's rank.
// Each op checks its shapes and throws std::invalid_argument naming the op and the shapes.
//
// Where things are (one family per file, so a newcomer finds any op in seconds):
//   engine/ops_<family>.cpp        this API: shape checks, device dispatch, backward
//   kernels/<family>.h             raw-pointer kernel API, identical for both backends
//   kernels/cpu/<family>.cpp       CPU bodies          kernels/cuda/<family>.cu   CUDA bodies
#pragma once
#include <vector>

#include "engine/autograd.h"

namespace pw {

// ---- convolution (ops_conv.cpp) -------------------------------------------------------------
// x: N,Cin,spatial; w: Cout,Cin,k...; b: Cout or nullptr. Cross-correlation, zero padding,
// out = floor((in + 2p - k)/s) + 1.
Var conv(const Var& x, const Var& w, const Var& b, int stride = 1, int padding = 0);
// Transposed convolution: w: Cin,Cout,k...; out = (in - 1)*s + k (no padding).
Var conv_transpose(const Var& x, const Var& w, const Var& b, int stride = 2);

// ---- pooling and resampling (ops_pool.cpp) --------------------------------------------------
// Floor mode; a trailing partial window is dropped.
Var max_pool(const Var& x, int kernel = 2, int stride = 2);
Var avg_pool(const Var& x, int kernel = 2, int stride = 2);
enum class UpsampleMode { nearest, linear };
// Upsampling by an integer factor. nearest: src = floor(dst/f). linear (bi/trilinear):
// align_corners=false: src = (dst+0.5)/f - 0.5 clamped at 0; true: src = dst*(in-1)/(out-1).
Var upsample(const Var& x, int factor = 2, UpsampleMode mode = UpsampleMode::nearest, bool align_corners = false);

// ---- normalisation (ops_norm.cpp) -----------------------------------------------------------
// Biased variance; weight/bias per channel (either may be nullptr = 1 / 0).
Var instance_norm(const Var& x, const Var& weight, const Var& bias, float eps = 1e-5f);
// relu(instance_norm(...)) (slope 0) or leaky_relu(instance_norm(...), slope) (slope > 0) as one node:
// the same arithmetic in the same order, so the same values and gradients, but the normalised tensor is not
// kept for the backward pass (the activation's derivative is read from the output: y > 0 exactly where
// its input is), one activation-sized tensor less per layer until the backward pass reaches it; the norm
// kernels apply the activation, and its gradient, in their own passes. (Slope 0 is ReLU: +0 where
// leaky_relu with slope 0 gives -0; the same numbers otherwise.)
Var instance_norm_act(const Var& x, const Var& weight, const Var& bias, float slope, float eps = 1e-5f);
// training: normalise with batch statistics and update running_mean/running_var (unbiased
// variance, momentum weighting the new batch); else normalise with the running statistics.
Var batch_norm(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
               bool training, float momentum = 0.1f, float eps = 1e-5f);
// batch_norm then relu (slope 0) or leaky_relu (slope > 0), one node as instance_norm_act.
Var batch_norm_act(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
                   bool training, float slope, float momentum = 0.1f, float eps = 1e-5f);

// ---- elementwise, activations, shape (ops_elementwise.cpp) ----------------------------------
Var relu(const Var& x);
Var leaky_relu(const Var& x, float slope = 0.01f);
Var sigmoid(const Var& x);
Var softmax(const Var& x);  // over channels (dim 1)
Var add(const Var& a, const Var& b);  // same shapes
Var mul(const Var& a, const Var& b);  // same shapes
Var scale(const Var& x, float s);
Var concat(const std::vector<Var>& xs);           // along channels (dim 1)
Var slice(const Var& x, int64_t begin, int64_t end);  // channels [begin, end)
Var sum(const Var& x);   // all elements -> shape {1}
Var mean(const Var& x);  // all elements -> shape {1}

// ---- losses (ops_loss.cpp), each a mean -> shape {1} ----------------------------------------
// `mask` (optional, f32, same shape as the target, 1 = counts, 0 = don't care) leaves voxels out
// of the loss and its denominator. When nothing counts, the loss is 0 with a zero gradient.
// Stable form max(z,0) - z t + log1p(exp(-|z|)); target f32 in [0,1] (NaN = don't care).
Var bce_with_logits(const Var& logits, const Tensor& target, const Tensor* mask = nullptr);
// logits N,K,spatial; target i32 N,spatial with values in [0,K) or -1 (ignored). With class
// weights the denominator is the sum of the weights of the counted voxels.
Var cross_entropy(const Var& logits, const Tensor& target, const std::vector<float>* class_weight = nullptr,
                  const Tensor* mask = nullptr);
// Soft Dice 1 - (2 sum(p t) + s)/(sum p + sum t + s) per channel, averaged over channels
// (per_sample: per (n, c), averaged over N*C). probs and target_onehot: N,K,spatial.
Var soft_dice(const Var& probs, const Tensor& target_onehot, bool per_sample = false, float smooth = 1.0f,
              const Tensor* mask = nullptr);

// ---- many classes embedded in m dimensions (ops_candidate.cpp) -------------------------------
// Class c's response at a voxel with features f (m channels) is z_c = <f, e_c> + b_c (embedding
// C,m; bias C). Candidate-sampling cross entropy: features N,m,spatial; candidates i32 N,T,spatial,
// slot 0 = the true class (-1: the voxel gives no loss), slots 1..T-1 = sampled classes, whose logits
// get neg_offset added (the sampling correction); the mean over counted voxels of the softmax CE over
// the T slots, with gradients for features, embedding and bias. T <= 64, m <= 32.
Var candidate_cross_entropy(const Var& features, const Var& embedding, const Var& bias, const Tensor& candidates,
                            float neg_offset = 0.f);
// The class of maximal response per voxel: features m,spatial -> i32 spatial (outside the graph). A
// voxel with all m features exactly 0 is class 0; with min_prob > 0 the best class >= 1 is kept only
// where its softmax probability over all C classes reaches min_prob, else class 0.
Tensor max_response_class(const Tensor& features, const Tensor& embedding, const Tensor& bias, float min_prob = 0.f);

}  // namespace pw
