// CUDA device memory, copies and the availability probe.
#include <cuda_runtime.h>

#include "engine/cuda/check.h"
#include "engine/device.h"

namespace pw::cuda {

bool available() {
  static const bool ok = [] {
    int n = 0;
    // Without a driver this returns an error: that means "no GPU".
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  }();
  return ok;
}

void* alloc(size_t bytes) {
  if (!available()) throw std::runtime_error("device cuda requested but no CUDA GPU is available");
  void* p = nullptr;
  PW_CUDA_CHECK(cudaMalloc(&p, bytes == 0 ? 256 : bytes));
  return p;
}

void free(void* p, size_t) { cudaFree(p); }

void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  cudaMemcpyKind kind = dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                      : (src_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  PW_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
}

void memset_zero(void* p, size_t bytes) { PW_CUDA_CHECK(cudaMemset(p, 0, bytes)); }

namespace {
__global__ void add_inplace_kernel(float* dst, const float* src, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] += src[i];
}
}  // namespace

void add_inplace(float* dst, const float* src, int64_t n) {
  if (n == 0) return;
  int blocks = (int)((n + 255) / 256);
  if (blocks > 65535) blocks = 65535;
  add_inplace_kernel<<<blocks, 256>>>(dst, src, n);
  PW_CUDA_CHECK(cudaGetLastError());
}

}  // namespace pw::cuda
