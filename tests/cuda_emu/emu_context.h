// HOST STAND-IN for kernels/cuda/context.h (and the CUDA builtins the .cu bodies use), for the
// emulation test: kernels/cuda/<family>.cu converted by convert.cmake is compiled by the host
// compiler against this header. "Device" memory is host memory.
//
// A launch `kernel<<<grid, block, shmem, stream>>>(args)` checks its configuration against the CUDA
// limits, then runs every thread of the grid ONE AFTER ANOTHER on one host thread, in reverse order
// (last block and thread first), each with its own blockIdx/threadIdx, so the real grid-stride
// loops (PW_CUDA_LOOP, extracted from kernels/cuda/context.h) hand out the items as on the GPU, but
// in a different order. grid_for() is the real formula with ONE streaming multiprocessor (at most 32
// blocks), so that larger inputs take several trips around the grid-stride loop. A file whose
// kernels call __syncthreads (one thread's work depends on another's) runs each launch as a single
// thread of a 1 x 1 grid instead, which is what such a body computes when the barrier works.
//
// What this can and cannot show: the per-item logic of a body (indices, arithmetic, the math shared
// from kernels/common/) is the real code, each item is computed by the thread a grid of that shape
// gives it to, and the work split must cover every item. Not exercised: concurrency (races, the
// order and atomicity of atomics, memory visibility), shared memory across threads, __syncthreads
// placement, warp intrinsics, the real group_reduce (see emu_reduce.h), streams, device limits and
// timing, and the GPU's own arithmetic (nvcc contracts a*b+c into FMAs where g++ may not; expf etc.
// are the GPU's). kernels/cuda/conv.cu (cuDNN, cuBLAS) and runtime.cu are not emulated at all.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "emu_loop.h"

// ---- CUDA keywords and builtins -----------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
struct pw_emu_uint3 {
  unsigned x, y, z;
};
// Set by pw_emu::launch for each emulated thread.
inline pw_emu_uint3 threadIdx{0, 0, 0}, blockIdx{0, 0, 0}, blockDim{1, 1, 1}, gridDim{1, 1, 1};
using std::isnan;
using cudaStream_t = void*;
using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
// Only in files whose launches run as one thread (see above): nothing to wait for.
inline void __syncthreads() {}
// Emulated threads never overlap: a plain read-modify-write.
template <class T>
inline T atomicAdd(T* p, T v) {
  T old = *p;
  *p = old + v;
  return old;
}

// The real kernels/cuda/check.h macros throw on a CUDA error; here nothing can fail.
#define PW_CUDA_CHECK(call) (void)(call)
#define PW_CUDA_CHECK_LAUNCH(name) (void)(name)

namespace pw_emu {

// Dynamic shared memory of the current launch: the launch's `shmem` bytes, filled with 0xFF (NaN
// as float) so that reading an entry the kernel did not write shows up as NaN.
inline std::vector<unsigned char>& shared_bytes() {
  static std::vector<unsigned char> b;
  return b;
}
template <class T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(shared_bytes().data());
}

enum class Threads { all, one };
inline int64_t& launches() {  // launches so far (lets a test see that a body launched anything)
  static int64_t n = 0;
  return n;
}
// What `kernel<<<grid, block, shmem, stream>>>(args);` became: `body` calls the kernel.
template <class Body>
void launch(Threads threads, Body body, int64_t grid, int64_t block, size_t shmem = 0, void* stream = nullptr) {
  (void)stream;
  if (grid < 1 || grid > 0x7fffffff) throw std::logic_error("emulated launch: grid " + std::to_string(grid));
  if (block < 1 || block > 1024) throw std::logic_error("emulated launch: block " + std::to_string(block));
  if (shmem > 48 * 1024) throw std::logic_error("emulated launch: dynamic shared memory " + std::to_string(shmem));
  ++launches();
  if (threads == Threads::one) {
    gridDim = blockDim = blockIdx = threadIdx = pw_emu_uint3{0, 0, 0};
    gridDim.x = blockDim.x = 1;
    shared_bytes().assign(shmem, 0xFF);
    body();
    return;
  }
  gridDim = pw_emu_uint3{unsigned(grid), 1, 1};
  blockDim = pw_emu_uint3{unsigned(block), 1, 1};
  for (int64_t b = grid - 1; b >= 0; --b) {
    blockIdx = pw_emu_uint3{unsigned(b), 0, 0};
    shared_bytes().assign(shmem, 0xFF);  // each block has its own shared memory
    for (int64_t t = block - 1; t >= 0; --t) {
      threadIdx = pw_emu_uint3{unsigned(t), 0, 0};
      body();
    }
  }
}

}  // namespace pw_emu

// ---- kernels/cuda/context.h and the runtime calls of the bodies, on the host ----------------
namespace pw::kernels::cuda_emu {

constexpr int kBlock = 256;
inline cudaStream_t stream() { return nullptr; }
// The real formula (kernels/cuda/context.h) for a GPU with one SM: at most 32 blocks.
constexpr int kEmulatedSMs = 1;
inline unsigned grid_for(int64_t n, int block = kBlock) {
  int64_t b = (n + block - 1) / block;
  const int64_t cap = int64_t(kEmulatedSMs) * 32;
  if (b > cap) b = cap;
  return b < 1 ? 1u : static_cast<unsigned>(b);
}

// Scratch "device" memory filled with 0xFF bytes (NaN as float or double): a body that reads
// scratch it did not write gets NaN.
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(size_t bytes) : b_(bytes, 0xFF) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return b_.empty() ? nullptr : b_.data(); }
  template <class T> T* as() const { return reinterpret_cast<T*>(get()); }

 private:
  mutable std::vector<unsigned char> b_;
};

inline void memset_zero(void* p, size_t bytes) { std::memset(p, 0, bytes); }
inline void copy_device_to_device(void* dst, const void* src, size_t bytes) { std::memmove(dst, src, bytes); }

}  // namespace pw::kernels::cuda_emu
