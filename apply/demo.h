// `patchwork demo`: with no data, generates synthetic 3D phantoms, trains a depth-2 patchwork on
// them for a fixed wall time, applies it to an unseen phantom and scores it. The pieces are
// here so that tests can run a short version.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "apply/metrics.h"
#include "train/phantom.h"
#include "train/sampler.h"

namespace pw::apply {

struct DemoOptions {
  std::filesystem::path out = "patchwork-demo";
  double seconds = 120;      // training wall time
  int train_cases = 6;
  int threads = 2;
  uint64_t seed = 7;
  bool quiet = false;        // no training progress lines
};

struct DemoResult {
  std::vector<LabelMetrics> metrics;  // of the unseen phantom, labels 1..3
  double mean_dice = 0;
  int iterations = 0;
  double train_seconds = 0, apply_seconds = 0;
  std::filesystem::path image, truth, prediction, preview, model;
};

// Writes into opt.out: train/ (phantoms), test_image.nii.gz, test_truth.nii.gz,
// test_prediction.nii.gz, test_preview.png, model.safetensors (+ its training log).
DemoResult run_demo(const DemoOptions& opt);

// A phantom as a training subject: its image and labels as one-channel volumes with its affine,
// prepared for the scheme (the demo's and the tests' one way to train on phantoms).
train::Subject phantom_subject(const std::string& name, const Phantom& p, const train::Scheme& sc);

// The training configuration the demo uses (JSON), for the README and tests.
std::string demo_config_json(double seconds, int threads, uint64_t seed);

}  // namespace pw::apply
