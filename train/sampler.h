// The CropGenerator: loads training subjects, draws nested patch chains (random or tree), with
// balance and augmentation, and crops images and labels with the same patches.
//
// A drawn PatchSet holds P chains; chain i has one patch per level, level k's patch lying inside
// level k-1's output patch (snapper). Row i of every level tensor belongs to chain i, so the parent of row i at
// level k is row i at level k-1 (the nested crop's parent index is the row itself).
#pragma once
#include <Eigen/Dense>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "io/nifti.h"
#include "train/config.h"
#include "train/scheme.h"

namespace pw::train {

// One image with its labels, in memory, normalised (normalize_input, except patch_m0s1 which is
// applied per patch).
struct Subject {
  std::string name;
  Patch image;        // world affine and size (x, y, z)
  Tensor data;        // f32 [C, Z, Y, X] (2D: Z = 1)
  // Labels. Categorical: the class index 0..K per voxel [Z, Y, X], u8 when K <= 254 (255 = don't
  // care; a 256^3 map takes 17 MB instead of 67), else i32 (-1 = don't care): read it with label_class.
  // Else f32 [K, Z, Y, X] in [0, 1] (NaN = don't care). Undefined for an unlabeled subject (inference).
  Tensor labels;
  static constexpr uint8_t kDontCareU8 = 255;
  bool categorical_labels() const { return labels.defined() && labels.dtype() != DType::f32; }
  // Categorical: the class of voxel v (-1 = don't care).
  int32_t label_class(int64_t v) const {
    if (labels.dtype() == DType::i32) return labels.i32()[v];
    const uint8_t c = labels.u8()[v];
    return c == kDontCareU8 ? -1 : c;
  }
  std::vector<double> label_volume;  // per label k = 1..K: voxel count (for autoweight)

  // Per-level smoothed copies (smoothfac_data / smoothfac_label), built on first use.
  std::vector<Tensor> data_level, label_level;
  std::shared_ptr<std::mutex> cache_mutex = std::make_shared<std::mutex>();
};

// The balance rule P(v) ∝ L(v) + b over a map of label masses L (b from the ratio r: the labelled
// voxels get the share r, uniform when there are none or they already have it), stored sparsely: the
// voxels with mass (32-bit indices) and their cumulative mass, plus the uniform part n b, sized exactly.
// A 256^3 map with 7 % labelled voxels takes 14 MB instead of a dense 134 MB table.
struct BalanceDraw {
  BalanceDraw() = default;
  BalanceDraw(const std::vector<float>& mass, double r);
  int64_t draw(std::mt19937_64& rng) const;  // one voxel index, one uniform number drawn
  bool empty() const { return n == 0; }

  std::vector<uint32_t> index;  // voxels with L > 0 (none when uniform)
  std::vector<double> cum;     // cumulative L over `index`
  int64_t n = 0;               // voxels in the map
  double uniform = 0;          // the uniform part's total mass, n b (n when uniform)
};

// Normalises `data` ([C, ...] f32, per channel) in place: max, mean, m0s1 over the whole image,
// patch_m0s1 over each patch (use normalize_patches for that); none does nothing.
void normalize_image(Tensor& data, Normalize mode);
// patch_m0s1: every (patch, channel) of `patches` [P, C, ...] to mean 0, std 1 (other modes: no-op).
void normalize_patches(Tensor& patches, Normalize mode);

// Builds a subject from raw arrays. `channels` = image data [C, Z, Y, X]; `raw_labels` = the
// label volume as read ([L, Z, Y, X], L = 1 for a 3-D label file), mapped by the scheme
// (categorical_label / categorical / dontcare). Throws pw::InputError naming `name` on mismatch.
Subject make_subject(const std::string& name, const Patch& image, Tensor channels, const Tensor& raw_labels,
                     const Scheme& scheme, bool dontcare);
// Reads a case's NIfTI files (several contrasts as channels, or one 4-D file) and its label.
Subject load_subject(const DataPair& pair, const Scheme& scheme, bool dontcare);
// Reads only the image(s) of a case (for inference), normalised: data [C, Z, Y, X] and geometry. With
// scheme.crop_fdim only the listed channels (indices over all files' channels, in that order).
void load_image_channels(const std::vector<std::filesystem::path>& files, const Scheme& scheme, Patch& image,
                         Tensor& data);
// The same from volumes in memory: `volume(i)` gives volume i of names.size() (one at a time, so that only one
// is held), names[i] names it in messages (the Python package passes arrays this way).
void image_channels(const std::vector<std::string>& names, const std::function<Volume(size_t)>& volume,
                    const Scheme& scheme, Patch& image, Tensor& data);

// The draws of one augmentation: L = R1 * Sigma * R2 (in the patch frame); 2D acts on x, y only.
struct AugmentDraw {
  Eigen::Matrix3d R1 = Eigen::Matrix3d::Identity(), R2 = Eigen::Matrix3d::Identity();
  Eigen::Vector3d sigma = Eigen::Vector3d::Ones();  // scalings, negative = flipped
  Eigen::Matrix3d L() const { return R1 * sigma.asDiagonal() * R2; }
};
// Rotations: 2D a normal angle of width dphi/2 for each of R1, R2; 3D a unit quaternion
// (1, N(0, dphi_x/2), N(0, dphi_y/2), N(0, dphi_z/2)) normalised, for each. Scalings exp(N(0, dscale_a)),
// flips with probability 1/2 where flip_a = 1.
AugmentDraw draw_augmentation(const Augment& aug, int ndim, std::mt19937_64& rng);

// One level of a drawn set.
struct LevelPatches {
  std::vector<Patch> patches;  // input patches of this level (may be empty for chains restored from a checkpoint)
  Tensor input;                // f32 [P, C, (Z), Y, X] image crops I_k
  Tensor parent_mats;          // f32 [P, (d+1)^2]: voxel of this level's input patch -> voxel of the parent's
                               // OUTPUT patch (kernel axis order); undefined at level 0
  Tensor target;               // categorical: i32 [P, (Z), Y, X]; else f32 [P, K, (Z), Y, X] (at the out patch)
};

struct PatchSet {
  std::vector<LevelPatches> levels;
  std::vector<int> subject;  // chain -> subject index
  std::vector<int> age;      // outer iterations a chain has been kept (hard mining)
  int64_t size() const { return static_cast<int64_t>(subject.size()); }
};

// Rows `idx` of every tensor of `s` (copies), or of two sets concatenated.
PatchSet take_rows(const PatchSet& s, const std::vector<int64_t>& idx);
PatchSet concat_sets(const PatchSet& a, const PatchSet& b);

struct SamplerOptions {
  Balance balance;
  Augment augment;
  bool independent_augmentation = false;
  bool tree = false;  // child centres on the parent's tiling grid (plus a jitter of one tile), else uniform
  bool dontcare = false;
};

class CropGenerator {
 public:
  CropGenerator(const Scheme& scheme, SamplerOptions opt);
  // Label weights for autoweight (inverse label volume over `subjects`, mean 1); called once.
  void set_autoweight(const std::vector<Subject*>& subjects);
  // Draws `per_subject` chains from every subject (deterministic for a given rng state).
  PatchSet sample(const std::vector<Subject*>& subjects, int per_subject, std::mt19937_64& rng);
  const std::vector<double>& label_weight() const { return label_weight_; }
  // Input channels: the image channels (x3 for smoothfac_data "mixture").
  int input_channels(int image_channels) const;

  // Crops `patches` (all from one subject) at `level` into out rows [row0, row0 + patches.size()).
  void crop_inputs(Subject& s, int level, const std::vector<Patch>& patches, Tensor& out, int64_t row0);
  void crop_targets(Subject& s, int level, const std::vector<Patch>& patches, Tensor& out, int64_t row0);
  // The smoothed (or plain) image for `level` (cached in the subject).
  const Tensor& level_data(Subject& s, int level);

 private:
  // A world-space centre for level 0 (balanced by the labels when balance is on).
  Eigen::Vector3d draw_root_centre(Subject& s, std::mt19937_64& rng);
  // A relative centre in [0,1]^3 of the parent for level `level` (balanced by the parent's target crop).
  Eigen::Vector3d draw_child_centre(const Tensor& parent_target, int64_t row, const Frame& frame, int level,
                                    std::mt19937_64& rng);
  // Index drawn with probability P(v) ∝ L(v) + b (the balance rule) over a map of label masses.
  int64_t draw_balanced(const std::vector<float>& mass, std::mt19937_64& rng) const;
  std::vector<float> label_mass(const Tensor& labels, int64_t row) const;  // per voxel max_k w_k L_k
  const Tensor& level_labels(Subject& s, int level);

  Scheme scheme_;
  SamplerOptions opt_;
  std::vector<double> label_weight_;  // per label k = 1..K
  std::map<const Subject*, BalanceDraw> root_draw_;  // balance: centre distribution per subject
};

}  // namespace pw::train
