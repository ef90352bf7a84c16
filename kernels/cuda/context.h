// The compute context of the CUDA bodies: one stream, one cuBLAS handle and one cuDNN handle
// (bound to that stream), created on first use. Also the launch helpers shared by the .cu files
// (grid_for, PW_CUDA_LOOP, PW_LAUNCH): defined here only.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/cuda/runtime.h"

namespace pw::kernels::cuda {

struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
  int sm_count = 0;
};
// The process' context; throws a clear error when no GPU is available.
Context& context();
inline cudaStream_t stream() { return context().stream; }

// Device scratch memory from the caching allocator, returned on scope exit.
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(size_t bytes) : p_(bytes ? device_malloc(bytes) : nullptr) {}
  ~Scratch() { if (p_) device_free(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return p_; }
  template <class T> T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
};

constexpr int kBlock = 256;
// Blocks for a grid-stride loop over n items (at least 1, at most 32 per SM x 2^5).
inline unsigned grid_for(int64_t n, int block = kBlock) {
  int64_t b = (n + block - 1) / block;
  int64_t cap = int64_t(context().sm_count) * 32;
  if (b > cap) b = cap;
  return b < 1 ? 1u : static_cast<unsigned>(b);
}

}  // namespace pw::kernels::cuda

// Grid-stride loop over [0, n).
#define PW_CUDA_LOOP(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// Launches `kernel(args...)` for n items of a grid-stride loop (PW_CUDA_LOOP): grid_for(n) blocks of
// kBlock threads, no shared memory, on the context's stream, then checks the launch. Launches nothing
// when n <= 0 (the statements after it still run). Usable as one statement (`if (c) PW_LAUNCH(...);`).
#define PW_LAUNCH(kernel, n, ...)                                           \
  do {                                                                      \
    const int64_t pw_launch_n_ = (n);                                       \
    if (pw_launch_n_ > 0) {                                                 \
      kernel<<<grid_for(pw_launch_n_), kBlock, 0, stream()>>>(__VA_ARGS__); \
      PW_CUDA_CHECK_LAUNCH(#kernel);                                        \
    }                                                                       \
  } while (0)
