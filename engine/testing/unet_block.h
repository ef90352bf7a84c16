// The benchmark U-Net block of the engine issue and ../shared/peer-bench/bench_unet.py, width w,
// 2 classes, shared by the benchmarks and the tests (bench/bench_unet.cpp on the CPU, bench/bench_cuda.cpp
// on the GPU, tests/engine/test_cuda_train.cpp for CPU-vs-CUDA parity). Header only, engine ops only;
// not part of the library's API (engine/testing/ is not installed).
//   c1 = relu(conv3(1->w)); c2 = relu(conv3(w->w))                  full size
//   c3 = relu(conv3(w->2w)) on maxpool2(c2)                         half size
//   c4 = relu(conv3(3w->w)) on concat(upsample2_nearest(c3), c2); out = conv1(w->2)
// Parameters in the order w1 b1 w2 b2 w3 b3 w4 b4 w5 b5; each user chooses its initialisation.
#pragma once
#include <vector>

#include "engine/ops.h"

namespace pw::testing {

inline std::vector<Shape> unet_block_shapes(int64_t w) {
  return {{w, 1, 3, 3, 3}, {w}, {w, w, 3, 3, 3}, {w}, {2 * w, w, 3, 3, 3}, {2 * w}, {w, 3 * w, 3, 3, 3}, {w},
          {2, w, 1, 1, 1}, {2}};
}

inline Var unet_block_forward(const Var& x, const std::vector<Var>& p) {
  Var c1 = relu(conv(x, p[0], p[1], 1, 1));
  Var c2 = relu(conv(c1, p[2], p[3], 1, 1));
  Var c3 = relu(conv(max_pool(c2, 2, 2), p[4], p[5], 1, 1));
  Var c4 = relu(conv(concat({upsample(c3, 2, UpsampleMode::nearest), c2}), p[6], p[7], 1, 1));
  return conv(c4, p[8], p[9], 1, 0);
}

}  // namespace pw::testing
