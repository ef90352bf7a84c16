// The CUDA runtime of the kernels layer: context, caching allocator, staged copies, math mode.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/context.h"

namespace pw::kernels::cuda {

bool available() {
  static const bool ok = [] {
    int n = 0;
    // Without a driver this returns an error: that means "no GPU". The error is cleared so that it
    // is not reported later by a launch check (PW_CUDA_CHECK_LAUNCH reads cudaGetLastError).
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return n > 0;
  }();
  return ok;
}

std::string device_description() {
  if (!available()) return "no CUDA GPU";
  int dev = 0;
  cudaDeviceProp p;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
    cudaGetLastError();  // see available()
    return "CUDA GPU (unknown)";
  }
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor,
                double(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

namespace {
[[noreturn]] void no_gpu() {
  throw std::runtime_error("device cuda requested but no CUDA GPU is available (no driver or no device); "
                           "use --device cpu");
}
}  // namespace

Context& context() {
  // Created once and never destroyed: the driver tears everything down at process exit.
  static Context* ctx = [] {
    if (!available()) no_gpu();
    auto* c = new Context;
    int dev = 0;
    PW_CUDA_CHECK(cudaGetDevice(&dev));
    PW_CUDA_CHECK(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, dev));
    // A blocking stream: it stays ordered with work on the legacy default stream (kernels launched
    // with no stream argument), so such kernels and ours never race.
    PW_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamDefault));
    PW_CUBLAS_CHECK(cublasCreate(&c->cublas));
    PW_CUBLAS_CHECK(cublasSetStream(c->cublas, c->stream));
    PW_CUDNN_CHECK(cudnnCreate(&c->cudnn));
    PW_CUDNN_CHECK(cudnnSetStream(c->cudnn, c->stream));
    return c;
  }();
  return *ctx;
}

// ---- caching allocator ----------------------------------------------------------------------

size_t bucket_size(size_t bytes) {
  constexpr size_t kSmallStep = 512, kSmallMax = size_t(1) << 20, kLargeStep = size_t(2) << 20;
  if (bytes == 0) bytes = 1;
  if (bytes <= kSmallMax) return (bytes + kSmallStep - 1) / kSmallStep * kSmallStep;
  return (bytes + kLargeStep - 1) / kLargeStep * kLargeStep;
}

namespace {
struct Allocator {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_lists;  // bucket size -> free blocks
  std::unordered_map<void*, size_t> live;           // block -> bucket size
  MemoryStats stats;

  void release_cache_locked() {
    for (auto& [size, blocks] : free_lists) {
      while (!blocks.empty()) {
        void* p = blocks.back();
        blocks.pop_back();
        stats.reserved -= size;
        stats.cached -= size;
        PW_CUDA_CHECK(cudaFree(p));
      }
    }
    free_lists.clear();
  }
};

Allocator& allocator() {
  static Allocator* a = new Allocator;  // never destroyed (see context())
  return *a;
}

std::string mib(size_t b) { return std::to_string(b / (1024 * 1024)) + " MiB"; }
}  // namespace

void* device_malloc(size_t bytes) {
  context();  // clear error when there is no GPU; also creates the stream before first use
  const size_t size = bucket_size(bytes);
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  a.stats.allocs++;
  void* p = nullptr;
  auto it = a.free_lists.find(size);
  if (it != a.free_lists.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    a.stats.cached -= size;
    a.stats.cache_hits++;
  } else {
    cudaError_t err = cudaMalloc(&p, size);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error state of cudaMalloc
      PW_CUDA_CHECK(cudaStreamSynchronize(context().stream));
      a.release_cache_locked();
      err = cudaMalloc(&p, size);
      if (err != cudaSuccess) {
        cudaGetLastError();
        throw std::runtime_error("CUDA out of memory: cudaMalloc of " + std::to_string(size) + " bytes failed (" +
                                 cudaGetErrorString(err) + "); in use " + mib(a.stats.in_use) + ", peak " +
                                 mib(a.stats.peak_in_use) + " (reduce the batch or patch size)");
      }
    }
    a.stats.device_mallocs++;
    a.stats.reserved += size;
  }
  a.live[p] = size;
  a.stats.in_use += size;
  if (a.stats.in_use > a.stats.peak_in_use) a.stats.peak_in_use = a.stats.in_use;
  return p;
}

void device_free(void* p) {
  if (!p) return;
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = a.live.find(p);
  if (it == a.live.end()) throw std::logic_error("device_free: pointer was not allocated by device_malloc");
  const size_t size = it->second;
  a.live.erase(it);
  a.stats.in_use -= size;
  a.stats.cached += size;
  a.free_lists[size].push_back(p);
}

MemoryStats memory_stats() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  return a.stats;
}

void reset_peak() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  a.stats.peak_in_use = a.stats.in_use;
}

void empty_cache() {
  if (!available()) return;
  PW_CUDA_CHECK(cudaStreamSynchronize(context().stream));
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  a.release_cache_locked();
}

// ---- copies -----------------------------------------------------------------------------------
namespace {
// Two pinned chunks used alternately: the CPU fills one while the GPU reads the other.
struct Staging {
  static constexpr size_t kChunk = size_t(4) << 20;
  std::mutex mu;
  void* buf[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
};

Staging& staging() {
  static Staging* s = [] {
    auto* st = new Staging;  // never destroyed (see context())
    for (int i = 0; i < 2; ++i) {
      PW_CUDA_CHECK(cudaMallocHost(&st->buf[i], Staging::kChunk));
      PW_CUDA_CHECK(cudaEventCreateWithFlags(&st->done[i], cudaEventDisableTiming));
    }
    return st;
  }();
  return *s;
}
}  // namespace

void copy_to_device(void* dst, const void* src_host, size_t bytes) {
  if (bytes == 0) return;
  cudaStream_t s = context().stream;
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mu);
  const char* src = static_cast<const char*>(src_host);
  char* d = static_cast<char*>(dst);
  bool used[2] = {false, false};
  for (size_t off = 0, i = 0; off < bytes; off += Staging::kChunk, ++i) {
    const int b = int(i % 2);
    const size_t len = std::min(Staging::kChunk, bytes - off);
    if (used[b]) PW_CUDA_CHECK(cudaEventSynchronize(st.done[b]));  // the GPU has read this chunk
    std::memcpy(st.buf[b], src + off, len);
    PW_CUDA_CHECK(cudaMemcpyAsync(d + off, st.buf[b], len, cudaMemcpyHostToDevice, s));
    PW_CUDA_CHECK(cudaEventRecord(st.done[b], s));
    used[b] = true;
  }
  PW_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_to_host(void* dst_host, const void* src, size_t bytes) {
  if (bytes == 0) return;
  cudaStream_t s = context().stream;
  PW_CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, s));
  PW_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  PW_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, context().stream));
}

void memset_zero(void* p, size_t bytes) {
  if (bytes == 0) return;
  PW_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, context().stream));
}

void synchronize() { PW_CUDA_CHECK(cudaStreamSynchronize(context().stream)); }

void* event_record() {
  cudaEvent_t e = nullptr;
  PW_CUDA_CHECK(cudaEventCreate(&e));
  PW_CUDA_CHECK(cudaEventRecord(e, context().stream));
  return e;
}

float event_elapsed_ms(void* begin, void* end) {
  float ms = 0.f;
  PW_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
  PW_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(begin), static_cast<cudaEvent_t>(end)));
  return ms;
}

void event_destroy(void* event) { PW_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event))); }

// ---- math mode --------------------------------------------------------------------------------
namespace {
std::atomic<bool> g_tf32{true};
std::atomic<size_t> g_workspace_cap{size_t(1) << 30};
}  // namespace

void set_tf32(bool on) { g_tf32 = on; }
bool tf32() { return g_tf32; }
void set_conv_workspace_cap(size_t bytes) { g_workspace_cap = bytes; }
size_t conv_workspace_cap() { return g_workspace_cap; }

}  // namespace pw::kernels::cuda
