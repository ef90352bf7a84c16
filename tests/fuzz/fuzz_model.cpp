// libFuzzer target for the model-file loader: bytes -> a temporary file -> pw::train::Model::load
// (CPU), with the optional extra tensors and metadata requested, then what `patchwork apply` reads
// from the loaded model (spec, state). load_safetensors has no in-memory API, hence the file (one per
// process, tests/fuzz/temp_file.h).
// Expected rejections: pw::InputError / pw::UsageError / std::invalid_argument. Anything else escaping
// (nlohmann type_error, std::out_of_range, std::bad_alloc, std::length_error, ...), a crash, a
// sanitizer report, a huge allocation or a hang is a finding.
// A custom mutator keeps the file's structure in most mutations (json_mutator.h): it changes the JSON
// header or the model description inside its metadata as JSON, or the header's bytes, and writes the header
// length to match; the rest are libFuzzer's plain byte mutations of the whole file.
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
#include "train/model.h"

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  std::minstd_rand rng(seed);
  const unsigned mode = rng() % 5;  // 0: bytes, 1: header bytes, 2: header JSON, 3-4: model description JSON
  uint64_t n = 0;
  for (int i = 0; i < 8 && size >= 8; ++i) n |= uint64_t{data[i]} << (8 * i);
  if (mode == 0 || size < 8 || n > size - 8) return LLVMFuzzerMutate(data, size, max_size);
  std::string header(reinterpret_cast<const char*>(data) + 8, n);
  const std::string rest(reinterpret_cast<const char*>(data) + 8 + n, size - 8 - n);
  if (mode == 1) {
    header = pw_fuzz::mutate_bytes(header, max_size > size ? max_size - size + n : n);
  } else {
    nlohmann::json h = nlohmann::json::parse(header, nullptr, false);
    if (h.is_discarded() || !h.is_object()) return LLVMFuzzerMutate(data, size, max_size);
    static const std::vector<std::string> header_keys = {"dtype", "shape", "data_offsets", "__metadata__", "patchwork"};
    static const std::vector<std::string> spec_keys = {
        "format", "crop_generator", "image_channels", "in_channels", "network", "out_channels", "forward_type",
        "identical_blocks", "intermediate_loss", "final_block", "thresholds", "label_names", "augment",
        "independent_augmentation", "training", "features", "convs", "convs_per_block", "norm", "activation",
        "leaky_slope", "down", "up", "padding", "type", "dims", "depth", "ndim", "scheme", "patch_size",
        "out_patch_size", "num_labels", "categorical", "categorical_label", "snapper", "smoothfac_data", "dphi", "flip",
        "dscale", "finalizeOnApply", "finalBlock_all_levels", "lazyEval", "label_colors", "crop_fdim"};
    nlohmann::json* desc = nullptr;
    nlohmann::json spec;
    if (mode >= 3 && h.contains("__metadata__") && h["__metadata__"].is_object() &&
        h["__metadata__"].contains("patchwork") && h["__metadata__"]["patchwork"].is_string()) {
      desc = &h["__metadata__"]["patchwork"];
      spec = nlohmann::json::parse(desc->get<std::string>(), nullptr, false);
    }
    if (desc && !spec.is_discarded()) {
      for (unsigned i = 0, k = 1 + rng() % 3; i < k; ++i) pw_fuzz::mutate_json(spec, rng, spec_keys);
      *desc = pw_fuzz::dump(spec);
    } else {
      pw_fuzz::mutate_json(h, rng, header_keys);
    }
    header = pw_fuzz::dump(h);
  }
  if (8 + header.size() + rest.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  for (int i = 0; i < 8; ++i) data[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  std::memcpy(data + 8, header.data(), header.size());
  std::memcpy(data + 8 + header.size(), rest.data(), rest.size());
  return 8 + header.size() + rest.size();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static pw_fuzz::TempFile tmp("model", ".safetensors");
  FILE* f = std::fopen(tmp.path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  try {
    std::map<std::string, pw::Tensor> extra;
    std::map<std::string, std::string> meta;
    pw::train::Model m = pw::train::Model::load(tmp.path, pw::Device::cpu, &extra, &meta);
    volatile size_t sink = m.spec().to_json().dump().size();
    sink = sink + m.state().size() + m.parameters().size() + extra.size() + meta.size();
    for (int k = 0; k < m.spec().scheme.depth; ++k) sink = sink + m.spec().block_in_channels(k);
    (void)sink;
  } catch (const pw::InputError&) {
  } catch (const pw::UsageError&) {
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
