// `patchwork apply --model M --in IMG [IMG2 ..] --out OUT [options]` and the batch form
// `--in-dir DIR --out-dir DIR`: hierarchical inference of a trained patchwork (paper list D).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <regex>
#include <unistd.h>

#include "apply/apply_case.h"
#include "cli/commands.h"
#include "io/atomic_file.h"
#include "io/error.h"
#include "kernels/parallel.h"

namespace fs = std::filesystem;

namespace pw::cli {

namespace {

struct ApplyCli {
  std::string model;
  std::vector<std::string> in;
  std::string out, in_dir, out_dir;
  std::string generate_type = "tree";
  int num_patches = 16, branch_factor = 1, num_chunks = 1, batch_size = 8, threads = 0, brick = 32;
  double lazy_fraction = 1.0, sparse_suppression = 0, sampling_factor = 1;
  std::string attention = "mean", window = "flat", out_type = "atls", level = "-1", augment = "none";
  std::optional<float> ce_threshold;
  std::vector<std::string> label_names;
  bool scale_to_original = true, quiet = false, skip_existing = false;
  std::string device, preview;
  uint64_t seed = 1;
};

apply::ApplyRequest make_request(const ApplyCli& c) {
  apply::ApplyRequest r;
  auto& o = r.infer;
  if (c.generate_type == "tree") o.generate_type = apply::GenerateType::tree;
  else if (c.generate_type == "random") o.generate_type = apply::GenerateType::random;
  else throw UsageError("--generate-type '" + c.generate_type + "': expected random or tree");
  o.num_patches = c.num_patches;
  o.branch_factor = c.branch_factor;
  o.num_chunks = c.num_chunks;
  o.batch_size = c.batch_size;
  if (c.brick < 2) throw UsageError("--brick: must be a number >= 2, got " + std::to_string(c.brick));
  o.brick = c.brick;
  if (!(c.lazy_fraction > 0 && c.lazy_fraction <= 1)) throw UsageError("--lazy-fraction must be in (0, 1]");
  o.lazy_fraction = c.lazy_fraction;
  if (c.attention == "mean") o.attention = apply::Reduce::mean;
  else if (c.attention == "max") o.attention = apply::Reduce::max;
  else throw UsageError("--attention '" + c.attention + "': expected mean or max");
  if (c.window == "flat") o.window = kernels::Window::flat;
  else if (c.window == "cos") o.window = kernels::Window::cos;
  else if (c.window == "cos2") o.window = kernels::Window::cos2;
  else throw UsageError("--window '" + c.window + "': expected flat, cos or cos2");
  if (c.sparse_suppression < 0) throw UsageError("--sparse-suppression must be >= 0");
  o.sparse_suppression = c.sparse_suppression;
  if (!(c.sampling_factor > 0)) throw UsageError("--sampling-factor must be > 0");
  o.sampling_factor = c.sampling_factor;
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
  o.scale_to_original = c.scale_to_original;
  o.seed = c.seed;
  o.progress = !c.quiet;
  if (c.augment == "none") o.augment = false;
  else if (c.augment == "model") o.augment = true;
  else {
    if (!nlohmann::json::accept(c.augment))
      throw UsageError("--augment: expected none, model or a JSON dict like {\"dphi\":0.1,\"flip\":[1,0,0]}");
    o.augment = true;  // the dict is parsed against the model's ndim in run()
  }
  r.out_type = apply::parse_output_type(c.out_type);
  r.ce_threshold = c.ce_threshold;
  r.label_names = c.label_names;
  r.preview = c.preview;
  return r;
}

bool is_nifti(const fs::path& p) {
  const std::string s = p.filename().string();
  auto ends = [&](const std::string& e) { return s.size() > e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0; };
  return ends(".nii") || ends(".nii.gz");
}

std::string strip_nifti(const std::string& name) {
  if (name.size() > 7 && name.compare(name.size() - 7, 7, ".nii.gz") == 0) return name.substr(0, name.size() - 7);
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".nii") == 0) return name.substr(0, name.size() - 4);
  return name;
}

// The cases of a folder: nnU-Net channel files CASE_0000.nii.gz, CASE_0001.nii.gz .. are one case
// with several channels; any other NIfTI file is a case of its own.
std::map<std::string, std::vector<fs::path>> list_cases(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw InputError(dir.string() + ": not a folder");
  std::map<std::string, std::map<int, fs::path>> grouped;
  static const std::regex chan("(.*)_([0-9]{4})");
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file() || !is_nifti(e.path())) continue;
    std::string stem = strip_nifti(e.path().filename().string());
    std::smatch m;
    if (std::regex_match(stem, m, chan)) grouped[m[1].str()][std::stoi(m[2].str())] = e.path();
    else grouped[stem][0] = e.path();
  }
  std::map<std::string, std::vector<fs::path>> out;
  for (auto& [name, chans] : grouped) {
    int expect = 0;
    for (auto& [k, p] : chans) {
      if (k != expect++) throw InputError(dir.string() + ": case " + name + " misses channel " + std::to_string(k - 1));
      out[name].push_back(p);
    }
  }
  if (out.empty()) throw InputError(dir.string() + ": no .nii or .nii.gz files");
  return out;
}

// One case of a batch: inputs, output, preview.
struct BatchCase {
  std::string name;
  std::vector<fs::path> files;
  fs::path out, preview;
};

// The batch's cases with their outputs, every output checked before any work (none may replace an input).
std::vector<BatchCase> plan_batch(const ApplyCli& c, const fs::path& preview_dir) {
  fs::create_directories(c.out_dir);
  std::vector<BatchCase> plan;
  for (auto& [name, files] : list_cases(c.in_dir)) {
    BatchCase b{name, files, fs::path(c.out_dir) / (name + ".nii.gz"), {}};
    if (!preview_dir.empty()) b.preview = fs::path(c.out_dir) / (name + ".png");
    std::vector<fs::path> inputs = files;
    inputs.push_back(c.model);
    check_output(b.out, inputs);
    if (!b.preview.empty()) check_output(b.preview, inputs);
    plan.push_back(std::move(b));
  }
  return plan;
}

// Applies every case; a failing case is reported in one line and the others go on. Exit status 1 at
// the end when any case failed.
void run_batch(const ApplyCli& c, train::Model& model, const apply::ApplyRequest& req,
               const std::function<void(const std::string&, const apply::Prediction&, const fs::path&)>& report) {
  const std::vector<BatchCase> plan = plan_batch(c, req.preview);
  int done = 0, failed = 0, skipped = 0;
  for (const BatchCase& b : plan) {
    if (c.skip_existing && fs::exists(b.out)) {
      ++skipped;
      continue;
    }
    apply::ApplyRequest r = req;
    r.preview = b.preview;
    try {
      report(b.name, apply::apply_case(model, b.files, b.out, r), b.out);
      ++done;
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "patchwork: %s: %s\n", b.name.c_str(), e.what());
      ++failed;
    }
  }
  std::fprintf(stderr, "apply: %d done, %d failed, %d skipped (output exists) of %zu cases\n", done, failed, skipped,
               plan.size());
  if (failed > 0) throw InputError(std::to_string(failed) + " of " + std::to_string(plan.size()) + " cases failed");
}

void run(const ApplyCli& c) {
  apply::ApplyRequest req = make_request(c);
  if (c.threads > 0) set_num_threads(c.threads);
  const Device dev = device_option(c.device);
  const bool single = !c.in.empty();
  if (single == !c.in_dir.empty()) throw UsageError("give either --in IMG [IMG2 ..] with --out, or --in-dir with --out-dir");
  if (single && c.out.empty()) throw UsageError("--out is required with --in");
  if (!single && c.out_dir.empty()) throw UsageError("--out-dir is required with --in-dir");
  if (single) {  // outputs checked before the model is loaded and any work starts
    std::vector<fs::path> inputs(c.in.begin(), c.in.end());
    inputs.push_back(c.model);
    check_output(c.out, inputs);
    if (!c.preview.empty()) check_output(c.preview, inputs);
  }
  train::Model model = train::Model::load(c.model, dev);
  if (c.augment != "none" && c.augment != "model")
    try {
      req.augment = train::Augment::from_json(nlohmann::json::parse(c.augment), model.spec().scheme.ndim);
    } catch (const InputError& e) {
      throw UsageError(std::string("--augment: ") + e.what());
    }
  auto report = [&](const std::string& name, const apply::Prediction& p, const fs::path& out) {
    std::string levels;
    for (size_t l = 0; l < p.patches_per_level.size(); ++l)
      levels += (l ? "," : "") + std::to_string(p.patches_per_level[l]);
    std::fprintf(stderr, "apply: %s -> %s (%.1f s, patches per level %s; stitching bricks %lld of %lld, peak %.0f MB)\n",
                 name.c_str(), out.string().c_str(), p.seconds, levels.c_str(), static_cast<long long>(p.bricks_allocated),
                 static_cast<long long>(p.bricks_total), p.stitch_peak_bytes / 1e6);
  };
  if (single) {
    std::vector<fs::path> files(c.in.begin(), c.in.end());
    apply::Prediction p = apply::apply_case(model, files, c.out, req);
    report(c.in.front(), p, c.out);
    return;
  }
  run_batch(c, model, req, report);
}

}  // namespace

void add_apply(CLI::App& app) {
  auto* cmd = app.add_subcommand("apply", "Segment image(s) with a trained patchwork model");
  auto c = std::make_shared<ApplyCli>();
  cmd->add_option("--model", c->model, "model file (.safetensors) written by patchwork train")->required();
  cmd->add_option("--in", c->in, "input image(s) of one case; several files = several contrasts (channels)");
  cmd->add_option("--out", c->out, "output NIfTI (.nii or .nii.gz)");
  cmd->add_option("--in-dir", c->in_dir, "batch: a folder of cases (nnU-Net CASE_0000.nii.gz channel naming understood)");
  cmd->add_option("--out-dir", c->out_dir, "batch: output folder (CASE.nii.gz per case)");
  cmd->add_option("--generate-type", c->generate_type, "patch distribution: tree (full coverage) or random")
      ->capture_default_str();
  cmd->add_option("--num-patches", c->num_patches, "random: level-0 patches per chunk")
      ->capture_default_str()
      ->check(positive());
  cmd->add_option("--branch-factor", c->branch_factor, "random: children of each kept patch")
      ->capture_default_str()
      ->check(positive());
  cmd->add_option("--num-chunks", c->num_chunks, "repeat the whole process N times (results accumulate)")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--lazy-fraction", c->lazy_fraction, "lazyEval: keep this top fraction of patches after each level")
      ->capture_default_str();
  cmd->add_option("--attention", c->attention, "lazyEval reduction of sigmoid(output): mean or max")
      ->capture_default_str();
  cmd->add_option("--window", c->window, "stitching window: flat, cos or cos2")->capture_default_str();
  cmd->add_option("--sparse-suppression", c->sparse_suppression, "alpha in Y = sum w p / sqrt((sum w)^2 + 3 alpha)")
      ->capture_default_str();
  cmd->add_option("--out-type", c->out_type, "float32 | uint8 | int16 | mask[:t1,t2..] | atls[:t1,..]")
      ->capture_default_str();
  cmd->add_option("--ce-threshold", c->ce_threshold,
                  "categorical models: minimal probability for a non-background decision (atls)");
  cmd->add_option("--label-names", c->label_names, "label names (comma separated), written as a Workbench XML label table")
      ->delimiter(',');
  cmd->add_option("--sampling-factor", c->sampling_factor, "output voxel size = input voxel size / factor")
      ->capture_default_str();
  cmd->add_option("--level", c->level, "level stitched: -1 (last), N, or mix (coarser levels fill gaps)")
      ->capture_default_str();
  cmd->add_option("--scale-to-original", c->scale_to_original,
                  "true: output on the input grid; false: on the network's final voxel grid")
      ->capture_default_str();
  cmd->add_option("--augment", c->augment, "test-time augmentation: none, model (the training's), or a JSON dict")
      ->capture_default_str();
  cmd->add_option("--device", c->device, "cpu or cuda (default: cuda when available)");
  cmd->add_option("--threads", c->threads, "CPU threads (0 = all)")->capture_default_str()->check(non_negative());
  cmd->add_option("--seed", c->seed, "random seed (patch placement, augmentation)")->capture_default_str();
  cmd->add_option("--batch-size", c->batch_size, "patches per network call")->capture_default_str()->check(positive());
  cmd->add_option("--brick", c->brick, "edge of the stitching bricks in voxels (memory held ~ one patch-thick slab)")
      ->capture_default_str()
      ->check(positive());
  cmd->add_option("--preview", c->preview, "write a PNG montage (batch: any value writes CASE.png in --out-dir)");
  cmd->add_flag("--quiet", c->quiet, "no progress lines on stderr");
  cmd->add_flag("--skip-existing", c->skip_existing, "batch: leave out cases whose output already exists");
  cmd->callback([c]() { run(*c); });
}

}  // namespace pw::cli
