// The CUDA plugin's one export (engine/cuda_backend.h): the table of the CUDA backend, filled from
// kernels/cuda/ (its runtime, NCCL when built with it, and the CUDA body of every kernel of the op list).
// Built into libpatchwork_cuda.so with kernels/cuda/ (engine/CMakeLists.txt); every other symbol stays hidden.
#include "engine/cuda_backend.h"

#if PW_HAVE_NCCL
#include "kernels/cuda/nccl.h"
#endif

namespace pw {
namespace {

CudaBackend make_backend() {
  namespace kc = kernels::cuda;
  CudaBackend b;
  CudaRuntime& r = b.runtime;
  r.available = &kc::available;
  r.device_description = &kc::device_description;
  r.device_malloc = &kc::device_malloc;
  r.device_free = &kc::device_free;
  r.memory_stats = &kc::memory_stats;
  r.reset_peak = &kc::reset_peak;
  r.empty_cache = &kc::empty_cache;
  r.bucket_size = &kc::bucket_size;
  r.copy_to_device = &kc::copy_to_device;
  r.copy_to_host = &kc::copy_to_host;
  r.copy_device_to_device = &kc::copy_device_to_device;
  r.memset_zero = &kc::memset_zero;
  r.synchronize = &kc::synchronize;
  r.set_tf32 = &kc::set_tf32;
  r.tf32 = &kc::tf32;
  r.event_record = &kc::event_record;
  r.event_elapsed_ms = &kc::event_elapsed_ms;
  r.event_destroy = &kc::event_destroy;
  r.set_conv_workspace_cap = &kc::set_conv_workspace_cap;
  r.conv_workspace_cap = &kc::conv_workspace_cap;
#if PW_HAVE_NCCL
  CudaNccl& n = b.nccl;
  n.unavailable = &kc::nccl_unavailable;
  n.unique_id = &kc::nccl_unique_id;
  n.comm_init = &kc::nccl_comm_init;
  n.allreduce_sum_f32 = &kc::nccl_allreduce_sum_f32;
  n.comm_destroy = &kc::nccl_comm_destroy;
#endif
  // Each entry from its kernel; the entry's signature picks the overload.
#define PW_FILL_ENTRY_(ret, name, params) \
  static_cast<kernels::CudaEntry<kernels::cuda_op::name, ret(*) params>&>(b.kernels).fn = &kc::name;
  using namespace kernels;  // the op list spells its parameter types inside pw::kernels
  PW_KERNELS_ALL(PW_FILL_ENTRY_)
#undef PW_FILL_ENTRY_
  return b;
}

}  // namespace
}  // namespace pw

extern "C" __attribute__((visibility("default"))) const pw::CudaBackend* pw_cuda_backend() {
  static const pw::CudaBackend backend = pw::make_backend();
  return &backend;
}
