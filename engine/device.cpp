#include "engine/device.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace pw {

#ifndef PW_HAVE_CUDA
namespace {
[[noreturn]] void no_cuda() {
  throw std::runtime_error("this Patchwork was built without CUDA (configure with -DPW_CUDA=ON on a machine with "
                           "nvcc, cuDNN and cuBLAS)");
}
}  // namespace
#endif

void* device_alloc(Device d, size_t bytes) {
  if (d == Device::cuda) {
#ifdef PW_HAVE_CUDA
    return cuda::alloc(bytes);
#else
    no_cuda();
#endif
  }
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  return p;
}

void device_free(Device d, void* p, size_t bytes) {
  if (!p) return;
#ifdef PW_HAVE_CUDA
  if (d == Device::cuda) {
    cuda::free(p, bytes);
    return;
  }
#endif
  std::free(p);
}

void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev == Device::cpu && src_dev == Device::cpu) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef PW_HAVE_CUDA
  cuda::copy(dst, dst_dev == Device::cuda, src, src_dev == Device::cuda, bytes);
#else
  no_cuda();
#endif
}

void device_memset_zero(Device d, void* p, size_t bytes) {
  if (bytes == 0) return;
  if (d == Device::cpu) {
    std::memset(p, 0, bytes);
    return;
  }
#ifdef PW_HAVE_CUDA
  cuda::memset_zero(p, bytes);
#else
  no_cuda();
#endif
}

}  // namespace pw
