// Hierarchical inference (paper: "Application", list D): distributes patches level by level
// (random or tree), runs each level's network on batches of patches, keeps only the most
// promising patches (lazy evaluation), and stitches the selected level's probabilities into
// full-size accumulators with a window (flat | cos | cos2) and the sparse suppression rule
// Y = sum w p / sqrt((sum w)^2 + 3 alpha).
//
// Memory: the only full-size float arrays are the stitching accumulators (one per output
// channel, plus one weight volume; twice that for --level mix), and the input image itself.
// Patches are evaluated in batches of `batch_size`; the outputs of the parents of the level
// being evaluated are kept for one chunk (bounded by num_patches and the lazy fraction).
#pragma once
#include <Eigen/Dense>
#include <array>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "kernels/scatter.h"
#include "train/scheme.h"

namespace pw::apply {

// The network seen by the inference: the scheme and one forward per level. train's model file
// is wrapped into this (apply/model_network.h); tests use hand-made networks.
struct InferInput;

class LevelNetwork {
 public:
  virtual ~LevelNetwork() = default;
  virtual const train::Scheme& scheme() const = 0;
  virtual int image_channels() const = 0;         // channels (contrasts) of the image
  virtual int out_channels(int level) const = 0;  // channels of X_level; the first scheme().label_channels()
                                                  // are the label logits, the rest intermediate features
  // Where the inference keeps its tensors: the image data, the crops, the parents' outputs and the
  // stitching accumulators live on this device (the image goes up once, the result comes down once).
  virtual Device device() const { return Device::cpu; }
  // The image crops I_level of `patches`: [P, block input channels, patch_size] (array order z, y, x), on
  // input.data's device (= device()). Default: gather with scheme().interp_type, no smoothing (train's CropGenerator in the model
  // wrapper, so that application crops exactly like training).
  virtual Tensor crop_image(int level, const InferInput& input, const std::vector<train::Patch>& patches);
  // Logits of level `level` for a batch: image crops and the crops of the parents' outputs
  // [B, out_channels(level-1), s] (undefined at level 0), both on device(). Returns [B, out_channels(level),
  // out_patch_size], best on device() (a tensor elsewhere is moved there).
  virtual Tensor forward(int level, const Tensor& image_patches, const Tensor& parent_crops) = 0;
  // The level's output as stitched: the model's final block applied to forward()'s logits where one
  // follows the level (children always crop forward()'s logits). Default: the logits themselves.
  virtual Tensor finalize(int /*level*/, const Tensor& logits) { return logits; }
  // The linear part L of a test-time augmentation of a level's patch (identity: none). A child
  // keeps its parent's L unless independent_augmentation() (as in training).
  virtual Eigen::Matrix3d augmentation(int /*level*/, std::mt19937_64& /*rng*/) const {
    return Eigen::Matrix3d::Identity();
  }
  virtual bool independent_augmentation() const { return false; }
};

enum class GenerateType { random, tree };
enum class Reduce { mean, max };  // lazyEval's reduceFun
// lazyEval's attentionFun, applied to the label logits: sigmoid of each foreground logit; softmax over the
// label logits (categorical: 1 - p(background) per voxel; else each label's share); identity: the
// foreground logits themselves (categorical: classes 1..K, the background left out).
enum class AttentionFun { sigmoid, softmax, identity };
AttentionFun parse_attention_fun(const std::string& s);  // "sigmoid" | "softmax" | "identity"; pw::UsageError
Reduce parse_reduce(const std::string& s);               // "mean" | "max"; pw::UsageError

struct InferOptions {
  GenerateType generate_type = GenerateType::tree;
  int num_patches = 16;          // random: level-0 patches per chunk
  int branch_factor = 1;         // random: children of each kept patch (tree: the tiling decides)
  int num_chunks = 1;            // the whole process is repeated; results accumulate
  double lazy_fraction = 1.0;    // lazyEval fraction: after each level keep this top fraction (1 = all)
  Reduce attention = Reduce::mean;  // reduceFun: reduction of the attention values over a patch
  std::optional<AttentionFun> attention_fun;  // attentionFun (unset: softmax for categorical models, else sigmoid)
  kernels::Window window = kernels::Window::flat;
  double sparse_suppression = 0;  // alpha
  double sampling_factor = 1;     // stitch voxel size = image voxel size / sampling_factor
  int level = -1;                 // the level stitched (-1 = last)
  bool level_mix = false;         // mix: coarser levels fill where the selected one has no patch
  bool scale_to_original = true;  // false: output on the network's own grid (final level voxel size)
  bool augment = false;           // test-time augmentation (network's augmentation())
  int batch_size = 8;
  uint64_t seed = 1;
  bool progress = false;          // progress lines on stderr
  double tree_jitter = 0.25;      // tree: jitter of interior children, fraction of the overlap
  // Called for every patch before its level is evaluated: its input patch and the index of its
  // parent in the previous level's list of the same chunk (-1 at level 0). For tests and tools.
  std::function<void(int level, const train::Patch& patch, int parent)> observe;
};

// The stitched result: per-voxel probabilities on `grid` (a Patch: voxel -> world, size).
struct Prediction {
  train::Patch grid;
  int channels = 0;            // = scheme.label_channels()
  bool categorical = false;    // channel 0 is the background
  std::vector<float> prob;     // [channels, z, y, x]
  // Statistics of the run.
  std::vector<int64_t> patches_per_level;  // evaluated patches, summed over chunks
  double seconds = 0;
};

// One image for the inference: its geometry and its (normalised) data [C, z, y, x] f32 (any device).
struct InferInput {
  train::Patch image;  // A = the NIfTI affine, s = dims
  Tensor data;
  int channels() const { return data.defined() ? static_cast<int>(data.dim(0)) : 0; }
};

// Runs the inference. Throws std::invalid_argument for inconsistent options.
Prediction infer(LevelNetwork& net, const InferInput& input, const InferOptions& opt);

// ---- building blocks (exposed for tests) ----

// The children centres (relative to the parent, in [0,1]^3) that tile a parent of extent
// `parent` with children of extent `child`: per axis k = 1 if the child covers the parent, else
// ceil(parent/child) + 1 evenly spaced so that neighbours overlap; interior centres jitter by up to
// jitter * overlap / 2. Axes with ndim 2's z get one child.
std::vector<Eigen::Vector3d> tree_children(const Eigen::Vector3d& parent, const Eigen::Vector3d& child, int ndim,
                                           double jitter, std::mt19937_64& rng);

// The lazy-evaluation attention of each patch of a batch of logits [B, C, s] (the first K = label channels
// are the label logits): `fun` per voxel, reduced (mean or max) over the patch's voxels and channels.
std::vector<float> attention_of(const Tensor& logits, int64_t K, bool categorical, AttentionFun fun, Reduce reduce);

// Indices of the top `fraction` of `attention` (exactly max(1, round(fraction * n)) of them; ties
// keep the lower index), in ascending index order.
std::vector<int> top_fraction(const std::vector<float>& attention, double fraction);

// The stitching grid for `image` at the selected level: the image's axes and extent, voxel size
// = image voxel / sampling_factor, coarsened to the level's voxel size (given along the image
// axes) when that is larger, so that nearest splatting leaves no holes; exactly the image grid
// when neither applies.
train::Patch stitch_grid(const train::Patch& image, const Eigen::Vector3d& level_voxel_mm, int ndim,
                         double sampling_factor);

// Linear resampling of a [C, grid] probability array onto `dst` (world-aligned by the affines).
std::vector<float> resample_linear(const std::vector<float>& src, const train::Patch& src_grid, int channels,
                                   const train::Patch& dst, int ndim);

}  // namespace pw::apply
