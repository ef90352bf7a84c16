// The binary NIfTI-1 (348-byte) and NIfTI-2 (540-byte) headers: field offsets, decoding in either byte
// order, encoding in host byte order. Used by io/nifti.cpp; validation of the decoded values is done there.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "io/nifti.h"

namespace pw::nifti_detail {

constexpr size_t kN1HeaderSize = 348;
constexpr size_t kN2HeaderSize = 540;

// The header fields the reader still has to check before they go into a Volume.
struct RawHeader {
  int version = 1;
  bool swapped = false;  // stored in the opposite byte order to the host's
  char magic[4] = {0, 0, 0, 0};  // "n+1\0", "ni1\0", "n+2\0" or "ni2\0" when valid
  int64_t dim[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  double vox_offset = 0;  // float in NIfTI-1, int64 in NIfTI-2
};

// Decodes a header of `version` (the bytes must hold kN1HeaderSize or kN2HeaderSize bytes) into the
// plain fields of `v` (everything but ndim/dims/vox_offset/extensions) and `raw`.
void decode_header(const uint8_t* bytes, int version, bool swapped, NiftiHeader& v, RawHeader& raw);

// Encodes v's header fields as a single-file header ("n+1" / "n+2") of `version`, host byte order,
// with the given vox_offset; bitpix follows the datatype.
std::vector<uint8_t> encode_header(const NiftiHeader& v, int version, int64_t vox_offset);

template <class T>
T load(const uint8_t* p, bool swapped) {
  static_assert(std::is_trivially_copyable<T>::value, "plain values only");
  uint8_t b[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i) b[i] = swapped ? p[sizeof(T) - 1 - i] : p[i];
  T x;
  std::memcpy(&x, b, sizeof(T));
  return x;
}

// Reverses the byte order of n elements of `size` bytes (2, 4 or 8) in place.
void swap_bytes(uint8_t* data, size_t n, int size);

}  // namespace pw::nifti_detail
