// The CUDA runtime of the kernels layer: the caching device allocator, host<->device copies
// (uploads through a pinned staging buffer), the TF32 switch and synchronisation. Plain C++ (no
// CUDA headers), so engine code, tests and benchmarks can include it. The stream and the
// cuBLAS/cuDNN handles are in kernels/cuda/context.h (for the .cu bodies).
//
// Memory model: one compute stream per process; every kernel, copy and memset runs on it, so a
// block freed to the cache can be handed out again at once (stream order keeps it safe). The
// stream is a blocking one, so kernels launched on the legacy default stream stay ordered with it;
// new kernels should still launch on kernels::cuda::stream() (kernels/cuda/context.h).
// The allocator and copies are thread-safe; ops are meant to be issued from one host thread.
// The GPU used is the current CUDA device (device 0 unless CUDA_VISIBLE_DEVICES says otherwise).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pw::kernels::cuda {

// True when a CUDA device can be used (a driver and at least one GPU).
bool available();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" or "no CUDA GPU" (never throws).
std::string device_description();

// ---- caching allocator ----------------------------------------------------------------------
// Requests are rounded up to a bucket size (512 B steps up to 1 MiB, 2 MiB steps above); a freed
// block goes to its bucket's free list and serves the next request of that bucket. Device memory
// only (cudaMalloc), never managed memory. When cudaMalloc fails the cache is released and the
// request retried once; then a std::runtime_error names the size and the statistics.
void* device_malloc(size_t bytes);
void device_free(void* p);

struct MemoryStats {
  size_t in_use = 0;        // bytes handed out (bucket sizes) and not yet freed
  size_t peak_in_use = 0;   // maximum of in_use since start or reset_peak()
  size_t cached = 0;        // bytes on the free lists
  size_t reserved = 0;      // bytes obtained from cudaMalloc and not released
  uint64_t allocs = 0;      // device_malloc calls
  uint64_t cache_hits = 0;  // ... served from a free list
  uint64_t device_mallocs = 0;  // cudaMalloc calls
};
MemoryStats memory_stats();
void reset_peak();
// Returns every cached block to the driver (cudaFree).
void empty_cache();
// The bucket size a request of `bytes` is rounded to.
size_t bucket_size(size_t bytes);

// ---- copies (synchronous with respect to the host, except device->device) --------------------
void copy_to_device(void* dst, const void* src_host, size_t bytes);  // through pinned staging
void copy_to_host(void* dst_host, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);  // stream-ordered
void memset_zero(void* p, size_t bytes);                                // stream-ordered
// Waits for all work on the compute stream.
void synchronize();

// ---- math mode --------------------------------------------------------------------------------
// TF32 tensor cores for convolutions (cuDNN math type) and GEMMs (cuBLAS math mode).
// Default on (speed); the parity tests switch it off to compare fp32 against the CPU.
void set_tf32(bool on);
bool tf32();

// ---- timing events (op profiling, engine/profile.h) -----------------------------------------------
// event_record() records an event on the compute stream and returns its handle; event_elapsed_ms()
// waits for `end` and returns the GPU time between the two; event_destroy() frees a handle.
void* event_record();
float event_elapsed_ms(void* begin, void* end);
void event_destroy(void* event);

// cuDNN convolution workspace cap (bytes); algorithms needing more are not used. Default 1 GiB.
void set_conv_workspace_cap(size_t bytes);
size_t conv_workspace_cap();

}  // namespace pw::kernels::cuda
