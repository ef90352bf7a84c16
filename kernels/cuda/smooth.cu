// CUDA body of kernels/smooth.h: one pass per filtered axis, one thread per output voxel, the
// per-voxel filter of kernels/common/smooth_math.h; Gaussian taps built per block in shared memory.
#include <stdexcept>
#include <vector>

#include "kernels/common/smooth_math.h"
#include "kernels/cuda/context.h"
#include "kernels/smooth.h"

namespace pw::kernels::cuda {
namespace {

__global__ void filter_kernel(const float* __restrict__ in, int64_t total, int64_t n, int64_t inner, int op,
                              float sigma, int R, int width, float* __restrict__ out) {
  extern __shared__ float taps[];
  if (op == common::kSmoothGaussian)
    for (int k = threadIdx.x; k <= 2 * R; k += blockDim.x) taps[k] = common::gaussian_tap(k - R, sigma);
  __syncthreads();
  PW_CUDA_LOOP(t, total) {
    const int64_t j = t % inner, i = (t / inner) % n, o = t / (inner * n);
    out[t] = common::filter_voxel(op, in + o * n * inner + j, inner, n, i, taps, R, width);
  }
}

}  // namespace

void smooth(const float* in, int64_t nc, const int64_t vol[3], SmoothKind kind, const float sigma[3],
            const int width[3], float* tmp, float* out) {
  const SmoothPlan plan = smooth_plan(kind, vol, sigma, width);
  const int op = plan.op;
  const int64_t total = nc * vol[0] * vol[1] * vol[2];
  if (total == 0) return;
  if (plan.num_axes == 0) {
    copy_device_to_device(out, in, size_t(total) * sizeof(float));
    return;
  }
  const float* cur = in;
  float* dst = plan.num_axes % 2 ? out : tmp;
  for (int i = 0; i < plan.num_axes; ++i) {
    const int a = plan.axes[i];
    int64_t inner = 1;
    for (int b = a + 1; b < 3; ++b) inner *= vol[b];
    const int R = op == common::kSmoothGaussian ? common::gaussian_radius(sigma[a]) : 0;
    const size_t shmem = op == common::kSmoothGaussian ? size_t(2 * R + 1) * sizeof(float) : 0;
    if (shmem > 48 * 1024) throw std::invalid_argument("smooth: Gaussian sigma too large for the CUDA kernel");
    filter_kernel<<<grid_for(total), kBlock, shmem, stream()>>>(cur, total, vol[a], inner, op, sigma[a], R, width[a],
                                                               dst);
    PW_CUDA_CHECK(cudaGetLastError());
    cur = dst;
    dst = dst == out ? tmp : out;
  }
}

}  // namespace pw::kernels::cuda
