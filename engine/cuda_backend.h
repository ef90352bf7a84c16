// The CUDA backend as a plugin. In a CUDA build, kernels/cuda/ and engine/cuda/ are one shared
// library, libpatchwork_cuda.so, the only thing linked with the CUDA runtime, cuBLAS and cuDNN. The
// engine loads it with dlopen() the first time a CUDA device is used or asked about, so a CUDA build's
// CPU commands (info, convert, apply --device cpu, --version) never map those libraries (~200 MB).
//
// The plugin hands the engine one table, CudaBackend (filled in engine/cuda/backend.cpp): the runtime
// (memory, copies, events, controls), NCCL (gradients between GPU ranks) and every kernel of the op list
// (kernels/op_list.h). The engine reaches the CUDA kernels only through PW_CUDA_KERNEL, which
// engine/dispatch.h's PW_DISPATCH uses.
//
// Where the plugin is looked for, first found wins: $PW_CUDA_PLUGIN (a path; then only there), the
// folder of the program (or of the library holding the engine), ../lib and ../<libdir> from there, the
// install libdir, then the loader's search path (LD_LIBRARY_PATH; the RUNPATH that programs linking
// the installed engine get, its libdir).
#pragma once
#include <string>
#include <vector>

namespace pw {

// Whether a CUDA device can be used, and why not. Probed once: first the NVIDIA driver (libcuda.so.1,
// cuDeviceGetCount; no driver or no device = no GPU, and nothing more is loaded), then the plugin and
// its cudaGetDeviceCount.
struct CudaStatus {
  bool available = false;  // Device::cuda works
  bool driver_gpu = false; // the driver reports a GPU (even when the plugin cannot be used)
  std::string reason;      // when not available, one phrase: "no CUDA GPU is available (...)" or
                           // "the CUDA backend ... cannot be loaded: ..."
};
const CudaStatus& cuda_status();

}  // namespace pw

#ifdef PW_HAVE_CUDA
#include <cstddef>
#include <cstdint>

#include "kernels/candidate.h"
#include "kernels/conv.h"
#include "kernels/cuda/runtime.h"
#include "kernels/elementwise.h"
#include "kernels/gather.h"
#include "kernels/loss.h"
#include "kernels/norm.h"
#include "kernels/optim.h"
#include "kernels/pool.h"
#include "kernels/scatter.h"
#include "kernels/smooth.h"

namespace pw::kernels {

// One tag type per kernel name of the op list (an overloaded kernel's entries share it).
namespace cuda_op {
#define PW_CUDA_OP_TAG_(ret, name, params) struct name;
PW_KERNELS_ALL(PW_CUDA_OP_TAG_)
#undef PW_CUDA_OP_TAG_
}  // namespace cuda_op

// One entry of the table: the CUDA body of kernel Tag with signature R(A...).
template <class Tag, class Fn>
struct CudaEntry;
template <class Tag, class R, class... A>
struct CudaEntry<Tag, R (*)(A...)> {
  R (*fn)(A...) = nullptr;
  R call(Tag*, A... a) const { return fn(a...); }
};

// Every kernel of the op list. call(tag, args...) picks the entry as a direct call would pick the
// overload: the tag selects the name, the arguments the overload (PW_CUDA_KERNEL below).
struct CudaKernelsEnd {};
#define PW_CUDA_ENTRY_(ret, name, params) CudaEntry<cuda_op::name, ret(*) params>,
#define PW_CUDA_USING_(ret, name, params) using CudaEntry<cuda_op::name, ret(*) params>::call;
struct CudaKernels : PW_KERNELS_ALL(PW_CUDA_ENTRY_) CudaKernelsEnd {
  PW_KERNELS_ALL(PW_CUDA_USING_)
};
#undef PW_CUDA_ENTRY_
#undef PW_CUDA_USING_

}  // namespace pw::kernels

namespace pw {

// kernels/cuda/runtime.h, as the plugin exports it.
struct CudaRuntime {
  bool (*available)();
  std::string (*device_description)();
  void* (*device_malloc)(size_t bytes);
  void (*device_free)(void* p);
  kernels::cuda::MemoryStats (*memory_stats)();
  void (*reset_peak)();
  void (*empty_cache)();
  size_t (*bucket_size)(size_t bytes);
  void (*copy_to_device)(void* dst, const void* src_host, size_t bytes);
  void (*copy_to_host)(void* dst_host, const void* src, size_t bytes);
  void (*copy_device_to_device)(void* dst, const void* src, size_t bytes);
  void (*memset_zero)(void* p, size_t bytes);
  void (*synchronize)();
  void (*set_tf32)(bool on);
  bool (*tf32)();
  void* (*event_record)();
  float (*event_elapsed_ms)(void* begin, void* end);
  void (*event_destroy)(void* event);
  void (*set_conv_workspace_cap)(size_t bytes);
  size_t (*conv_workspace_cap)();
};

// NCCL between the GPU ranks of a data-parallel training (train/distributed.cpp), kernels/cuda/nccl.h as
// the plugin exports it. Every entry is null when the plugin was built without nccl.h (PW_HAVE_NCCL).
struct CudaNccl {
  static constexpr size_t id_bytes = 128;  // an ncclUniqueId
  std::string (*unavailable)();            // "" when libnccl.so.2 loads, else why not
  void (*unique_id)(unsigned char* id);    // id_bytes bytes, made by one rank and sent to the others
  void* (*comm_init)(int rank, int size, const unsigned char* id);
  void (*allreduce_sum_f32)(void* comm, float* device_data, size_t count);  // in place
  void (*comm_destroy)(void* comm);
};

// The op list's text, every signature: a plugin built from another op list is refused.
#define PW_CUDA_SIGNATURE_(ret, name, params) #ret " " #name #params ";"
constexpr const char* kCudaOpListText = PW_KERNELS_ALL(PW_CUDA_SIGNATURE_);
#undef PW_CUDA_SIGNATURE_

struct CudaBackend {
  size_t size = sizeof(CudaBackend);  // as the plugin was built, with
  const char* op_list = kCudaOpListText;  // ...: both must match the engine's
  CudaRuntime runtime{};
  CudaNccl nccl{};
  kernels::CudaKernels kernels{};
};

// The plugin's one exported function (extern "C", engine/cuda/backend.cpp).
using CudaBackendEntry = const CudaBackend* (*)();
constexpr const char* kCudaBackendEntry = "pw_cuda_backend";
constexpr const char* kCudaPluginName = "libpatchwork_cuda.so";

// The loaded plugin (loaded on the first call, thread-safe). Throws std::runtime_error with one message
// naming what is missing when it cannot be loaded. It does not check for a GPU (cuda_status() does).
const CudaBackend& cuda_backend();

// The paths the plugin is looked for at, in order (see the top of this file).
std::vector<std::string> cuda_plugin_candidates();
// Loads the first existing candidate (the last one, a bare name, through the loader's search path);
// nullptr and `error` set when none can be loaded. cuda_backend() uses it with the candidates above.
const CudaBackend* load_cuda_plugin(const std::vector<std::string>& candidates, std::string& error);

}  // namespace pw

// Calls the CUDA body of kernel `fn` of the op list through the plugin: PW_CUDA_KERNEL(add, a, b, y, n).
#define PW_CUDA_KERNEL(fn, ...) \
  ::pw::cuda_backend().kernels.call(static_cast<::pw::kernels::cuda_op::fn*>(nullptr), __VA_ARGS__)
#endif  // PW_HAVE_CUDA
