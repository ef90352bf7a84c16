// The CUDA backend's controls for engine users, tests and benchmarks: memory statistics of the
// caching allocator, the TF32 switch, synchronisation and the device name. Declared only in CUDA
// builds (PW_HAVE_CUDA); the functions live in the kernels layer (kernels/cuda/runtime.h).
#pragma once
#ifdef PW_HAVE_CUDA
#include "kernels/cuda/runtime.h"

namespace pw::cuda {
using kernels::cuda::MemoryStats;
using kernels::cuda::memory_stats;      // bytes in use, peak, cached, reserved, hit counts
using kernels::cuda::reset_peak;
using kernels::cuda::empty_cache;       // give cached blocks back to the driver
using kernels::cuda::set_tf32;          // TF32 for cuDNN convolutions and cuBLAS GEMMs (default on)
using kernels::cuda::tf32;
using kernels::cuda::set_conv_workspace_cap;
using kernels::cuda::conv_workspace_cap;
using kernels::cuda::synchronize;       // wait for the compute stream (before reading a clock)
using kernels::cuda::device_description;
}  // namespace pw::cuda
#endif
