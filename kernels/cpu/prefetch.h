// Software prefetch into L2 that the compiler keeps. GCC's loop vectoriser deletes __builtin_prefetch
// calls from the loops it vectorises (GCC 12 did so in the gather's prefetch loop once it stepped by
// two voxels: no prefetch was left in the binary); an asm statement is never deleted, and a loop that
// holds one is not vectorised.
#pragma once

namespace pw::kernels::cpu {

inline void prefetch_l2(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht1 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 0, 2);
#endif
}

}  // namespace pw::kernels::cpu
