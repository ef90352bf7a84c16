// Data-parallel training across processes (`mpirun -np N patchwork train`): the one place that talks to
// MPI. A build without MPI (PW_MPI=OFF), or a process not started by an
// MPI launcher, gets the single-process world: rank 0 of 1, every call below a no-op, so the training loop
// reads the same either way.
//
// What the loop does with it (train/training_run.cpp): every rank draws the same patch set and shuffle
// (the same seed streams), step s's global batch is rows [s*N*b, (s+1)*N*b) of the shuffled set and rank r
// trains on its b rows [r*b, (r+1)*b) of it; after backward the gradients are averaged weighted by each
// rank's row count (average_gradients: NCCL between GPUs, through the CUDA plugin's table, else MPI), so N ranks x batch b take the steps of 1 process x batch N*b, up to
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
  // has one). One allreduce of one packed buffer, the way choose_gradient_reduction chose (on the first
  // call if not before): NCCL on the GPU, or MPI_Allreduce on the host (CUDA gradients copied down and
  // back). The summation order depends on N and the buffer size only, never on timing.
  void average_gradients(const std::vector<Var>& params, double weight);
  // How gradients on `device` are reduced, chosen once by all ranks together (collective): NCCL on the GPU
  // buffers when the weights are on a GPU and every rank can use NCCL (nccl_unavailable), else MPI over host
  // buffers. Returns the choice in words for the log: "NCCL on the GPUs" or "MPI_Allreduce over host buffers
  // (no NCCL: <why>)". NCCL that is there but cannot be set up (two ranks on one GPU, say) is an error, not
  // a fallback: set PW_NCCL=0 to use the host path.
  std::string choose_gradient_reduction(Device device);
  // Ends what choose_gradient_reduction set up (the NCCL communicator); the next training chooses again.
  void end_gradient_reduction();
  // Why this process cannot reduce gradients on `device` with NCCL ("" when it can): the weights are on the
  // CPU, no CUDA in this build, no GPU, PW_NCCL=0, a CUDA plugin without NCCL, libnccl.so.2 not loadable.
  static std::string nccl_unavailable(Device device);
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
  std::string reduction_;  // choose_gradient_reduction's answer, "" before it
  void* nccl_ = nullptr;   // the NCCL communicator (an ncclComm_t of the CUDA plugin) when NCCL was chosen
};

// For the CLI's error path: in a run of several ranks, prints "patchwork (rank R of N): <message>" and
// ends every rank at once (MPI_Abort with `exit_code`), so that no rank waits forever for a failed one.
// Returns (doing nothing) in a single process.
void end_all_ranks(const std::string& message, int exit_code);

}  // namespace pw::train
