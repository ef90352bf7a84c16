// The multi-level patchwork model (paper: "Patchwork architecture", API list B):
//   I_n = crop of the image (train/sampler), C_n = crop of X_{n-1} with the nested gather
//   (engine/ops_patch.h, with gradient), X_n = B_n([I_n, C_n]) (its central out_patch_size voxels).
// One block per level built from the engine's U-Net (one description for all levels or one per level;
// a single shared block with identical_blocks). forward_type "simple": the block sees [I, C]; "mult":
// [I, I*C, C] where I*C holds every product of an image channel with a crop channel (image-channel
// major); "bridge": as simple, and C's first channels are added to the block's output (level > 0: a
// residual path from level to level). With identical_blocks level 0 gets C = 0 so that every level has
// the same input channels.
// The final block F (final_block) maps the last level's output X to F(X), what the loss sees and what
// apply stitches; with finalBlock_all_levels F acts on the first out_channels.back() channels of every
// level. The next level always crops X, not F(X). finalizeOnApply: F only at application, the training
// losses see X.
// The first scheme.label_channels() output channels of every level are the label logits; the rest
// (intermediate_out) only feed the next level.
#pragma once
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/finite.h"
#include "train/config.h"
#include "train/scheme.h"

namespace pw {
class Module;
}

namespace pw::train {

// C_level: the crop of each parent output X [P, C, s_parent] (row i's parent is row i) through
// parent_mats [P, (d+1)^2] (voxel of level `level`'s patch -> voxel of the parent's output patch,
// kernel axis order), with the scheme's interp_type; differentiable with respect to X.
Var crop_parent_outputs(const Var& X, const Tensor& parent_mats, const Scheme& scheme, int level);

// Everything `patchwork apply` needs besides the weights; stored as JSON in the model file.
struct ModelSpec {
  Scheme scheme;
  int image_channels = 1;              // contrasts in the image files
  int in_channels = 1;                 // cropped input channels (x3 for smoothfac_data "mixture")
  nlohmann::json network = nlohmann::json::object();  // the block description (engine U-Net), or one per level
  std::vector<int> out_channels;       // per level
  ForwardType forward_type = ForwardType::simple;
  bool identical_blocks = false;
  bool intermediate_loss = true;
  nlohmann::json final_block;          // null, or {"features": F, "convs": N} (TrainConfig::final_block)
  bool finalize_on_apply = false;      // finalizeOnApply
  bool final_block_all_levels = false; // finalBlock_all_levels
  LazyEval lazy_eval;                  // apply's lazy evaluation defaults (TrainConfig::lazy_eval)
  std::vector<double> thresholds;      // per label, chosen on the validation set (empty = 0.5)
  std::vector<std::string> label_names;  // per label (from dataset.json), may be empty
  std::vector<std::array<int, 3>> label_colors;  // per label R, G, B (label_colors), may be empty
  Augment augment;                     // the training augmentation (test-time augmentation)
  bool independent_augmentation = false;
  nlohmann::json training = nlohmann::json::object();  // summary: iterations, time, validation Dice

  int block_in_channels(int level) const;
  bool has_final(int level) const;     // whether the final block follows `level`
  nlohmann::json to_json() const;
  static ModelSpec from_json(const nlohmann::json& j);  // throws pw::InputError naming the key
  static ModelSpec from_config(const TrainConfig& cfg, int image_channels);
};

class Model {
 public:
  // Builds the blocks with weights initialised from `seed`.
  Model(ModelSpec spec, uint64_t seed, Device device = Device::cpu);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  const ModelSpec& spec() const { return spec_; }
  ModelSpec& spec() { return spec_; }
  Device device() const { return device_; }

  // X_level = B_level(input(I, C)) (+ C's first channels for "bridge"), cut to its central out_patch_size
  // voxels (scheme.h: the output patch) when that is smaller. image_patches [B, in_channels, s];
  // parent_crop [B, out_channels(level-1), s] (undefined at level 0). Records the graph when grad mode is on.
  Var forward_level(int level, const Var& image_patches, const Var& parent_crop);
  // The same without a graph, on plain tensors (inference: apply's LevelNetwork::forward).
  Tensor forward(int level, const Tensor& image_patches, const Tensor& parent_crop);
  // F(X_level) where the final block follows `level` (has_final), else X_level itself.
  Var finalize_level(int level, const Var& X);
  Tensor finalize(int level, const Tensor& X);  // without a graph (apply's LevelNetwork::finalize)

  // A chain of levels for a batch: inputs[k] = I_k, parent_mats[k] (k >= 1) = voxel of level k's
  // patch -> voxel of level k-1's output patch (row i's parent is row i). Returns what the losses see:
  // X_k, or F(X_k) where the final block follows level k (not in training with finalizeOnApply).
  std::vector<Var> forward_chain(const std::vector<Var>& inputs, const std::vector<Tensor>& parent_mats);

  // The class embedding of a candidate_sampling model (scheme.candidate_sampling): weight [K+1, m] (row c =
  // class c's direction e_c) and bias [K+1], trained with the blocks and saved as "classes.weight" and
  // "classes.bias"; null Vars for other models (whose files are unchanged).
  Var class_embedding() const;
  Var class_bias() const;

  std::vector<Var> parameters() const;  // every trainable parameter (shared blocks once)
  // The same with their names in the model file ("level0.enc0.conv1.weight"), in the same order.
  std::vector<std::pair<std::string, Var>> named_parameters() const;
  // The name of the first parameter or buffer holding a NaN or an infinity, "" when every one is
  // finite (one FiniteCheck over all of them; the per-tensor search only after it fails).
  std::string non_finite_weight() const;
  std::map<std::string, Tensor> state() const;  // parameters and buffers by name (CPU copies)
  void load_state(const std::map<std::string, Tensor>& tensors);  // throws pw::InputError on a mismatch
  void set_training(bool training);

  // The model file (safetensors; __metadata__["patchwork"] = spec JSON). `extra` tensors (optimizer
  // state of a checkpoint) are stored beside the weights under "opt." names; written atomically.
  // Refuses (pw::InputError naming the tensor, the file untouched) weights holding NaN or infinity.
  void save(const std::filesystem::path& file, const std::map<std::string, Tensor>& extra = {},
            const std::map<std::string, std::string>& extra_meta = {}) const;
  // Loads a model file; `extra`/`extra_meta` (optional) receive the non-weight content. A weight
  // holding NaN or infinity is refused (pw::InputError naming the file and the tensor).
  static Model load(const std::filesystem::path& file, Device device = Device::cpu,
                    std::map<std::string, Tensor>* extra = nullptr,
                    std::map<std::string, std::string>* extra_meta = nullptr);

 private:
  Var block_input(int level, const Var& I, const Var& C) const;
  ModelSpec spec_;
  Device device_ = Device::cpu;
  std::vector<std::shared_ptr<Module>> blocks_;  // one per level (the same object with identical_blocks)
  std::shared_ptr<Module> final_;                // the final block (after the last level), or null
  std::shared_ptr<Module> classes_;              // the class embedding (candidate_sampling), or null
  bool training_ = true;                         // set_training
};

}  // namespace pw::train
