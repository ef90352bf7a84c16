// Helpers shared by every test program: the ../shared folder, .npy fixtures, the fixtures'
// tolerance rule, temporary folders and the GPU probe.
#pragma once
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace pw::test {

namespace fs = std::filesystem;

// The shared fixtures folder (PW_SHARED env var, else the configured ../shared).
fs::path shared_dir();
bool have_shared();  // false -> tests that need it are skipped with a message

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

// n floats uniform in [lo, hi) from a seeded generator (the one random-data helper of the tests).
inline std::vector<float> random_values(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace pw::test

// Use as: TEST_CASE("..." * doctest::skip(!pw::cuda_available())) for GPU tests,
// and REQUIRE_SHARED() at the top of tests that read ../shared.
#define REQUIRE_SHARED()                                                        \
  do {                                                                          \
    if (!::pw::test::have_shared()) {                                           \
      MESSAGE("skipped: shared fixtures not found at " << ::pw::test::shared_dir()); \
      return;                                                                   \
    }                                                                           \
  } while (0)
