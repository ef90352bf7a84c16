// The CUDA backend's controls for engine users, tests and benchmarks: memory statistics of the
// caching allocator, the TF32 switch, synchronisation and the device name. Declared only in CUDA
// builds (PW_HAVE_CUDA); each goes to the loaded CUDA plugin (engine/cuda_backend.h, loaded on the
// first call; a plugin that cannot be loaded throws). The functions are kernels/cuda/runtime.h's.
#pragma once
#ifdef PW_HAVE_CUDA
#include <string>

#include "engine/cuda_backend.h"

namespace pw::cuda {
using kernels::cuda::MemoryStats;
// bytes in use, peak, cached, reserved, hit counts
inline MemoryStats memory_stats() { return cuda_backend().runtime.memory_stats(); }
inline void reset_peak() { cuda_backend().runtime.reset_peak(); }
// give cached blocks back to the driver
inline void empty_cache() { cuda_backend().runtime.empty_cache(); }
// the size a request of `bytes` is rounded to by the allocator
inline size_t bucket_size(size_t bytes) { return cuda_backend().runtime.bucket_size(bytes); }
// TF32 for cuDNN convolutions and cuBLAS GEMMs (default on)
inline void set_tf32(bool on) { cuda_backend().runtime.set_tf32(on); }
inline bool tf32() { return cuda_backend().runtime.tf32(); }
inline void set_conv_workspace_cap(size_t bytes) { cuda_backend().runtime.set_conv_workspace_cap(bytes); }
inline size_t conv_workspace_cap() { return cuda_backend().runtime.conv_workspace_cap(); }
// wait for the compute stream (before reading a clock)
inline void synchronize() { cuda_backend().runtime.synchronize(); }
inline std::string device_description() { return cuda_backend().runtime.device_description(); }
}  // namespace pw::cuda
#endif
