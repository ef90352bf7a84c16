// One training step (forward, softmax cross-entropy, backward, Adam) and one no-grad forward of the
// small 3D U-Net block of ../shared/peer-bench/bench_unet.py (PyTorch), batch 8, 32^3, width 16:
//   c1 = relu(conv3(1->16)); c2 = relu(conv3(16->16))                       @32^3
//   c3 = relu(conv3(16->32)) on maxpool2(c2)                                @16^3
//   c4 = relu(conv3(48->16)) on concat(upsample2_nearest(c3), c2); out = conv1(16->2)
// GFLOP/s counts the convolutions only (forward, x3 for a training step), as the peer does.
// Threads: PW_NUM_THREADS (default: all cores). cpu_ms_all_threads: process CPU time per iteration. See bench/RESULTS.md.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cmath>
#include <random>

#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/testing/unet_block.h"

namespace {

// CPU seconds used by the whole process so far (all threads): with other jobs on the machine, the
// CPU time per iteration shows the cost of the code itself better than the wall-clock time.
double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

constexpr int64_t kN = 8, kS = 32, kW = 16;

struct ConvParam {
  pw::Var w, b;
};

// PyTorch's default Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
ConvParam make_conv(int64_t cin, int64_t cout, int k, std::mt19937& rng) {
  const float bound = 1.0f / std::sqrt(float(cin * k * k * k));
  std::uniform_real_distribution<float> u(-bound, bound);
  pw::Tensor w = pw::Tensor::empty({cout, cin, k, k, k}), b = pw::Tensor::empty({cout});
  for (int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = u(rng);
  for (int64_t i = 0; i < b.numel(); ++i) b.f32()[i] = u(rng);
  return {pw::variable(w, true), pw::variable(b, true)};
}

struct Net {
  ConvParam c1, c2, c3, c4, out;
  explicit Net(std::mt19937& rng)
      : c1(make_conv(1, kW, 3, rng)),
        c2(make_conv(kW, kW, 3, rng)),
        c3(make_conv(kW, 2 * kW, 3, rng)),
        c4(make_conv(3 * kW, kW, 3, rng)),
        out(make_conv(kW, 2, 1, rng)) {}

  std::vector<pw::Var> params() const {
    return {c1.w, c1.b, c2.w, c2.b, c3.w, c3.b, c4.w, c4.b, out.w, out.b};
  }

  pw::Var forward(const pw::Var& x) const { return pw::testing::unet_block_forward(x, params()); }
};

double conv_gflop() {
  const double v = double(kS) * kS * kS, v2 = v / 8;
  return 2.0 * kN * 27 * (1 * kW * v + kW * kW * v + kW * 2 * kW * v2 + 3 * kW * kW * v) * 1e-9 +
         2.0 * kN * kW * 2 * v * 1e-9;
}

struct Setup {
  std::mt19937 rng{0};
  Net net{rng};
  pw::Var x;
  pw::Tensor labels = pw::Tensor::empty({kN, kS, kS, kS}, pw::DType::i32);
  Setup() {
    std::normal_distribution<float> nd;
    pw::Tensor xt = pw::Tensor::empty({kN, 1, kS, kS, kS});
    for (int64_t i = 0; i < xt.numel(); ++i) xt.f32()[i] = nd(rng);
    x = pw::constant(xt);
    for (int64_t i = 0; i < labels.numel(); ++i) labels.i32()[i] = static_cast<int32_t>(rng() & 1u);
  }
};

void BM_unet_train_step(benchmark::State& state) {
  Setup s;
  pw::Adam opt(s.net.params(), {});
  const double cpu0 = process_cpu_s();
  for (auto _ : state) {
    opt.zero_grad();
    pw::Var loss = pw::cross_entropy(s.net.forward(s.x), s.labels);
    pw::backward(loss);
    opt.step();
    benchmark::DoNotOptimize(loss->value.raw());
  }
  state.counters["cpu_ms_all_threads"] = 1e3 * (process_cpu_s() - cpu0) / static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] =
      benchmark::Counter(3.0 * conv_gflop(), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_unet_forward_nograd(benchmark::State& state) {
  Setup s;
  pw::NoGradGuard no_grad;
  const double cpu0 = process_cpu_s();
  for (auto _ : state) {
    pw::Var y = s.net.forward(s.x);
    benchmark::DoNotOptimize(y->value.raw());
  }
  state.counters["cpu_ms_all_threads"] = 1e3 * (process_cpu_s() - cpu0) / static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(conv_gflop(), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_unet_train_step)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_unet_forward_nograd)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

BENCHMARK_MAIN();
