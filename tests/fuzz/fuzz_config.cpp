// libFuzzer target for the training config parser: bytes -> a temporary file -> TrainConfig::load
// (JSON with comments -> TrainConfig::from_json, relative dataset paths resolved against the file's
// folder) -> what training derives from the config next (out_channels per level, ModelSpec::from_config).
// Expected rejections: pw::InputError / pw::UsageError / std::invalid_argument. Anything else escaping
// (an nlohmann parse_error / out_of_range / type_error, std::out_of_range, std::bad_alloc, ...), a crash,
// a sanitizer report or a hang is a finding. TrainConfig::load takes a path, hence the file (one per
// process, tests/fuzz/temp_file.h).
// A custom mutator changes half of the inputs as JSON (json_mutator.h), the other half byte-wise.
// Built with -DPW_FUZZ=ON and clang (tests/fuzz/tests.cmake); run by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "tests/fuzz/json_mutator.h"
#include "tests/fuzz/temp_file.h"

#include "io/error.h"
#include "train/config.h"
#include "train/model.h"

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  std::minstd_rand rng(seed);
  if (rng() % 2 == 0) return LLVMFuzzerMutate(data, size, max_size);
  nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, false, /*ignore_comments=*/true);
  if (j.is_discarded()) return LLVMFuzzerMutate(data, size, max_size);
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k = pw::train::Scheme::json_keys();
    for (const char* e : {"network", "intermediate_out", "intermediate_loss", "block_out", "forward_type",
                          "identical_blocks", "final_block", "num_its", "num_patches", "epochs", "batch_size",
                          "generate_type", "loss", "dontcare", "hard_mining", "hard_mining_order", "hard_mining_maxage",
                          "balance", "augment", "independent_augmentation", "optimizer", "parallel", "validation_every",
                          "seed", "threads", "time_limit_s", "dataset", "patch_size", "out_patch_size", "fov_mm",
                          "fov_rel", "destvox_mm", "destvox_rel", "features", "convs_per_block", "convs", "norm",
                          "activation", "leaky_slope", "down", "up", "padding", "ratio", "label_weight", "autoweight",
                          "dphi", "flip", "dscale", "type", "lr", "weight_decay", "momentum", "schedule", "gamma",
                          "step_size", "path", "pairs", "image", "label", "name", "validation", "train", "max_cases",
                          "finalizeOnApply", "finalBlock_all_levels", "lazyEval", "fraction", "attentionFun",
                          "reduceFun", "label_colors"})
      k.push_back(e);
    return k;
  }();
  for (unsigned i = 0, n = 1 + rng() % 3; i < n; ++i) pw_fuzz::mutate_json(j, rng, keys);
  const std::string out = pw_fuzz::dump(j);
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static pw_fuzz::TempFile tmp("config", ".json");
  FILE* f = std::fopen(tmp.path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  try {
    pw::train::TrainConfig c = pw::train::TrainConfig::load(tmp.path);
    volatile int sink = 0;
    for (int k = 0; k < c.scheme.depth; ++k) sink = sink + c.out_channels(k);
    pw::train::ModelSpec s = pw::train::ModelSpec::from_config(c, 1);
    sink = sink + s.block_in_channels(c.scheme.depth - 1);
    sink = sink + static_cast<int>(s.to_json().dump().size());
    (void)sink;
  } catch (const pw::InputError&) {
  } catch (const pw::UsageError&) {
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
