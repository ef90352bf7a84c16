// Error checking for every CUDA / cuBLAS / cuDNN call: the failing call is named in the message.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define PW_CUDA_CHECK(call)                                                                              \
  do {                                                                                                   \
    cudaError_t pw_err_ = (call);                                                                        \
    if (pw_err_ != cudaSuccess)                                                                          \
      throw std::runtime_error(std::string("CUDA error in ") + #call + ": " + cudaGetErrorString(pw_err_) + \
                               " (" + __FILE__ + ":" + std::to_string(__LINE__) + ")");                \
  } while (0)
