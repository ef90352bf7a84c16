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
  std::optional<train::Augment> augment;   // test-time augmentation (unset: the model's; used when infer.augment)
  std::filesystem::path preview;           // empty: none
};

// Label values (categorical_label, else 1..K), thresholds and names of a model.
LabelInfo label_info(const train::ModelSpec& spec, const ApplyRequest& req);

// Runs one case, the output built brick by brick (OutputBuilder); returns the prediction's grid and
// statistics (no prob).
Prediction apply_case(train::Model& model, const std::vector<std::filesystem::path>& inputs,
                      const std::filesystem::path& output, const ApplyRequest& req);

// Writes the preview montage of a label map of colour indices 1..K on `grid` over channel 0 of `input`.
void write_preview(const InferInput& input, const train::Patch& grid, const Volume& labels,
                   const std::filesystem::path& png);

}  // namespace pw::apply
