// Helpers of the CPU-vs-CUDA tests (test_cuda_parity.cpp, test_cuda_train.cpp).
#pragma once
#include <vector>

#include "engine/tensor.h"
#ifdef PW_HAVE_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace pw::test {

// Scoped TF32 off (the parity tolerance is fp32's).
struct Fp32Only {
#ifdef PW_HAVE_CUDA
  bool prev = cuda::tf32();
  Fp32Only() { cuda::set_tf32(false); }
  ~Fp32Only() { cuda::set_tf32(prev); }
#else
  ~Fp32Only() {}  // nothing to switch in a CPU-only build
#endif
};

// A tensor's values (copied to the host) as doubles, the reference type of check_close.
inline std::vector<double> as_double(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace pw::test
