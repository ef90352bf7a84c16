#include "kernels/cpu_paths.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace pw::kernels::cpu {
namespace {

struct CpuId {
  char vendor[13] = "unknown";
  char brand[49] = "";
  unsigned family = 0, model = 0;
};

CpuId read_cpuid() {
  CpuId c;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, cx, d;
  if (__get_cpuid(0, &a, &b, &cx, &d)) {
    std::memcpy(c.vendor, &b, 4);
    std::memcpy(c.vendor + 4, &d, 4);
    std::memcpy(c.vendor + 8, &cx, 4);
    c.vendor[12] = 0;
  }
  if (__get_cpuid(1, &a, &b, &cx, &d)) {
    c.family = (a >> 8) & 0xf;
    c.model = (a >> 4) & 0xf;
    if (c.family == 0xf) c.family += (a >> 20) & 0xff;
    if (c.family >= 6) c.model += ((a >> 16) & 0xf) << 4;
  }
  unsigned top = __get_cpuid_max(0x80000000u, nullptr);
  if (top >= 0x80000004u) {
    unsigned* w = reinterpret_cast<unsigned*>(c.brand);
    for (unsigned leaf = 0; leaf < 3; ++leaf) __get_cpuid(0x80000002u + leaf, &w[4 * leaf], &w[4 * leaf + 1], &w[4 * leaf + 2], &w[4 * leaf + 3]);
    c.brand[48] = 0;
  }
#endif
  return c;
}

const CpuId& cpu() {
  static const CpuId c = read_cpuid();
  return c;
}

constexpr bool kHaveVectorGathers =
#if defined(__AVX2__)
    true;
#else
    false;
#endif

GatherLoads choose_gather_loads() {
  if (!kHaveVectorGathers) return GatherLoads::scalar;
  if (const char* s = std::getenv("PW_GATHER_LOADS")) {
    if (std::strcmp(s, "scalar") == 0) return GatherLoads::scalar;
    if (std::strcmp(s, "vector") == 0) return GatherLoads::vector;
  }
  // AMD Zen (and Hygon, a Zen licensee) implements vpgather* in microcode: slower than scalar loads.
  const char* v = cpu().vendor;
  if (std::strcmp(v, "AuthenticAMD") == 0 || std::strcmp(v, "HygonGenuine") == 0) return GatherLoads::scalar;
  return GatherLoads::vector;
}

std::atomic<int>& gather_state() {
  static std::atomic<int> s{int(choose_gather_loads())};
  return s;
}

std::atomic<int>& conv_state() {
  static std::atomic<int> s{[] {
    const char* v = std::getenv("PW_CONV");
    return int(v && std::strcmp(v, "direct") == 0 ? ConvPath::direct : ConvPath::special);
  }()};
  return s;
}

// Whether this CPU's L2 per core (sysconf) is at least 1 MB (unknown: yes).
bool large_l2() {
#ifdef _SC_LEVEL2_CACHE_SIZE  // glibc
  const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);  // bytes per core; 0 or -1 where unknown
  return l2 <= 0 || l2 >= (1L << 20);
#else
  return true;
#endif
}

// The environment variable's value if it is one of the two, otherwise `fallback`.
bool env_choice(const char* name, const char* yes, const char* no, bool fallback) {
  if (const char* s = std::getenv(name)) {  // unset, empty or another value: the fallback
    if (std::strcmp(s, yes) == 0) return true;
    if (std::strcmp(s, no) == 0) return false;
  }
  return fallback;
}

}  // namespace

bool tile_prefetch() {
  static const bool on = env_choice("PW_TILE_PREFETCH", "1", "0", large_l2());
  return on;
}

bool nearest_prefetch_all_rows() {
  static const bool all = env_choice("PW_NEAREST_PREFETCH", "all", "half", !large_l2());
  return all;
}

ConvPath conv_path() { return ConvPath(conv_state().load(std::memory_order_relaxed)); }
void set_conv_path(ConvPath path) { conv_state().store(int(path), std::memory_order_relaxed); }

GatherLoads gather_loads() { return GatherLoads(gather_state().load(std::memory_order_relaxed)); }

void set_gather_loads(GatherLoads path) {
  gather_state().store(int(kHaveVectorGathers ? path : GatherLoads::scalar), std::memory_order_relaxed);
}

std::string cpu_paths_description() {
  const CpuId& c = cpu();
  std::string s = std::string(c.vendor) + " family " + std::to_string(c.family) + " model " + std::to_string(c.model);
  if (c.brand[0]) s += " (" + std::string(c.brand) + ")";
  s += "; gather loads: ";
  s += gather_loads() == GatherLoads::vector ? "vector gathers" : "scalar loads";
  if (!kHaveVectorGathers) s += " (built without AVX2)";
  s += conv_path() == ConvPath::special ? "; convs: Winograd 3x3x3, k2 s2 in place" : "; convs: direct loops";
  s += tile_prefetch() ? "; strided tiles prefetched" : "; strided tiles not prefetched";
  s += nearest_prefetch_all_rows() ? "; nearest strips prefetch every row" : "; nearest strips prefetch every other row";
  return s;
}

}  // namespace pw::kernels::cpu
