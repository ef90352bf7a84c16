// One `patchwork apply` case, as a C++ call: read the image(s), run the inference, write the output
// type atomically (and a preview PNG). The CLI (cli/cmd_apply.cpp) and `patchwork demo` use it.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "apply/infer.h"
#include "apply/outputs.h"
#include "train/model.h"

namespace pw::apply {

struct ApplyRequest {
  InferOptions infer;
  OutputType out_type;
  std::optional<float> ce_threshold;
  std::vector<std::string> label_names;    // empty: the model's (if any)
  std::vector<std::array<int, 3>> label_colors;  // empty: the model's (if any)
  std::optional<train::Augment> augment;   // test-time augmentation (unset: the model's; used when infer.augment)
  std::filesystem::path preview;           // empty: none
};

// The inference and output options of `patchwork apply` as the CLI spells them (--generate-type tree ..):
// cli/cmd_apply.cpp and the Python package (python/) fill this; make_request checks and converts it.
struct ApplyOptions {
  std::string generate_type = "tree";
  int num_patches = 16, branch_factor = 1, num_chunks = 1, batch_size = 8, brick = 32;
  double sparse_suppression = 0, sampling_factor = 1;
  std::optional<double> lazy_fraction;                  // unset: the model's lazyEval
  std::optional<std::string> attention, attention_fun;  // unset: the model's lazyEval
  std::string window = "flat", out_type = "atls", level = "-1", augment = "none";
  std::optional<float> ce_threshold;
  std::vector<std::string> label_names, label_colors;
  bool scale_to_original = true, quiet = false, largest_component = false;
  int connectivity = 26;
  uint64_t seed = 1;
};
// Throws pw::UsageError with the CLI's message ("--window 'x': expected flat, cos or cos2"). The request's
// preview is empty; an --augment dict is parsed by set_augment once the model (its ndim) is known.
ApplyRequest make_request(const ApplyOptions& options);
void set_augment(ApplyRequest& request, const std::string& augment, int ndim);
// The model's lazyEval (fraction, reduceFun, attentionFun) as InferOptions: apply's defaults and what the
// validation during training uses.
InferOptions model_lazy_options(const train::ModelSpec& spec);
// The model's lazyEval defaults where `options` leave them unset.
void set_lazy_defaults(ApplyRequest& request, const ApplyOptions& options, const train::ModelSpec& spec);

// Label values (categorical_label, else 1..K), thresholds and names of a model.
LabelInfo label_info(const train::ModelSpec& spec, const ApplyRequest& req);

// The inference of a loaded input through `model` (the request's options and test-time augmentation),
// stitched whole (the Python package's arrays).
Prediction predict(train::Model& model, const InferInput& input, const ApplyRequest& req);

// Runs one case, the output built brick by brick (OutputBuilder); returns the prediction's grid and
// statistics (no prob).
Prediction apply_case(train::Model& model, const std::vector<std::filesystem::path>& inputs,
                      const std::filesystem::path& output, const ApplyRequest& req);

// Writes the preview montage of a label map of colour indices 1..K on `grid` over channel 0 of `input`.
void write_preview(const InferInput& input, const train::Patch& grid, const Volume& labels,
                   const std::filesystem::path& png);

}  // namespace pw::apply
