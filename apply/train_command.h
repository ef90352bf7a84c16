// `patchwork train` as a C++ call, for the CLI (cli/cmd_train.cpp) and the Python package's train(): the
// config with the command's overrides, the training (train/trainer.h) with the application path as the
// validation predictor, and the training curves beside the model.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/tensor.h"
#include "train/trainer.h"

namespace pw::apply {

struct TrainRequest {
  std::filesystem::path config_file;   // the JSON config; when empty, `config` holds it
  nlohmann::json config;               // (relative dataset paths then count from the working folder)
  std::string dataset;                 // non-empty: replaces the config's dataset (MSD folder)
  std::filesystem::path out = "model.safetensors";
  Device device = Device::cpu;
  int threads = 0;                     // > 0: replaces the config's
  int64_t seed = -1;                   // >= 0: replaces the config's
  bool resume = false;
  bool progress_tty = false, quiet = false;
  std::function<bool(const std::string& log_line)> on_iteration;  // train::TrainOptions::on_iteration
};

struct TrainOutcome {
  train::TrainResult result;
  std::filesystem::path curves;  // <out>.curves.png, empty when it could not be drawn (a warning on stderr)
  int batch_size = 0;            // the config's batch size (per rank under mpirun)
};

// Throws pw::InputError / pw::UsageError with the CLI's messages (exit 1 / 2 there), before any training
// when the output, the config or the dataset is wrong.
TrainOutcome train_command(const TrainRequest& req);

}  // namespace pw::apply
