// HOST STAND-IN for kernels/cuda/context.h (and the CUDA builtins the .cu bodies use), for the
// emulation test: kernels/cuda/<family>.cu and reduce.cuh, converted by convert.cmake, are compiled
// by the host compiler against this header. "Device" memory is host memory.
//
// A launch `kernel<<<grid, block, shmem, stream>>>(args)` checks its configuration against the CUDA
// limits, then runs every thread of the grid on the one host thread, each with its own
// blockIdx/threadIdx, blocks last first: in files without synchronisation the threads of a block run
// one after another (last first); in files that synchronise or shuffle (__syncthreads,
// __shfl_down_sync, __shared__: smooth.cu and reduce.cuh) they run as cooperative fibers that meet at
// the barriers (emu_block.h). The real launch helpers, extracted from kernels/cuda/context.h into
// emu_loop.h, are used: PW_LAUNCH configures the launches and PW_CUDA_LOOP's grid-stride loop hands
// out the items. The emulated GPU has ONE streaming multiprocessor: grid_for() (the real formula)
// gives at most 32 blocks, so larger inputs take several trips around the grid-stride loop, and
// group_reduce splits a group into at most 8 parts.
//
// What this can and cannot show: the per-item logic of a body (indices, arithmetic, the math shared
// from kernels/common/) is the real code, each item is computed by the thread a grid of that shape
// gives it to, the work split must cover every item, and a block's threads must meet at barriers
// and exchange values through shared memory and shuffles correctly. Not exercised: real concurrency
// (races, the order and atomicity of atomics, memory visibility; emulated threads never overlap),
// warp-divergent barriers, streams, device limits and timing, and the GPU's own arithmetic (nvcc
// contracts a*b+c into FMAs where g++ may not; expf etc. are the GPU's). kernels/cuda/conv.cu (cuDNN,
// cuBLAS) and runtime.cu are not emulated at all.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "emu_block.h"  // threadIdx & co., __syncthreads, __shfl_down_sync
#include "emu_loop.h"

// ---- CUDA keywords and builtins -----------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using std::isnan;
using cudaStream_t = void*;
using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
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

// all: the threads of a block run one after another; coop: as fibers that meet at barriers
// (emu_block.h), for files that synchronise or shuffle.
enum class Threads { all, coop };
inline int64_t& launches() {  // launches so far (lets a test see that a body launched anything)
  static int64_t n = 0;
  return n;
}
// What `kernel<<<grid, block, shmem, stream>>>(args);` became: `body` calls the kernel.
template <class Body>
void launch(Threads threads, Body body, dim3 grid, dim3 block, size_t shmem = 0, void* stream = nullptr) {
  (void)stream;
  const auto bad = [](const char* what, unsigned v) {
    throw std::logic_error(std::string("emulated launch: ") + what + " " + std::to_string(v));
  };
  if (grid.x < 1 || grid.x > 0x7fffffffu) bad("grid.x", grid.x);
  if (grid.y < 1 || grid.y > 65535 || grid.z < 1 || grid.z > 65535) bad("grid.y/z", grid.y * 100000 + grid.z);
  if (block.x < 1 || block.y != 1 || block.z != 1) bad("block (only 1D blocks are emulated)", block.x);
  if (block.x > 1024) bad("block", block.x);
  if (shmem > 48 * 1024) bad("dynamic shared memory", unsigned(shmem));
  ++launches();
  gridDim = pw_emu_uint3{grid.x, grid.y, grid.z};
  blockDim = pw_emu_uint3{block.x, 1, 1};
  for (int64_t bz = grid.z - 1; bz >= 0; --bz)
    for (int64_t by = grid.y - 1; by >= 0; --by)
      for (int64_t bx = int64_t(grid.x) - 1; bx >= 0; --bx) {  // last block first
        blockIdx = pw_emu_uint3{unsigned(bx), unsigned(by), unsigned(bz)};
        shared_bytes().assign(shmem, 0xFF);  // each block has its own shared memory
        if (threads == Threads::coop) {
          Block::get().run(body, block.x);
        } else {
          for (int64_t t = int64_t(block.x) - 1; t >= 0; --t) {
            threadIdx = pw_emu_uint3{unsigned(t), 0, 0};
            body();
          }
        }
      }
}

}  // namespace pw_emu

// ---- kernels/cuda/context.h and the runtime calls of the bodies, on the host ----------------
namespace pw::kernels::cuda_emu {

// An emulated GPU with ONE streaming multiprocessor: grid_for gives at most 32 blocks, and
// group_reduce (reduce.cuh) splits each group into at most 8 parts.
struct Context {
  cudaStream_t stream = nullptr;
  int sm_count = 1;
};
inline Context& context() {
  static Context c;
  return c;
}
inline cudaStream_t stream() { return context().stream; }

constexpr int kBlock = 256;
// The real formula of kernels/cuda/context.h.
inline unsigned grid_for(int64_t n, int block = kBlock) {
  int64_t b = (n + block - 1) / block;
  const int64_t cap = int64_t(context().sm_count) * 32;
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
