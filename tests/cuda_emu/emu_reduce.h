// HOST STAND-IN for kernels/cuda/reduce.cuh: group_reduce<K>(groups, count, f, fin) with the
// bodies' real item functor f(g, i, acc) and finish functor fin(g, tot), summed sequentially in
// double per group. It checks what the functors compute, not the real two-stage block reduction
// (warp shuffles, shared memory, the split into parts), which needs a GPU.
#pragma once
#include "emu_context.h"

namespace pw::kernels::cuda_emu {

template <int K, class F, class Fin>
void group_reduce(int64_t groups, int64_t count, F f, Fin fin) {
  if (groups <= 0) return;
  if (groups > 0x7fffffff) throw std::invalid_argument("group_reduce: too many groups");
  for (int64_t g = 0; g < groups; ++g) {
    double acc[K] = {};
    for (int64_t i = 0; i < count; ++i) f(g, i, acc);
    fin(g, static_cast<const double*>(acc));
  }
}

}  // namespace pw::kernels::cuda_emu
