// NIfTI read/write speed for a 256x256x256 int16 volume (32 MiB of data) as .nii and .nii.gz, beside
// `gzip -dc` of the same .nii.gz. MB/s = decoded data bytes (2^20 bytes per MB) per second of wall time.
// The volume is a smooth phantom plus noise (so gzip compresses it like a real scan, not like zeros).
// Files live in $TMPDIR (default /tmp), are read from the page cache, and writes include the fsync and
// rename of the atomic write. See bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "io/nifti.h"

namespace {

namespace fs = std::filesystem;
constexpr int64_t kN = 256;

const pw::Volume& phantom() {
  static const pw::Volume v = [] {
    std::vector<int16_t> values(kN * kN * kN);
    std::mt19937 rng(7);
    std::normal_distribution<float> noise(0.0f, 20.0f);
    for (int64_t k = 0; k < kN; ++k)
      for (int64_t j = 0; j < kN; ++j)
        for (int64_t i = 0; i < kN; ++i) {
          const double x = (i - 128) / 100.0, y = (j - 128) / 120.0, z = (k - 128) / 90.0;
          const double r2 = x * x + y * y + z * z;
          double s = r2 < 1 ? 800 + 400 * std::cos(6 * x) * std::sin(4 * y) : 0;
          if (r2 < 0.1) s = 1800;
          values[(k * kN + j) * kN + i] = static_cast<int16_t>(r2 < 1.2 ? s + noise(rng) : 0);
        }
    Eigen::Matrix4d a = Eigen::Matrix4d::Identity();
    a.col(3).head<3>() = Eigen::Vector3d(-128, -128, -128);
    return pw::Volume::from_values({kN, kN, kN}, values.data(), a);
  }();
  return v;
}

fs::path bench_dir() {
  static const fs::path dir = [] {
    const char* t = std::getenv("TMPDIR");
    fs::path d = fs::path(t ? t : "/tmp") / "pw_bench_nifti";
    fs::create_directories(d);
    pw::write_nifti(phantom(), d / "ref.nii");
    pw::write_nifti(phantom(), d / "ref.nii.gz");
    return d;
  }();
  return dir;
}

void set_rate(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kN * kN * kN * 2);
  state.counters["MB/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * kN * kN * kN * 2 / 1048576.0,
                                              benchmark::Counter::kIsRate);
}

void BM_read(benchmark::State& state, const char* name) {
  const fs::path file = bench_dir() / name;
  for (auto _ : state) {
    pw::Volume v = pw::read_nifti(file);
    benchmark::DoNotOptimize(v.data.data());
  }
  set_rate(state);
  state.counters["file_MB"] = static_cast<double>(fs::file_size(file)) / 1048576.0;
}

void BM_write(benchmark::State& state, const char* name) {
  const fs::path file = bench_dir() / name;
  for (auto _ : state) pw::write_nifti(phantom(), file);
  set_rate(state);
  state.counters["file_MB"] = static_cast<double>(fs::file_size(file)) / 1048576.0;
}

void BM_gzip_dc(benchmark::State& state) {
  const std::string cmd = "gzip -dc '" + (bench_dir() / "ref.nii.gz").string() + "' > /dev/null";
  for (auto _ : state)
    if (std::system(cmd.c_str()) != 0) state.SkipWithError("gzip -dc failed");
  set_rate(state);
}

BENCHMARK_CAPTURE(BM_read, nii, "ref.nii")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_read, nii_gz, "ref.nii.gz")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gzip_dc)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_write, nii, "out.nii")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_write, nii_gz, "out.nii.gz")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
