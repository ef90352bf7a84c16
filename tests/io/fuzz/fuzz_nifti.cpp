// libFuzzer target for the NIfTI reader: the same parser as read_nifti, fed from memory (plain or gzip).
// Any input must either read or throw pw::InputError: no crash, no hang, no huge allocation.
// Built with -DPW_FUZZ=ON and clang (tests/io/tests.cmake); run by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>

#include "io/error.h"
#include "io/nifti.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    pw::Volume v = pw::read_nifti_memory(data, size, "fuzz");
    // Touch what a caller would: the geometry and the scaled values.
    volatile double sink = v.affine()(0, 0);
    if (v.datatype != pw::nifti_dt::rgb24 && v.num_voxels() > 0) sink = v.value(v.num_voxels() - 1);
    (void)sink;
  } catch (const pw::InputError&) {
  }
  return 0;
}
