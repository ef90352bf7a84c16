// pw::parallel_for (kernels/cpu/parallel.cpp): every index of every region exactly once, for many
// back-to-back regions (the pool's threads poll between them and may still be leaving one region when the
// next begins), small and uneven regions, 1-4 threads, and nested calls (run inline).
#include <doctest/doctest.h>

#include <atomic>
#include <vector>

#include "kernels/parallel.h"

TEST_CASE("parallel_for: every index once over 20,000 back-to-back regions, 1-4 threads") {
  const int before = pw::num_threads();
  for (int threads : {1, 2, 3, 4}) {
    CAPTURE(threads);
    pw::set_num_threads(threads);
    int64_t wrong = 0, total = 0;
    for (int region = 0; region < 20000; ++region) {
      const int64_t n = 1 + region % 9;
      std::vector<int> hits(size_t(n), 0);
      pw::parallel_for(
          n,
          [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
              volatile int spin = 0;  // a little work, so that the other threads take chunks too
              for (int k = 0; k < 50 * int(i % 3); ++k) spin = spin + k;
              hits[size_t(i)]++;
            }
          },
          1);
      for (int h : hits) wrong += h != 1;
      total += n;
    }
    CHECK(wrong == 0);
    CHECK(total == 20000 / 9 * 45 + (1 + 2));  // sum of 1 + region % 9 over the regions
  }
  pw::set_num_threads(before);
}

TEST_CASE("parallel_for: a call inside a region runs inline, covering its range once") {
  const int before = pw::num_threads();
  pw::set_num_threads(3);
  std::vector<std::atomic<int>> hits(12 * 5);
  pw::parallel_for(
      12,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          pw::parallel_for(5, [&](int64_t b2, int64_t e2) {
            for (int64_t j = b2; j < e2; ++j) hits[size_t(i * 5 + j)]++;
          }, 1);
      },
      1);
  for (auto& h : hits) CHECK(h.load() == 1);
  pw::set_num_threads(before);
}
