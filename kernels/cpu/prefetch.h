// Software prefetches that the compiler keeps, in the instruction asked for.
//   - GCC's loop vectoriser deletes __builtin_prefetch calls from the loops it vectorises (GCC 12 did so in
//     the gather's prefetch loop once it stepped by two voxels: no prefetch was left in the binary); an asm
//     statement is never deleted, and a loop that holds one is not vectorised.
//   - __builtin_prefetch(p, 1) (and _MM_HINT_ET0) is `prefetchw` only where the target flags include
//     PRFCHW: -march=native on Zen 4 does, the portable -march=x86-64-v3 does not, and there it became
//     `prefetcht0`, which fetches the line shared, not owned: the aligned stitch 4.27 ms against 2.95 with
//     AVX-512 (bench_gather, Zen 4). Every x86-64-v3 processor executes `prefetchw` (Intel before
//     Broadwell as a no-op, which 64-bit Windows 8.1 and later rely on), so it is written out here.
#pragma once
#include <cstdint>

namespace pw::kernels::cpu {

// Into L2 (prefetcht1): the patch kernels' read prefetches.
inline void prefetch_l2(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht1 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 0, 2);
#endif
}

// For writing (prefetchw: the line comes owned, ready for the store).
inline void prefetch_w(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

// The lines that a sample with corner 0 at p reads, into L2 (the patch kernels, rows W floats and planes HW
// floats apart): nearest, the voxel's line; linear, the lines of its corner rows (dz, dy) = (0, 0), (0, 1),
// and in 3D (1, 0), (1, 1) -- x + 1 mostly shares the line of x.
template <bool kLinear, int ND, class T>
inline void prefetch_sample(const T* p, int64_t W, int64_t HW) {
  prefetch_l2(p);
  if (kLinear) {
    prefetch_l2(p + W);
    if (ND == 3) {
      prefetch_l2(p + HW);
      prefetch_l2(p + HW + W);
    }
  }
}

}  // namespace pw::kernels::cpu
