// The threads of one emulated CUDA block as cooperative fibers (ucontext), for kernels that
// synchronise: __syncthreads() and the warp shuffles park the calling thread until every live
// thread of its block (or warp) has arrived, then let them all go on. Between barriers the threads
// run in rounds, each round in a new pseudo-random order (fixed seed), so a barrier missing between
// a write and another thread's read of shared memory tends to show as a wrong value. Only one fiber
// runs at a time, on the host thread that runs the launch: there is no real concurrency, and this is
// no race detector. Shared memory is a static array, which all fibers of the block see (blocks run
// one after another). A barrier that some live threads never reach is reported as a deadlock
// (std::logic_error).
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

struct pw_emu_uint3 {
  unsigned x, y, z;
};
// The running thread's coordinates: set by pw_emu::launch and by the fiber scheduler below.
inline pw_emu_uint3 threadIdx{0, 0, 0}, blockIdx{0, 0, 0}, blockDim{1, 1, 1}, gridDim{1, 1, 1};

namespace pw_emu {

class Block {
 public:
  static Block& get() {
    static Block b;
    return b;
  }
  bool active() const { return active_; }

  // Runs body() once as each of the threads 0..n-1 of the current block (threadIdx.x = t).
  template <class Body>
  void run(Body& body, int64_t n) {
    fn_ = [](void* p) { (*static_cast<Body*>(p))(); };
    arg_ = &body;
    n_ = n;
    if (stacks_.size() < size_t(n) * kStack) stacks_.resize(size_t(n) * kStack);
    ctx_.resize(size_t(n));
    done_.assign(size_t(n), 0);
    block_ = Barrier{0, n, 0};
    warps_.assign(size_t((n + 31) / 32), Warp{});
    for (int64_t w = 0; w < int64_t(warps_.size()); ++w) warps_[w].bar.alive = std::min<int64_t>(32, n - 32 * w);
    for (int64_t t = 0; t < n; ++t) {
      getcontext(&ctx_[t]);
      ctx_[t].uc_stack.ss_sp = stacks_.data() + size_t(t) * kStack;
      ctx_[t].uc_stack.ss_size = kStack;
      ctx_[t].uc_link = &sched_;
      makecontext(&ctx_[t], &Block::entry, 0);
    }
    alive_ = n;
    active_ = true;
    order_.resize(size_t(n));
    for (int64_t t = 0; t < n; ++t) order_[size_t(t)] = t;
    while (alive_ > 0) {  // rounds in a fresh pseudo-random order: a missing barrier shows as a wrong value
      std::shuffle(order_.begin(), order_.end(), rng_);
      const uint64_t before = progress_;
      for (const int64_t t : order_)
        if (!done_[t]) {
          cur_ = t;
          threadIdx = pw_emu_uint3{unsigned(t), 0, 0};
          swapcontext(&sched_, &ctx_[t]);
        }
      if (progress_ == before) {
        active_ = false;
        throw std::logic_error("emulated block: deadlock (threads wait at a __syncthreads or shuffle that other "
                               "live threads of the block never reach)");
      }
    }
    active_ = false;
  }

  // __syncthreads()
  void sync_block() { wait(block_); }

  // __shfl_down_sync(0xffffffff, v, off): lane l gets lane l+off's v (its own when l+off >= 32).
  template <class T>
  T shfl_down(T v, unsigned off) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a type wider than 8 bytes");
    const int64_t t = cur_, lane = t % 32;
    Warp& w = warps_[size_t(t / 32)];
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    w.slot[lane] = bits;
    wait(w.bar);
    T r = v;
    if (lane + off < 32 && t + off < n_) {
      if (done_[size_t(t + off)]) throw std::logic_error("emulated __shfl_down_sync: reads a lane that has exited");
      std::memcpy(&r, &w.slot[lane + off], sizeof(T));
    }
    wait(w.bar);  // nobody overwrites a slot before every lane has read
    return r;
  }

 private:
  static constexpr size_t kStack = 64 * 1024;
  struct Barrier {
    int64_t arrived = 0, alive = 0;
    uint64_t generation = 0;
  };
  struct Warp {
    Barrier bar;
    uint64_t slot[32] = {};
  };

  static void entry() {
    Block& b = get();
    b.fn_(b.arg_);
    const int64_t t = b.cur_;
    b.done_[size_t(t)] = 1;
    --b.alive_;
    ++b.progress_;
    b.leave(b.block_);
    b.leave(b.warps_[size_t(t / 32)].bar);
  }  // returns to the scheduler (uc_link)

  void wait(Barrier& b) {
    ++progress_;
    const uint64_t gen = b.generation;
    if (++b.arrived >= b.alive) {
      b.arrived = 0;
      ++b.generation;
      return;
    }
    const int64_t t = cur_;
    while (b.generation == gen) swapcontext(&ctx_[size_t(t)], &sched_);
  }
  // An exited thread no longer counts: the others may now be complete.
  void leave(Barrier& b) {
    --b.alive;
    if (b.arrived > 0 && b.arrived >= b.alive) {
      b.arrived = 0;
      ++b.generation;
    }
  }

  void (*fn_)(void*) = nullptr;
  void* arg_ = nullptr;
  int64_t n_ = 0, cur_ = 0, alive_ = 0;
  uint64_t progress_ = 0;
  bool active_ = false;
  std::vector<char> stacks_;
  std::vector<ucontext_t> ctx_;
  std::vector<char> done_;
  std::vector<int64_t> order_;
  std::mt19937 rng_{12345};  // fixed seed: the same interleaving every run
  ucontext_t sched_{};
  Barrier block_;
  std::vector<Warp> warps_;
};

}  // namespace pw_emu

inline void __syncthreads() {
  pw_emu::Block& b = pw_emu::Block::get();
  if (!b.active()) throw std::logic_error("emulated __syncthreads outside a cooperative launch");
  b.sync_block();
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned off, int width = 32) {
  pw_emu::Block& b = pw_emu::Block::get();
  if (!b.active()) throw std::logic_error("emulated __shfl_down_sync outside a cooperative launch");
  if (mask != 0xffffffffu || width != 32) throw std::logic_error("emulated __shfl_down_sync: only full warps");
  return b.shfl_down(v, off);
}
