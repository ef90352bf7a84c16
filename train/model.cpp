#include "train/model.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/ops_patch.h"
#include "engine/safetensors.h"
#include "io/error.h"
#include "train/json_check.h"

namespace pw::train {

using nlohmann::json;

// ---- spec ---------------------------------------------------------------------------------------

int ModelSpec::block_in_channels(int level) const {
  int crop = level > 0 ? out_channels.at(level - 1) : (identical_blocks ? out_channels.back() : 0);
  if (forward_type == ForwardType::mult && crop > 0) return in_channels + in_channels * crop + crop;
  return in_channels + crop;
}

bool ModelSpec::has_final(int level) const {
  return !final_block.is_null() && (level == scheme.depth - 1 || final_block_all_levels);
}

json ModelSpec::to_json() const {
  json j;
  j["format"] = "patchwork-model-1";
  j["crop_generator"] = scheme.to_json();
  j["image_channels"] = image_channels;
  j["in_channels"] = in_channels;
  j["network"] = network;
  j["out_channels"] = out_channels;
  j["forward_type"] = forward_type_name(forward_type);
  j["identical_blocks"] = identical_blocks;
  j["intermediate_loss"] = intermediate_loss;
  j["final_block"] = final_block;
  j["finalizeOnApply"] = finalize_on_apply;
  j["finalBlock_all_levels"] = final_block_all_levels;
  j["lazyEval"] = lazy_eval.to_json();
  j["thresholds"] = thresholds;
  j["label_names"] = label_names;
  if (!label_colors.empty()) j["label_colors"] = label_colors;
  j["augment"] = augment.to_json(scheme.ndim);
  j["independent_augmentation"] = independent_augmentation;
  j["training"] = training;
  return j;
}

// Every level's block outputs at least the label channels (its first channels are the labels' scores).
static void check_label_channels(const std::vector<int>& out_channels, int label_channels, const char* key) {
  for (size_t k = 0; k < out_channels.size(); ++k)
    if (out_channels[k] < label_channels)
      throw InputError(std::string(key) + ": level " + std::to_string(k) + " has " + std::to_string(out_channels[k]) +
                       " channels, fewer than the labels need (" + std::to_string(label_channels) + ")");
}

ModelSpec ModelSpec::from_json(const json& j) {
  check_keys(j, {"format", "crop_generator", "image_channels", "in_channels", "network", "out_channels",
                 "forward_type", "identical_blocks", "intermediate_loss", "final_block", "finalizeOnApply",
                 "finalBlock_all_levels", "lazyEval", "thresholds", "label_names", "label_colors", "augment",
                 "independent_augmentation", "training"},
             "model description");
  ModelSpec s;
  try {
    if (j.value("format", "") != "patchwork-model-1") throw InputError("format: not a patchwork model (format)");
    s.scheme = Scheme::from_json(j.at("crop_generator"));
    s.image_channels = json_int(j.at("image_channels"), "image_channels");
    s.in_channels = json_int(j.at("in_channels"), "in_channels");
    s.network = j.at("network");
    s.out_channels = json_ints(j.at("out_channels"), "out_channels");
    if (static_cast<int>(s.out_channels.size()) != s.scheme.depth) throw InputError("out_channels: one per level");
    s.forward_type = parse_forward_type(json_string(j.at("forward_type"), "forward_type"), "forward_type");
    s.identical_blocks = json_bool(j.at("identical_blocks"), "identical_blocks");
    s.intermediate_loss = json_bool(j.at("intermediate_loss"), "intermediate_loss");
    if (j.contains("final_block") && !j["final_block"].is_null()) {  // as TrainConfig writes it: Model() reads it
      const json& f = j["final_block"];
      check_keys(f, {"features", "convs"}, "final_block");
      for (const char* k : {"features", "convs"})
        if (f.contains(k) && (!f[k].is_number_integer() || f[k].get<int64_t>() < (k[0] == 'f' ? 1 : 0) ||
                              f[k].get<int64_t>() > std::numeric_limits<int>::max()))
          throw InputError(std::string("final_block.") + k + ": expected a count, got " + f[k].dump());
      s.final_block = f;
    }
    if (j.contains("finalizeOnApply")) s.finalize_on_apply = json_bool(j["finalizeOnApply"], "finalizeOnApply");
    if (j.contains("finalBlock_all_levels"))
      s.final_block_all_levels = json_bool(j["finalBlock_all_levels"], "finalBlock_all_levels");
    if (j.contains("lazyEval")) s.lazy_eval = LazyEval::from_json(j["lazyEval"]);
    if (s.network.is_array()) {
      if (static_cast<int>(s.network.size()) != s.scheme.depth) throw InputError("network: one block description per level");
      for (const auto& n : s.network)
        if (!n.is_object()) throw InputError("network: each level's block description is an object");
    }
    // Channel counts: >= 1, and every level's block input (block_in_channels) within an int.
    if (s.image_channels < 1 || s.in_channels < 1) throw InputError("image_channels, in_channels: must be >= 1");
    for (int oc : s.out_channels)
      if (oc < 1) throw InputError("out_channels: must be >= 1");
    for (int oc : s.out_channels)
      if (int64_t{s.in_channels} * (int64_t{oc} + 1) + oc > std::numeric_limits<int>::max())
        throw InputError("in_channels, out_channels: too many channels");
    check_label_channels(s.out_channels, s.scheme.label_channels(), "out_channels");
    for (const auto& t : j.at("thresholds")) s.thresholds.push_back(json_number(t, "thresholds"));
    if (!s.thresholds.empty() && static_cast<int>(s.thresholds.size()) != s.scheme.num_labels)
      throw InputError("thresholds: " + std::to_string(s.thresholds.size()) + " values for " +
                       std::to_string(s.scheme.num_labels) + " labels (one per label, or none)");
    for (double t : s.thresholds)
      if (!(t >= 0 && t <= 1)) throw InputError("thresholds: " + std::to_string(t) + " is not a probability in [0, 1]");
    for (const auto& n : j.at("label_names")) s.label_names.push_back(json_string(n, "label_names"));
    if (j.contains("label_colors")) s.label_colors = parse_label_colors(j["label_colors"], "label_colors");
    s.augment = Augment::from_json(j.at("augment"), s.scheme.ndim);
    s.independent_augmentation = json_bool(j.at("independent_augmentation"), "independent_augmentation");
    if (j.contains("training")) s.training = j["training"];
  } catch (const json::exception& e) {
    throw InputError(std::string("model description: ") + e.what());
  }
  return s;
}

ModelSpec ModelSpec::from_config(const TrainConfig& cfg, int image_channels) {
  ModelSpec s;
  s.scheme = cfg.scheme;
  s.image_channels = image_channels;
  s.in_channels = image_channels;
  s.network = cfg.network;
  for (int k = 0; k < cfg.scheme.depth; ++k) {
    int oc = cfg.out_channels(k);
    if (cfg.identical_blocks && cfg.block_out.empty()) oc = cfg.scheme.label_channels() + cfg.intermediate_out;
    s.out_channels.push_back(oc);
  }
  check_label_channels(s.out_channels, cfg.scheme.label_channels(), "block_out");
  if (cfg.identical_blocks)
    for (int oc : s.out_channels)
      if (oc != s.out_channels[0]) throw InputError("identical_blocks: every level needs the same block_out");
  s.forward_type = cfg.forward_type;
  s.identical_blocks = cfg.identical_blocks;
  s.intermediate_loss = cfg.intermediate_loss;
  s.final_block = cfg.final_block;
  s.finalize_on_apply = cfg.finalize_on_apply;
  s.final_block_all_levels = cfg.final_block_all_levels;
  s.lazy_eval = cfg.lazy_eval;
  s.label_colors = cfg.label_colors;
  s.augment = cfg.augment;
  s.independent_augmentation = cfg.independent_augmentation;
  return s;
}

Var crop_parent_outputs(const Var& X, const Tensor& parent_mats, const Scheme& scheme, int level) {
  const int64_t P = X->value.dim(0);
  const int d = scheme.ndim;
  if (parent_mats.dim(0) != P) throw std::invalid_argument("crop_parent_outputs: one matrix per parent row");
  Tensor index = Tensor::empty({P}, DType::i32);
  for (int64_t i = 0; i < P; ++i) index.i32()[i] = static_cast<int32_t>(i);
  const Size3& s = scheme.patch_size[level];
  std::vector<int64_t> size = d == 2 ? std::vector<int64_t>{s[1], s[0]} : std::vector<int64_t>{s[2], s[1], s[0]};
  return gather_patches_nested(X, index.to(X->value.device()), parent_mats.reshape({P, d + 1, d + 1}), size,
                               scheme.interp_type);
}

// The level's output patch (scheme.h: out_patch) from a block output or parent crop T [P, C, spatial]: its
// central out_patch_size voxels (T itself when it has that size already).
static Var to_out_patch(const Var& T, const Scheme& scheme, int level) {
  const Size3& so = scheme.out_patch_size[level];
  const std::vector<int64_t> size =
      scheme.ndim == 2 ? std::vector<int64_t>{so[1], so[0]} : std::vector<int64_t>{so[2], so[1], so[0]};
  const Shape& sh = T->value.shape();
  if (std::equal(size.begin(), size.end(), sh.begin() + 2)) return T;
  return crop_centre(T, size);
}

// The final block: N conv(3)-norm-act layers of F channels, then a 1x1 conv back to `channels`.
class FinalBlock : public Module {
 public:
  FinalBlock(int dims, int64_t channels, int64_t features, int convs, const UNetConfig& style, uint64_t seed)
      : rng_(seed) {
    int64_t cin = channels;
    for (int i = 0; i < convs; ++i) {
      layers_.push_back(std::make_unique<ConvNormAct>(dims, cin, features, style.norm, style.activation,
                                                      style.leaky_slope, rng_));
      add_child("layer" + std::to_string(i), *layers_.back());
      cin = features;
    }
    head_ = std::make_unique<Conv>(dims, cin, channels, 1, 1, 0, true, 1.f, rng_);
    add_child("head", *head_);
  }
  Var forward(const Var& x) {
    Var y = x;
    for (auto& l : layers_) y = l->forward(y);
    return head_->forward(y);
  }

 private:
  InitRng rng_;
  std::vector<std::unique_ptr<ConvNormAct>> layers_;
  std::unique_ptr<Conv> head_;
};

// The class embedding of a candidate_sampling model: "weight" [K+1, m] (row c = e_c, N(0, 1/m), so
// that a response <f, e_c> of unit-scale features starts near unit scale) and "bias" [K+1] (0).
class ClassEmbedding : public Module {
 public:
  ClassEmbedding(int64_t classes, int64_t dim, uint64_t seed) {
    InitRng rng(seed);
    Tensor w = Tensor::empty({classes, dim});
    he_normal(w, dim, 1.f, rng);
    weight = add_parameter("weight", w);
    bias = add_parameter("bias", Tensor::zeros({classes}));
  }
  Var weight, bias;
};

// ---- model --------------------------------------------------------------------------------------

static UNetConfig block_config(const ModelSpec& s, int level) {
  json net = level_network(s.network, level);
  if (net.is_null()) net = json::object();
  for (const char* k : {"dims", "in_channels", "out_channels"})
    if (net.contains(k)) throw InputError(std::string("network: '") + k + "' is set by the scheme, leave it out");
  UNetConfig c = UNetConfig::from_json(net);
  c.dims = s.scheme.ndim;
  c.in_channels = s.block_in_channels(level);
  c.out_channels = s.out_channels.at(level);
  c.validate();
  check_block_sizes(s.scheme, level, c, s.network.is_array() ? "network[" + std::to_string(level) + "]" : "network");
  return c;
}

Model::Model(ModelSpec spec, uint64_t seed, Device device) : spec_(std::move(spec)), device_(device) {
  const int depth = spec_.scheme.depth;
  for (int k = 0; k < depth; ++k) {
    if (spec_.identical_blocks && k > 0) {
      blocks_.push_back(blocks_[0]);
      continue;
    }
    auto net = std::make_shared<UNet>(block_config(spec_, k), seed + 7919ULL * static_cast<uint64_t>(k));
    net->to(device_);
    blocks_.push_back(net);
  }
  if (!spec_.final_block.is_null()) {
    const json& f = spec_.final_block;
    for (int k = 0; k < depth; ++k)
      if (spec_.has_final(k) && spec_.out_channels[k] < spec_.out_channels.back())
        throw InputError("finalBlock_all_levels: level " + std::to_string(k) + " has " +
                         std::to_string(spec_.out_channels[k]) + " output channels, the final block needs " +
                         std::to_string(spec_.out_channels.back()));
    auto fb = std::make_shared<FinalBlock>(spec_.scheme.ndim, spec_.out_channels.back(), f.value("features", 16),
                                           f.value("convs", 1), block_config(spec_, depth - 1), seed + 104729ULL);
    fb->to(device_);
    final_ = fb;
  }
  const Scheme& sc = spec_.scheme;
  if (sc.candidate_sampling.enabled()) {
    auto ce = std::make_shared<ClassEmbedding>(sc.num_labels + 1, sc.candidate_sampling.dim, seed + 15485863ULL);
    ce->to(device_);
    classes_ = ce;
  }
}

Var Model::class_embedding() const { return classes_ ? static_cast<ClassEmbedding&>(*classes_).weight : Var(); }
Var Model::class_bias() const { return classes_ ? static_cast<ClassEmbedding&>(*classes_).bias : Var(); }

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Var Model::block_input(int level, const Var& I, const Var& C_in) const {
  Var C = C_in;
  if (!C && spec_.identical_blocks) {
    Shape sh = I->value.shape();
    sh[1] = spec_.out_channels.back();
    C = constant(Tensor::zeros(sh, DType::f32, I->value.device()));
  }
  if (!C) return I;
  if (spec_.forward_type != ForwardType::mult) return concat({I, C});  // simple, bridge
  // mult: [I, I_c * C_j for every (c, j), C]
  std::vector<Var> parts{I};
  const int64_t ci = I->value.dim(1), cc = C->value.dim(1);
  for (int64_t c = 0; c < ci; ++c) {
    Var Ic = ci == 1 ? I : slice(I, c, c + 1);
    for (int64_t j = 0; j < cc; ++j) parts.push_back(mul(Ic, slice(C, j, j + 1)));
  }
  parts.push_back(C);
  return concat(parts);
}

Var Model::forward_level(int level, const Var& image_patches, const Var& parent_crop) {
  if (level < 0 || level >= spec_.scheme.depth) throw std::invalid_argument("Model::forward_level: bad level");
  if (image_patches->value.dim(1) != spec_.in_channels)
    throw std::invalid_argument("Model::forward_level: expected " + std::to_string(spec_.in_channels) +
                                " input channels, got " + shape_str(image_patches->value.shape()));
  Var X = static_cast<UNet&>(*blocks_[level]).forward(block_input(level, image_patches, parent_crop));
  X = to_out_patch(X, spec_.scheme, level);
  if (spec_.forward_type == ForwardType::bridge && parent_crop) {  // X[:m] += C[:m] (C on the output patch)
    const Var C = to_out_patch(parent_crop, spec_.scheme, level);
    const int64_t out = X->value.dim(1), cc = C->value.dim(1), m = std::min(out, cc);
    Var sum = add(m == out ? X : slice(X, 0, m), m == cc ? C : slice(C, 0, m));
    X = m == out ? sum : concat({sum, slice(X, m, out)});
  }
  return X;
}

Var Model::finalize_level(int level, const Var& X) {
  if (!final_ || !spec_.has_final(level)) return X;
  auto& F = static_cast<FinalBlock&>(*final_);
  const int64_t c = spec_.out_channels.back(), out = X->value.dim(1);
  if (out == c) return F.forward(X);
  return concat({F.forward(slice(X, 0, c)), slice(X, c, out)});  // finalBlock_all_levels, a wider level
}

Tensor Model::finalize(int level, const Tensor& X) {
  if (!final_ || !spec_.has_final(level)) return X;
  NoGradGuard ng;
  return finalize_level(level, constant(X.to(device_)))->value;
}

Tensor Model::forward(int level, const Tensor& image_patches, const Tensor& parent_crop) {
  NoGradGuard ng;
  Var I = constant(image_patches.to(device_));
  Var C = parent_crop.defined() ? constant(parent_crop.to(device_)) : Var();
  return forward_level(level, I, C)->value;
}

std::vector<Var> Model::forward_chain(const std::vector<Var>& inputs, const std::vector<Tensor>& parent_mats) {
  const int depth = spec_.scheme.depth;
  if (static_cast<int>(inputs.size()) != depth) throw std::invalid_argument("Model::forward_chain: one input per level");
  std::vector<Var> X;
  for (int k = 0; k < depth; ++k) {
    Var C;
    if (k > 0) {
      C = crop_parent_outputs(X[k - 1], parent_mats[k], spec_.scheme, k);
    }
    X.push_back(forward_level(k, inputs[k], C));
  }
  if (training_ && spec_.finalize_on_apply) return X;
  std::vector<Var> out;
  for (int k = 0; k < depth; ++k) out.push_back(finalize_level(k, X[k]));
  return out;
}

std::vector<Var> Model::parameters() const {
  std::vector<Var> out;
  for (size_t k = 0; k < blocks_.size(); ++k) {
    if (spec_.identical_blocks && k > 0) break;
    auto p = blocks_[k]->parameters();
    out.insert(out.end(), p.begin(), p.end());
  }
  if (final_) {
    auto p = final_->parameters();
    out.insert(out.end(), p.begin(), p.end());
  }
  if (classes_) {
    auto p = classes_->parameters();
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

std::vector<std::pair<std::string, Var>> Model::named_parameters() const {
  std::vector<std::pair<std::string, Var>> out;
  for (size_t k = 0; k < blocks_.size(); ++k) {
    if (spec_.identical_blocks && k > 0) break;
    for (auto& kv : blocks_[k]->named_parameters())
      out.emplace_back("level" + std::to_string(k) + "." + kv.first, kv.second);
  }
  if (final_)
    for (auto& kv : final_->named_parameters()) out.emplace_back("final." + kv.first, kv.second);
  if (classes_)
    for (auto& kv : classes_->named_parameters()) out.emplace_back("classes." + kv.first, kv.second);
  return out;
}

std::string Model::non_finite_weight() const {
  std::vector<std::pair<std::string, Tensor>> all;  // on the model's device
  for (size_t k = 0; k < blocks_.size(); ++k) {
    if (spec_.identical_blocks && k > 0) break;
    for (auto& kv : blocks_[k]->state_dict()) all.emplace_back("level" + std::to_string(k) + "." + kv.first, kv.second);
  }
  if (final_)
    for (auto& kv : final_->state_dict()) all.emplace_back("final." + kv.first, kv.second);
  if (classes_)
    for (auto& kv : classes_->state_dict()) all.emplace_back("classes." + kv.first, kv.second);
  FiniteCheck every;
  for (const auto& kv : all) every.add(kv.second);
  if (every.ok()) return "";
  for (const auto& kv : all)
    if (!all_finite(kv.second)) return kv.first;
  return "?";
}

std::map<std::string, Tensor> Model::state() const {
  std::map<std::string, Tensor> out;
  for (size_t k = 0; k < blocks_.size(); ++k) {
    if (spec_.identical_blocks && k > 0) break;
    for (auto& kv : blocks_[k]->state_dict()) out["level" + std::to_string(k) + "." + kv.first] = kv.second.cpu();
  }
  if (final_)
    for (auto& kv : final_->state_dict()) out["final." + kv.first] = kv.second.cpu();
  if (classes_)
    for (auto& kv : classes_->state_dict()) out["classes." + kv.first] = kv.second.cpu();
  return out;
}

void Model::load_state(const std::map<std::string, Tensor>& tensors) {
  for (size_t k = 0; k < blocks_.size(); ++k) {
    if (spec_.identical_blocks && k > 0) break;
    std::string prefix = "level" + std::to_string(k) + ".";
    std::map<std::string, Tensor> sub;
    for (const auto& kv : tensors)
      if (kv.first.compare(0, prefix.size(), prefix) == 0) sub[kv.first.substr(prefix.size())] = kv.second.to(device_);
    blocks_[k]->load_state_dict(sub, "model level " + std::to_string(k));
  }
  if (final_) {
    std::map<std::string, Tensor> sub;
    for (const auto& kv : tensors)
      if (kv.first.compare(0, 6, "final.") == 0) sub[kv.first.substr(6)] = kv.second.to(device_);
    final_->load_state_dict(sub, "model final block");
  }
  if (classes_) {
    std::map<std::string, Tensor> sub;
    for (const auto& kv : tensors)
      if (kv.first.compare(0, 8, "classes.") == 0) sub[kv.first.substr(8)] = kv.second.to(device_);
    classes_->load_state_dict(sub, "model class embedding");
  }
}

void Model::set_training(bool training) {
  training_ = training;
  for (auto& b : blocks_) b->train(training);
  if (final_) final_->train(training);
}

void Model::save(const std::filesystem::path& file, const std::map<std::string, Tensor>& extra,
                 const std::map<std::string, std::string>& extra_meta) const {
  const std::string bad = non_finite_weight();
  if (!bad.empty())
    throw InputError(file.string() + ": not written: weight '" + bad +
                     "' holds NaN or infinite values (a diverged training?)");
  std::map<std::string, Tensor> all = state();
  for (const auto& kv : extra) all[kv.first] = kv.second;
  std::map<std::string, std::string> meta = extra_meta;
  meta["patchwork"] = spec_.to_json().dump();
  save_safetensors(file, all, meta);
}

// A lower bound of the weights the blocks of `s` hold, known before they are allocated: every conv of the
// U-Net encoder and decoder blocks, the heads and the final block has at least cin * cout weights (double:
// no overflow). Model::load compares it with the weights in the file, so that a corrupt description
// (features [1000000000], convs_per_block 10^8) is refused instead of exhausting the memory.
static double min_weights(const ModelSpec& s) {
  double n = 0;
  auto block = [&](double cin, double cout, double convs) { n += cin * cout + (convs - 1) * cout * cout; };
  for (int k = 0; k < s.scheme.depth; ++k) {
    if (s.identical_blocks && k > 0) break;
    const UNetConfig c = block_config(s, k);
    const size_t L = c.features.size();
    for (size_t l = 0; l < L; ++l)
      block(double(l == 0 ? c.in_channels : c.features[l - 1]), double(c.features[l]), c.convs_per_block);
    for (size_t l = 0; l + 1 < L; ++l)
      block(double(c.up == UpKind::transposed_conv ? c.features[l] : c.features[l + 1]) + double(c.features[l]),
            double(c.features[l]), c.convs_per_block);
    n += double(c.features[0]) * double(c.out_channels);
  }
  if (!s.final_block.is_null()) {
    const double ch = s.out_channels.back(), f = s.final_block.value("features", 16);
    const double convs = s.final_block.value("convs", 1);
    n += convs > 0 ? ch * f + (convs - 1) * f * f + f * ch : ch * ch;
  }
  if (s.scheme.candidate_sampling.enabled()) n += double(s.scheme.num_labels + 1) * s.scheme.candidate_sampling.dim;
  return n;
}

// The model's own tensors in a file ("opt." and other extras are not).
static bool is_weight_name(const std::string& n) {
  return n.compare(0, 5, "level") == 0 || n.compare(0, 6, "final.") == 0 || n.compare(0, 8, "classes.") == 0;
}

Model Model::load(const std::filesystem::path& file, Device device, std::map<std::string, Tensor>* extra,
                  std::map<std::string, std::string>* extra_meta) {
  SafetensorsContent c = load_safetensors(file);
  auto it = c.metadata.find("patchwork");
  if (it == c.metadata.end()) throw InputError(file.string() + ": not a patchwork model (no 'patchwork' metadata)");
  // At most 256 levels deep: copying and printing a JSON value recurse (10^5 nested '[' overflowed the stack).
  bool too_deep = false;
  auto nesting = [&](int depth, json::parse_event_t, json&) {
    if (depth > 256) too_deep = true;
    return !too_deep;  // false: drop the value (the parse goes on, iteratively)
  };
  json j = json::parse(it->second, nesting, false);
  if (too_deep) throw InputError(file.string() + ": the model description is nested deeper than 256 levels");
  if (j.is_discarded()) throw InputError(file.string() + ": the model description is not valid JSON");
  ModelSpec spec;
  try {
    spec = ModelSpec::from_json(j);
    double have = 0;  // the weights in the file
    for (const auto& kv : c.tensors)
      if (is_weight_name(kv.first)) have += kv.second.numel();
    const double need = min_weights(spec);
    if (need > have) {
      char msg[160];
      std::snprintf(msg, sizeof msg, "the model description needs at least %.6g weights, the file holds %.6g", need, have);
      throw InputError(std::string(msg) + " (corrupt or mismatched model file)");
    }
  } catch (const InputError& e) {
    throw InputError(file.string() + ": " + e.what());
  }
  Model m(spec, 1, device);
  std::map<std::string, Tensor> weights;
  for (auto& kv : c.tensors) {
    if (is_weight_name(kv.first)) {
      if (!all_finite(kv.second))
        throw InputError(file.string() + ": weight '" + kv.first +
                         "' holds NaN or infinite values (a diverged training?); the model cannot be used");
      weights[kv.first] = kv.second;
    } else if (extra) (*extra)[kv.first] = kv.second;
  }
  try {
    m.load_state(weights);
  } catch (const InputError& e) {
    throw InputError(file.string() + ": " + e.what());
  }
  if (extra_meta) {
    *extra_meta = c.metadata;
    extra_meta->erase("patchwork");
  }
  m.set_training(false);
  return m;
}

}  // namespace pw::train
