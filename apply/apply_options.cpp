// The options of `patchwork apply` as the CLI and the Python package give them, checked and converted
// into an ApplyRequest (apply/apply_case.h).
#include <nlohmann/json.hpp>

#include "apply/apply_case.h"
#include "io/error.h"

namespace pw::apply {

namespace {

// Where patches go: generate type, counts, brick, lazy fraction, level, augmentation, seed.
void read_patches(const ApplyOptions& c, InferOptions& o) {
  if (c.generate_type == "tree") o.generate_type = GenerateType::tree;
  else if (c.generate_type == "random") o.generate_type = GenerateType::random;
  else throw UsageError("--generate-type '" + c.generate_type + "': expected random or tree");
  o.num_patches = c.num_patches;
  o.branch_factor = c.branch_factor;
  o.num_chunks = c.num_chunks;
  o.batch_size = c.batch_size;
  if (c.brick < 2) throw UsageError("--brick: must be a number >= 2, got " + std::to_string(c.brick));
  o.brick = c.brick;
  if (c.lazy_fraction) {
    if (!(*c.lazy_fraction > 0 && *c.lazy_fraction <= 1)) throw UsageError("--lazy-fraction must be in (0, 1]");
    o.lazy_fraction = *c.lazy_fraction;
  }
  if (c.level == "mix") o.level_mix = true;
  else {
    try {
      size_t used = 0;
      o.level = std::stoi(c.level, &used);
      if (used != c.level.size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      throw UsageError("--level '" + c.level + "': expected -1, a level number or mix");
    }
  }
  o.seed = c.seed;
  if (c.augment == "none") o.augment = false;
  else if (c.augment == "model") o.augment = true;
  else {
    if (!nlohmann::json::accept(c.augment))
      throw UsageError("--augment: expected none, model or a JSON dict like {\"dphi\":0.1,\"flip\":[1,0,0]}");
    o.augment = true;  // the dict is parsed against the model's ndim by set_augment
  }
}

// How patches are stitched: attention, window, sparse suppression, sampling factor, original scale.
void read_stitching(const ApplyOptions& c, InferOptions& o) {
  try {
    if (c.attention) o.attention = parse_reduce(*c.attention);
  } catch (const UsageError& e) {
    throw UsageError(std::string("--attention: ") + e.what());
  }
  try {
    if (c.attention_fun) o.attention_fun = parse_attention_fun(*c.attention_fun);
  } catch (const UsageError& e) {
    throw UsageError(std::string("--attention-fun: ") + e.what());
  }
  if (c.window == "flat") o.window = kernels::Window::flat;
  else if (c.window == "cos") o.window = kernels::Window::cos;
  else if (c.window == "cos2") o.window = kernels::Window::cos2;
  else throw UsageError("--window '" + c.window + "': expected flat, cos or cos2");
  if (c.sparse_suppression < 0) throw UsageError("--sparse-suppression must be >= 0");
  o.sparse_suppression = c.sparse_suppression;
  if (!(c.sampling_factor > 0)) throw UsageError("--sampling-factor must be > 0");
  o.sampling_factor = c.sampling_factor;
  o.scale_to_original = c.scale_to_original;
}

// What is written: output type, largest component, threshold, label names and colours.
void read_outputs(const ApplyOptions& c, ApplyRequest& r) {
  r.out_type = parse_output_type(c.out_type);
  if (c.largest_component) {
    if (r.out_type.kind != OutKind::atls && r.out_type.kind != OutKind::mask)
      throw UsageError("--largest-component: needs --out-type atls or mask");
    if (c.connectivity != 6 && c.connectivity != 26)
      throw UsageError("--connectivity: expected 6 or 26, got " + std::to_string(c.connectivity));
    r.out_type.largest_component = c.connectivity;
  }
  r.ce_threshold = c.ce_threshold;
  r.label_names = c.label_names;
  try {
    for (const std::string& col : c.label_colors) r.label_colors.push_back(parse_label_color(col));
  } catch (const UsageError& e) {
    throw UsageError(std::string("--label-colors: ") + e.what());
  }
}

}  // namespace

ApplyRequest make_request(const ApplyOptions& c) {
  ApplyRequest r;
  read_patches(c, r.infer);
  read_stitching(c, r.infer);
  r.infer.progress = !c.quiet;
  read_outputs(c, r);
  return r;
}

void set_augment(ApplyRequest& r, const std::string& augment, int ndim) {
  if (augment == "none" || augment == "model") return;
  try {
    r.augment = train::Augment::from_json(nlohmann::json::parse(augment), ndim);
  } catch (const InputError& e) {
    throw UsageError(std::string("--augment: ") + e.what());
  }
}

InferOptions model_lazy_options(const train::ModelSpec& spec) {
  const train::LazyEval& lazy = spec.lazy_eval;
  InferOptions o;
  o.lazy_fraction = lazy.fraction;
  o.attention = parse_reduce(lazy.reduce_fun);
  if (!lazy.attention_fun.empty()) o.attention_fun = parse_attention_fun(lazy.attention_fun);
  return o;
}

void set_lazy_defaults(ApplyRequest& r, const ApplyOptions& c, const train::ModelSpec& spec) {
  const InferOptions lazy = model_lazy_options(spec);
  if (!c.lazy_fraction) r.infer.lazy_fraction = lazy.lazy_fraction;
  if (!c.attention) r.infer.attention = lazy.attention;
  if (!c.attention_fun && lazy.attention_fun) r.infer.attention_fun = lazy.attention_fun;
}

}  // namespace pw::apply
