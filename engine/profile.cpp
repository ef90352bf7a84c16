// Op profiling (engine/profile.h): records per dispatched call, summed at report time.
#include "engine/profile.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#ifdef PW_HAVE_CUDA
#include "engine/cuda_backend.h"
#endif

namespace pw {
namespace {

struct Record {
  std::string name;
  Device device;
  void* begin;  // CUDA: events; CPU: begin unused
  void* end;
  double ms;    // CPU: measured at once; CUDA: read at report time
};

thread_local std::string t_detail;  // ProfileDetail

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Profile {
  std::mutex mu;
  std::vector<Record> pending;                                 // CUDA records not yet read
  std::map<std::pair<std::string, Device>, std::pair<int64_t, double>> totals;  // calls, ms

  // Reads the CUDA records (waits for the last one) into the totals. Caller holds mu.
  void drain() {
#ifdef PW_HAVE_CUDA
    for (Record& r : pending) {
      const CudaRuntime& rt = cuda_backend().runtime;
      r.ms = rt.event_elapsed_ms(r.begin, r.end);
      rt.event_destroy(r.begin);
      rt.event_destroy(r.end);
      add(r);
    }
#endif
    pending.clear();
  }
  void add(const Record& r) {
    auto& t = totals[{r.name, r.device}];
    t.first += 1;
    t.second += r.ms;
  }
};

Profile& profile() {
  static Profile* p = new Profile;  // never destroyed: the exit report may run after static destructors
  return *p;
}

// Registered at the first timed call, after the CUDA runtime started, so that it runs before the
// runtime's own exit handlers (atexit runs in reverse order).
void report_at_exit() {
  const char* v = std::getenv("PW_PROFILE");  // the table is printed for the variable, not for profile_enable
  if (!v || !*v || std::string(v) == "0") return;
  try {
    std::fputs(profile_report().c_str(), stderr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "op profile: %s\n", e.what());
  }
}

}  // namespace

namespace {
std::atomic<bool>& profiling_flag() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("PW_PROFILE");
    return v && *v && std::string(v) != "0";
  }()};
  return on;
}
}  // namespace

bool profiling() { return profiling_flag().load(std::memory_order_relaxed); }
void profile_enable(bool on) { profiling_flag().store(on); }

int64_t profile_calls(const std::string& family, Device device) {
  Profile& p = profile();
  std::lock_guard<std::mutex> lock(p.mu);
  p.drain();
  int64_t n = 0;
  for (const auto& [key, v] : p.totals)
    if (key.second == device && (key.first == family || key.first.rfind(family + " ", 0) == 0)) n += v.first;
  return n;
}

void OpScope::begin(const char* name, Device device) {
  active_ = true;
  name_ = t_detail.empty() ? std::string(name) : std::string(name) + " " + t_detail;
  device_ = device;
#ifdef PW_HAVE_CUDA
  if (device == Device::cuda) start_ = cuda_backend().runtime.event_record();
#endif
  if (!start_) start_ = reinterpret_cast<void*>(now_ns());
  static const bool registered = (std::atexit(report_at_exit), true);
  (void)registered;
}

void OpScope::end() {
  Profile& p = profile();
  Record r{name_, device_, start_, nullptr, 0.0};
#ifdef PW_HAVE_CUDA
  if (device_ == Device::cuda) {
    r.end = cuda_backend().runtime.event_record();
    std::lock_guard<std::mutex> lock(p.mu);
    p.pending.push_back(r);
    if (p.pending.size() >= 4096) p.drain();  // bounded: events are read in batches
    return;
  }
#endif
  r.ms = double(now_ns() - reinterpret_cast<int64_t>(start_)) / 1e6;
  std::lock_guard<std::mutex> lock(p.mu);
  p.add(r);
}

void ProfileDetail::set(std::string detail) {
  t_detail = std::move(detail);
  active_ = true;
}

void ProfileDetail::clear() { t_detail.clear(); }

void profile_reset() {
  Profile& p = profile();
  std::lock_guard<std::mutex> lock(p.mu);
  p.drain();
  p.totals.clear();
}

std::string profile_report() {
  Profile& p = profile();
  std::lock_guard<std::mutex> lock(p.mu);
  p.drain();
  std::vector<std::pair<std::pair<std::string, Device>, std::pair<int64_t, double>>> rows(p.totals.begin(),
                                                                                        p.totals.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
  double all = 0;
  for (const auto& r : rows) all += r.second.second;
  std::string out = "op profile (PW_PROFILE): kernel family, device, calls, total ms, mean us, share\n";
  char line[256];
  for (const auto& [key, v] : rows) {
    std::snprintf(line, sizeof line, "  %-48s %-4s %9lld %11.3f %10.2f %6.1f%%\n", key.first.c_str(),
                  device_name(key.second), static_cast<long long>(v.first), v.second, 1e3 * v.second / v.first,
                  all > 0 ? 100 * v.second / all : 0.0);
    out += line;
  }
  return out;
}

}  // namespace pw
