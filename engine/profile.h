// Op profiling: with PW_PROFILE=1 in the environment, every kernel call that goes through
// PW_DISPATCH (engine/dispatch.h) is timed, and at exit a table on stderr lists per kernel family
// and device the calls, the total and the mean time, largest first. CUDA times are GPU times
// (events on the compute stream, read at the end, so profiling adds no synchronisation); CPU times
// are wall times. Copies and allocations are not dispatched ops and are not in the table.
//   PW_PROFILE=1 ./bench_cuda --benchmark_filter=unet_train_step/batch:8/tf32:1
#pragma once
#include <string>

#include "engine/tensor.h"

namespace pw {

// True when PW_PROFILE is set to a non-empty value other than 0 (read once), or after
// profile_enable(true).
bool profiling();
void profile_enable(bool on);

// Times one dispatched call from construction to destruction (nothing when profiling is off).
class OpScope {
 public:
  OpScope(const char* name, Device device) {
    if (profiling()) begin(name, device);
  }
  ~OpScope() {
    if (active_) end();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  void begin(const char* name, Device device);
  void end();
  bool active_ = false;
  std::string name_;
  Device device_ = Device::cpu;
  void* start_ = nullptr;  // CUDA event, or the CPU start time in ns
};

// A detail appended to the names of the calls timed while it lives on this thread (e.g. a
// convolution's shape: "conv_forward N8 16->16 32x32x32 k3"), so the table splits a family by it.
// `make` is called only when profiling.
class ProfileDetail {
 public:
  template <class F>
  explicit ProfileDetail(F make) {
    if (profiling()) set(make());
  }
  ~ProfileDetail() {
    if (active_) clear();
  }
  ProfileDetail(const ProfileDetail&) = delete;
  ProfileDetail& operator=(const ProfileDetail&) = delete;

 private:
  void set(std::string detail);
  void clear();
  bool active_ = false;
};

// Forgets what was timed so far (e.g. after a benchmark's warm-up and algorithm searches).
void profile_reset();

// The table so far (also printed at exit when profiling).
std::string profile_report();
// Calls timed so far of the kernel family `family` (its name without a detail) on `device`.
int64_t profile_calls(const std::string& family, Device device);

}  // namespace pw
