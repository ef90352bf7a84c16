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

// One parallel region at a time: the caller publishes a Job, wakes the workers, takes chunks itself, and
// waits until every chunk is done. A chunk is claimed through `claim_`, which holds the region's number
// (low 32 bits of its generation) beside the next chunk index, so that a thread still finishing one
// region can never take a chunk of the next with the old region's body.
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
    const int64_t chunks = std::min<int64_t>(size_, (n + grain - 1) / grain);
    if (chunks <= 1 || t_inside_pool) {
      body(0, n);
      return;
    }
    std::unique_lock<std::mutex> job_lock(job_mutex_);  // one parallel region at a time
    Job job;
    {
      std::lock_guard<std::mutex> lk(m_);
      job = Job{&body, n, chunks, generation_.load() + 1};
      job_ = job;
      done_.store(0);
      claim_.store(tag(job.generation));
      generation_.store(job.generation, std::memory_order_release);
    }
    cv_.notify_all();
    work(job);
    // The others' chunks are usually done within microseconds: poll a little before sleeping.
    spin_until([&] { return done_.load(std::memory_order_acquire) == chunks; });
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return done_.load() == chunks; });
    job_.body = nullptr;
  }

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)>* body = nullptr;
    int64_t n = 0, chunks = 0;
    uint64_t generation = 0;
  };
  static uint64_t tag(uint64_t generation) { return (generation & 0xffffffffu) << 32; }

  // Polls `ready` for up to PW_SPIN_US microseconds (default kSpinUs) before a thread sleeps on a
  // condition variable: back-to-back parallel regions (the many small ops of a training step, apply's
  // patch batches) then hand over without a futex wake-up and a context switch each; polling longer
  // loses again (bench/RESULTS.md).
  static constexpr int kSpinUs = 50;
  static int spin_us() {
    static const int us = [] {
      const char* s = std::getenv("PW_SPIN_US");
      return s && *s ? std::max(0, std::atoi(s)) : kSpinUs;
    }();
    return us;
  }
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

  // Takes and runs chunks of `job` until none is left (or the region is over).
  void work(const Job& job) {
    const bool was_inside = t_inside_pool;
    t_inside_pool = true;
    const uint64_t mine = tag(job.generation);
    for (;;) {
      uint64_t v = claim_.load();
      int64_t c;
      do {
        c = int64_t(v & 0xffffffffu);
        if ((v & ~uint64_t(0xffffffffu)) != mine || c >= job.chunks) {
          t_inside_pool = was_inside;
          return;
        }
      } while (!claim_.compare_exchange_weak(v, v + 1));
      (*job.body)(job.n * c / job.chunks, job.n * (c + 1) / job.chunks);
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == job.chunks) {
        std::lock_guard<std::mutex> lk(m_);  // under the lock: the waiter cannot miss the notification
        done_cv_.notify_one();
      }
    }
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen || quit_.load(); });
      Job job;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return quit_.load() || generation_.load() != seen; });
        if (quit_.load()) return;
        seen = generation_.load();
        if (!job_.body) continue;
        job = job_;
      }
      work(job);
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
  Job job_;                          // the current region (body nullptr between regions); under m_
  std::atomic<uint64_t> claim_{0};   // tag(generation) | next chunk
  std::atomic<int64_t> done_{0};     // chunks of the current region finished
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
