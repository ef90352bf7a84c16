// `patchwork apply --model M --in IMG [IMG2 ..] --out OUT [options]` and the batch form
// `--in-dir DIR --out-dir DIR`: hierarchical inference of a trained patchwork (paper list D).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <regex>
#include <unistd.h>

#include "apply/apply_case.h"
#include "apply/shard.h"
#include "cli/commands.h"
#include "io/atomic_file.h"
#include "io/error.h"
#include "kernels/parallel.h"

namespace fs = std::filesystem;

namespace pw::cli {

namespace {

// The inference and output options (apply::ApplyOptions, shared with the Python package) and the CLI's own.
struct ApplyCli : apply::ApplyOptions {
  std::string model;
  std::vector<std::string> in;
  std::string out, in_dir, out_dir;
  int threads = 0;
  bool skip_existing = false;
  std::string device, preview, shard;
};

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

// The shard's cases with their outputs (apply/shard.h), every output checked before any work (none may
// replace an input). `total`: the cases of the whole folder.
std::vector<BatchCase> plan_batch(const ApplyCli& c, const fs::path& preview_dir, const apply::Shard& shard,
                                  size_t& total) {
  fs::create_directories(c.out_dir);
  const auto cases = list_cases(c.in_dir);  // sorted by name
  const std::vector<std::pair<std::string, std::vector<fs::path>>> sorted(cases.begin(), cases.end());
  total = sorted.size();
  std::vector<BatchCase> plan;
  for (size_t i : apply::shard_positions(sorted.size(), shard)) {
    const auto& [name, files] = sorted[i];
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
void run_batch(const ApplyCli& c, const apply::Shard& shard, train::Model& model, const apply::ApplyRequest& req,
               const std::function<void(const std::string&, const apply::Prediction&, const fs::path&)>& report) {
  size_t total = 0;
  const std::vector<BatchCase> plan = plan_batch(c, req.preview, shard, total);
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
  std::string of = std::to_string(plan.size()) + " cases";
  if (shard.count > 1)
    of += " (shard " + std::to_string(shard.index) + "/" + std::to_string(shard.count) + " from " + shard.source +
          " of the folder's " + std::to_string(total) + ")";
  std::fprintf(stderr, "apply: %d done, %d failed, %d skipped (output exists) of %s\n", done, failed, skipped,
               of.c_str());
  if (failed > 0) throw InputError(std::to_string(failed) + " of " + std::to_string(plan.size()) + " cases failed");
}

void run(const ApplyCli& c) {
  apply::ApplyRequest req = apply::make_request(c);
  req.preview = c.preview;
  if (c.threads > 0) set_num_threads(c.threads);
  const Device dev = device_option(c.device);
  const bool single = !c.in.empty();
  if (single == !c.in_dir.empty()) throw UsageError("give either --in IMG [IMG2 ..] with --out, or --in-dir with --out-dir");
  if (single && c.out.empty()) throw UsageError("--out is required with --in");
  if (!single && c.out_dir.empty()) throw UsageError("--out-dir is required with --in-dir");
  if (single && !c.shard.empty()) throw UsageError("--shard splits an --in-dir batch; it does not go with --in");
  const apply::Shard shard = single ? apply::Shard{} : apply::pick_shard(c.shard, [](const char* n) { return std::getenv(n); });
  if (single) {  // outputs checked before the model is loaded and any work starts
    std::vector<fs::path> inputs(c.in.begin(), c.in.end());
    inputs.push_back(c.model);
    check_output(c.out, inputs);
    if (!c.preview.empty()) check_output(c.preview, inputs);
  }
  train::Model model = train::Model::load(c.model, dev);
  apply::set_augment(req, c.augment, model.spec().scheme.ndim);
  apply::set_lazy_defaults(req, c, model.spec());
  auto report = [&](const std::string& name, const apply::Prediction& p, const fs::path& out) {
    std::string levels;
    for (size_t l = 0; l < p.patches_per_level.size(); ++l)
      levels += (l ? "," : "") + std::to_string(p.patches_per_level[l]);
    std::fprintf(stderr,
                 "apply: %s -> %s (%.1f s, patches per level %s; stitching bricks %lld of %lld, peak %.0f MB; parents' "
                 "outputs peak %.0f MB)\n",
                 name.c_str(), out.string().c_str(), p.seconds, levels.c_str(), static_cast<long long>(p.bricks_allocated),
                 static_cast<long long>(p.bricks_total), p.stitch_peak_bytes / 1e6, p.parents_peak_bytes / 1e6);
  };
  if (single) {
    std::vector<fs::path> files(c.in.begin(), c.in.end());
    apply::Prediction p = apply::apply_case(model, files, c.out, req);
    report(c.in.front(), p, c.out);
    return;
  }
  run_batch(c, shard, model, req, report);
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
  cmd->add_option("--lazy-fraction", c->lazy_fraction,
                  "lazyEval: keep this top fraction of patches after each level (default: the model's lazyEval, else 1)");
  cmd->add_option("--attention", c->attention,
                  "lazyEval reduceFun over the patch: mean or max (default: the model's, else mean)");
  cmd->add_option("--attention-fun", c->attention_fun,
                  "lazyEval attentionFun on the label logits: sigmoid, softmax or identity (default: the model's, "
                  "else softmax for categorical models, sigmoid otherwise)");
  cmd->add_option("--window", c->window, "stitching window: flat, cos or cos2")->capture_default_str();
  cmd->add_option("--sparse-suppression", c->sparse_suppression, "alpha in Y = sum w p / sqrt((sum w)^2 + 3 alpha)")
      ->capture_default_str();
  cmd->add_option("--out-type", c->out_type, "float32 | uint8 | int16 | mask[:t1,t2..] | atls[:t1,..]")
      ->capture_default_str();
  cmd->add_flag("--largest-component", c->largest_component,
                "atls/mask: keep per label only its largest connected component");
  cmd->add_option("--connectivity", c->connectivity,
                  "--largest-component: 26 (faces, edges, corners) or 6 (faces); one-slice images: 8 or 4")
      ->capture_default_str();
  cmd->add_option("--ce-threshold", c->ce_threshold,
                  "categorical models: minimal probability for a non-background decision (atls)");
  cmd->add_option("--label-names", c->label_names, "label names (comma separated), written as a Workbench XML label table")
      ->delimiter(',');
  cmd->add_option("--label-colors", c->label_colors,
                  "label colours R:G:B (0..255, comma separated), written with the names in the label table")
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
  cmd->add_option("--shard", c->shard,
                  "batch: K/N, apply only cases K, K+N, .. of the sorted list (K from 0; default from "
                  "OMPI_COMM_WORLD_RANK/SIZE, then SLURM_ARRAY_TASK_ID/COUNT)");
  cmd->callback([c]() { run(*c); });
}

}  // namespace pw::cli
