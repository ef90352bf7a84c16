// A small fixed thread pool shared by every CPU kernel: parallel_for splits [0, n) into
// contiguous chunks, one call of `body(begin, end)` per chunk (never one call per element).
#pragma once
#include <cstdint>
#include <functional>

namespace pw {

// Number of threads CPU kernels use (default: hardware concurrency, or PW_NUM_THREADS).
int num_threads();
void set_num_threads(int n);

// Runs body(begin, end) over chunks of [0, n) on the pool; returns when all chunks are done.
// `grain` is the smallest chunk worth a thread. Nested calls run serially on the caller.
void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& body, int64_t grain = 1);

}  // namespace pw
