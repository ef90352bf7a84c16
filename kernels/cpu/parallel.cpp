#include "kernels/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace pw {
namespace {

thread_local bool t_inside_pool = false;

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }

  int size() const { return size_; }

  void resize(int n) {
    n = std::max(1, n);
    if (n == size_) return;
    stop();
    size_ = n;
    quit_ = false;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { loop(); });
  }

  void run(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t grain) {
    int64_t chunks = std::min<int64_t>(size_, (n + grain - 1) / grain);
    if (chunks <= 1 || t_inside_pool) {
      body(0, n);
      return;
    }
    std::unique_lock<std::mutex> job_lock(job_mutex_);  // one parallel region at a time
    {
      std::lock_guard<std::mutex> lk(m_);
      body_ = &body;
      n_ = n;
      chunks_ = chunks;
      done_.store(0);
      // Last: a thread still in work() from the previous region that takes a chunk of this one through
      // next_ sees the fields above (and counts into the reset done_).
      next_.store(0);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work();
    // The others' chunks are usually done within microseconds: spin a little before sleeping.
    spin_until([&] { return done_.load(std::memory_order_acquire) == chunks; });
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return done_.load() == chunks_; });
    body_ = nullptr;
  }

 private:
  // Polls `ready` for up to kSpinUs microseconds before a thread sleeps on a condition variable: back-to-
  // back parallel regions (the many small ops of a training step, apply's patch batches) then hand over
  // without a futex wake-up and a context switch each; a longer pause gives the core back.
  static int spin_us() {
    static const int us = [] {
      const char* s = std::getenv("PW_SPIN_US");
      return s ? std::max(0, std::atoi(s)) : kSpinUs;
    }();
    return us;
  }
  static constexpr int kSpinUs = 50;
  template <class Ready>
  static void spin_until(const Ready& ready) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us());
    while (!ready()) {
      for (int i = 0; i < 32; ++i) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      if (std::chrono::steady_clock::now() >= end) return;
    }
  }

  void work() {
    bool was_inside = t_inside_pool;
    t_inside_pool = true;
    for (;;) {
      int64_t c = next_.fetch_add(1);
      if (c >= chunks_) break;
      int64_t b = n_ * c / chunks_, e = n_ * (c + 1) / chunks_;
      (*body_)(b, e);
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks_) {
        std::lock_guard<std::mutex> lk(m_);  // under the lock: the waiter cannot miss the notification
        done_cv_.notify_one();
      }
    }
    t_inside_pool = was_inside;
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen || quit_.load(); });
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return quit_.load() || generation_.load() != seen; });
        if (quit_.load()) return;
        seen = generation_.load();
        if (!body_) continue;
      }
      work();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    size_ = 1;
  }

  int size_ = 1;
  std::atomic<bool> quit_{false};
  std::vector<std::thread> workers_;
  std::mutex job_mutex_, m_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t n_ = 0, chunks_ = 0;
  std::atomic<int64_t> next_{0}, done_{0};
  std::atomic<uint64_t> generation_{0};
};

int default_threads() {
  if (const char* s = std::getenv("PW_NUM_THREADS")) {
    int n = std::atoi(s);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int num_threads() { return pool().size(); }
void set_num_threads(int n) { pool().resize(n); }

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t grain) {
  if (n <= 0) return;
  pool().run(n, body, std::max<int64_t>(1, grain));
}

}  // namespace pw
