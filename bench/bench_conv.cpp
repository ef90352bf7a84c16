// Convolution speed through the engine ops (allocation and autodiff included), with GFLOP/s.
// Same cases as ../shared/peer-bench/bench_conv.py (PyTorch); see bench/RESULTS.md.
//   forward:                y = conv(x, w, b)                              2*N*Cin*Cout*k^d*P flops
//   forward+backward(dx,dw): y = conv(x, w, b); backward(y, gy) -> dx, dw, db  counted as 3x forward
// BM_conv_strided: 3D strided conv (k3 s2 p1, k2 s2) and transposed conv (k2 s2), same counting with
// P = the smaller (strided) side's volume, so its GFLOP/s compares with BM_conv's stride-1 cases.
// BM_conv's last argument picks the CPU conv path (kernels/cpu_paths.h): 0 the direct loops, 1 the special
// kernels where they apply: Winograd F(2x2x2, 3x3x3) for BM_conv's cases (flops are counted as the direct
// loops', so its GFLOP/s are "effective"). BM_conv_strided takes the process's path (PW_CONV=direct|special):
// its k2 s2 cases run in place by tap pairs on the special path (kernels/cpu/conv_k2s2.h).
// Threads: PW_NUM_THREADS (default: all cores). cpu_ms_all_threads: process CPU time per iteration.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <random>

#include "engine/ops.h"
#include "kernels/cpu_paths.h"

namespace {

// CPU seconds used by the whole process so far (all threads): with other jobs on the machine, the
// CPU time per iteration shows the cost of the code itself better than the wall-clock time.
double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

pw::Tensor random_tensor(const pw::Shape& s, float scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  pw::Tensor t = pw::Tensor::empty(s);
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = nd(rng);
  return t;
}

// args: N, Cin, Cout, spatial size, spatial dims (2 or 3), with backward (0/1), wino: the special path (0/1)
void BM_conv(benchmark::State& state) {
  const int64_t n = state.range(0), cin = state.range(1), cout = state.range(2), s = state.range(3);
  const int d = static_cast<int>(state.range(4));
  const bool bwd = state.range(5) != 0;
  namespace kc = pw::kernels::cpu;
  const kc::ConvPath before = kc::conv_path();
  kc::set_conv_path(state.range(6) ? kc::ConvPath::special : kc::ConvPath::direct);
  pw::Shape xs{n, cin}, ws{cout, cin}, ys{n, cout};
  double vox = 1.0, kv = 1.0;
  for (int i = 0; i < d; ++i) {
    xs.push_back(s);
    ws.push_back(3);
    ys.push_back(s);
    vox *= s;
    kv *= 3;
  }
  auto x = pw::variable(random_tensor(xs, 1.0f, 1), bwd);
  auto w = pw::variable(random_tensor(ws, 0.1f, 2), bwd);
  auto b = pw::variable(pw::Tensor::zeros({cout}), bwd);
  pw::Tensor gy = random_tensor(ys, 1.0f, 3);
  const double cpu0 = process_cpu_s();
  for (auto _ : state) {
    x->grad = w->grad = b->grad = pw::Tensor();
    pw::Var y = pw::conv(x, w, b, 1, 1);
    if (bwd) pw::backward(y, gy);
    benchmark::DoNotOptimize(y->value.raw());
  }
  const double flops = 2.0 * n * cin * cout * kv * vox * (bwd ? 3.0 : 1.0);
  state.counters["cpu_ms_all_threads"] = 1e3 * (process_cpu_s() - cpu0) / static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  kc::set_conv_path(before);
}

void cases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "Cin", "Cout", "S", "dims", "bwd", "wino"});
  for (int bwd : {0, 1}) {
    for (int wino : {0, 1}) {
      b->Args({8, 8, 16, 32, 3, bwd, wino});
      b->Args({8, 16, 16, 32, 3, bwd, wino});
      b->Args({8, 32, 32, 32, 3, bwd, wino});
    }
    b->Args({32, 32, 32, 64, 2, bwd, 0});
  }
}

// args: N, Cin, Cout, input size, kernel, stride, transposed (0/1), with backward (0/1)
void BM_conv_strided(benchmark::State& state) {
  const int64_t n = state.range(0), cin = state.range(1), cout = state.range(2), s = state.range(3);
  const int k = static_cast<int>(state.range(4)), st = static_cast<int>(state.range(5));
  const bool transposed = state.range(6) != 0, bwd = state.range(7) != 0;
  const int pad = transposed ? 0 : (k - 1) / 2;
  const int64_t small = transposed ? s : (s + 2 * pad - k) / st + 1;
  auto x = pw::variable(random_tensor({n, cin, s, s, s}, 1.0f, 1), bwd);
  auto w = pw::variable(random_tensor(transposed ? pw::Shape{cin, cout, k, k, k} : pw::Shape{cout, cin, k, k, k}, 0.1f, 2), bwd);
  auto b = pw::variable(pw::Tensor::zeros({cout}), bwd);
  pw::Var y0 = transposed ? pw::conv_transpose(x, w, b, st) : pw::conv(x, w, b, st, pad);
  pw::Tensor gy = random_tensor(y0->value.shape(), 1.0f, 3);
  const double cpu0 = process_cpu_s();
  for (auto _ : state) {
    x->grad = w->grad = b->grad = pw::Tensor();
    pw::Var y = transposed ? pw::conv_transpose(x, w, b, st) : pw::conv(x, w, b, st, pad);
    if (bwd) pw::backward(y, gy);
    benchmark::DoNotOptimize(y->value.raw());
  }
  const double flops = 2.0 * n * cin * cout * k * k * k * double(small * small * small) * (bwd ? 3.0 : 1.0);
  state.counters["cpu_ms_all_threads"] = 1e3 * (process_cpu_s() - cpu0) / static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void strided_cases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "Cin", "Cout", "S", "k", "s", "transposed", "bwd"});
  for (int bwd : {0, 1}) {
    b->Args({8, 16, 16, 32, 3, 2, 0, bwd});  // k3 s2 p1: 32^3 -> 16^3
    b->Args({8, 16, 16, 32, 2, 2, 0, bwd});  // k2 s2 (the U-Net's strided_conv down step)
    b->Args({8, 16, 16, 16, 2, 2, 1, bwd});  // transposed k2 s2: 16^3 -> 32^3 (the U-Net's up step)
  }
}

}  // namespace

BENCHMARK(BM_conv_strided)->Apply(strided_cases)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_conv)->Apply(cases)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

BENCHMARK_MAIN();
