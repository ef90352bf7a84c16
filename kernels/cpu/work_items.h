// Work items dealt to a fixed number of workers (for kernels that keep per-worker partial sums).
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/parallel.h"

namespace pw::kernels::cpu {

// Runs f(worker, item) for every item in [0, items), dealt round-robin to `workers` workers.
template <class F>
void run_items(int64_t items, int workers, const F& f) {
  parallel_for(
      workers,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t)
          for (int64_t i = t; i < items; i += workers) f(static_cast<int>(t), i);
      },
      1);
}

// Workers for `items` items: the pool's threads, at most one per item.
inline int workers_for(int64_t items) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), items)));
}

}  // namespace pw::kernels::cpu
