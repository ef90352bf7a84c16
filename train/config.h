// The training configuration: one JSON file with the paper's option names (API lists A, B, C).
// Unknown keys are errors naming the key (with a "did you mean"). README "Config reference"
// documents every key; examples/hippocampus.json is a complete example.
//
// {
//   // CropGenerator (train/scheme.h): depth, ndim, scheme{...}, system, snapper, interp_type, scatter_type,
//   // smoothfac_data, smoothfac_label, normalize_input, categorical_label, categorical, num_labels
//   "network": {...} | [{...}, ..],   // the block of every level, or one per level (engine U-Net, train/model.h)
//   "intermediate_out": 0, "intermediate_loss": true, "block_out": null, "forward_type": "simple",
//   "identical_blocks": false, "final_block": null, "finalizeOnApply": false, "finalBlock_all_levels": false,
//   "lazyEval": {"fraction": 1, "attentionFun": "sigmoid", "reduceFun": "mean"},
//   "num_its": 100, "num_patches": 8, "epochs": 1, "batch_size": 8, "generate_type": "random",
//   "loss": "ce+dice",                // or one per level
//   "dontcare": false, "hard_mining": 0, "hard_mining_order": "loss", "hard_mining_maxage": 5,
//   "balance": {"ratio": 0.5, "label_weight": [..], "autoweight": false},
//   "augment": {"dphi": 0.1, "flip": [1,0,0], "dscale": [0.1,0.1,0.1]}, "independent_augmentation": false,
//   "optimizer": {"type": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "constant"},
//   "parallel": true, "validation_every": 10, "seed": 1, "threads": 0, "time_limit_s": 0,
//   "dataset": {"path": "DIR"} | {"pairs": [{"image": .., "label": ..}]}, "validation": [..names..]
// }
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/scheme.h"

namespace pw {
struct UNetConfig;  // engine/nn.h
}

namespace pw::train {

struct Balance {
  double ratio = 0;                  // 0 = off: centres uniform
  std::vector<double> label_weight;  // per label (K entries), empty = all 1
  bool autoweight = false;           // weights inversely proportional to each label's volume
  bool enabled() const { return ratio > 0; }
};

struct Augment {
  Eigen::Vector3d dphi = Eigen::Vector3d::Zero();    // rotation width (radians); 2D: dphi[0] only
  Eigen::Vector3d flip = Eigen::Vector3d::Zero();    // 1 = flip that axis with probability 1/2
  Eigen::Vector3d dscale = Eigen::Vector3d::Zero();  // relative scaling width per axis
  bool any() const { return dphi.any() || flip.any() || dscale.any(); }
  nlohmann::json to_json(int ndim) const;
  static Augment from_json(const nlohmann::json& j, int ndim);
};

// lazyEval (paper list D): the application's lazy evaluation, stored in the model as `apply`'s defaults
// (apply's --lazy-fraction, --attention-fun, --attention override them).
struct LazyEval {
  double fraction = 1;             // keep this top fraction of the patches after each level
  std::string attention_fun;       // attentionFun: sigmoid | softmax | identity; "" = softmax when categorical, else sigmoid
  std::string reduce_fun = "mean"; // reduceFun: mean | max
  nlohmann::json to_json() const;
  static LazyEval from_json(const nlohmann::json& j);  // throws pw::InputError naming the key
};

// candidate: the candidate-sampling cross entropy of a candidate_sampling model (train/trainer.h).
enum class LossKind { bce, ce, dice, bce_dice, ce_dice, candidate };
LossKind parse_loss(const std::string& s);  // "bce", "ce", "dice", "bce+dice", "ce+dice", "candidate"
const char* loss_name(LossKind k);

enum class HardOrder { loss, f1, balance };
enum class ForwardType { simple, mult, bridge };
ForwardType parse_forward_type(const std::string& s, const std::string& key);  // "simple" | "mult" | "bridge"
const char* forward_type_name(ForwardType t);

struct DataPair {
  std::vector<std::filesystem::path> images;  // one file per contrast (or one 4-D file)
  std::filesystem::path label;
  std::string name;  // case name (file stem without .nii.gz)
};

struct DatasetSpec {
  std::filesystem::path root;  // MSD folder, or "" for an explicit list
  std::vector<DataPair> pairs; // explicit list (resolved relative to the config file)
  std::vector<std::string> validation;  // case names held out for validation (fixed split)
  std::vector<std::string> train;       // if set: only these cases train (else all others)
  int max_cases = 0;                    // 0 = all (after the split)
};

struct TrainConfig {
  Scheme scheme;
  nlohmann::json network = nlohmann::json::object();  // block description, or a list of one per level
  int intermediate_out = 0;
  bool intermediate_loss = true;
  std::vector<int> block_out;  // per level, empty = intermediate_out + label channels (last: label channels)
  ForwardType forward_type = ForwardType::simple;
  bool identical_blocks = false;
  // final_block: {"features": F, "convs": N} = N conv(3)-norm-act layers of F channels and a 1x1
  // conv back to the last level's channels, applied after the last level's block; null = none.
  nlohmann::json final_block;
  bool finalize_on_apply = false;      // finalizeOnApply: the final block only at application (not in training)
  bool final_block_all_levels = false; // finalBlock_all_levels: the final block after every level
  LazyEval lazy_eval;                  // lazyEval: apply's defaults
  std::vector<std::array<int, 3>> label_colors;  // per label R, G, B (0..255) for apply's label table

  int num_its = 100;
  int num_patches = 8;  // per image per outer iteration
  int epochs = 1;
  int batch_size = 8;
  bool tree = false;  // generate_type "tree": children tile their parent
  std::vector<LossKind> loss;  // per level (one entry repeated)
  bool dontcare = false;
  double hard_mining = 0;
  HardOrder hard_mining_order = HardOrder::loss;
  int hard_mining_maxage = 5;
  Balance balance;
  Augment augment;
  bool independent_augmentation = false;

  std::string optimizer = "adam";  // adam | adamw | sgd
  double lr = 1e-3;
  double weight_decay = 0;
  double momentum = 0.9;           // sgd
  std::string schedule = "constant";  // constant | poly | step (over outer iterations)
  bool schedule_over_time = false;    // optimizer.schedule_over "time": poly runs over time_limit_s instead
  double gamma = 0.1;
  int step_size = 100;

  bool parallel = true;
  int validation_every = 0;  // 0 = only at the end (when a validation set exists)
  uint64_t seed = 1;
  int threads = 0;
  double time_limit_s = 0;   // 0 = none: stop the outer loop after this wall time (then validate, save)
  DatasetSpec dataset;

  nlohmann::json raw;  // the config as given (stored in the model file)

  // Parses and checks a whole config; relative dataset paths are resolved against `base_dir`.
  static TrainConfig from_json(const nlohmann::json& j, const std::filesystem::path& base_dir = {});
  static TrainConfig load(const std::filesystem::path& file);
  // load's checks on a config already parsed (from_json, then the network's sizes), messages "<name>: ...".
  static TrainConfig from_json_checked(const nlohmann::json& j, const std::filesystem::path& base_dir,
                                       const std::string& name);
  // Per-level output channels of the blocks.
  int out_channels(int level) const;
};

// label_colors: a list of [R, G, B] (0..255) per label; throws pw::InputError naming `key`.
std::vector<std::array<int, 3>> parse_label_colors(const nlohmann::json& j, const std::string& key);

// The block description of `level`: `network` itself, or its entry `level` when it is a list (one per level).
const nlohmann::json& level_network(const nlohmann::json& network, int level);

// Level `level`'s patch sizes against its U-Net `u` (`where` names its description in messages): padded convs
// need multiples of 2^(levels-1); valid convs need sizes that pass and shrink patch_size to exactly
// out_patch_size. Throws pw::InputError naming scheme.patch_size or scheme.out_patch_size.
void check_block_sizes(const Scheme& scheme, int level, const UNetConfig& u, const std::string& where);

// The cases of a dataset: MSD layout (dataset.json "training" list, else imagesTr/*.nii.gz with
// labelsTr/ of the same name) or the explicit list. Throws pw::InputError for missing files.
std::vector<DataPair> list_cases(const DatasetSpec& spec);
// Splits `cases` by spec.validation / spec.train; every validation name must exist.
void split_cases(const DatasetSpec& spec, const std::vector<DataPair>& cases, std::vector<DataPair>& train,
                 std::vector<DataPair>& validation);

}  // namespace pw::train
