// The CUDA runtime: a clear error when CUDA is asked for without a GPU (runs here), the CUDA
// plugin's loading and its messages (runs here), its NCCL entries (loading and unique ids run here, an
// allreduce needs a GPU), error messages that name the failing call, the
// caching allocator's buckets and statistics, staged copies and the TF32 switch (the last three need
// a GPU and are skipped without one).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "engine/ops.h"
#include "engine/tensor.h"
#ifdef PW_HAVE_CUDA
#include "engine/cuda/runtime.h"
#include "engine/cuda_backend.h"
#include "kernels/cuda/check.h"
#endif

using namespace pw;

namespace {
std::string error_of(void (*fn)()) {
  try {
    fn();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("asking for CUDA without a GPU is a clear error, not a crash" * doctest::skip(cuda_available())) {
#ifdef PW_HAVE_CUDA
  const std::string expected = "no CUDA GPU is available";
#else
  const std::string expected = "built without CUDA";
#endif
  const std::string a = error_of([] { Tensor::empty({4, 4}, DType::f32, Device::cuda); });
  CHECK_MESSAGE(a.find(expected) != std::string::npos, a);
  const std::string b = error_of([] { Tensor::from_vector({2}, {1.f, 2.f}).to(Device::cuda); });
  CHECK_MESSAGE(b.find(expected) != std::string::npos, b);
  const std::string c = error_of([] { Tensor::zeros({3}, DType::i32, Device::cuda); });
  CHECK_MESSAGE(c.find(expected) != std::string::npos, c);
  CHECK(default_device() == Device::cpu);
}

#ifdef PW_HAVE_CUDA

TEST_CASE("CUDA, cuDNN and cuBLAS errors name the failing call") {
  // None of these needs a GPU: each fails (no device / invalid device, null descriptor, null handle).
  try {
    PW_CUDA_CHECK(cudaSetDevice(1 << 20));
    FAIL("cudaSetDevice(1 << 20) succeeded");
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find("CUDA error in cudaSetDevice(1 << 20): ") == 0, m);
  }
  // With a GPU, the caught (non-sticky) error is not left behind as the "last error", where the
  // next launch check (PW_CUDA_CHECK_LAUNCH) would blame an innocent kernel for it. (Without a
  // driver every call, cudaGetLastError too, reports the missing driver.)
  if (cuda_available()) CHECK(cudaGetLastError() == cudaSuccess);
  try {
    int dims[4] = {1, 1, 1, 1}, strides[4] = {1, 1, 1, 1};
    PW_CUDNN_CHECK(cudnnSetTensorNdDescriptor(nullptr, CUDNN_DATA_FLOAT, 4, dims, strides));
    FAIL("cudnnSetTensorNdDescriptor(nullptr) succeeded");
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find("cuDNN error in cudnnSetTensorNdDescriptor(") == 0, m);
  }
  try {
    PW_CUBLAS_CHECK(cublasSetMathMode(nullptr, CUBLAS_DEFAULT_MATH));
    FAIL("cublasSetMathMode(nullptr) succeeded");
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find("cuBLAS error in cublasSetMathMode(nullptr, CUBLAS_DEFAULT_MATH): ") == 0, m);
  }
}

TEST_CASE("allocator buckets: 512 B steps up to 1 MiB, 2 MiB steps above") {
  using cuda::bucket_size;
  CHECK(bucket_size(0) == 512);
  CHECK(bucket_size(1) == 512);
  CHECK(bucket_size(512) == 512);
  CHECK(bucket_size(513) == 1024);
  CHECK(bucket_size(1 << 20) == (1 << 20));
  CHECK(bucket_size((1 << 20) + 1) == (2 << 20));
  CHECK(bucket_size((5 << 20) + 7) == (6 << 20));
}

TEST_CASE("caching allocator: statistics, reuse of freed blocks, peak, empty_cache" *
          doctest::skip(!cuda_available())) {
  cuda::synchronize();
  const cuda::MemoryStats s0 = cuda::memory_stats();
  const size_t bytes = 3000 * sizeof(float);  // bucket 12288
  {
    Tensor a = Tensor::empty({3000}, DType::f32, Device::cuda);
    const cuda::MemoryStats s1 = cuda::memory_stats();
    CHECK(s1.in_use == s0.in_use + cuda::bucket_size(bytes));
    CHECK(s1.peak_in_use >= s1.in_use);
    CHECK(s1.allocs == s0.allocs + 1);
  }
  const cuda::MemoryStats s2 = cuda::memory_stats();
  CHECK(s2.in_use == s0.in_use);
  CHECK(s2.cached >= cuda::bucket_size(bytes));
  {
    // Same bucket (3050 floats = 12200 bytes round to the same 12288 bytes; 2900 floats would not:
    // 11600 bytes -> 11776): served from the free list.
    REQUIRE(cuda::bucket_size(3050 * sizeof(float)) == cuda::bucket_size(bytes));
    Tensor b = Tensor::empty({3050}, DType::f32, Device::cuda);
    const cuda::MemoryStats s3 = cuda::memory_stats();
    CHECK(s3.cache_hits == s2.cache_hits + 1);
    CHECK(s3.device_mallocs == s2.device_mallocs);
  }
  cuda::reset_peak();
  CHECK(cuda::memory_stats().peak_in_use == cuda::memory_stats().in_use);
  {
    Tensor big = Tensor::empty({3 << 20}, DType::f32, Device::cuda);  // 12 MiB
    CHECK(cuda::memory_stats().peak_in_use >= cuda::memory_stats().in_use);
    CHECK(cuda::memory_stats().peak_in_use >= (size_t(12) << 20));
  }
  cuda::empty_cache();
  const cuda::MemoryStats s4 = cuda::memory_stats();
  CHECK(s4.cached == 0);
  CHECK(s4.reserved == s4.in_use);
}

TEST_CASE("host <-> device copies, staged in pinned chunks, round trip bit-exactly" *
          doctest::skip(!cuda_available())) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  // 1 value, one partial chunk, and several 4 MiB chunks plus a tail.
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t((3 * (4 << 20) + 123) / 4 + 7)}) {
    CAPTURE(n);
    Tensor h = Tensor::empty({n});
    for (int64_t i = 0; i < n; ++i) h.f32()[i] = u(rng);
    Tensor d = h.to(Device::cuda);
    CHECK(d.is_cuda());
    Tensor d2 = d.clone();  // device -> device
    Tensor back = d2.cpu();
    CHECK(std::memcmp(back.raw(), h.raw(), h.nbytes()) == 0);
    d2.zero_();
    std::vector<float> z = d2.to_vector();
    CHECK(std::all_of(z.begin(), z.end(), [](float v) { return v == 0.f; }));
  }
  Tensor labels = Tensor::empty({5}, DType::i32);
  for (int i = 0; i < 5; ++i) labels.i32()[i] = i - 1;
  Tensor lb = labels.to(Device::cuda).cpu();
  CHECK(std::memcmp(lb.raw(), labels.raw(), labels.nbytes()) == 0);
}

TEST_CASE("TF32 switch: both modes run; fp32 mode matches the CPU closely" * doctest::skip(!cuda_available())) {
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-1, 1);
  Tensor x = Tensor::empty({2, 16, 12, 12, 12}), w = Tensor::empty({16, 16, 3, 3, 3});
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = u(rng);
  for (int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = u(rng);
  Tensor ref = conv(constant(x), constant(w), Var(), 1, 1)->value;
  std::vector<double> r(ref.f32(), ref.f32() + ref.numel());
  const bool prev = cuda::tf32();
  cuda::set_tf32(false);
  Tensor fp32 = conv(constant(x.to(Device::cuda)), constant(w.to(Device::cuda)), Var(), 1, 1)->value;
  cuda::set_tf32(true);
  CHECK(cuda::tf32());
  Tensor tf32 = conv(constant(x.to(Device::cuda)), constant(w.to(Device::cuda)), Var(), 1, 1)->value;
  cuda::set_tf32(prev);
  const std::string m32 = test::check_close(fp32.to_vector(), r, 1e-4, 1e-5);
  CHECK_MESSAGE(m32.empty(), m32);
  // TF32 keeps 10 mantissa bits: agreement to about 1e-2 of the output scale.
  const std::string mtf = test::check_close(tf32.to_vector(), r, 1e-2, 1e-2);
  CHECK_MESSAGE(mtf.empty(), mtf);
  CHECK(cuda::device_description().find("sm_") != std::string::npos);
}

TEST_CASE("CUDA plugin: the build's loads without a GPU; a missing, broken or foreign one is one clear message") {
  // The build's plugin is next to the program or in ../lib (tests/ and lib/ of the build folder).
  const std::vector<std::string> candidates = cuda_plugin_candidates();
  REQUIRE(candidates.size() >= 2);
  CHECK(candidates.back() == kCudaPluginName);
  CHECK(std::any_of(candidates.begin(), candidates.end(), [](const std::string& c) {
    return c.find('/') != std::string::npos && std::filesystem::is_regular_file(c);
  }));
  const CudaBackend& b = cuda_backend();
  CHECK(b.runtime.available() == cuda_available());
  CHECK(b.runtime.bucket_size(513) == 1024);

  std::string error;
  CHECK(load_cuda_plugin({"/nonexistent/libpatchwork_cuda.so"}, error) == nullptr);
  CHECK(error == "the CUDA backend libpatchwork_cuda.so was not found (looked for "
                 "/nonexistent/libpatchwork_cuda.so; set PW_CUDA_PLUGIN to its path)");
  CHECK(load_cuda_plugin({"libpatchwork_cuda_nonexistent.so"}, error) == nullptr);
  CHECK(error.find("was not found") != std::string::npos);
  const std::filesystem::path broken = test::temp_dir("cuda_plugin") / "libpatchwork_cuda.so";
  std::ofstream(broken) << "not a library";
  CHECK(load_cuda_plugin({broken.string()}, error) == nullptr);
  CHECK_MESSAGE(error.find("the CUDA backend " + broken.string() + " cannot be loaded: ") == 0, error);
  CHECK(load_cuda_plugin({"libz.so.1"}, error) == nullptr);  // a library, but not a Patchwork plugin
  CHECK(error == "the CUDA backend libz.so.1 is not the one of this Patchwork build (reinstall or rebuild it)");
}

// PW_PLUGIN_NCCL (tests/CMakeLists.txt): the build found nccl.h, so the plugin has the NCCL entries.
TEST_CASE("CUDA plugin: NCCL entries present, libnccl.so.2 loads without a GPU, unique ids are fresh") {
  const CudaNccl& n = cuda_backend().nccl;
#if PW_PLUGIN_NCCL
  REQUIRE(static_cast<bool>(n.unavailable));
  REQUIRE(static_cast<bool>(n.unique_id));
  REQUIRE(static_cast<bool>(n.comm_init));
  REQUIRE(static_cast<bool>(n.allreduce_sum_f32));
  REQUIRE(static_cast<bool>(n.comm_destroy));
  REQUIRE_MESSAGE(n.unavailable().empty(), n.unavailable());
  std::vector<unsigned char> a(CudaNccl::id_bytes, 0), b(CudaNccl::id_bytes, 0);
  n.unique_id(a.data());
  n.unique_id(b.data());
  CHECK(std::any_of(a.begin(), a.end(), [](unsigned char c) { return c != 0; }));
  CHECK(a != b);  // each id names a new bootstrap (random magic)
  CHECK(std::getenv("NCCL_ALGO") != nullptr);  // set to Ring on first use unless the environment had it
#else
  CHECK(!n.unavailable);
  CHECK(!n.unique_id);
  CHECK(!n.allreduce_sum_f32);
#endif
}

// NCCL cannot put two ranks on one GPU, so one GPU allows a communicator of one rank: its allreduce must
// give back its input exactly (a sum over one rank), on the plugin's compute stream.
TEST_CASE("NCCL through the plugin: one rank's allreduce returns its input" *
          doctest::skip(!cuda_available() || !PW_PLUGIN_NCCL)) {
  const CudaNccl& n = cuda_backend().nccl;
  std::vector<unsigned char> id(CudaNccl::id_bytes);
  n.unique_id(id.data());
  void* comm = n.comm_init(0, 1, id.data());
  REQUIRE(comm);
  std::vector<float> v(100003);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::ldexp(static_cast<float>(i % 977) - 488.f, static_cast<int>(i % 13) - 6);
  Tensor t = Tensor::from_vector({static_cast<int64_t>(v.size())}, v, Device::cuda);
  n.allreduce_sum_f32(comm, t.f32(), v.size());
  const Tensor back = t.cpu();
  CHECK(std::memcmp(back.f32(), v.data(), v.size() * sizeof(float)) == 0);
  n.comm_destroy(comm);
}

#endif  // PW_HAVE_CUDA
