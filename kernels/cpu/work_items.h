// Output tiles and work items dealt to a fixed number of workers (for kernels that keep per-worker state or
// partial sums).
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/parallel.h"

namespace pw::kernels::cpu {

// An output grid (D, H, W) tiled by whole output rows (d, h) of out[2] columns, about `cols` columns per
// tile (at least one row); work items are usually (sample, tile).
struct Tiling {
  int64_t rows = 0, rows_per_tile = 0, ntiles = 0, row_len = 0;
  Tiling(const int64_t out[3], int64_t cols) {
    rows = out[0] * out[1];
    row_len = out[2];
    rows_per_tile = std::clamp<int64_t>(cols / std::max<int64_t>(1, row_len), 1, std::max<int64_t>(1, rows));
    ntiles = (rows + rows_per_tile - 1) / rows_per_tile;
  }
  int64_t begin(int64_t t) const { return t * rows_per_tile; }
  int64_t end(int64_t t) const { return std::min(rows, (t + 1) * rows_per_tile); }
};

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

// Outputs at least this big are written by non-temporal stores where a kernel's rows allow: they cannot
// stay in the caches (L2 1-2 MB a core, L3 tens of MB shared), and streaming saves the read of each line
// before it is written (bench/RESULTS.md: strided data gradients).
constexpr int64_t kStreamBytes = int64_t(8) << 20;
// Whether an output of `floats` floats is written that way.
inline bool streamed_output(int64_t floats) { return floats * int64_t(sizeof(float)) >= kStreamBytes; }

// Workers for `items` items: the pool's threads, at most one per item.
inline int workers_for(int64_t items) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), items)));
}

}  // namespace pw::kernels::cpu
