// The engine's CUDA device functions (engine/device.h): Storage memory comes from the kernels
// layer's caching allocator; copies and memsets run on its compute stream.
#include <cstring>

#include "engine/device.h"
#include "kernels/cuda/runtime.h"
#include "kernels/elementwise.h"

namespace pw::cuda {

bool available() { return kernels::cuda::available(); }

void* alloc(size_t bytes) { return kernels::cuda::device_malloc(bytes); }

void free(void* p, size_t) { kernels::cuda::device_free(p); }

void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  if (dst_on_device && src_on_device) kernels::cuda::copy_device_to_device(dst, src, bytes);
  else if (dst_on_device) kernels::cuda::copy_to_device(dst, src, bytes);
  else if (src_on_device) kernels::cuda::copy_to_host(dst, src, bytes);
  else std::memcpy(dst, src, bytes);
}

void memset_zero(void* p, size_t bytes) { kernels::cuda::memset_zero(p, bytes); }

void add_inplace(float* dst, const float* src, int64_t n) { kernels::cuda::add(dst, src, dst, n); }

}  // namespace pw::cuda
