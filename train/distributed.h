// Data-parallel training across processes (`mpirun -np N patchwork train`): the one place that talks to
// MPI. A build without MPI (PW_MPI=OFF), or a process not started by an
// MPI launcher, gets the single-process world: rank 0 of 1, every call below a no-op, so the training loop
// reads the same either way.
//
// What the loop does with it (train/training_run.cpp): every rank draws the same patch set and shuffle
// (the same seed streams), step s's global batch is rows [s*N*b, (s+1)*N*b) of the shuffled set and rank r
// trains on its b rows [r*b, (r+1)*b) of it; after backward the gradients are averaged weighted by each
// rank's row count (average_gradients), so N ranks x batch b take the steps of 1 process x batch N*b, up to
// the float summation order. Rank 0 alone writes the log, checkpoints and the model; validation cases are
// split round-robin and their Dice sums added (sum).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "train/model.h"

namespace pw::train {

class Distributed {
 public:
  // The process's world: MPI's when built with it and started by mpirun/srun (MPI initialised on the first
  // call, finalised at exit; with CUDA each rank takes the first GPU it sees), else one process.
  static Distributed& world();
  // Whether this build can run over MPI (PW_MPI).
  static bool built_with_mpi();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }

  // Rank 0's parameters and buffers on every rank.
  void broadcast_model(Model& model);
  // Gradients: g <- sum over ranks of weight_r * g_r, the same on every rank (weight_r: this rank's share of
  // the global batch's rows; a parameter without a gradient counts as zero and keeps none only when no rank
  // has one). MPI_Allreduce over one host buffer (CUDA gradients are copied down and back); the
  // summation order depends on N and the buffer size only, never on timing.
  void average_gradients(const std::vector<Var>& params, double weight);
  // Element-wise sum over the ranks, in place (losses, Dice sums, hard-mining scores).
  void sum(std::vector<double>& values);
  // Rank 0's value on every rank (the clock that ends a time-limited run and drives a time schedule).
  double from_root(double value);
  // pw::InputError "<what>: rank R has V, rank 0 has W" when a value differs between ranks.
  void check_same(int64_t value, const std::string& what);
  // Every rank's trained weights bit-identical (a hash compared across ranks; a no-op in one process).
  void check_model_same(const Model& model);

  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;
  ~Distributed();

 private:
  Distributed();
  int rank_ = 0, size_ = 1;
  bool mpi_ = false;
};

// For the CLI's error path: in a run of several ranks, prints "patchwork (rank R of N): <message>" and
// ends every rank at once (MPI_Abort with `exit_code`), so that no rank waits forever for a failed one.
// Returns (doing nothing) in a single process.
void end_all_ranks(const std::string& message, int exit_code);

}  // namespace pw::train
