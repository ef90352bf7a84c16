// NCCL through dlopen() (kernels/cuda/nccl.h). Compiled into the CUDA plugin only when nccl.h was found.
#include "kernels/cuda/nccl.h"

#if PW_HAVE_NCCL
#include <dlfcn.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "kernels/cuda/context.h"

namespace pw::kernels::cuda {

namespace {

static_assert(sizeof(ncclUniqueId) == 128, "CudaNccl::id_bytes is the size of an ncclUniqueId");

// The NCCL calls used, from the library loaded on first use.
struct Nccl {
  std::string error;  // why it could not be loaded
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) comm_init_rank = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
};

template <class F>
void bind(void* h, F& f, const char* name, std::string& missing) {
  f = reinterpret_cast<F>(dlsym(h, name));
  if (!f) missing += std::string(missing.empty() ? "" : ", ") + name;
}

Nccl load() {
  Nccl n;
  setenv("NCCL_ALGO", "Ring", 0);  // deterministic sums (kernels/cuda/nccl.h); a user's setting wins
  // The loader's search path first (LD_LIBRARY_PATH, ldconfig), then the library found at build time.
  void* h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
  std::string why = h ? "" : dlerror();
#ifdef PW_NCCL_LIBRARY
  if (!h) h = dlopen(PW_NCCL_LIBRARY, RTLD_NOW | RTLD_LOCAL);
#endif
  if (!h) {
    n.error = "libnccl.so.2 cannot be loaded (" + why + ")";
    return n;
  }
  std::string missing;
  bind(h, n.get_unique_id, "ncclGetUniqueId", missing);
  bind(h, n.comm_init_rank, "ncclCommInitRank", missing);
  bind(h, n.all_reduce, "ncclAllReduce", missing);
  bind(h, n.comm_destroy, "ncclCommDestroy", missing);
  bind(h, n.error_string, "ncclGetErrorString", missing);
  if (!missing.empty()) n.error = "libnccl.so.2 lacks " + missing;
  return n;
}

const Nccl& loaded() {
  static const Nccl n = load();
  return n;
}

const Nccl& nccl() {
  const Nccl& n = loaded();
  if (!n.error.empty()) throw std::runtime_error("NCCL: " + n.error);
  return n;
}

void check(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("NCCL error in ") + call + ": " + nccl().error_string(r));
}

}  // namespace

std::string nccl_unavailable() { return loaded().error; }

void nccl_unique_id(unsigned char* id) {
  ncclUniqueId u;
  check(nccl().get_unique_id(&u), "ncclGetUniqueId");
  std::memcpy(id, u.internal, sizeof u.internal);
}

void* nccl_comm_init(int rank, int size, const unsigned char* id) {
  ncclUniqueId u;
  std::memcpy(u.internal, id, sizeof u.internal);
  ncclComm_t comm = nullptr;
  check(nccl().comm_init_rank(&comm, size, u, rank), "ncclCommInitRank");
  return comm;
}

void nccl_allreduce_sum_f32(void* comm, float* device_data, size_t count) {
  check(nccl().all_reduce(device_data, device_data, count, ncclFloat, ncclSum, static_cast<ncclComm_t>(comm),
                          stream()),
        "ncclAllReduce");
}

void nccl_comm_destroy(void* comm) {
  if (comm) check(nccl().comm_destroy(static_cast<ncclComm_t>(comm)), "ncclCommDestroy");
}

}  // namespace pw::kernels::cuda

#endif  // PW_HAVE_NCCL
