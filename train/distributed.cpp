#include "train/distributed.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>

#include "engine/ops.h"
#include "io/error.h"

#if PW_HAVE_MPI
#include <mpi.h>
#endif
#ifdef PW_HAVE_CUDA
#include "engine/cuda_backend.h"
#endif

namespace pw::train {

namespace {

// FNV-1a over the bytes of every parameter (trained weights; buffers such as batch-norm statistics are
// per rank between validations).
uint64_t model_hash(const Model& model) {
  uint64_t h = 1469598103934665603ULL;
  for (const Var& v : model.parameters()) {
    const Tensor t = v->value.cpu();
    const auto* p = static_cast<const unsigned char*>(t.raw());
    for (size_t i = 0; i < t.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ULL;
  }
  return h;
}

}  // namespace

#if PW_HAVE_MPI

namespace {

// Started by an MPI launcher (Open MPI's mpirun, or srun/mpiexec through PMI/PMIx)?
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

// The parameters' gradients packed into one flat f32 tensor on `device` (a missing gradient as zeros), and
// back. Copies go through Tensor::copy_from (any two devices).
int64_t grad_count(const std::vector<Var>& params) {
  int64_t n = 0;
  for (const auto& p : params) n += p->value.numel();
  return n;
}
Tensor pack(const std::vector<Var>& params, Device device) {
  Tensor flat = Tensor::zeros({grad_count(params)}, DType::f32, device);
  int64_t off = 0;
  for (const auto& p : params) {
    const int64_t n = p->value.numel();
    if (p->grad.defined()) flat.rows(off, off + n).reshape(p->grad.shape()).copy_from(p->grad);
    off += n;
  }
  return flat;
}
void unpack(const Tensor& flat, const std::vector<Var>& params, const std::vector<uint8_t>& has) {
  int64_t off = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const Var& p = params[i];
    const int64_t n = p->value.numel();
    if (!has[i]) p->grad = Tensor();
    else {
      if (!p->grad.defined()) p->grad = Tensor::empty_like(p->value);
      p->grad.copy_from(flat.rows(off, off + n).reshape(p->value.shape()));
    }
    off += n;
  }
}

}  // namespace

bool Distributed::built_with_mpi() { return true; }

Distributed::Distributed() {
  if (!launched_by_mpi()) return;
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  mpi_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  // GPU placement: each rank uses the first device it sees (CUDA_VISIBLE_DEVICES per rank: srun
  // --gpus-per-task=1, or a wrapper; README "Clusters"). The CUDA runtime is in the CUDA plugin, which
  // this library does not call directly.
}

Distributed::~Distributed() {
  int finalized = 0;
  if (mpi_ && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Finalize();
}

void Distributed::broadcast_model(Model& model) {
  if (size_ == 1) return;
  std::map<std::string, Tensor> state = model.state();  // CPU copies, sorted by name: the same order on every rank
  for (auto& kv : state) MPI_Bcast(kv.second.raw(), static_cast<int>(kv.second.nbytes()), MPI_BYTE, 0, MPI_COMM_WORLD);
  model.load_state(state);
}

void Distributed::average_gradients(const std::vector<Var>& params, double weight) {
  if (size_ == 1) return;
  std::vector<uint8_t> has(params.size());
  for (size_t i = 0; i < params.size(); ++i) has[i] = params[i]->grad.defined();
  MPI_Allreduce(MPI_IN_PLACE, has.data(), static_cast<int>(has.size()), MPI_UNSIGNED_CHAR, MPI_MAX, MPI_COMM_WORLD);
  choose_gradient_reduction(params.empty() ? Device::cpu : params[0]->value.device());
  const Device where = nccl_ ? Device::cuda : Device::cpu;  // NCCL on the GPU, else MPI on the host
  Tensor flat;
  {
    NoGradGuard ng;
    flat = scale(constant(pack(params, where)), static_cast<float>(weight))->value;
  }
#ifdef PW_HAVE_CUDA
  if (nccl_) cuda_backend().nccl.allreduce_sum_f32(nccl_, flat.f32(), static_cast<size_t>(flat.numel()));
#endif
  if (!nccl_)
    MPI_Allreduce(MPI_IN_PLACE, flat.f32(), static_cast<int>(flat.numel()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  unpack(flat, params, has);
}

std::string Distributed::choose_gradient_reduction(Device device) {
  if (size_ == 1) return "none (one process)";
  if (!reduction_.empty()) return reduction_;
  std::string why = nccl_unavailable(device);
  int all = why.empty();  // every rank can use NCCL
  MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all) {
    reduction_ = "MPI_Allreduce over host buffers (no NCCL: " + (why.empty() ? "another rank cannot use it" : why) + ")";
    return reduction_;
  }
#ifdef PW_HAVE_CUDA
  // Rank 0's unique id to every rank, then the communicator (rank r is NCCL rank r: a fixed ring order).
  const CudaNccl& n = cuda_backend().nccl;
  std::vector<unsigned char> id(CudaNccl::id_bytes);
  try {
    if (rank_ == 0) n.unique_id(id.data());
    MPI_Bcast(id.data(), static_cast<int>(id.size()), MPI_BYTE, 0, MPI_COMM_WORLD);
    nccl_ = n.comm_init(rank_, size_, id.data());
  } catch (const std::exception& e) {
    throw InputError(std::string(e.what()) + " (setting up NCCL between the GPU ranks: each rank needs a GPU of "
                     "its own; PW_NCCL=0 reduces through host buffers instead)");
  }
#endif
  reduction_ = "NCCL on the GPUs";
  return reduction_;
}

void Distributed::end_gradient_reduction() {
#ifdef PW_HAVE_CUDA
  if (nccl_) cuda_backend().nccl.comm_destroy(nccl_);
#endif
  nccl_ = nullptr;
  reduction_.clear();
}

void Distributed::sum(std::vector<double>& values) {
  if (size_ == 1 || values.empty()) return;
  MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

double Distributed::from_root(double value) {
  if (size_ > 1) MPI_Bcast(&value, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  return value;
}

void Distributed::check_same(int64_t value, const std::string& what) {
  if (size_ == 1) return;
  std::vector<int64_t> all(size_);
  MPI_Allgather(&value, 1, MPI_INT64_T, all.data(), 1, MPI_INT64_T, MPI_COMM_WORLD);
  for (int r = 1; r < size_; ++r)
    if (all[r] != all[0])
      throw InputError(what + ": rank " + std::to_string(r) + " has " + std::to_string(all[r]) + ", rank 0 has " +
                       std::to_string(all[0]));
}

void end_all_ranks(const std::string& message, int exit_code) {
  int init = 0, fin = 0, size = 1, rank = 0;
  MPI_Initialized(&init);
  if (init) MPI_Finalized(&fin);
  if (!init || fin) return;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size == 1) return;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "patchwork (rank %d of %d): %s\n", rank, size, message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, exit_code);
}

#else  // a single process

bool Distributed::built_with_mpi() { return false; }
Distributed::Distributed() {}
Distributed::~Distributed() {}
void Distributed::broadcast_model(Model&) {}
void Distributed::average_gradients(const std::vector<Var>&, double) {}
std::string Distributed::choose_gradient_reduction(Device) { return "none (one process)"; }
void Distributed::end_gradient_reduction() {}
void Distributed::sum(std::vector<double>&) {}
double Distributed::from_root(double value) { return value; }
void Distributed::check_same(int64_t, const std::string&) {}
void end_all_ranks(const std::string&, int) {}

#endif

std::string Distributed::nccl_unavailable(Device device) {
  if (device != Device::cuda) return "the weights are on the CPU";
#ifndef PW_HAVE_CUDA
  return "this Patchwork was built without CUDA";
#else
  if (const char* e = std::getenv("PW_NCCL"); e && std::string(e) == "0") return "PW_NCCL=0";
  if (!cuda_status().available) return cuda_status().reason;
  const CudaNccl& n = cuda_backend().nccl;
  if (!n.unavailable) return "the CUDA backend was built without NCCL (no nccl.h)";
  return n.unavailable();
#endif
}

Distributed& Distributed::world() {
  static Distributed w;
  return w;
}

void Distributed::check_model_same(const Model& model) {
  if (size_ == 1) return;
  const uint64_t h = model_hash(model);
  int64_t v;
  std::memcpy(&v, &h, sizeof v);
  check_same(v, "the weights differ between the ranks (hash of every weight)");
}

}  // namespace pw::train
