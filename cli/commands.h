// The `patchwork` subcommands. Each lives in cli/cmd_<name>.cpp and adds itself to the
// CLI11 app; cli/main.cpp lists them. A command's callback throws pw::InputError for bad
// input (exit 1) and pw::UsageError for bad usage (exit 2).
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>

#include "engine/cuda_backend.h"
#include "engine/tensor.h"
#include "io/error.h"

namespace CLI {
class App;
class Validator;
}  // namespace CLI

namespace pw::cli {

// Option checks with a plain message ("--threads: must be >= 0, got -3"; exit 2), cmd_checks.cpp.
CLI::Validator positive();      // a number > 0
CLI::Validator non_negative();  // a number >= 0

// The --device option of every command that computes: empty = cuda when a GPU is present, else cpu.
// A bad name is a usage error (exit 2); cuda without a GPU is an error of this machine (exit 1), naming
// what is missing (driver, GPU, the CUDA plugin or a library of it). A GPU the build cannot use
// (its plugin missing) is a warning when no device was asked for.
inline Device device_option(const std::string& value) {
  Device d;
  try {
    d = value.empty() ? default_device() : parse_device(value);
  } catch (const std::invalid_argument&) {
    throw UsageError("--device must be cpu or cuda, got '" + value + "'");
  }
  if (d == Device::cpu && !value.empty()) return d;  // --device cpu: CUDA is not even probed
  const CudaStatus& cuda = cuda_status();
  if (d == Device::cuda && !cuda.available) throw InputError("device cuda requested but " + cuda.reason);
  if (cuda.driver_gpu && !cuda.available)
    std::fprintf(stderr, "patchwork: warning: running on the CPU: %s\n", cuda.reason.c_str());
  return d;
}

void add_info(CLI::App& app);     // patchwork info FILE [--json]
void add_convert(CLI::App& app);  // patchwork convert IN OUT [--dtype T]
void add_apply(CLI::App& app);    // patchwork apply --model M --in IMG.. --out OUT [options]
void add_eval(CLI::App& app);     // patchwork eval --pred P --ref R [--labels ..] [--json]
void add_demo(CLI::App& app);     // patchwork demo [--out DIR] [--seconds N]
void add_train(CLI::App& app);    // patchwork train --config CFG [--dataset DIR] [--out M] [--resume] ...

}  // namespace pw::cli
