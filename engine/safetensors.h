// Model files in the safetensors format: an 8-byte little-endian header length N, N bytes of
// JSON header (padded with spaces to a multiple of 8), then the raw little-endian tensor bytes.
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end)} (offsets
// relative to the first byte after the header) and may hold "__metadata__": {string: string}
// (the model description JSON goes in one of its values). Files written by Python's
// `safetensors` load here and ours load there.
#pragma once
#include <filesystem>
#include <map>
#include <string>

#include "engine/tensor.h"

namespace pw {

struct SafetensorsContent {
  std::map<std::string, Tensor> tensors;  // CPU tensors (f32 <-> F32, i32 <-> I32, u8 <-> U8)
  std::map<std::string, std::string> metadata;
};

// Writes atomically (temporary file + rename): on failure the target is untouched.
// Tensors on any device are accepted (copied to the host). Throws pw::InputError on I/O
// errors and std::invalid_argument for an empty or reserved ("__metadata__") tensor name.
void save_safetensors(const std::filesystem::path& file, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads and validates everything (header length against the file size, JSON, dtype names,
// shapes against byte counts, offsets in range, non-overlapping and covering the data) and
// throws pw::InputError("<file>: <reason>") on a corrupt, truncated or unsupported file.
SafetensorsContent load_safetensors(const std::filesystem::path& file);

}  // namespace pw
