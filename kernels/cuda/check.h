// Error checking for every CUDA / cuBLAS / cuDNN call: the failing call is named in the message,
// with the library's own reason and the source location. Throws std::runtime_error.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <stdexcept>
#include <string>

namespace pw::kernels::cuda {
[[noreturn]] inline void throw_call_error(const char* lib, const char* call, const char* reason, const char* file,
                                          int line) {
  throw std::runtime_error(std::string(lib) + " error in " + call + ": " + reason + " (" + file + ":" +
                           std::to_string(line) + ")");
}
}  // namespace pw::kernels::cuda

// A failed runtime call also leaves its error as the thread's "last error"; it is cleared here, so
// that a caught error is not reported a second time by the next PW_CUDA_CHECK_LAUNCH (which reads
// cudaGetLastError) against an innocent kernel. Sticky errors (a crashed kernel) stay: every later
// call reports them again.
#define PW_CUDA_CHECK(call)                                                                                    \
  do {                                                                                                         \
    cudaError_t pw_err_ = (call);                                                                              \
    if (pw_err_ != cudaSuccess) {                                                                              \
      cudaGetLastError();                                                                                      \
      ::pw::kernels::cuda::throw_call_error("CUDA", #call, cudaGetErrorString(pw_err_), __FILE__, __LINE__); \
    }                                                                                                          \
  } while (0)

#define PW_CUDNN_CHECK(call)                                                                                  \
  do {                                                                                                        \
    cudnnStatus_t pw_st_ = (call);                                                                            \
    if (pw_st_ != CUDNN_STATUS_SUCCESS)                                                                       \
      ::pw::kernels::cuda::throw_call_error("cuDNN", #call, cudnnGetErrorString(pw_st_), __FILE__, __LINE__); \
  } while (0)

#define PW_CUBLAS_CHECK(call)                                                                                    \
  do {                                                                                                           \
    cublasStatus_t pw_st_ = (call);                                                                              \
    if (pw_st_ != CUBLAS_STATUS_SUCCESS)                                                                         \
      ::pw::kernels::cuda::throw_call_error("cuBLAS", #call, cublasGetStatusString(pw_st_), __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports a bad launch configuration, naming the kernel.
#define PW_CUDA_CHECK_LAUNCH(name)                                                                              \
  do {                                                                                                          \
    cudaError_t pw_err_ = cudaGetLastError();                                                                   \
    if (pw_err_ != cudaSuccess)                                                                                 \
      ::pw::kernels::cuda::throw_call_error("CUDA", "launch of " name, cudaGetErrorString(pw_err_), __FILE__, \
                                            __LINE__);                                                          \
  } while (0)
