// pw_mpi_check: run under `mpirun -np N` by tests/train/test_distributed.cpp. Checks train/distributed.h
// on real ranks: broadcast makes weights equal on every rank (and unequal weights are caught), the
// gradient average (CPU buffers; with a GPU also GPU buffers, through NCCL where it can) and the sum of
// known vectors. Prints one line per failed check; exit 0 when all hold.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "train/config.h"
#include "train/distributed.h"
#include "train/model.h"

using namespace pw;
using train::Distributed;

namespace {

int failures = 0;
void expect(bool ok, const std::string& what) {
  if (ok) return;
  std::fprintf(stderr, "rank %d: FAILED %s\n", Distributed::world().rank(), what.c_str());
  ++failures;
}

train::Model model(uint64_t seed) {
  nlohmann::json j = {{"depth", 2}, {"ndim", 2}, {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 0.9}, {"destvox_rel", 1}}}, {"num_labels", 2},
                      {"network", {{"features", {4, 8}}}}};
  return train::Model(train::ModelSpec::from_config(train::TrainConfig::from_json(j), 1), seed);
}

void check_broadcast(Distributed& w) {
  train::Model m = model(100 + w.rank());  // different weights on every rank
  bool caught = false;
  try {
    w.check_model_same(m);
  } catch (const std::exception&) {
    caught = true;
  }
  expect(caught == (w.size() > 1), "check_model_same sees the ranks' different weights");
  w.broadcast_model(m);
  const train::Model ref = model(100);  // rank 0's
  const auto a = m.state(), b = ref.state();
  bool equal = a.size() == b.size();
  for (const auto& kv : a) {
    const Tensor& r = b.at(kv.first);
    for (int64_t i = 0; equal && i < r.numel(); ++i) equal = kv.second.f32()[i] == r.f32()[i];
  }
  expect(equal, "after broadcast_model every rank holds rank 0's weights bit for bit");
  try {
    w.check_model_same(m);
  } catch (const std::exception& e) {
    expect(false, std::string("check_model_same after the broadcast: ") + e.what());
  }
}

// The gradients live on `device`: on a GPU they go through NCCL when every rank can use it (else through
// host buffers); the path chosen is printed by rank 0.
void check_average(Distributed& w, Device device) {
  const int r = w.rank(), n = w.size();
  // p0: every rank has gradient (r+1)*[1 2 3 ..]; p1: only rank 0 has one; p2: none has one.
  std::vector<Var> p;
  for (int i = 0; i < 3; ++i) p.push_back(variable(Tensor::zeros({2, 3}, DType::f32, device), true));
  std::vector<float> g(6);
  for (int i = 0; i < 6; ++i) g[i] = static_cast<float>((r + 1) * (i + 1));
  p[0]->grad = Tensor::from_vector({2, 3}, g, device);
  if (r == 0) p[1]->grad = Tensor::full({2, 3}, 4.f, device);
  const std::string how = w.choose_gradient_reduction(device);
  if (w.root()) std::printf("pw_mpi_check: gradients on the %s: %s\n", device == Device::cuda ? "GPU" : "CPU", how.c_str());
  w.average_gradients(p, 1.0 / n);
  w.end_gradient_reduction();
  bool ok = p[0]->grad.defined() && p[0]->grad.device() == device;
  const Tensor g0 = ok ? p[0]->grad.cpu() : Tensor();
  for (int i = 0; ok && i < 6; ++i)  // mean of (r+1)(i+1) over r = (n+1)/2 (i+1)
    ok = std::fabs(g0.f32()[i] - 0.5f * (n + 1) * (i + 1)) < 1e-5f * (i + 1) * n;
  expect(ok, "average_gradients: the mean of (rank+1)*[1..6] is (N+1)/2*[1..6]");
  ok = p[1]->grad.defined();
  const Tensor g1 = ok ? p[1]->grad.cpu() : Tensor();
  for (int i = 0; ok && i < 6; ++i) ok = std::fabs(g1.f32()[i] - 4.f / n) < 1e-6f;
  expect(ok, "average_gradients: a gradient on rank 0 only arrives as 4/N on every rank");
  expect(!p[2]->grad.defined(), "average_gradients: a parameter without gradient on any rank keeps none");
}

void check_sum(Distributed& w) {
  std::vector<double> v = {static_cast<double>(w.rank()), 1.0, 0.25};
  w.sum(v);
  const double n = w.size();
  expect(v[0] == n * (n - 1) / 2 && v[1] == n && v[2] == 0.25 * n, "sum: {rank, 1, 0.25} adds to {N(N-1)/2, N, N/4}");
  bool caught = false;
  try {
    w.check_same(w.rank(), "rank number");
  } catch (const std::exception&) {
    caught = true;
  }
  expect(caught == (w.size() > 1), "check_same catches a value that differs between ranks");
}

}  // namespace

int main() {
  Distributed& w = Distributed::world();
  try {
    check_broadcast(w);
    check_average(w, Device::cpu);
    if (cuda_available()) check_average(w, Device::cuda);  // NCCL (scripts/gpu_check.sh runs it on GPUs)
    check_sum(w);
  } catch (const std::exception& e) {
    train::end_all_ranks(e.what(), 1);
    std::fprintf(stderr, "pw_mpi_check: %s\n", e.what());
    return 1;
  }
  if (w.root()) std::printf("pw_mpi_check: %d ranks, %s\n", w.size(), failures ? "FAILED" : "all checks hold");
  return failures ? 1 : 0;
}
