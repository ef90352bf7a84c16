#include "engine/device.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#ifdef PW_HAVE_CUDA
#include "engine/cuda_backend.h"
#endif

namespace pw {

#ifndef PW_HAVE_CUDA
namespace {
[[noreturn]] void no_cuda() {
  throw std::runtime_error("this Patchwork was built without CUDA (configure with -DPW_CUDA=ON on a machine with "
                           "nvcc, cuDNN and cuBLAS)");
}
}  // namespace
#endif

namespace {

// The text of a small system file (its first 4 KiB; "" when unreadable).
std::string read_small_file(const char* path) {
  std::string text;
#if defined(__linux__)
  if (std::FILE* f = std::fopen(path, "r")) {
    char buf[4096] = {};
    text.assign(buf, std::fread(buf, 1, sizeof buf - 1, f));
    std::fclose(f);
  }
#endif
  return text;
}

// When large blocks ask for transparent huge pages (MADV_HUGEPAGE): cpu_huge_pages_mode() with this process's
// PW_HUGEPAGES and THP defrag setting, read once. Under the usual "madvise" defrag (and "always",
// "defer+madvise") a fault in an advised region compacts memory synchronously when no free 2 MiB page is at
// hand: measured on the build machine with 6 GB of page cache, touching 1 GiB of fresh advised blocks took
// 9.3 s against 0.4 s with 4 KiB pages, and the first U-Net training step 1.9 s against 0.33 s for the next
// ones. So there a block asks only while free 2 MiB blocks abound (cpu_huge_pages_spare): the affine gathers
// from a 256^3 volume are 9-12% faster with them (bench/RESULTS.md, Zen 2).
HugePages huge_pages() {
  static const HugePages mode = [] {
    const std::string defrag = read_small_file("/sys/kernel/mm/transparent_hugepage/defrag");
    return cpu_huge_pages_mode(std::getenv("PW_HUGEPAGES"), defrag.empty() ? nullptr : defrag.c_str());
  }();
  return mode;
}

// Whether a new block of `bytes` (a huge-page candidate) asks for huge pages now.
bool advise_huge(size_t bytes) {
  if (huge_pages() != HugePages::when_free) return huge_pages() == HugePages::always;
  const std::string info = read_small_file("/proc/buddyinfo");
  return cpu_huge_pages_spare(bytes, info.empty() ? nullptr : info.c_str());
}

// CPU memory: 64-byte aligned. Blocks of 64 KiB up to 64 MiB are rounded up to a size class (1/8 steps
// between powers of two) and kept on a free list when released, up to a cap on the cached bytes
// (PW_CPU_CACHE_MB, default 4096): training allocates the same large activations every step, and
// fresh pages from the OS cost a page fault each, so a step's working set must fit (synth-brain: ~2 GB;
// with a 1 GB cap its iterations took 32 s instead of 22). Larger blocks (whole volumes, a level's outputs)
// are one-offs whose size rarely recurs: kept, they would hold their bytes unused until the end
// (apply on a 256^3 head held a freed 335 MB level output that way), so they go back to the OS.
class CpuCache {
 public:
  static constexpr size_t kMinCached = 64 * 1024, kMaxCached = size_t(64) << 20;
  static bool cached_class(size_t sz) { return sz >= kMinCached && sz <= kMaxCached; }

  static size_t size_class(size_t bytes) {
    if (bytes < kMinCached) return (bytes + 63) / 64 * 64;
    size_t pow2 = kMinCached;
    while (pow2 * 2 <= bytes) pow2 *= 2;
    size_t step = pow2 / 8;
    return (bytes + step - 1) / step * step;
  }

  void* alloc(size_t bytes) {
    size_t sz = size_class(bytes == 0 ? 64 : bytes);
    if (cached_class(sz)) {
      std::lock_guard<std::mutex> lk(m_);
      auto it = free_.find(sz);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= sz;
        return p;
      }
    }
    void* p = os_alloc(sz);
    if (!p) {
      release();
      p = os_alloc(sz);
      if (!p) throw std::bad_alloc();
    }
    return p;
  }

  // Blocks of 1 MiB and more are mapped from the OS directly (Linux) and unmapped when freed past the
  // cache: from malloc they would land in its heap once its mmap threshold has risen, and stay resident
  // there after free (a synth-brain training held 4.77 GB of which ~1.2 GB were such freed heap pages;
  // 4.07 GB with this, at the same speed). Blocks of 8 MiB and more (whole volumes, patch batches) may be
  // 2 MiB aligned and backed by transparent huge pages (huge_pages()): a rotated patch touches hundreds of
  // 4 KiB pages of its source, and with 2 MiB pages the TLB misses go (affine gather from a 256^3 volume
  // 13-16% faster). Elsewhere both come from aligned_alloc.
  static constexpr size_t kHuge = size_t(2) << 20, kHugeMin = size_t(8) << 20, kMapMin = size_t(1) << 20;
  // Blocks that may hold huge pages are 2 MiB aligned and sized (a fixed choice: os_free recomputes the
  // size); each asks for them or not when mapped (advise_huge).
  static bool huge(size_t sz) { return sz >= kHugeMin && huge_pages() != HugePages::never; }
  static size_t os_bytes(size_t sz) { return huge(sz) ? (sz + kHuge - 1) / kHuge * kHuge : sz; }
  static void* os_alloc(size_t sz) {
    const size_t align = huge(sz) ? kHuge : 64, bytes = os_bytes(sz);
#if defined(__linux__)
    if (sz >= kMapMin) return map_aligned(bytes, align);
#endif
    return std::aligned_alloc(align, bytes);  // (Linux: below 1 MiB, never huge)
  }
  static void os_free(void* p, size_t sz) {
#if defined(__linux__)
    if (sz >= kMapMin) {
      munmap(p, os_bytes(sz));
      return;
    }
#endif
    std::free(p);
  }
#if defined(__linux__)
  // `bytes` (a multiple of 4 KiB) at an `align`-aligned address: a larger mapping with its ends cut off.
  static void* map_aligned(size_t bytes, size_t align) {
    const size_t extra = align > 4096 ? align : 0;
    void* m = mmap(nullptr, bytes + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    const uintptr_t a = reinterpret_cast<uintptr_t>(m), start = (a + align - 1) / align * align;
    if (start > a) munmap(m, start - a);
    if (a + extra > start) munmap(reinterpret_cast<void*>(start + bytes), a + extra - start);
    void* p = reinterpret_cast<void*>(start);
#if defined(MADV_HUGEPAGE)
    if (align == kHuge && advise_huge(bytes)) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
  }
#endif

  void free(void* p, size_t bytes) {
    size_t sz = size_class(bytes == 0 ? 64 : bytes);
    if (cached_class(sz)) {
      std::lock_guard<std::mutex> lk(m_);
      if (cached_ + sz <= cap_) {
        free_[sz].push_back(p);
        cached_ += sz;
        return;
      }
    }
    os_free(p, sz);
  }

  void release() {
    std::lock_guard<std::mutex> lk(m_);
    for (auto& kv : free_)
      for (void* p : kv.second) os_free(p, kv.first);
    free_.clear();
    cached_ = 0;
  }

  size_t cached() {
    std::lock_guard<std::mutex> lk(m_);
    return cached_;
  }

  ~CpuCache() { release(); }

 private:
  std::mutex m_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
  size_t cap_ = [] {
    const char* s = std::getenv("PW_CPU_CACHE_MB");
    return (s ? static_cast<size_t>(std::strtoull(s, nullptr, 10)) : size_t(4096)) << 20;
  }();
};

CpuCache& cpu_cache() {
  static CpuCache* c = new CpuCache();  // never destroyed: tensors may be freed during static destruction
  return *c;
}

}  // namespace

void cpu_cache_release() { cpu_cache().release(); }
size_t cpu_cache_bytes() { return cpu_cache().cached(); }

HugePages cpu_huge_pages_mode(const char* env, const char* defrag) {
  if (env && *env) return std::strcmp(env, "0") != 0 ? HugePages::always : HugePages::never;
  if (!defrag) return HugePages::never;
  const std::string mode(defrag);  // the chosen mode is in brackets: "always defer [madvise] never"
  const bool no_stall = mode.find("[defer]") != std::string::npos || mode.find("[never]") != std::string::npos;
  return no_stall ? HugePages::always : HugePages::when_free;
}

bool cpu_huge_pages_spare(size_t bytes, const char* buddyinfo) {
  if (!buddyinfo) return false;
  // Lines "Node 0, zone   Normal  c0 c1 ... c10": c_k free blocks of 2^k pages of 4 KiB.
  double free_bytes = 0.0;
  std::istringstream lines(buddyinfo);
  for (std::string line; std::getline(lines, line);) {
    const size_t z = line.find("zone");
    if (z == std::string::npos) continue;
    std::istringstream fields(line.substr(z + 4));
    std::string zone;
    fields >> zone;
    double count = 0.0;
    for (int order = 0; fields >> count; ++order)
      if (order >= 9) free_bytes += count * std::ldexp(4096.0, order);
  }
  return free_bytes >= 2.0 * static_cast<double>(bytes) + std::ldexp(1.0, 30);
}

void* device_alloc(Device d, size_t bytes) {
  if (d == Device::cuda) {
#ifdef PW_HAVE_CUDA
    return cuda_backend().runtime.device_malloc(bytes);
#else
    no_cuda();
#endif
  }
  return cpu_cache().alloc(bytes);
}

void device_free(Device d, void* p, size_t bytes) {
  if (!p) return;
#ifdef PW_HAVE_CUDA
  if (d == Device::cuda) {
    cuda_backend().runtime.device_free(p);
    return;
  }
#endif
  cpu_cache().free(p, bytes);
}

void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev == Device::cpu && src_dev == Device::cpu) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef PW_HAVE_CUDA
  const CudaRuntime& r = cuda_backend().runtime;
  if (dst_dev == Device::cuda && src_dev == Device::cuda) r.copy_device_to_device(dst, src, bytes);
  else if (dst_dev == Device::cuda) r.copy_to_device(dst, src, bytes);
  else r.copy_to_host(dst, src, bytes);
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
  cuda_backend().runtime.memset_zero(p, bytes);
#else
  no_cuda();
#endif
}

}  // namespace pw
