// CPU body of kernels/smooth.h: one pass per filtered axis (W, then H, then D), ping-ponging
// between `out` and `tmp` so that the last pass lands in `out`; threaded over output lines.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "kernels/common/smooth_math.h"
#include "kernels/parallel.h"
#include "kernels/smooth.h"

namespace pw::kernels {

void undersampling(const float* mat, int ndim, float u[3]) {
  u[0] = u[1] = u[2] = 1.f;
  const int n = ndim + 1;
  for (int r = 0; r < ndim; ++r) {
    double s = 0;
    for (int c = 0; c < ndim; ++c) s += double(mat[r * n + c]) * mat[r * n + c];
    u[3 - ndim + r] = float(std::sqrt(s));
  }
}

SmoothPlan smooth_plan(SmoothKind kind, const int64_t vol[3], const float sigma[3], const int width[3]) {
  if (kind == SmoothKind::none || kind == SmoothKind::mixture)
    throw std::invalid_argument("smooth: the kernels filter with gaussian, box, max or min only");
  SmoothPlan plan;
  plan.op = kind == SmoothKind::gaussian ? common::kSmoothGaussian
            : kind == SmoothKind::box    ? common::kSmoothBox
            : kind == SmoothKind::max    ? common::kSmoothMax
                                         : common::kSmoothMin;
  for (int a = 2; a >= 0; --a) {
    bool active = plan.op == common::kSmoothGaussian ? sigma[a] > 0.f : width[a] > 1;
    if (active && vol[a] > 1) plan.axes[plan.num_axes++] = a;
  }
  return plan;
}

namespace cpu {

void smooth(const float* in, int64_t nc, const int64_t vol[3], SmoothKind kind, const float sigma[3],
            const int width[3], float* tmp, float* out) {
  const SmoothPlan plan = smooth_plan(kind, vol, sigma, width);
  const int op = plan.op;
  const int64_t total = nc * vol[0] * vol[1] * vol[2];
  if (plan.num_axes == 0) {
    std::memcpy(out, in, size_t(total) * sizeof(float));
    return;
  }
  const float* cur = in;
  float* dst = plan.num_axes % 2 ? out : tmp;
  for (int i = 0; i < plan.num_axes; ++i) {
    const int a = plan.axes[i];
    const int64_t n = vol[a];
    int64_t inner = 1;
    for (int b = a + 1; b < 3; ++b) inner *= vol[b];
    const int64_t outer = total / (n * inner);
    std::vector<float> taps;
    int R = 0;
    if (op == common::kSmoothGaussian) {
      R = common::gaussian_radius(sigma[a]);
      taps.resize(2 * R + 1);
      for (int k = -R; k <= R; ++k) taps[k + R] = common::gaussian_tap(k, sigma[a]);
    }
    const float* src = cur;
    float* d = dst;
    parallel_for(
        outer * n,
        [&](int64_t b, int64_t e) {
          for (int64_t s = b; s < e; ++s) {
            const int64_t o = s / n, i = s % n;
            const float* line = src + o * n * inner;
            float* dl = d + s * inner;
            for (int64_t j = 0; j < inner; ++j)
              dl[j] = common::filter_voxel(op, line + j, inner, n, i, taps.data(), R, width[a]);
          }
        },
        std::max<int64_t>(1, 8192 / inner));
    cur = dst;
    dst = dst == out ? tmp : out;
  }
}

}  // namespace cpu
}  // namespace pw::kernels
