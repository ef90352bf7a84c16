// Helpers common to every test program: the reference data in tests/data/, .npy fixtures, the
// fixtures' tolerance rule, temporary folders and the GPU probe.
#pragma once
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace pw::test {

namespace fs = std::filesystem;

// The tests' reference data, tests/data/ in the repository (nifti-corpus/, op-fixtures/,
// nifti-header-zoo/; each folder's PROVENANCE.md says where it came from). The PW_TEST_DATA_DIR
// environment variable overrides it; else the configured source path, else tests/data found from the
// working directory or the test program upwards (binaries run from a copy of the tree elsewhere).
fs::path test_data_dir();
// test_data_dir() / rel, checked to exist: a missing file or folder fails (and stops) the calling test
// with a message naming the path (the data are in the repository, so nothing is skipped).
fs::path test_data(const fs::path& rel);

// A .npy array (v1.0/2.0, '<f8', '<f4', '<i8', '<i4', C-order), values widened to double.
struct Npy {
  std::vector<int64_t> shape;
  std::vector<double> data;
  Tensor to_f32() const;  // f32 tensor of `shape` on the CPU
  Tensor to_i32() const;  // i32 tensor (integer arrays)
};
Npy load_npy(const fs::path& file);

// The op-fixtures rule: |a - r| <= rtol*|r| + atol_frac*max|r| elementwise.
// Returns "" when it holds, else a message naming the worst element.
std::string check_close(const std::vector<float>& actual, const std::vector<double>& ref, double rtol = 1e-4,
                        double atol_frac = 1e-5);

// A fresh empty temporary folder, removed at exit of the test program.
fs::path temp_dir(const std::string& tag);

// The patchwork binary (PATCHWORK_BIN from CTest), for CLI tests.
std::string patchwork_bin();
// Runs a shell command, returns its exit status; stdout+stderr captured into `output`.
int run_command(const std::string& cmd, std::string* output = nullptr);

// A /proc/self/status field in bytes ("VmRSS", "VmHWM"; the kernel writes kB), -1 when absent.
double proc_status_bytes(const std::string& key);
// Resets the process's peak RSS (VmHWM) to its current RSS (/proc/self/clear_refs) and returns that RSS in
// bytes; where the kernel does not allow it, returns -1 with `why` set (the caller reports itself skipped).
double reset_peak_rss(std::string& why);

// n floats uniform in [lo, hi) from a seeded generator (the one random-data helper of the tests).
inline std::vector<float> random_values(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace pw::test

// Use as: TEST_CASE("..." * doctest::skip(!pw::cuda_available())) for GPU tests (doctest counts
// them as skipped). Tests read their reference data through test_data(), which fails when it is missing.
