#include "kernels/norm.h"

#include <cmath>
#include <vector>

#include "kernels/parallel.h"

// Every reduction runs per (n, c) plane (S contiguous values) in double, one plane per task;
// per-channel results then add the N plane partials in order, so results do not depend on the
// thread count.
namespace pw::kernels::cpu {
namespace {

// Sum of f(i) over [0, S) in double with kLanes partial sums, lane k taking i = k mod kLanes, added
// up in one fixed order at the end: independent of the thread count like a plain loop, but the lanes
// are independent dependency chains, so the loop vectorises and runs ~10x faster than one running
// sum (which waits on every addition).
constexpr int kLanes = 32;
template <class F>
double lane_sum(int64_t S, const F& f) {
  double lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= S; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lane[k] += f(i + k);
  for (int k = 0; i < S; ++i, ++k) lane[k] += f(i);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int k = 0; k < w; ++k) lane[k] += lane[k + w];
  return lane[0];
}

double plane_sum(const float* x, int64_t S) {
  return lane_sum(S, [x](int64_t i) { return static_cast<double>(x[i]); });
}

double plane_sq_dev(const float* x, int64_t S, double mean) {
  return lane_sum(S, [x, mean](int64_t i) {
    const double d = x[i] - mean;
    return d * d;
  });
}

// The gradient at the normalised values of one plane, element i: dy itself (A none), or dy through the
// activation whose output is y (the fused nodes; computed where it is read, not stored).
template <common::Act A>
struct NormGrad {
  const float* dy;
  const float* y;
  float slope;
  float operator()(int64_t i) const { return common::activation_grad_at(A, y, dy, i, slope); }
};
// f(NormGrad<act>{...}) for the plane at offset `at`.
template <class F>
void with_norm_grad(common::Act act, const float* dy, const float* y, float slope, int64_t at, const F& f) {
  switch (act) {
    case common::Act::none: return f(NormGrad<common::Act::none>{dy + at, nullptr, slope});
    case common::Act::relu: return f(NormGrad<common::Act::relu>{dy + at, y + at, slope});
    case common::Act::leaky: return f(NormGrad<common::Act::leaky>{dy + at, y + at, slope});
  }
}

// sum(dy) and sum(dy * (x - mean) * rstd) over one plane (dy: a NormGrad).
template <class G>
void plane_grad_sums(const float* x, const G& dy, int64_t S, float mean, float rstd, double* sum_dy,
                     double* sum_dy_xhat) {
  *sum_dy = lane_sum(S, [dy](int64_t i) { return static_cast<double>(dy(i)); });
  *sum_dy_xhat = lane_sum(S, [x, dy, mean, rstd](int64_t i) {
    return static_cast<double>(dy(i)) * ((x[i] - mean) * rstd);
  });
}

// y = act(x * a + c) over S values (A fixed per loop, so that it vectorises).
template <common::Act A>
void normalise_as(const float* x, float* y, int64_t S, float a, float c, float slope) {
  for (int64_t i = 0; i < S; ++i) y[i] = common::activate(A, x[i] * a + c, slope);
}

// y = act((x - mean)*rstd*w + b) over one plane, in the same pass (not a second one over y).
void plane_normalise(const float* x, float* y, int64_t S, float mean, float rstd, float w, float b, common::Act act,
                     float slope) {
  const float a = rstd * w, c = b - mean * rstd * w;
  switch (act) {
    case common::Act::none: return normalise_as<common::Act::none>(x, y, S, a, c, slope);
    case common::Act::relu: return normalise_as<common::Act::relu>(x, y, S, a, c, slope);
    case common::Act::leaky: return normalise_as<common::Act::leaky>(x, y, S, a, c, slope);
  }
}

// dx = (w*rstd) * (dy - sum_dy/M - xhat*sum_dy_xhat/M) over one plane (M = count of the statistics).
template <class G>
void plane_dx(const float* x, const G& dy, float* dx, int64_t S, float mean, float rstd, float w, double sum_dy,
              double sum_dy_xhat, double M) {
  const float k = w * rstd, mdy = static_cast<float>(sum_dy / M), mdx = static_cast<float>(sum_dy_xhat / M);
  for (int64_t i = 0; i < S; ++i) dx[i] = k * (dy(i) - mdy - (x[i] - mean) * rstd * mdx);
}

float weight_of(const float* weight, int64_t c) { return weight ? weight[c] : 1.f; }
float bias_of(const float* bias, int64_t c) { return bias ? bias[c] : 0.f; }

}  // namespace

void instance_norm_forward(const float* x, const float* weight, const float* bias, float* y, float* mean,
                           float* rstd, int64_t N, int64_t C, int64_t S, float eps, common::Act act, float slope) {
  parallel_for(N * C, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int64_t c = p % C;
      const float* xp = x + p * S;
      double m = plane_sum(xp, S) / static_cast<double>(S);
      double var = plane_sq_dev(xp, S, m) / static_cast<double>(S);
      mean[p] = static_cast<float>(m);
      rstd[p] = static_cast<float>(1.0 / std::sqrt(var + eps));
      plane_normalise(xp, y + p * S, S, mean[p], rstd[p], weight_of(weight, c), bias_of(bias, c), act, slope);
    }
  }, 1);
}

void instance_norm_backward(const float* x, const float* weight, const float* mean, const float* rstd,
                            const float* dy, const float* y, common::Act act, float slope, float* dx, float* dweight,
                            float* dbias, int64_t N, int64_t C, int64_t S) {
  std::vector<double> sum_dy(static_cast<size_t>(N * C)), sum_dy_xhat(static_cast<size_t>(N * C));
  parallel_for(N * C, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      with_norm_grad(act, dy, y, slope, p * S, [&](const auto& dyp) {
        const float* xp = x + p * S;
        plane_grad_sums(xp, dyp, S, mean[p], rstd[p], &sum_dy[p], &sum_dy_xhat[p]);
        if (dx)
          plane_dx(xp, dyp, dx + p * S, S, mean[p], rstd[p], weight_of(weight, p % C), sum_dy[p], sum_dy_xhat[p],
                   static_cast<double>(S));
      });
  }, 1);
  for (int64_t c = 0; c < C; ++c) {
    double gw = 0.0, gb = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      gw += sum_dy_xhat[n * C + c];
      gb += sum_dy[n * C + c];
    }
    if (dweight) dweight[c] = static_cast<float>(gw);
    if (dbias) dbias[c] = static_cast<float>(gb);
  }
}

void batch_norm_stats(const float* x, float* mean, float* var, int64_t N, int64_t C, int64_t S) {
  const double M = static_cast<double>(N * S);
  std::vector<double> partial(static_cast<size_t>(N * C));
  std::vector<double> m(static_cast<size_t>(C));
  parallel_for(N * C, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) partial[p] = plane_sum(x + p * S, S);
  }, 1);
  for (int64_t c = 0; c < C; ++c) {
    double s = 0.0;
    for (int64_t n = 0; n < N; ++n) s += partial[n * C + c];
    m[c] = s / M;
  }
  parallel_for(N * C, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) partial[p] = plane_sq_dev(x + p * S, S, m[p % C]);
  }, 1);
  for (int64_t c = 0; c < C; ++c) {
    double s = 0.0;
    for (int64_t n = 0; n < N; ++n) s += partial[n * C + c];
    mean[c] = static_cast<float>(m[c]);
    var[c] = static_cast<float>(s / M);
  }
}

void batch_norm_update_running(float* running_mean, float* running_var, const float* mean, const float* var,
                               int64_t C, int64_t M, float momentum) {
  const double unbias = M > 1 ? static_cast<double>(M) / static_cast<double>(M - 1) : 1.0;
  for (int64_t c = 0; c < C; ++c) {
    running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean[c]);
    running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * var[c] * unbias);
  }
}

void batch_norm_forward(const float* x, const float* weight, const float* bias, const float* mean,
                        const float* var, float* y, float* rstd, int64_t N, int64_t C, int64_t S, float eps,
                        common::Act act, float slope) {
  for (int64_t c = 0; c < C; ++c) rstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
  parallel_for(N * C, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int64_t c = p % C;
      plane_normalise(x + p * S, y + p * S, S, mean[c], rstd[c], weight_of(weight, c), bias_of(bias, c), act, slope);
    }
  }, 1);
}

void batch_norm_backward(const float* x, const float* weight, const float* mean, const float* rstd,
                         const float* dy, const float* y, common::Act act, float slope, float* dx, float* dweight,
                         float* dbias, int64_t N, int64_t C, int64_t S, bool training) {
  std::vector<double> partial_dy(static_cast<size_t>(N * C)), partial_dy_xhat(static_cast<size_t>(N * C));
  parallel_for(N * C, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      with_norm_grad(act, dy, y, slope, p * S, [&](const auto& dyp) {
        plane_grad_sums(x + p * S, dyp, S, mean[p % C], rstd[p % C], &partial_dy[p], &partial_dy_xhat[p]);
      });
  }, 1);
  std::vector<double> sum_dy(static_cast<size_t>(C)), sum_dy_xhat(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t n = 0; n < N; ++n) {
      sum_dy[c] += partial_dy[n * C + c];
      sum_dy_xhat[c] += partial_dy_xhat[n * C + c];
    }
    if (dweight) dweight[c] = static_cast<float>(sum_dy_xhat[c]);
    if (dbias) dbias[c] = static_cast<float>(sum_dy[c]);
  }
  if (!dx) return;
  const double M = static_cast<double>(N * S);
  parallel_for(N * C, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int64_t c = p % C;
      const float w = weight_of(weight, c);
      with_norm_grad(act, dy, y, slope, p * S, [&](const auto& dyp) {
        if (training) {
          plane_dx(x + p * S, dyp, dx + p * S, S, mean[c], rstd[c], w, sum_dy[c], sum_dy_xhat[c], M);
        } else {
          const float k = w * rstd[c];
          float* dxp = dx + p * S;
          for (int64_t i = 0; i < S; ++i) dxp[i] = k * dyp(i);
        }
      });
    }
  }, 1);
}

}  // namespace pw::kernels::cpu
