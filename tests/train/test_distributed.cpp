// Data-parallel training over MPI (train/distributed.h): the choice of NCCL or host buffers (one process),
// then on real ranks started with `mpirun -np 2`: the distributed primitives (pw_mpi_check), 2 ranks x
// batch b against 1 process x batch 2b, --resume under 2 ranks, and a failing rank that ends the job.
// Skipped (and shown as skipped) in a build without MPI or where mpirun is not on the PATH.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "cli_fixture.h"
#include "common/test_util.h"
#include "engine/cuda_backend.h"
#include "train/distributed.h"
#include "train/model.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

bool mpi_ready() {
  return pw::train::Distributed::built_with_mpi() && pw::test::run_command("command -v mpirun") == 0;
}

// mpirun for tests: allowed as root (CI containers), more ranks than cores, no binding (a shared machine),
// no shared-memory single-copy (needs ptrace rights that containers often lack); bounded by a timeout so
// that a hang fails the test instead of blocking it.
std::string mpirun(int ranks) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none "
         "timeout 240 mpirun --oversubscribe --bind-to none -np " +
         std::to_string(ranks) + " ";
}

// The tiny fixture config made exactly reproducible across batch splits: a per-voxel loss (ce: the batch
// mean of per-row means; a Dice term would be over each rank's rows only), 2 training and 2 validation
// cases, hard mining on (its scores are gathered from the ranks), SGD with momentum.
json equivalence_config(int batch) {
  json c = pw::test::tiny_config();
  c["loss"] = "ce";
  c["batch_size"] = batch;
  c["num_patches"] = 6;  // 12 chains an iteration: with a global batch of 8, a short last step of 4
  c["num_its"] = 3;
  c["hard_mining"] = 0.25;
  c["optimizer"] = {{"type", "sgd"}, {"lr", 0.05}, {"momentum", 0.9}};
  c["parallel"] = false;
  c["dataset"]["pairs"].push_back({{"image", "img3.nii.gz"}, {"label", "lab3.nii.gz"}});
  c["dataset"]["validation"] = {"img2", "img3"};
  return c;
}

// Largest |a - b| / (1 + |b|) over every weight of two model files.
double max_weight_diff(const fs::path& a, const fs::path& b) {
  const auto sa = pw::train::Model::load(a).state(), sb = pw::train::Model::load(b).state();
  REQUIRE(sa.size() == sb.size());
  double worst = 0;
  for (const auto& kv : sa) {
    const pw::Tensor& y = sb.at(kv.first);
    REQUIRE(y.numel() == kv.second.numel());
    for (int64_t i = 0; i < y.numel(); ++i)
      worst = std::max(worst, std::fabs(double(kv.second.f32()[i]) - y.f32()[i]) / (1 + std::fabs(double(y.f32()[i]))));
  }
  return worst;
}

std::string train_cmd(const fs::path& dir, const std::string& cfg, const std::string& out, const std::string& more = "") {
  return pw::test::patchwork_bin() + " train --config " + (dir / cfg).string() + " --out " + (dir / out).string() +
         " --threads 1 --device cpu" + more;
}

}  // namespace

// The choice between NCCL and host buffers (Distributed::nccl_unavailable), in one process: here (no GPU)
// every path falls back to the host and names the reason; with a GPU and NCCL the reason is empty.
TEST_CASE("distributed: NCCL only for GPU weights with a GPU and NCCL, else host buffers and the reason") {
  using pw::train::Distributed;
  CHECK(Distributed::nccl_unavailable(pw::Device::cpu) == "the weights are on the CPU");
  CHECK(Distributed::world().choose_gradient_reduction(pw::Device::cpu) == "none (one process)");
#ifndef PW_HAVE_CUDA
  CHECK(Distributed::nccl_unavailable(pw::Device::cuda) == "this Patchwork was built without CUDA");
#else
  const std::string why = Distributed::nccl_unavailable(pw::Device::cuda);
  if (!pw::cuda_available()) CHECK(why == pw::cuda_status().reason);
  else MESSAGE("NCCL on this GPU: " << (why.empty() ? "usable" : why));
  setenv("PW_NCCL", "0", 1);
  CHECK(Distributed::nccl_unavailable(pw::Device::cuda) == "PW_NCCL=0");
  unsetenv("PW_NCCL");
#endif
}

TEST_CASE("distributed: broadcast, gradient average and sums on 2 and 3 real ranks" * doctest::skip(!mpi_ready())) {
  for (int n : {2, 3}) {
    std::string out;
    const int rc = pw::test::run_command(mpirun(n) + PW_BINARY_DIR "/tests/pw_mpi_check", &out);
    INFO(out);
    CHECK(rc == 0);
    CHECK(out.find("pw_mpi_check: " + std::to_string(n) + " ranks, all checks hold") != std::string::npos);
    CHECK(out.find("pw_mpi_check: gradients on the CPU: MPI_Allreduce over host buffers (no NCCL: the weights are "
                   "on the CPU)") != std::string::npos);
  }
}

TEST_CASE("distributed: 2 ranks x batch 4 train the weights of 1 process x batch 8" * doctest::skip(!mpi_ready())) {
  const fs::path dir = pw::test::temp_dir("dist-equiv");
  pw::test::write_phantoms(dir, 4, 2, 70);
  pw::test::write_json(dir / "b4.json", equivalence_config(4));
  pw::test::write_json(dir / "b8.json", equivalence_config(8));
  std::string out;
  int rc = pw::test::run_command(train_cmd(dir, "b8.json", "one.safetensors"), &out);
  INFO(out);
  REQUIRE(rc == 0);
  rc = pw::test::run_command(mpirun(2) + train_cmd(dir, "b4.json", "two.safetensors"), &out);
  REQUIRE(rc == 0);
  CHECK(out.find("data-parallel over 2 ranks (global batch 8)") != std::string::npos);
  CHECK(out.find("data-parallel over 2 ranks, gradients: MPI_Allreduce over host buffers (no NCCL: the weights "
                 "are on the CPU)") != std::string::npos);
  // Float tolerance: the same arithmetic but for the summation order of the batch mean (per rank, then
  // across ranks), over 9 SGD steps: 1e-6 relative (4e-8 measured).
  const double diff = max_weight_diff(dir / "two.safetensors", dir / "one.safetensors");
  MESSAGE("largest relative weight difference, 2 ranks x 4 vs 1 x 8: " << diff);
  CHECK(diff < 1e-6);
  CHECK(diff > 0);  // not the same run twice: the ranks did split the batch
  // The validation (2 cases, one per rank) reduced to the Dice of both cases, thresholds alike.
  const auto one = pw::train::Model::load(dir / "one.safetensors").spec();
  const auto two = pw::train::Model::load(dir / "two.safetensors").spec();
  CHECK(two.thresholds == one.thresholds);
  const auto d1 = one.training["validation_dice"], d2 = two.training["validation_dice"];
  REQUIRE(d1.size() == d2.size());
  for (size_t k = 0; k < d1.size(); ++k) CHECK(d2[k].get<double>() == doctest::Approx(d1[k].get<double>()).epsilon(1e-3));
  // Rank 0 alone wrote: one log line per iteration plus the final record.
  std::ifstream log(dir / "two.safetensors.log.jsonl");
  CHECK(std::count(std::istreambuf_iterator<char>(log), {}, '\n') == 4);
}

TEST_CASE("distributed: --resume under 2 ranks continues bit for bit" * doctest::skip(!mpi_ready())) {
  const fs::path dir = pw::test::temp_dir("dist-resume");
  pw::test::write_phantoms(dir, 4, 2, 80);
  json c = equivalence_config(4);
  c["num_its"] = 4;
  pw::test::write_json(dir / "c4.json", c);
  c["num_its"] = 2;
  pw::test::write_json(dir / "c2.json", c);
  std::string out;
  int rc = pw::test::run_command(mpirun(2) + train_cmd(dir, "c4.json", "straight.safetensors"), &out);
  INFO(out);
  REQUIRE(rc == 0);
  rc = pw::test::run_command(mpirun(2) + train_cmd(dir, "c2.json", "resumed.safetensors"), &out);
  REQUIRE(rc == 0);
  rc = pw::test::run_command(mpirun(2) + train_cmd(dir, "c4.json", "resumed.safetensors", " --resume"), &out);
  REQUIRE(rc == 0);
  CHECK(out.find("resuming from") != std::string::npos);
  CHECK(max_weight_diff(dir / "resumed.safetensors", dir / "straight.safetensors") == 0);
}

TEST_CASE("distributed: a failing rank ends every rank with its message, no hang" * doctest::skip(!mpi_ready())) {
  const fs::path dir = pw::test::temp_dir("dist-fail");
  pw::test::write_phantoms(dir, 4, 2, 90);
  pw::test::write_json(dir / "good.json", equivalence_config(4));
  json bad = equivalence_config(4);
  bad["dataset"]["pairs"][1]["image"] = "broken.nii.gz";
  { std::ofstream(dir / "broken.nii.gz") << "not a NIfTI file"; }
  pw::test::write_json(dir / "bad.json", bad);
  // Rank 0 gets the good config, rank 1 the broken case (mpirun's MPMD form "A : B").
  std::string out;
  const std::string cmd = mpirun(1) + train_cmd(dir, "good.json", "m.safetensors") + " : -np 1 " +
                          train_cmd(dir, "bad.json", "m.safetensors");
  const int rc = pw::test::run_command(cmd, &out);
  INFO(out);
  CHECK(rc != 0);
  CHECK(rc != 124);  // the timeout: a hang
  CHECK(out.find("patchwork (rank 1 of 2): ") != std::string::npos);
  CHECK(out.find("broken.nii.gz") != std::string::npos);
  CHECK(!fs::exists(dir / "m.safetensors"));
}
