// Work items dealt to a fixed number of workers (for kernels that keep per-worker state or partial sums).
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/parallel.h"

namespace pw::kernels::cpu {

// Runs f(worker, item) for every item in [0, items), each of `workers` workers taking one contiguous
// range of about items / workers (consecutive items may share data, such as neighbouring slabs' planes).
template <class F>
void run_ranges(int64_t items, int workers, const F& f) {
  parallel_for(
      workers,
      [&](int64_t b, int64_t e) {
        for (int64_t w = b; w < e; ++w)
          for (int64_t i = w * items / workers; i < (w + 1) * items / workers; ++i) f(static_cast<int>(w), i);
      },
      1);
}

// Workers for `items` items: the pool's threads, at most one per item.
inline int workers_for(int64_t items) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), items)));
}

}  // namespace pw::kernels::cpu
