#include "train/config.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>

#include "engine/nn.h"
#include "io/error.h"
#include "train/json_check.h"

namespace pw::train {

using nlohmann::json;
namespace fs = std::filesystem;

LossKind parse_loss(const std::string& s) {
  if (s == "bce") return LossKind::bce;
  if (s == "ce") return LossKind::ce;
  if (s == "dice") return LossKind::dice;
  if (s == "bce+dice") return LossKind::bce_dice;
  if (s == "ce+dice") return LossKind::ce_dice;
  if (s == "candidate") return LossKind::candidate;
  throw InputError("loss: expected \"bce\", \"ce\", \"dice\", \"bce+dice\", \"ce+dice\" or \"candidate\", got \"" + s +
                   "\"");
}

ForwardType parse_forward_type(const std::string& v, const std::string& key) {
  if (v == "simple") return ForwardType::simple;
  if (v == "mult") return ForwardType::mult;
  if (v == "bridge") return ForwardType::bridge;
  throw InputError(key + ": expected \"simple\", \"mult\" or \"bridge\", got \"" + v + "\"");
}

const char* forward_type_name(ForwardType t) {
  switch (t) {
    case ForwardType::simple: return "simple";
    case ForwardType::mult: return "mult";
    case ForwardType::bridge: return "bridge";
  }
  return "?";
}

const char* loss_name(LossKind k) {
  switch (k) {
    case LossKind::bce: return "bce";
    case LossKind::ce: return "ce";
    case LossKind::dice: return "dice";
    case LossKind::bce_dice: return "bce+dice";
    case LossKind::ce_dice: return "ce+dice";
    case LossKind::candidate: return "candidate";
  }
  return "?";
}

json Augment::to_json(int ndim) const {
  auto v = [&](const Eigen::Vector3d& x) {
    json a = json::array();
    for (int i = 0; i < ndim; ++i) a.push_back(x[i]);
    return a;
  };
  return {{"dphi", ndim == 2 ? json(dphi[0]) : v(dphi)}, {"flip", v(flip)}, {"dscale", v(dscale)}};
}

Augment Augment::from_json(const json& j, int ndim) {
  Augment a;
  if (j.is_null()) return a;
  check_keys(j, {"dphi", "flip", "dscale"}, "augment");
  auto vec = [&](const char* key, int n) {
    auto v = json_numbers(j[key], std::string("augment.") + key, n);
    Eigen::Vector3d out = Eigen::Vector3d::Zero();
    for (int i = 0; i < n; ++i) {
      if (v[i] < 0) throw InputError(std::string("augment.") + key + ": values must be >= 0");
      out[i] = v[i];
    }
    return out;
  };
  if (j.contains("dphi")) a.dphi = vec("dphi", ndim == 2 ? 1 : 3);
  if (j.contains("flip")) a.flip = vec("flip", ndim);
  if (j.contains("dscale")) a.dscale = vec("dscale", ndim);
  return a;
}

json LazyEval::to_json() const {
  json j = {{"fraction", fraction}, {"reduceFun", reduce_fun}};
  if (!attention_fun.empty()) j["attentionFun"] = attention_fun;
  return j;
}

LazyEval LazyEval::from_json(const json& j) {
  LazyEval l;
  check_keys(j, {"fraction", "attentionFun", "reduceFun"}, "lazyEval");
  if (j.contains("fraction")) l.fraction = json_number(j["fraction"], "lazyEval.fraction");
  if (!(l.fraction > 0 && l.fraction <= 1)) throw InputError("lazyEval.fraction: must be in (0, 1]");
  if (j.contains("attentionFun")) l.attention_fun = json_string(j["attentionFun"], "lazyEval.attentionFun");
  if (!l.attention_fun.empty() && l.attention_fun != "sigmoid" && l.attention_fun != "softmax" &&
      l.attention_fun != "identity")
    throw InputError("lazyEval.attentionFun: expected \"sigmoid\", \"softmax\" or \"identity\", got \"" +
                     l.attention_fun + "\"");
  if (j.contains("reduceFun")) l.reduce_fun = json_string(j["reduceFun"], "lazyEval.reduceFun");
  if (l.reduce_fun != "mean" && l.reduce_fun != "max")
    throw InputError("lazyEval.reduceFun: expected \"mean\" or \"max\", got \"" + l.reduce_fun + "\"");
  return l;
}

std::vector<std::array<int, 3>> parse_label_colors(const json& j, const std::string& key) {
  std::vector<std::array<int, 3>> out;
  if (!j.is_array()) throw InputError(key + ": expected a list of [R, G, B] (0..255), one per label");
  for (const auto& c : j) {
    std::vector<int> v = json_ints(c, key);
    if (v.size() != 3 || *std::min_element(v.begin(), v.end()) < 0 || *std::max_element(v.begin(), v.end()) > 255)
      throw InputError(key + ": each colour is [R, G, B] with values 0..255, got " + c.dump());
    out.push_back({v[0], v[1], v[2]});
  }
  return out;
}

static const std::vector<std::string>& own_keys() {
  static const std::vector<std::string> keys = {
      "network", "intermediate_out", "intermediate_loss", "block_out", "forward_type", "identical_blocks", "final_block",
      "finalizeOnApply", "finalBlock_all_levels", "lazyEval", "label_colors",
      "num_its", "num_patches", "epochs", "batch_size", "generate_type", "loss", "dontcare", "hard_mining",
      "hard_mining_order", "hard_mining_maxage", "balance", "augment", "independent_augmentation", "optimizer",
      "parallel", "validation_every", "seed", "threads", "time_limit_s", "dataset", "comment"};
  return keys;
}

// The network block (every level's U-Net), checked when the config is read, before any data: unknown keys
// (with a "did you mean"), the keys the scheme sets and the values (engine UNetConfig). The block itself is
// kept as given (train/model.cpp builds the U-Nets).
static UNetConfig check_network(const json& n, const std::string& where = "network") {
  auto shown = [](const json& v) {
    std::string t = v.dump();
    return t.size() > 60 ? t.substr(0, 57) + "..." : t;
  };
  if (!n.is_object()) throw InputError(where + ": expected an object, got " + shown(n));
  check_keys(n, {"type", "features", "convs_per_block", "norm", "activation", "leaky_slope", "down", "up", "padding",
                 "dims", "in_channels", "out_channels"},
             where);
  for (const char* k : {"dims", "in_channels", "out_channels"})
    if (n.contains(k)) throw InputError(where + ": '" + k + "' is set by the scheme, leave it out");
  if (n.contains("features")) {
    const json& f = n["features"];
    bool ok = f.is_array() && !f.empty() && f.size() <= 8;
    if (ok)
      for (const auto& e : f) ok = ok && e.is_number_integer() && e.get<int64_t>() >= 1;
    if (!ok)
      throw InputError(where + ".features: expected a list of 1 to 8 positive channel counts (one per U-Net level), "
                       "got " + shown(f));
  }
  UNetConfig u;
  try {
    u = UNetConfig::from_json(n);
  } catch (const InputError& e) {  // "unet <key>: ..." -> "network.<key>: ..."
    const std::string m = e.what();
    throw InputError(m.rfind("unet ", 0) == 0 ? where + "." + m.substr(5) : where + ": " + m);
  }
  return u;
}

// The block description of `level`: `network` itself, or its entry `level` when it is a list (one per level).
const json& level_network(const json& network, int level) {
  return network.is_array() ? network.at(static_cast<size_t>(level)) : network;
}

// Every level's block description: one object, or a list of one per level (not with identical_blocks).
static void check_networks(const json& n, int depth, bool identical_blocks) {
  if (!n.is_array()) {
    check_network(n);
    return;
  }
  if (identical_blocks)
    throw InputError("network: identical_blocks shares one block; give one description, not a list");
  if (static_cast<int>(n.size()) != depth)
    throw InputError("network: a list needs one block description per level (" + std::to_string(depth) + "), got " +
                     std::to_string(n.size()));
  for (int k = 0; k < depth; ++k) check_network(n[k], "network[" + std::to_string(k) + "]");
}

void check_block_sizes(const Scheme& scheme, int level, const UNetConfig& u, const std::string& where) {
  const std::string lv = "level " + std::to_string(level);
  if (!u.valid) {
    const int64_t mult = int64_t{1} << (u.features.size() - 1);
    for (int a = 0; a < scheme.ndim; ++a)
      if (u.output_size(scheme.patch_size[level][a]) != scheme.patch_size[level][a])
        throw InputError("scheme.patch_size: " + lv + " sizes must be multiples of " + std::to_string(mult) +
                         " for a U-Net with " + std::to_string(u.features.size()) + " levels (" + where + ".features)");
    return;
  }
  for (int a = 0; a < scheme.ndim; ++a) {
    const int64_t in = scheme.patch_size[level][a], out = scheme.out_patch_size[level][a], got = u.output_size(in);
    const std::string ax = lv + " axis " + std::to_string(a) + ": ";
    if (got < 1)
      throw InputError("scheme.patch_size: " + ax + std::to_string(in) + " voxels do not pass the U-Net with valid "
                       "convolutions (" + where + ".padding; every down step needs an even size, every conv takes 2)");
    if (got != out)
      throw InputError("scheme.out_patch_size: " + ax + std::to_string(out) + ", but the U-Net with valid " +
                       "convolutions (" + where + ".padding) turns patch_size " + std::to_string(in) + " into " +
                       std::to_string(got));
  }
}

// The patch sizes that each level's U-Net needs (train/model.cpp checks them again when it builds the blocks).
// Checked by TrainConfig::load, so that `train` finds them before any data are read; from_json leaves them
// to the model, so that a config can be parsed whatever its patch sizes.
static void check_network_sizes(const TrainConfig& c) {
  const Scheme& scheme = c.scheme;
  for (int level = 0; level < scheme.depth && level < static_cast<int>(scheme.patch_size.size()); ++level)
    check_block_sizes(scheme, level, check_network(level_network(c.network, level)),
                      c.network.is_array() ? "network[" + std::to_string(level) + "]" : "network");
}

static int positive(const json& j, const char* key, int min = 1) {
  int v = json_int(j[key], key);
  if (v < min) throw InputError(std::string(key) + ": must be >= " + std::to_string(min) + ", got " + std::to_string(v));
  return v;
}

// The model's structure: networks, intermediate and block outputs, the final block, lazy evaluation, colours.
static void read_model(const json& j, TrainConfig& c) {
  const int depth = c.scheme.depth;
  if (j.contains("network")) c.network = j["network"];
  if (j.contains("identical_blocks")) c.identical_blocks = json_bool(j["identical_blocks"], "identical_blocks");
  check_networks(c.network, depth, c.identical_blocks);
  if (j.contains("intermediate_out")) c.intermediate_out = positive(j, "intermediate_out", 0);
  if (j.contains("intermediate_loss")) c.intermediate_loss = json_bool(j["intermediate_loss"], "intermediate_loss");
  if (j.contains("block_out") && !j["block_out"].is_null()) {
    c.block_out = json_ints(j["block_out"], "block_out");
    if (static_cast<int>(c.block_out.size()) != depth)
      throw InputError("block_out: expected " + std::to_string(depth) + " entries (one per level)");
  }
  if (j.contains("forward_type"))
    c.forward_type = parse_forward_type(json_string(j["forward_type"], "forward_type"), "forward_type");
  if (j.contains("final_block") && !j["final_block"].is_null()) {
    const json& f = j["final_block"];
    check_keys(f, {"features", "convs"}, "final_block");
    json fb = {{"features", 16}, {"convs", 1}};
    if (f.contains("features")) fb["features"] = positive(f, "features");
    if (f.contains("convs")) fb["convs"] = positive(f, "convs", 0);
    c.final_block = fb;
  }
  if (j.contains("finalizeOnApply")) c.finalize_on_apply = json_bool(j["finalizeOnApply"], "finalizeOnApply");
  if (j.contains("finalBlock_all_levels"))
    c.final_block_all_levels = json_bool(j["finalBlock_all_levels"], "finalBlock_all_levels");
  if (j.contains("lazyEval")) c.lazy_eval = LazyEval::from_json(j["lazyEval"]);
  if (j.contains("label_colors")) {
    c.label_colors = parse_label_colors(j["label_colors"], "label_colors");
    if (c.scheme.num_labels && static_cast<int>(c.label_colors.size()) != c.scheme.num_labels)
      throw InputError("label_colors: expected " + std::to_string(c.scheme.num_labels) + " colours (one per label)");
  }
  if ((c.finalize_on_apply || c.final_block_all_levels) && c.final_block.is_null())
    throw InputError(std::string(c.finalize_on_apply ? "finalizeOnApply" : "finalBlock_all_levels") +
                     ": needs a final_block");
}

// The loss per level (by default from the kind of output), checked against the outputs it applies to.
static void read_loss(const json& j, TrainConfig& c) {
  const int depth = c.scheme.depth;
  if (j.contains("loss")) {
    const json& l = j["loss"];
    if (l.is_string()) c.loss.assign(depth, parse_loss(l.get<std::string>()));
    else if (l.is_array() && static_cast<int>(l.size()) == depth)
      for (const auto& e : l) c.loss.push_back(parse_loss(json_string(e, "loss")));
    else throw InputError("loss: expected a loss name or one per level (" + std::to_string(depth) + ")");
  } else {
    c.loss.assign(depth, c.scheme.candidate_sampling.enabled() ? LossKind::candidate
                         : c.scheme.categorical                   ? LossKind::ce_dice
                                                                  : LossKind::bce);
  }
  for (LossKind k : c.loss) {
    // The network of a candidate_sampling model outputs embedding features, not class logits: only
    // the sampled loss applies to them.
    if ((k == LossKind::candidate) != c.scheme.candidate_sampling.enabled())
      throw InputError(k == LossKind::candidate ? "loss: \"candidate\" needs candidate_sampling: {dim, candidates}"
                                                : std::string("loss: \"") + loss_name(k) +
                                                      "\" does not apply to candidate_sampling outputs (use \"candidate\")");
    bool ce = k == LossKind::ce || k == LossKind::ce_dice;
    bool bce = k == LossKind::bce || k == LossKind::bce_dice;
    if (ce && !c.scheme.categorical) throw InputError("loss: \"ce\" needs categorical: true");
    if (bce && c.scheme.categorical) throw InputError("loss: \"bce\" needs categorical: false (use \"ce\")");
  }
}

// Which patches a batch samples: dontcare, hard mining, label balance.
static void read_sampling(const json& j, TrainConfig& c) {
  if (j.contains("dontcare")) c.dontcare = json_bool(j["dontcare"], "dontcare");
  if (j.contains("hard_mining")) {
    c.hard_mining = json_number(j["hard_mining"], "hard_mining");
    if (c.hard_mining < 0 || c.hard_mining >= 1) throw InputError("hard_mining: must be in [0, 1)");
    if (c.hard_mining > 0 && c.scheme.candidate_sampling.enabled())
      throw InputError("hard_mining: not available with candidate_sampling (its chain scores need every class)");
  }
  if (j.contains("hard_mining_order")) {
    std::string v = json_string(j["hard_mining_order"], "hard_mining_order");
    if (v == "loss") c.hard_mining_order = HardOrder::loss;
    else if (v == "f1" || v == "fl") c.hard_mining_order = HardOrder::f1;
    else if (v == "balance") c.hard_mining_order = HardOrder::balance;
    else throw InputError("hard_mining_order: expected \"loss\", \"f1\" or \"balance\", got \"" + v + "\"");
  }
  if (j.contains("hard_mining_maxage")) c.hard_mining_maxage = positive(j, "hard_mining_maxage");
  if (j.contains("balance") && !j["balance"].is_null()) {
    const json& b = j["balance"];
    check_keys(b, {"ratio", "label_weight", "autoweight"}, "balance");
    if (b.contains("ratio")) c.balance.ratio = json_number(b["ratio"], "balance.ratio");
    if (c.balance.ratio < 0 || c.balance.ratio >= 1) throw InputError("balance.ratio: must be in [0, 1)");
    if (b.contains("label_weight") && !b["label_weight"].is_null()) {
      c.balance.label_weight = json_numbers(b["label_weight"], "balance.label_weight",
                                            b["label_weight"].is_array() ? int(b["label_weight"].size()) : 1);
      if (c.scheme.num_labels && int(c.balance.label_weight.size()) != c.scheme.num_labels)
        throw InputError("balance.label_weight: expected " + std::to_string(c.scheme.num_labels) + " entries");
    }
    if (b.contains("autoweight")) c.balance.autoweight = json_bool(b["autoweight"], "balance.autoweight");
  }
}

static void read_optimizer(const json& o, TrainConfig& c) {
  check_keys(o, {"type", "lr", "weight_decay", "momentum", "schedule", "schedule_over", "gamma", "step_size"},
             "optimizer");
  if (o.contains("type")) c.optimizer = json_string(o["type"], "optimizer.type");
  if (c.optimizer != "adam" && c.optimizer != "adamw" && c.optimizer != "sgd")
    throw InputError("optimizer.type: expected \"adam\", \"adamw\" or \"sgd\", got \"" + c.optimizer + "\"");
  if (o.contains("lr")) c.lr = json_number(o["lr"], "optimizer.lr");
  if (!(c.lr > 0)) throw InputError("optimizer.lr: must be > 0");
  if (o.contains("weight_decay")) c.weight_decay = json_number(o["weight_decay"], "optimizer.weight_decay");
  if (o.contains("momentum")) c.momentum = json_number(o["momentum"], "optimizer.momentum");
  if (o.contains("schedule")) c.schedule = json_string(o["schedule"], "optimizer.schedule");
  if (c.schedule != "constant" && c.schedule != "poly" && c.schedule != "step")
    throw InputError("optimizer.schedule: expected \"constant\", \"poly\" or \"step\", got \"" + c.schedule + "\"");
  if (o.contains("gamma")) c.gamma = json_number(o["gamma"], "optimizer.gamma");
  if (o.contains("step_size")) c.step_size = json_int(o["step_size"], "optimizer.step_size");
  if (o.contains("schedule_over")) {
    std::string v = json_string(o["schedule_over"], "optimizer.schedule_over");
    if (v != "iterations" && v != "time")
      throw InputError("optimizer.schedule_over: expected \"iterations\" or \"time\", got \"" + v + "\"");
    c.schedule_over_time = v == "time";
  }
}

// The training cases: an MSD folder or explicit pairs (paths relative to base_dir), and the splits.
static void read_dataset(const json& d, const fs::path& base_dir, TrainConfig& c) {
  check_keys(d, {"path", "pairs", "validation", "train", "max_cases"}, "dataset");
  if (d.contains("path") == d.contains("pairs"))
    throw InputError("dataset: give exactly one of 'path' (MSD folder) and 'pairs' (explicit list)");
  auto resolve = [&](const std::string& p) { return fs::path(p).is_absolute() || base_dir.empty() ? fs::path(p) : base_dir / p; };
  if (d.contains("path")) c.dataset.root = resolve(json_string(d["path"], "dataset.path"));
  if (d.contains("pairs")) {
    if (!d["pairs"].is_array()) throw InputError("dataset.pairs: expected a list of {image, label}");
    for (const auto& p : d["pairs"]) {
      check_keys(p, {"image", "label", "name"}, "dataset.pairs[]");
      DataPair dp;
      if (!p.contains("image") || !p.contains("label"))
        throw InputError("dataset.pairs[]: each entry needs 'image' and 'label'");
      if (p["image"].is_array())
        for (const auto& e : p["image"]) dp.images.push_back(resolve(json_string(e, "dataset.pairs[].image")));
      else dp.images.push_back(resolve(json_string(p["image"], "dataset.pairs[].image")));
      dp.label = resolve(json_string(p["label"], "dataset.pairs[].label"));
      dp.name = p.contains("name") ? json_string(p["name"], "dataset.pairs[].name") : std::string();
      c.dataset.pairs.push_back(dp);
    }
  }
  for (const char* key : {"validation", "train"}) {
    if (!d.contains(key)) continue;
    if (!d[key].is_array()) throw InputError(std::string("dataset.") + key + ": expected a list of case names");
    auto& dst = std::string(key) == "validation" ? c.dataset.validation : c.dataset.train;
    for (const auto& e : d[key]) dst.push_back(json_string(e, std::string("dataset.") + key));
  }
  if (d.contains("max_cases")) c.dataset.max_cases = json_int(d["max_cases"], "dataset.max_cases");
}

TrainConfig TrainConfig::from_json(const json& j, const fs::path& base_dir) {
  std::vector<std::string> allowed = Scheme::json_keys();
  allowed.insert(allowed.end(), own_keys().begin(), own_keys().end());
  check_keys(j, allowed, "config");
  TrainConfig c;
  c.raw = j;
  json sj = json::object();
  for (const auto& k : Scheme::json_keys())
    if (j.contains(k)) sj[k] = j[k];
  c.scheme = Scheme::from_json(sj);
  read_model(j, c);
  if (j.contains("num_its")) c.num_its = positive(j, "num_its");
  if (j.contains("num_patches")) c.num_patches = positive(j, "num_patches");
  if (j.contains("epochs")) c.epochs = positive(j, "epochs");
  if (j.contains("batch_size")) c.batch_size = positive(j, "batch_size");
  if (j.contains("generate_type")) {
    std::string v = json_string(j["generate_type"], "generate_type");
    if (v == "tree") c.tree = true;
    else if (v != "random") throw InputError("generate_type: expected \"random\" or \"tree\", got \"" + v + "\"");
  }
  read_loss(j, c);
  read_sampling(j, c);
  if (j.contains("augment")) c.augment = Augment::from_json(j["augment"], c.scheme.ndim);
  if (j.contains("independent_augmentation"))
    c.independent_augmentation = json_bool(j["independent_augmentation"], "independent_augmentation");
  if (j.contains("optimizer")) read_optimizer(j["optimizer"], c);
  if (j.contains("parallel")) c.parallel = json_bool(j["parallel"], "parallel");
  if (j.contains("validation_every")) c.validation_every = positive(j, "validation_every", 0);
  if (j.contains("seed")) c.seed = static_cast<uint64_t>(positive(j, "seed", 0));
  if (j.contains("threads")) c.threads = positive(j, "threads", 0);
  if (j.contains("time_limit_s")) c.time_limit_s = json_number(j["time_limit_s"], "time_limit_s");
  if (c.schedule_over_time && !(c.time_limit_s > 0))
    throw InputError("optimizer.schedule_over: \"time\" needs time_limit_s > 0 (the schedule runs over that time)");
  if (c.schedule_over_time && c.schedule == "step")
    throw InputError("optimizer.schedule_over: \"time\" works with the poly or constant schedule, not step");
  if (j.contains("dataset")) read_dataset(j["dataset"], base_dir, c);
  if (!c.balance.label_weight.empty() && c.scheme.num_labels &&
      static_cast<int>(c.balance.label_weight.size()) != c.scheme.num_labels)
    throw InputError("balance.label_weight: expected one weight per label");
  return c;
}

// The deepest JSON nesting TrainConfig::load accepts (a config is a few levels deep).
constexpr int kMaxJsonDepth = 256;

TrainConfig TrainConfig::load(const fs::path& file) {
  // Read the whole file first, so that a folder or an unreadable file gives one line naming it (a folder
  // opens as a stream on Linux, and reading it would surface as "basic_filebuf::underflow error").
  const std::string name = file.string();
  std::error_code ec;
  const fs::file_status st = fs::status(file, ec);
  if (st.type() == fs::file_type::not_found) throw InputError(name + ": config file not found");
  if (st.type() == fs::file_type::directory) throw InputError(name + ": is a folder, not a config file");
  std::string text;
  {
    errno = 0;
    std::ifstream in(file, std::ios::binary);
    if (!in) throw InputError(name + ": cannot read the config file (" + std::strerror(errno ? errno : EACCES) + ")");
    try {
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } catch (const std::exception&) {
      in.setstate(std::ios::badbit);
    }
    if (in.bad()) throw InputError(name + ": cannot read the config file");
  }
  json j;
  // Parsing is iterative, but copying and printing a JSON value recurse: 10^5 nested '[' overflowed the stack.
  auto nesting = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) throw InputError("nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    return true;
  };
  try {
    j = json::parse(text, nesting, true, /*ignore_comments=*/true);
  } catch (const json::exception& e) {  // parse_error; out_of_range for a number beyond a double's range
    throw InputError(name + ": not valid JSON (" + e.what() + ")");
  } catch (const InputError& e) {
    throw InputError(name + ": not valid JSON (" + e.what() + ")");
  }
  return from_json_checked(j, file.parent_path(), name);
}

TrainConfig TrainConfig::from_json_checked(const json& j, const fs::path& base_dir, const std::string& name) {
  try {
    TrainConfig c = from_json(j, base_dir);
    check_network_sizes(c);
    return c;
  } catch (const InputError& e) {
    throw InputError(name + ": " + e.what());
  }
}

int TrainConfig::out_channels(int level) const {
  if (!block_out.empty()) return block_out.at(level);
  int k = scheme.label_channels();
  return level == scheme.depth - 1 ? k : k + intermediate_out;
}

static std::string case_name(const fs::path& p) {
  std::string n = p.filename().string();
  for (const char* ext : {".nii.gz", ".nii", ".hdr", ".img"})
    if (n.size() > std::string(ext).size() && n.compare(n.size() - std::string(ext).size(), std::string::npos, ext) == 0)
      return n.substr(0, n.size() - std::string(ext).size());
  return n;
}

// The cases of an nnU-Net style dataset.json: {"training": [{"image": "...", "label": "..."}, ...]},
// paths relative to `root`. Every mistake names the file and the entry.
static std::vector<DataPair> read_dataset_json(const fs::path& dj, const fs::path& root) {
  if (fs::is_directory(dj)) throw InputError(dj.string() + ": is a folder, not a file");
  std::ifstream in(dj);
  if (!in) throw InputError(dj.string() + ": cannot open");
  json d;
  try {
    d = json::parse(in);
  } catch (const json::exception& e) {  // parse_error; out_of_range for a number beyond a double's range
    throw InputError(dj.string() + ": not valid JSON (" + e.what() + ")");
  }
  if (!d.is_object() || !d.contains("training") || !d["training"].is_array())
    throw InputError(dj.string() + ": no 'training' list");
  std::vector<DataPair> out;
  const json& training = d["training"];
  for (size_t i = 0; i < training.size(); ++i) {
    const std::string where = dj.string() + ": training[" + std::to_string(i) + "]";
    const json& e = training[i];
    if (!e.is_object()) throw InputError(where + ": not an object with 'image' and 'label'");
    auto file = [&](const char* key) {
      auto it = e.find(key);
      if (it == e.end()) throw InputError(where + ": no '" + key + "'");
      if (!it->is_string() || it->get_ref<const std::string&>().empty())
        throw InputError(where + "." + key + ": not a file name (expected a non-empty string, got " +
                         (it->is_string() ? std::string("an empty string") : std::string(it->type_name())) + ")");
      return root / it->get<std::string>();
    };
    DataPair p;
    p.images.push_back(file("image"));
    p.label = file("label");
    p.name = case_name(p.images[0]);
    out.push_back(p);
  }
  return out;
}

std::vector<DataPair> list_cases(const DatasetSpec& spec) {
  std::vector<DataPair> out;
  if (spec.root.empty()) {
    out = spec.pairs;
    for (auto& p : out)
      if (p.name.empty()) p.name = case_name(p.images.at(0));
  } else {
    const fs::path& root = spec.root;
    if (!fs::is_directory(root)) throw InputError(root.string() + ": dataset folder not found");
    fs::path dj = root / "dataset.json";
    if (fs::exists(dj)) {
      out = read_dataset_json(dj, root);
    } else {
      if (!fs::is_directory(root / "imagesTr")) throw InputError(root.string() + ": no dataset.json and no imagesTr/");
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(root / "imagesTr"))
        if (e.path().filename().string()[0] != '.') files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        DataPair p;
        p.images.push_back(f);
        p.label = root / "labelsTr" / f.filename();
        p.name = case_name(f);
        out.push_back(p);
      }
    }
  }
  for (const auto& p : out) {
    for (const auto& i : p.images)
      if (!fs::exists(i)) throw InputError(i.string() + ": image file not found (case " + p.name + ")");
    if (!fs::exists(p.label)) throw InputError(p.label.string() + ": label file not found (case " + p.name + ")");
  }
  if (out.empty()) throw InputError("dataset: no cases found");
  return out;
}

void split_cases(const DatasetSpec& spec, const std::vector<DataPair>& cases, std::vector<DataPair>& train,
                 std::vector<DataPair>& validation) {
  std::set<std::string> names;
  for (const auto& c : cases) names.insert(c.name);
  for (const auto& v : spec.validation)
    if (!names.count(v)) throw InputError("dataset.validation: case '" + v + "' is not in the dataset");
  for (const auto& v : spec.train)
    if (!names.count(v)) throw InputError("dataset.train: case '" + v + "' is not in the dataset");
  std::set<std::string> val(spec.validation.begin(), spec.validation.end());
  std::set<std::string> tr(spec.train.begin(), spec.train.end());
  train.clear();
  validation.clear();
  for (const auto& c : cases) {
    if (val.count(c.name)) validation.push_back(c);
    else if (tr.empty() || tr.count(c.name)) train.push_back(c);
  }
  if (spec.max_cases > 0 && static_cast<int>(train.size()) > spec.max_cases) train.resize(spec.max_cases);
  if (train.empty()) throw InputError("dataset: no training cases left after the split");
}

}  // namespace pw::train
