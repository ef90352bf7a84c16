// Deterministic reductions for the CUDA bodies (no atomics: the same input always gives the same
// bits). group_reduce<K>(groups, count, f, fin) sums K doubles per group over `count` items:
//   f(g, i, acc)   adds item i of group g into acc[0..K)      (a __device__ functor)
//   fin(g, tot)    receives the K totals of group g            (a __device__ functor)
// Stage 1 splits every group into `parts` blocks writing partial sums; stage 2 (one block per
// group) adds the partials in a fixed order and calls fin.
#pragma once
#include <algorithm>

#include "kernels/cuda/context.h"

namespace pw::kernels::cuda {

// Sums acc across the block; the result is valid in thread 0. blockDim.x must be kBlock.
template <int K>
__device__ inline void block_sum(double (&acc)[K]) {
  __shared__ double warp_sums[kBlock / 32][K];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < K; ++k)
    for (int off = 16; off > 0; off /= 2) acc[k] += __shfl_down_sync(0xffffffffu, acc[k], off);
  if (lane == 0)
#pragma unroll
    for (int k = 0; k < K; ++k) warp_sums[warp][k] = acc[k];
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      acc[k] = lane < kBlock / 32 ? warp_sums[lane][k] : 0.0;
      for (int off = 16; off > 0; off /= 2) acc[k] += __shfl_down_sync(0xffffffffu, acc[k], off);
    }
  }
  __syncthreads();  // warp_sums may be reused by a following call
}

template <int K, class F>
__global__ void group_reduce_partials(F f, int64_t count, int parts, double* partials) {
  const int64_t g = blockIdx.x;
  const int p = blockIdx.y;
  double acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  for (int64_t i = int64_t(p) * blockDim.x + threadIdx.x; i < count; i += int64_t(parts) * blockDim.x) f(g, i, acc);
  block_sum<K>(acc);
  if (threadIdx.x == 0)
#pragma unroll
    for (int k = 0; k < K; ++k) partials[(g * parts + p) * K + k] = acc[k];
}

template <int K, class Fin>
__global__ void group_reduce_finish(Fin fin, int parts, const double* partials) {
  const int64_t g = blockIdx.x;
  double acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  for (int p = threadIdx.x; p < parts; p += blockDim.x)
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] += partials[(g * parts + p) * K + k];
  block_sum<K>(acc);
  if (threadIdx.x == 0) fin(g, acc);
}

template <int K, class F, class Fin>
void group_reduce(int64_t groups, int64_t count, F f, Fin fin) {
  if (groups <= 0) return;
  if (groups > 0x7fffffff) throw std::invalid_argument("group_reduce: too many groups");
  const Context& ctx = context();
  // About 8 blocks per SM in all, at least 4 iterations of work per thread, at most 65535 parts.
  int64_t want = std::max<int64_t>(1, int64_t(ctx.sm_count) * 8 / groups);
  int64_t most = std::max<int64_t>(1, (count + kBlock * 4 - 1) / (kBlock * 4));
  const int parts = int(std::min<int64_t>({want, most, 65535}));
  Scratch partials(size_t(groups) * parts * K * sizeof(double));
  group_reduce_partials<K><<<dim3(unsigned(groups), unsigned(parts)), kBlock, 0, ctx.stream>>>(
      f, count, parts, partials.as<double>());
  PW_CUDA_CHECK_LAUNCH("group_reduce_partials");
  group_reduce_finish<K><<<unsigned(groups), kBlock, 0, ctx.stream>>>(fin, parts, partials.as<double>());
  PW_CUDA_CHECK_LAUNCH("group_reduce_finish");
}

}  // namespace pw::kernels::cuda
