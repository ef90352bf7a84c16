// Affine patch gather (crop) and scatter (stitch), the case of shared/peer-bench/bench_gather.py
// and bench_scatter.py: 64 patches of 32^3 from a 256^3 float32 volume at random rotations and
// scalings (p = c + R diag(s) (u - 15.5), s ~ U(0.8, 1.25), c ~ U(48, 208)^3), nearest and
// trilinear, coordinates computed inside the kernel (the peers' grid_sample rows get them
// precomputed); then stitching the same 64 patches back into 256^3 (+ weight volume) with a cos
// window (BM_stitch), and at bench_scatter.py's own placement, axis-aligned at random integer
// offsets (BM_stitch_aligned, the case its index_put_ row times); and axis-aligned patches scaled by 0.5,
// stitched linearly (BM_stitch_scaled_linear: a coarse level into a finer grid). Argument: threads.
//
// CUDA builds on a machine with a GPU add BM_cuda_gather_nearest (the same placement scaled up to
// 4096 patches from a 512^3 volume, enough to fill the card) beside BM_cuda_copy (device-to-device
// copy of a 1 GiB buffer, GB/s = read + write), the "half of the copy bandwidth" check, and
// BM_cuda_gather_trilinear / BM_cuda_stitch_cos_nearest at that size. Each iteration synchronises.
//
// The trilinear gather's inner loop depends on the CPU (kernels/cpu_paths.h; the label names it);
// PW_GATHER_LOADS=vector|scalar forces one, to compare both on one machine.
//
// Counters: Mvox/s = patch voxels per second. GB/s = minimal bytes per patch voxel / time:
// gather 4 B written + 4 B (nearest) or 32 B (8 corners, trilinear) read — the peer's "effective"
// rule without its coordinate bytes; stitch 4 B read + 2 x 8 B read-modify-write (value, weight)
// per target voxel touched (1 nearest, 8 linear). The gather backward cases add bound_GB/s (their memory
// footprint per second) and BM_copy gives the copy speed to hold it against (bench/bound_backward.sh);
// BM_gather_backward_floor times their read-modify-writes alone, without the kernel around them.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "engine/device.h"
#include "engine/tensor.h"
#include "kernels/common/patch_math.h"
#include "kernels/cpu_paths.h"
#include "kernels/gather.h"
#include "kernels/parallel.h"
#include "kernels/scatter.h"
#ifdef PW_HAVE_CUDA
#include "engine/cuda/runtime.h"
#include "engine/cuda_backend.h"
#endif

namespace {

using namespace pw::kernels;

// Random rotations+scalings placed inside a V^3 volume: P matrices of 4x4.
std::vector<float> random_mats(int64_t V, int64_t S, int64_t P, std::mt19937_64& rng) {
  std::vector<float> mats;
  std::uniform_real_distribution<double> us(0.8, 1.25), uc(48, V - 48);
  std::normal_distribution<double> n64;
  for (int64_t p = 0; p < P; ++p) {
    double R[3][3];
    for (int i = 0; i < 3; ++i) {  // random rotation by Gram-Schmidt
      for (;;) {
        for (int j = 0; j < 3; ++j) R[i][j] = n64(rng);
        for (int k = 0; k < i; ++k) {
          double d = R[i][0] * R[k][0] + R[i][1] * R[k][1] + R[i][2] * R[k][2];
          for (int j = 0; j < 3; ++j) R[i][j] -= d * R[k][j];
        }
        double n = std::sqrt(R[i][0] * R[i][0] + R[i][1] * R[i][1] + R[i][2] * R[i][2]);
        if (n > 1e-6) {
          for (int j = 0; j < 3; ++j) R[i][j] /= n;
          break;
        }
      }
    }
    double s[3] = {us(rng), us(rng), us(rng)}, c[3] = {uc(rng), uc(rng), uc(rng)};
    for (int r = 0; r < 3; ++r) {
      double t = c[r];
      for (int j = 0; j < 3; ++j) {
        mats.push_back(float(R[r][j] * s[j]));
        t -= R[r][j] * s[j] * (S - 1) / 2.0;
      }
      mats.push_back(float(t));
    }
    mats.insert(mats.end(), {0.f, 0.f, 0.f, 1.f});
  }
  return mats;
}

PatchGeom cube_geom(int64_t V, int64_t S, int64_t P) {
  PatchGeom g;
  g.ndim = 3;
  g.channels = 1;
  g.num_vols = 1;
  g.num_patches = P;
  for (int a = 0; a < 3; ++a) {
    g.vol[a] = V;
    g.patch[a] = S;
  }
  return g;
}

struct Case {
  static constexpr int64_t V = 256, S = 32, P = 64;
  // Volumes and patches live in engine tensors, as in the product (64-byte aligned; blocks of 8 MiB
  // and more on transparent huge pages where the OS offers them).
  pw::Tensor vol, patches, acc, weight;
  std::vector<float> mats, mats_aligned;
  PatchGeom g;
  Case() {
    std::mt19937_64 rng(0);
    std::normal_distribution<float> nd;
    vol = pw::Tensor::empty({V * V * V});
    for (int64_t i = 0; i < vol.numel(); ++i) vol.f32()[i] = nd(rng);
    mats = random_mats(V, S, P, rng);
    g = cube_geom(V, S, P);
    // bench_scatter.py's placement: axis-aligned patches at random integer offsets in [0, V-S].
    std::uniform_int_distribution<int> uo(0, int(V - S));
    for (int64_t p = 0; p < P; ++p) {
      const float o[3] = {float(uo(rng)), float(uo(rng)), float(uo(rng))};
      mats_aligned.insert(mats_aligned.end(), {1, 0, 0, o[0], 0, 1, 0, o[1], 0, 0, 1, o[2], 0, 0, 0, 1});
    }
    patches = pw::Tensor::zeros({P * S * S * S});
    acc = pw::Tensor::zeros({V * V * V});
    weight = pw::Tensor::zeros({V * V * V});
  }
};

Case& the_case() {
  static Case c;
  return c;
}

void set_counters(benchmark::State& state, double bytes_per_voxel) {
  const double n = double(Case::P * Case::S * Case::S * Case::S);
  state.counters["Mvox/s"] = benchmark::Counter(n * 1e-6, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(n * bytes_per_voxel * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_gather(benchmark::State& state, Interp mode) {
  pw::set_num_threads(int(state.range(0)));
  Case& c = the_case();
  for (auto _ : state) {
    cpu::gather_affine(c.vol.f32(), c.g, c.mats.data(), nullptr, mode, false, c.patches.f32());
    benchmark::DoNotOptimize(c.patches.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, mode == Interp::nearest ? 8.0 : 36.0);
  state.SetLabel(cpu::cpu_paths_description());  // the CPU and the inner loop it takes
}

void BM_stitch(benchmark::State& state, Interp mode) {
  pw::set_num_threads(int(state.range(0)));
  Case& c = the_case();
  cpu::gather_affine(c.vol.f32(), c.g, c.mats.data(), nullptr, mode, false, c.patches.f32());
  for (auto _ : state) {
    cpu::scatter_affine(c.patches.f32(), c.g, c.mats.data(), nullptr, mode, Window::cos, c.acc.f32(),
                        c.weight.f32());
    benchmark::DoNotOptimize(c.acc.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, mode == Interp::nearest ? 20.0 : 4.0 + 8 * 16.0);
}

// The same patches stitched at bench_scatter.py's axis-aligned placement (its index_put_ case).
void BM_stitch_aligned(benchmark::State& state) {
  pw::set_num_threads(int(state.range(0)));
  Case& c = the_case();
  for (auto _ : state) {
    cpu::scatter_affine(c.patches.f32(), c.g, c.mats_aligned.data(), nullptr, Interp::nearest, Window::cos,
                        c.acc.f32(), c.weight.f32());
    benchmark::DoNotOptimize(c.acc.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, 20.0);
}

// Axis-aligned patches scaled by 0.5 at random fractional offsets, linear stitch with the cos window: a
// coarse level's patches resampled into a finer output grid (apply with scatter_type "lin"); rows run
// along x, consecutive voxels share corners.
void BM_stitch_scaled_linear(benchmark::State& state) {
  pw::set_num_threads(int(state.range(0)));
  Case& c = the_case();
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> uo(0.f, float(Case::V - Case::S / 2 - 2));
  std::vector<float> mats;
  for (int64_t p = 0; p < Case::P; ++p)
    mats.insert(mats.end(), {0.5f, 0, 0, uo(rng), 0, 0.5f, 0, uo(rng), 0, 0, 0.5f, uo(rng), 0, 0, 0, 1});
  for (auto _ : state) {
    cpu::scatter_affine(c.patches.f32(), c.g, mats.data(), nullptr, Interp::linear, Window::cos, c.acc.f32(),
                        c.weight.f32());
    benchmark::DoNotOptimize(c.acc.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, 4.0 + 8 * 16.0);
}

// Bytes that the gather backward must move at least: the patch gradients read once, and every target line
// (64 B) its additions touch read and written back once. The lines are counted by adding patches of ones
// into a zeroed volume (every touched line then holds a positive value); once per mode.
double backward_footprint_bytes(Interp mode) {
  static double cached[2] = {0.0, 0.0};
  double& bytes = cached[mode == Interp::linear ? 1 : 0];
  if (bytes > 0.0) return bytes;
  Case& c = the_case();
  const int64_t n = Case::P * Case::S * Case::S * Case::S;
  pw::Tensor ones = pw::Tensor::full({n}, 1.f), vol = pw::Tensor::zeros({c.vol.numel()});
  cpu::gather_affine_backward(ones.f32(), c.g, c.mats.data(), nullptr, mode, false, vol.f32());
  int64_t lines = 0;
  for (int64_t l = 0; l < vol.numel(); l += 16) {
    bool touched = false;
    for (int64_t i = l; i < std::min(l + 16, vol.numel()); ++i) touched |= vol.f32()[i] != 0.f;
    lines += touched;
  }
  bytes = 4.0 * double(n) + 2.0 * 64.0 * double(lines);
  return bytes;
}

// GB/s = 12 B (nearest) or 68 B (trilinear) per patch voxel, as the stitch counts; bound_GB/s = the
// footprint (backward_footprint_bytes) per second: BM_copy's GB/s over it is how many times the memory
// bound the backward takes (bench/bound_backward.sh alternates the two and prints that ratio).
void BM_gather_backward(benchmark::State& state, Interp mode) {
  pw::set_num_threads(int(state.range(0)));
  Case& c = the_case();
  const double footprint = backward_footprint_bytes(mode);
  for (auto _ : state) {
    cpu::gather_affine_backward(c.patches.f32(), c.g, c.mats.data(), nullptr, mode, false, c.acc.f32());
    benchmark::DoNotOptimize(c.acc.f32());
    benchmark::ClobberMemory();
  }
  set_counters(state, mode == Interp::nearest ? 12.0 : 4.0 + 8 * 8.0);
  state.counters["bound_GB/s"] = benchmark::Counter(footprint * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["footprint_MB"] = footprint * 1e-6;
}

// The gather backward's floor on this machine: the kernel's read-modify-writes alone -- each patch voxel's
// target voxel (nearest) or 8 corners (trilinear, weights from precomputed fractions), in the kernel's order,
// prefetched 1024 voxels ahead -- from int32 indices computed before the timing, with no index work, no
// rows and no slabs: worker w adds patches [w P / W, (w + 1) P / W) into a 256^3 target of its own. How
// far the kernel (BM_gather_backward) is from this loop, and this loop from the memory bound
// (bench/bound_backward.sh prints both).
struct FloorCase {
  std::vector<int32_t> idx;       // per patch voxel: the target voxel, or its corner 0
  std::vector<float> fz, fy, fx;  // trilinear: the fractions along z, y, x
  std::vector<pw::Tensor> target;  // one 256^3 target per worker
  explicit FloorCase(Interp mode) {
    Case& c = the_case();
    const int64_t S = Case::S, V = Case::V;
    for (int64_t p = 0; p < Case::P; ++p) {
      const common::PatchMatrix M = common::load_patch_matrix(c.mats.data() + p * 16, 3);
      for (int64_t a = 0; a < S; ++a)
        for (int64_t b = 0; b < S; ++b)
          for (int64_t x = 0; x < S; ++x) {
            float q[3], f[3];
            for (int k = 0; k < 3; ++k) {
              q[k] = common::coord(common::row_start(M, k, float(a), float(b)), float(x), M.m[k][2]);
              f[k] = mode == Interp::nearest ? common::round_nearest(q[k]) : std::floor(q[k]);
            }
            idx.push_back(int32_t((int64_t(f[0]) * V + int64_t(f[1])) * V + int64_t(f[2])));  // inside: random_mats keeps 48 voxels clear
            if (mode == Interp::linear) fz.push_back(q[0] - f[0]), fy.push_back(q[1] - f[1]), fx.push_back(q[2] - f[2]);
          }
    }
  }
};

void floor_nearest(const FloorCase& f, const float* v, int64_t b, int64_t e, float* t) {
  const int32_t* idx = f.idx.data();
  for (int64_t i = b; i < e; ++i) {
    __builtin_prefetch(t + idx[std::min(i + 1024, e - 1)], 1, 2);
    t[idx[i]] += v[i];
  }
}

void floor_linear(const FloorCase& f, const float* v, int64_t b, int64_t e, float* t) {
  constexpr int64_t Y = Case::V, Z = Case::V * Case::V;
  const int32_t* idx = f.idx.data();
  for (int64_t i = b; i < e; ++i) {
    const int64_t a = idx[std::min(i + 1024, e - 1)];
    __builtin_prefetch(t + a, 1, 2);
    __builtin_prefetch(t + a + Z + Y, 1, 2);
    float* p = t + idx[i];
    const float z1 = f.fz[i], y1 = f.fy[i], x1 = f.fx[i], z0 = 1.f - z1, y0 = 1.f - y1, x0 = 1.f - x1;
    const float w00 = v[i] * (z0 * y0), w01 = v[i] * (z0 * y1), w10 = v[i] * (z1 * y0), w11 = v[i] * (z1 * y1);
    p[0] += w00 * x0, p[1] += w00 * x1, p[Y] += w01 * x0, p[Y + 1] += w01 * x1;
    p[Z] += w10 * x0, p[Z + 1] += w10 * x1, p[Z + Y] += w11 * x0, p[Z + Y + 1] += w11 * x1;
  }
}

void BM_gather_backward_floor(benchmark::State& state, Interp mode) {
  const int workers = int(state.range(0));
  pw::set_num_threads(workers);
  Case& c = the_case();
  static std::unique_ptr<FloorCase> cases[2];
  std::unique_ptr<FloorCase>& f = cases[mode == Interp::linear ? 1 : 0];
  if (!f) f = std::make_unique<FloorCase>(mode);
  while (f->target.size() < size_t(workers)) f->target.push_back(pw::Tensor::zeros({Case::V * Case::V * Case::V}));
  const double footprint = backward_footprint_bytes(mode);
  const int64_t n = int64_t(f->idx.size());
  for (auto _ : state) {
    pw::parallel_for(
        workers,
        [&](int64_t wb, int64_t we) {
          for (int64_t w = wb; w < we; ++w) {
            const int64_t b = Case::P * w / workers * (n / Case::P), e = Case::P * (w + 1) / workers * (n / Case::P);
            (mode == Interp::nearest ? floor_nearest : floor_linear)(*f, c.patches.f32(), b, e, f->target[size_t(w)].f32());
          }
        },
        1);
    benchmark::ClobberMemory();
  }
  set_counters(state, mode == Interp::nearest ? 12.0 : 4.0 + 8 * 8.0);
  state.counters["bound_GB/s"] = benchmark::Counter(footprint * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The memory bound's rate: a 128 MiB copy (beyond L3) split over the threads, GB/s = read + write (the STREAM
// rule of peer-bench/bench_bw.py, whose torch copy_ it matches within a few percent on one machine).
void BM_copy(benchmark::State& state) {
  pw::set_num_threads(int(state.range(0)));
  const int64_t n = int64_t(32) << 20;
  static pw::Tensor src = pw::Tensor::full({n}, 1.f), dst = pw::Tensor::full({n}, 0.f);  // both written: no page faults timed
  for (auto _ : state) {
    pw::parallel_for(
        n, [&](int64_t b, int64_t e) { std::memcpy(dst.f32() + b, src.f32() + b, size_t(e - b) * 4); }, 1 << 20);
    benchmark::DoNotOptimize(dst.f32());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(2.0 * 4.0 * double(n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The two halves of the copy: reading 128 MiB (a sum of it, 8 partial sums per vector so that the adds do not
// bound it) and writing 128 MiB by non-temporal stores (no read of each line first), split over the threads,
// GB/s = bytes read or written. The strided convolutions' passes stream one such tensor each (RESULTS.md).
void BM_read(benchmark::State& state) {
  pw::set_num_threads(int(state.range(0)));
  const int64_t n = int64_t(32) << 20;
  static pw::Tensor src = pw::Tensor::full({n}, 1.f);
  float total = 0.f;
  std::vector<float> part(size_t(n >> 20) + 1);  // one sum per chunk of 2^20 floats
  for (auto _ : state) {
    std::fill(part.begin(), part.end(), 0.f);
    pw::parallel_for(
        n,
        [&](int64_t b, int64_t e) {
          float acc[8][8] = {};
          const float* x = src.f32();
          int64_t i = b;
          for (; i + 64 <= e; i += 64)
            for (int k = 0; k < 8; ++k)
              for (int l = 0; l < 8; ++l) acc[k][l] += x[i + 8 * k + l];
          for (; i < e; ++i) acc[0][0] += x[i];
          for (int k = 0; k < 8; ++k)
            for (int l = 0; l < 8; ++l) part[size_t(b >> 20)] += acc[k][l];
        },
        1 << 20);
    for (float v : part) total += v;
    benchmark::DoNotOptimize(total);
  }
  state.counters["GB/s"] = benchmark::Counter(4.0 * double(n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_write_streamed(benchmark::State& state) {
  pw::set_num_threads(int(state.range(0)));
  const int64_t n = int64_t(32) << 20;
  static pw::Tensor dst = pw::Tensor::full({n}, 0.f);  // written once: no page faults timed
  for (auto _ : state) {
    pw::parallel_for(
        n,
        [&](int64_t b, int64_t e) {
          float* y = dst.f32();
#ifdef __AVX__
          const __m256 v = _mm256_set1_ps(2.f);
          int64_t i = b;
          for (; i < e && (reinterpret_cast<uintptr_t>(y + i) & 31); ++i) y[i] = 2.f;
          for (; i + 8 <= e; i += 8) _mm256_stream_ps(y + i, v);
          for (; i < e; ++i) y[i] = 2.f;
          _mm_sfence();
#else
          std::fill(y + b, y + e, 2.f);
#endif
        },
        1 << 20);
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(4.0 * double(n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_CAPTURE(BM_gather, nearest, Interp::nearest)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gather, trilinear, Interp::linear)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_stitch, cos_nearest, Interp::nearest)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_stitch, cos_linear, Interp::linear)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_stitch_aligned)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_stitch_scaled_linear)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gather_backward, nearest, Interp::nearest)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gather_backward, trilinear, Interp::linear)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gather_backward_floor, nearest, Interp::nearest)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gather_backward_floor, trilinear, Interp::linear)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_copy)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_read)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_write_streamed)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

#ifdef PW_HAVE_CUDA
// The GPU case: 4096 patches of 32^3 (134 M voxels, 537 MB) from a 512^3 volume (537 MB).
struct CudaCase {
  static constexpr int64_t V = 512, S = 32, P = 4096;
  pw::Tensor vol, mats, patches, acc, weight, copy_src, copy_dst;
  PatchGeom g = cube_geom(V, S, P);
  CudaCase() {
    std::mt19937_64 rng(1);
    std::normal_distribution<float> nd;
    pw::Tensor v = pw::Tensor::empty({V * V * V});
    for (int64_t i = 0; i < v.numel(); ++i) v.f32()[i] = nd(rng);
    vol = v.to(pw::Device::cuda);
    std::vector<float> m = random_mats(V, S, P, rng);
    mats = pw::Tensor::from_vector({int64_t(m.size())}, m).to(pw::Device::cuda);
    patches = pw::Tensor::empty({P * S * S * S}, pw::DType::f32, pw::Device::cuda);
    acc = pw::Tensor::zeros({V * V * V}, pw::DType::f32, pw::Device::cuda);
    weight = pw::Tensor::zeros({V * V * V}, pw::DType::f32, pw::Device::cuda);
    copy_src = pw::Tensor::zeros({int64_t(1) << 28}, pw::DType::f32, pw::Device::cuda);  // 1 GiB
    copy_dst = pw::Tensor::zeros({int64_t(1) << 28}, pw::DType::f32, pw::Device::cuda);
  }
};
CudaCase& cuda_case() {
  static CudaCase c;
  return c;
}

void cuda_counters(benchmark::State& state, double voxels, double bytes_per_voxel) {
  state.counters["Mvox/s"] = benchmark::Counter(voxels * 1e-6, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(voxels * bytes_per_voxel * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(pw::cuda::device_description());
}

void BM_cuda_copy(benchmark::State& state) {
  CudaCase& c = cuda_case();
  for (auto _ : state) {
    pw::device_copy(c.copy_dst.raw(), pw::Device::cuda, c.copy_src.raw(), pw::Device::cuda, c.copy_src.nbytes());
    pw::cuda::synchronize();
  }
  cuda_counters(state, double(c.copy_src.numel()), 8.0);
}

void BM_cuda_gather(benchmark::State& state, Interp mode) {
  CudaCase& c = cuda_case();
  for (auto _ : state) {
    PW_CUDA_KERNEL(gather_affine, c.vol.f32(), c.g, c.mats.f32(), nullptr, mode, false, c.patches.f32());
    pw::cuda::synchronize();
  }
  cuda_counters(state, double(c.patches.numel()), mode == Interp::nearest ? 8.0 : 36.0);
}

void BM_cuda_stitch(benchmark::State& state) {
  CudaCase& c = cuda_case();
  for (auto _ : state) {
    PW_CUDA_KERNEL(scatter_affine, c.patches.f32(), c.g, c.mats.f32(), nullptr, Interp::nearest, Window::cos, c.acc.f32(),
                         c.weight.f32());
    pw::cuda::synchronize();
  }
  cuda_counters(state, double(c.patches.numel()), 20.0);
}
#endif

}  // namespace

int main(int argc, char** argv) {
#ifdef PW_HAVE_CUDA
  if (pw::cuda_available()) {
    benchmark::RegisterBenchmark("BM_cuda_copy", BM_cuda_copy)->UseRealTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("BM_cuda_gather_nearest", BM_cuda_gather, Interp::nearest)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("BM_cuda_gather_trilinear", BM_cuda_gather, Interp::linear)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("BM_cuda_stitch_cos_nearest", BM_cuda_stitch)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
