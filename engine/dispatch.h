// Backend dispatch, in one place: PW_DISPATCH(device, fn, args...) calls the CUDA body of fn
// (pw::kernels::cuda::fn, in the CUDA plugin, through its table: engine/cuda_backend.h) for CUDA
// tensors and pw::kernels::cpu::fn(args...) otherwise. Both bodies share the one signature of the
// kernel op list (kernels/<family>.h's PW_KERNELS_<FAMILY>, kernels/op_list.h), declared from it in
// both namespaces. Every call is timed when PW_PROFILE=1 (engine/profile.h).
#pragma once
#include <stdexcept>

#include "engine/profile.h"
#include "engine/tensor.h"

#ifdef PW_HAVE_CUDA
#include "engine/cuda_backend.h"

#define PW_DISPATCH(device, fn, ...)                 \
  do {                                               \
    ::pw::OpScope pw_op_scope_(#fn, (device));       \
    if ((device) == ::pw::Device::cuda)              \
      PW_CUDA_KERNEL(fn, __VA_ARGS__);               \
    else                                             \
      ::pw::kernels::cpu::fn(__VA_ARGS__);           \
  } while (0)
#else
#define PW_DISPATCH(device, fn, ...)                                                          \
  do {                                                                                        \
    ::pw::OpScope pw_op_scope_(#fn, (device));                                                \
    if ((device) == ::pw::Device::cuda)                                                       \
      throw std::runtime_error(std::string(#fn) + ": this Patchwork was built without CUDA"); \
    ::pw::kernels::cpu::fn(__VA_ARGS__);                                                      \
  } while (0)
#endif
