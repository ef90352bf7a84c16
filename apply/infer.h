// Hierarchical inference (paper: "Application", list D): distributes patches level by level
// (random or tree), runs each level's network on batches of patches, keeps only the most
// promising patches (lazy evaluation), and stitches the selected level's probabilities into
// full-size accumulators with a window (flat | cos | cos2) and the sparse suppression rule
// Y = sum w p / sqrt((sum w)^2 + 3 alpha).
//
// Memory: the stitching accumulators are bricks (apply/bricks.h) that exist only where patches
// land. The stitched level's patches are evaluated in the order of the first brick they touch, so
// that in the last chunk a brick is finished (normalised and handed to the output, then freed) as
// soon as the last patch reaching it is stitched: only a slab of bricks about one patch thick is
// held at a time. --level mix and num_chunks > 1 keep the bricks of earlier levels/chunks until
// the end. Patches are evaluated in batches of `batch_size`. The stitched level's parents are evaluated
// on demand when no attention has to choose among them (lazy_fraction 1, no --level mix): a batch of them
// when a child first needs one, each output freed after its last child, so only the parents around the sweep
// are held; otherwise the outputs of a level's kept patches are held while the next level is evaluated.
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

#include "apply/bricks.h"
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
  int brick = 32;                 // edge of the stitching bricks, in voxels of the stitch grid
  // Called for every patch before its level is evaluated: its input patch and the index of its
  // parent in the previous level's list of the same chunk (-1 at level 0). For tests and tools.
  std::function<void(int level, const train::Patch& patch, int parent)> observe;
};

// The stitched result: per-voxel probabilities on `grid` (a Patch: voxel -> world, size).
struct Prediction {
  train::Patch grid;
  int channels = 0;            // = scheme.label_channels()
  bool categorical = false;    // channel 0 is the background
  std::vector<float> prob;     // [channels, z, y, x]; candidate_sampling models: the m response features
  // candidate_sampling models after classify_prediction (apply/responses.h): the class per voxel
  // (0 = background), prob empty, channels = K+1
  std::vector<int32_t> classes;
  // Statistics of the run.
  std::vector<int64_t> patches_per_level;  // evaluated patches, summed over chunks
  double seconds = 0;
  int64_t stitch_peak_bytes = 0;  // the most accumulator bytes held at once (summed over the stitched
                                  // levels and, when resampling, the resampler's source bricks)
  int64_t bricks_allocated = 0, bricks_total = 0;  // bricks that ever existed / bricks of the grid(s)
  int64_t parents_peak_bytes = 0;  // the most bytes of the stitched level's parents' outputs held at once
};

// One image for the inference: its geometry and its (normalised) data [C, z, y, x] f32 (any device).
struct InferInput {
  train::Patch image;  // A = the NIfTI affine, s = dims
  Tensor data;
  int channels() const { return data.defined() ? static_cast<int>(data.dim(0)) : 0; }
};

// Runs the inference. Throws std::invalid_argument for inconsistent options.
Prediction infer(LevelNetwork& net, const InferInput& input, const InferOptions& opt);
// The same, handing the normalised prediction to `sink` box by box (begin() first, with the output
// grid) instead of holding it: the returned Prediction has grid and statistics, no prob.
Prediction infer(LevelNetwork& net, const InferInput& input, const InferOptions& opt, BrickSink& sink);

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

// resample_linear brick by brick: receives a prediction on `src` (a BrickSink, boxes of
// BrickGrid(src, brick)), hands each brick of `dst` (BrickGrid(dst, brick)) to `out` as soon as every
// source brick it reads has arrived, and frees a source brick once every output brick reading it is
// done. The same interpolation as resample_linear (edges replicated), but each output brick's
// matrix has its offsets folded in, so values agree within float rounding of the sample positions:
// |difference| <= 2^-13 (x the largest step between neighbouring source voxels, <= 1 for probabilities).
class ResampleSink : public BrickSink {
 public:
  ResampleSink(const train::Patch& src, const train::Patch& dst, int ndim, int64_t brick, BrickSink& out);
  void begin(const train::Patch& grid, int channels, bool categorical) override;
  void put(const Box& box, const float* y) override;
  int64_t peak_bytes() const { return peak_bytes_; }  // the most source bytes held at once

 private:
  void emit(int64_t ob);
  train::Patch src_, dst_;
  int ndim_;
  BrickGrid sg_, dg_;
  BrickSink& out_;
  int64_t channels_ = 0, bytes_ = 0, peak_bytes_ = 0;
  std::vector<std::array<int64_t, 3>> tile_lo_, tile_hi_;  // per output brick: source voxels read, -1..n
  std::vector<std::vector<int64_t>> reads_, readers_;      // output brick -> source bricks, and back
  std::vector<int64_t> missing_, users_;                  // source bricks not yet arrived / output bricks to come
  std::vector<std::vector<float>> held_;                   // source bricks [C, box]
};

}  // namespace pw::apply
