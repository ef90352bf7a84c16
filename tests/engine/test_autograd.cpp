#include <doctest/doctest.h>

#include "common/test_util.h"
#include "engine/autograd.h"
#include "engine/device.h"

using namespace pw;

namespace {
// y = a * b elementwise, written the way every engine op is written.
Var mul_for_test(const Var& a, const Var& b) {
  Tensor y = Tensor::empty_like(a->value);
  for (int64_t i = 0; i < y.numel(); ++i) y.f32()[i] = a->value.f32()[i] * b->value.f32()[i];
  return record(y, {a, b}, [](Node& self) {
    Node& a = *self.parents[0];
    Node& b = *self.parents[1];
    Tensor ga = Tensor::empty_like(a.value), gb = Tensor::empty_like(b.value);
    for (int64_t i = 0; i < ga.numel(); ++i) {
      ga.f32()[i] = self.grad.f32()[i] * b.value.f32()[i];
      gb.f32()[i] = self.grad.f32()[i] * a.value.f32()[i];
    }
    if (a.requires_grad) accumulate(a, ga);
    if (b.requires_grad) accumulate(b, gb);
  });
}
}  // namespace

TEST_CASE("tensor basics") {
  Tensor t = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(t.numel() == 6);
  CHECK(t.dim(-1) == 3);
  CHECK(reinterpret_cast<uintptr_t>(t.raw()) % 64 == 0);
  Tensor r = t.reshape({3, 2});
  CHECK(r.f32() == t.f32());  // shares storage
  Tensor c = t.clone();
  c.f32()[0] = 10;
  CHECK(t.f32()[0] == 1);
  CHECK_THROWS_AS(t.reshape({4}), std::invalid_argument);
  CHECK_THROWS_AS(t.i32(), std::logic_error);
  CHECK(Tensor::zeros({4}, DType::u8).u8()[3] == 0);
}

TEST_CASE("autograd accumulates through a shared parent in reverse order") {
  // L = sum((x*x)*x) over one element -> dL/dx = 3x^2
  Var x = variable(Tensor::from_vector({1}, {1.5f}), true);
  Var y = mul_for_test(mul_for_test(x, x), x);
  backward(y);
  CHECK(x->grad.f32()[0] == doctest::Approx(3 * 1.5 * 1.5));
}

TEST_CASE("backward with a seed: the seed is used, never changed, twice over and on a leaf") {
  Var x = variable(Tensor::from_vector({3}, {1.0f, 2.0f, -1.0f}), true);
  const Tensor seed = Tensor::from_vector({3}, {0.5f, -2.0f, 4.0f});
  for (int pass = 1; pass <= 2; ++pass) {  // x's gradient accumulates over two backward calls
    Var y = mul_for_test(x, x);
    backward(y, seed);
    CHECK(y->grad.defined() == false);  // dropped: it was the caller's seed
    for (int i = 0; i < 3; ++i) CHECK(x->grad.f32()[i] == pass * 2.0f * x->value.f32()[i] * seed.f32()[i]);
  }
  backward(x, seed);  // x is a leaf: its gradient keeps a copy and adds to it
  backward(x, seed);
  CHECK(x->grad.f32()[1] == 2 * 2.0f * 2.0f * -2.0f + 2 * -2.0f);
  CHECK(seed.to_vector() == std::vector<float>{0.5f, -2.0f, 4.0f});
  CHECK_THROWS_AS(backward(mul_for_test(x, x), Tensor::from_vector({2}, {1.0f, 1.0f})), std::invalid_argument);
}

TEST_CASE("no-grad guard keeps no graph") {
  Var x = variable(Tensor::from_vector({1}, {2.f}), true);
  NoGradGuard g;
  Var y = mul_for_test(x, x);
  CHECK_FALSE(y->requires_grad);
  CHECK(y->parents.empty());
}

TEST_CASE("GPU probe never throws") {
  bool a = cuda_available();
  CHECK(default_device() == (a ? Device::cuda : Device::cpu));
}

TEST_CASE("CPU allocator reuses released large blocks and keeps alignment") {
  cpu_cache_release();
  void* first;
  {
    Tensor a = Tensor::empty({1 << 20});  // 4 MiB
    first = a.raw();
    CHECK(reinterpret_cast<uintptr_t>(first) % 64 == 0);
  }
  CHECK(cpu_cache_bytes() >= (4u << 20));
  Tensor b = Tensor::empty({(1 << 20) - 10});  // same size class
  CHECK(b.raw() == first);
  CHECK(cpu_cache_bytes() == 0);
  Tensor small = Tensor::empty({3});
  CHECK(reinterpret_cast<uintptr_t>(small.raw()) % 64 == 0);
  { Tensor big = Tensor::empty({int64_t{20} << 20}); }  // 80 MiB, a one-off: back to the OS, not cached
  CHECK(cpu_cache_bytes() == 0);
}

TEST_CASE("CPU allocator asks for huge pages where no fault waits for compaction, else while free ones abound") {
  using pw::HugePages;
  CHECK(cpu_huge_pages_mode("1", "always defer defer+madvise [madvise] never") == HugePages::always);
  CHECK(cpu_huge_pages_mode("0", "always [defer] defer+madvise madvise never") == HugePages::never);
  CHECK(cpu_huge_pages_mode("", "always [defer] defer+madvise madvise never\n") == HugePages::always);  // empty: unset
  CHECK(cpu_huge_pages_mode(nullptr, "always defer defer+madvise madvise [never]") == HugePages::always);
  CHECK(cpu_huge_pages_mode(nullptr, "always defer defer+madvise [madvise] never") == HugePages::when_free);
  CHECK(cpu_huge_pages_mode(nullptr, "[always] defer defer+madvise madvise never") == HugePages::when_free);
  CHECK(cpu_huge_pages_mode(nullptr, "always defer [defer+madvise] madvise never") == HugePages::when_free);
  CHECK(cpu_huge_pages_mode(nullptr, nullptr) == HugePages::never);  // no THP on this system
  // /proc/buddyinfo of the build machine: order 9 (2 MiB) 1 + 1 + 83 blocks, order 10 (4 MiB) 3 + 753 + 1877.
  const char* roomy =
      "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 \n"
      "Node 0, zone    DMA32      0      4      2      2      1      2      0      3      3      1    753 \n"
      "Node 0, zone   Normal   4890   2973   2630   3164   1779    873    414    214    102     83   1877 \n";
  const size_t MiB = size_t(1) << 20, free_huge = (85 * 2 + 2633 * 4) * MiB;  // 10702 MiB
  CHECK(pw::cpu_huge_pages_spare(64 * MiB, roomy));
  CHECK(pw::cpu_huge_pages_spare((free_huge - 1024 * MiB) / 2, roomy));       // just covered twice + 1 GiB
  CHECK_FALSE(pw::cpu_huge_pages_spare((free_huge - 1024 * MiB) / 2 + MiB, roomy));
  // Fragmented: plenty of free small blocks, few of 2 MiB and more.
  const char* fragmented = "Node 0, zone   Normal 900000 400000 100000 5000 300 20 9 5 3 100 200 \n";
  CHECK_FALSE(pw::cpu_huge_pages_spare(8 * MiB, fragmented));  // 1000 MiB of 2 MiB blocks < 16 MiB + 1 GiB
  CHECK_FALSE(pw::cpu_huge_pages_spare(8 * MiB, nullptr));     // unreadable
  CHECK_FALSE(pw::cpu_huge_pages_spare(8 * MiB, ""));
}
