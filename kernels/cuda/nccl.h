// NCCL between the GPU ranks of a data-parallel training: the plugin's side of CudaNccl
// (engine/cuda_backend.h); train/distributed.cpp reaches it only through that table. Built only when
// nccl.h was found (PW_HAVE_NCCL, set for the plugin alone). libnccl.so.2 (200+ MB) is loaded with dlopen()
// on the first call, so a GPU run that does not use NCCL never maps it and a machine without it still runs
// the plugin: nccl_unavailable() then says why. Errors throw std::runtime_error naming the NCCL call.
//
// Deterministic sums: the first call sets NCCL_ALGO=Ring unless the environment sets it, so that NCCL never
// switches to tree, NVLS or CollNet reductions by message size or topology. A ring allreduce reduces each
// chunk along the ring once and copies the result to every rank, so every rank gets the same bits; its
// order is fixed by the ring (the ranks and the topology) and the buffer size, never by timing.
#pragma once
#include <cstddef>
#include <string>

namespace pw::kernels::cuda {

// "" when NCCL can be used, else the reason ("libnccl.so.2 cannot be loaded: ...").
std::string nccl_unavailable();
// A new unique id (CudaNccl::id_bytes bytes), made by one rank and sent to the others.
void nccl_unique_id(unsigned char* id);
// This rank's communicator of `size` ranks on the current GPU (collective: every rank calls it).
void* nccl_comm_init(int rank, int size, const unsigned char* id);
// Sums `count` floats at `device_data` over the ranks, in place, on the compute stream (later work on the
// stream sees the sums; collective).
void nccl_allreduce_sum_f32(void* comm, float* device_data, size_t count);
void nccl_comm_destroy(void* comm);

}  // namespace pw::kernels::cuda
