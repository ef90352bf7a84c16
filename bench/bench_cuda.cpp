// CUDA benchmarks: conv3d forward and forward+backward (dx, dw) GFLOP/s at the engine issue's
// shapes, conv2d, and one training step (forward, cross-entropy, backward, Adam) of the benchmark
// U-Net at batch 8 and at a large batch, each with TF32 on (1) and off (0).
//
//   ./bench_cuda                          (all cases)
//   ./bench_cuda --benchmark_filter=unet  (the training step only)
//
// The "GFLOP/s" counters hold GFLOP per second, as in bench_conv / bench_unet (JSON too).
// Every iteration ends with a stream synchronisation, so the times are GPU times. With PW_PROFILE=1
// (engine/profile.h) the op table at exit holds the last benchmark run's timed iterations only
// (profile_reset() after each warm-up), per kernel family and convolution shape. Exits with a
// message (status 0) when there is no GPU or this build has no CUDA.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/profile.h"
#include "engine/testing/unet_block.h"
#ifdef PW_HAVE_CUDA
#include "engine/cuda/runtime.h"
#endif

using namespace pw;

#ifdef PW_HAVE_CUDA
namespace {

Tensor random_cuda(const Shape& s, uint32_t seed, float stddev = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, stddev);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = nd(rng);
  return t.to(Device::cuda);
}

void set_mode(benchmark::State& state, bool tf32) {
  cuda::set_tf32(tf32);
  state.SetLabel(cuda::device_description() + (tf32 ? ", TF32 on" : ", TF32 off"));
}

double conv_gflop(int64_t n, int64_t cin, int64_t cout, int64_t k_vol, int64_t out_vol) {
  return 2.0 * n * cin * cout * k_vol * out_vol / 1e9;
}

// conv3d batch 8, 32^3, kernel 3, padding 1: args cin, cout, tf32.
void BM_conv3d_forward(benchmark::State& state) {
  const int64_t cin = state.range(0), cout = state.range(1), n = 8, s = 32;
  set_mode(state, state.range(2) != 0);
  NoGradGuard no_grad;
  Var x = constant(random_cuda({n, cin, s, s, s}, 1));
  Var w = constant(random_cuda({cout, cin, 3, 3, 3}, 2, 0.1f));
  Var b = constant(random_cuda({cout}, 3, 0.1f));
  conv(x, w, b, 1, 1);  // algorithm search, outside the timing
  cuda::synchronize();
  profile_reset();
  for (auto _ : state) {
    Var y = conv(x, w, b, 1, 1);
    cuda::synchronize();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(conv_gflop(n, cin, cout, 27, s * s * s), benchmark::Counter::kIsIterationInvariantRate);
}

// Forward + backward (dx, dw, db): 3x the forward's FLOPs.
void BM_conv3d_forward_backward(benchmark::State& state) {
  const int64_t cin = state.range(0), cout = state.range(1), n = 8, s = 32;
  set_mode(state, state.range(2) != 0);
  Var x = variable(random_cuda({n, cin, s, s, s}, 1), true);
  Var w = variable(random_cuda({cout, cin, 3, 3, 3}, 2, 0.1f), true);
  Var b = variable(random_cuda({cout}, 3, 0.1f), true);
  Tensor seed = random_cuda({n, cout, s, s, s}, 4);
  auto step = [&] {
    x->grad = Tensor();
    w->grad = Tensor();
    b->grad = Tensor();
    backward(conv(x, w, b, 1, 1), seed);
  };
  step();
  cuda::synchronize();
  profile_reset();
  for (auto _ : state) {
    step();
    cuda::synchronize();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(3 * conv_gflop(n, cin, cout, 27, s * s * s),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// conv2d batch 32, 64^2, 32->32, kernel 3, padding 1: forward + backward; arg tf32.
void BM_conv2d_forward_backward(benchmark::State& state) {
  const int64_t n = 32, c = 32, s = 64;
  set_mode(state, state.range(0) != 0);
  Var x = variable(random_cuda({n, c, s, s}, 1), true);
  Var w = variable(random_cuda({c, c, 3, 3}, 2, 0.1f), true);
  Tensor seed = random_cuda({n, c, s, s}, 4);
  auto step = [&] {
    x->grad = Tensor();
    w->grad = Tensor();
    backward(conv(x, w, Var(), 1, 1), seed);
  };
  step();
  cuda::synchronize();
  profile_reset();
  for (auto _ : state) {
    step();
    cuda::synchronize();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(3 * conv_gflop(n, c, c, 9, s * s), benchmark::Counter::kIsIterationInvariantRate);
}

// The benchmark U-Net of the engine issue (width 16, 2 classes) on 32^3 patches.
struct BenchUNet {
  std::vector<Var> params;
  explicit BenchUNet(int w) {
    const std::vector<Shape> shapes = pw::testing::unet_block_shapes(w);
    uint32_t seed = 100;
    for (const Shape& s : shapes) {
      const double fan_in = s.size() > 1 ? double(shape_numel(s) / s[0]) : 1.0;
      params.push_back(variable(random_cuda(s, seed++, s.size() > 1 ? float(std::sqrt(2.0 / fan_in)) : 0.01f), true));
    }
  }
  Var forward(const Var& x) const { return pw::testing::unet_block_forward(x, params); }
};

// One training step: zero_grad, forward, cross-entropy, backward, Adam. Args batch, tf32.
void BM_unet_train_step(benchmark::State& state) {
  const int64_t n = state.range(0), s = 32, w = 16;
  set_mode(state, state.range(1) != 0);
  BenchUNet net{int(w)};
  Adam opt(net.params, AdamOptions{});
  Var x = constant(random_cuda({n, 1, s, s, s}, 7));
  Tensor labels = Tensor::empty({n, s, s, s}, DType::i32);
  std::mt19937 rng(8);
  for (int64_t i = 0; i < labels.numel(); ++i) labels.i32()[i] = int32_t(rng() & 1);
  Tensor y = labels.to(Device::cuda);
  auto step = [&] {
    opt.zero_grad();
    Var loss = cross_entropy(net.forward(x), y);
    backward(loss);
    opt.step();
  };
  step();  // algorithm searches and allocator warm-up
  cuda::synchronize();
  profile_reset();
  cuda::reset_peak();
  for (auto _ : state) {
    step();
    cuda::synchronize();
  }
  const double vox = double(s * s * s), half = vox / 8;
  const double fwd = 2.0 * n * (1 * w * 27 * vox + w * w * 27 * vox + w * 2 * w * 27 * half + 3 * w * w * 27 * vox +
                                w * 2 * vox);
  state.counters["GFLOP/s"] = benchmark::Counter(3 * fwd / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_MiB"] = double(cuda::memory_stats().peak_in_use) / (1 << 20);
}

}  // namespace

// The training step first: the target, and what a time-limited run must not lose.
BENCHMARK(BM_unet_train_step)
    ->ArgNames({"batch", "tf32"})
    ->ArgsProduct({{8, 64}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// The conv3d cases: 8->16, 16->16, 32->32 channels, TF32 on and off.
static void conv3d_cases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cin", "cout", "tf32"})
      ->ArgsProduct({{8}, {16}, {1, 0}})
      ->ArgsProduct({{16}, {16}, {1, 0}})
      ->ArgsProduct({{32}, {32}, {1, 0}})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}
BENCHMARK(BM_conv3d_forward)->Apply(conv3d_cases);
BENCHMARK(BM_conv3d_forward_backward)->Apply(conv3d_cases);
BENCHMARK(BM_conv2d_forward_backward)->ArgNames({"tf32"})->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif  // PW_HAVE_CUDA

int main(int argc, char** argv) {
#ifndef PW_HAVE_CUDA
  (void)argc;
  (void)argv;
  std::printf("bench_cuda: this Patchwork was built without CUDA; nothing to measure\n");
  return 0;
#else
  if (!cuda_available()) {
    std::printf("bench_cuda: no CUDA GPU is available (no driver or no device); nothing to measure\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
#endif
}
