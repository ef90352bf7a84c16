// Outputs are checked before any work: an output that would replace an input is refused (apply,
// convert, train), a missing folder fails at once, and a batch run goes on past a bad case.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "apply/demo.h"
#include "common/test_util.h"
#include "io/nifti.h"
#include "train/phantom.h"
#include "train/trainer.h"

using namespace pw;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

PhantomOptions tiny_phantom(uint64_t seed) {
  PhantomOptions po;
  po.dims = {32, 32, 1};
  po.spacing_mm = {1.5, 1.5, 3.0};
  po.num_labels = 1;
  po.seed = seed;
  return po;
}

// A one-iteration 2D model: enough for the CLI to load and apply. `extra` keys replace the config's.
fs::path tiny_model(const fs::path& dir, const json& extra = json::object()) {
  json j = {{"depth", 1},
            {"ndim", 2},
            {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 1.0}, {"destvox_rel", 1}}},
            {"network", {{"features", {4}}}},
            {"num_its", 1},
            {"num_patches", 2},
            {"batch_size", 2},
            {"seed", 1}};
  for (const auto& [k, v] : extra.items()) j[k] = v;
  train::TrainConfig cfg = train::TrainConfig::from_json(j);
  std::vector<train::Subject> tr, va;
  tr.push_back(apply::phantom_subject("p0", make_phantom(tiny_phantom(1)), cfg.scheme));
  train::TrainOptions to;
  to.out = dir / "model.safetensors";
  to.quiet = true;
  train::Trainer(cfg, to).run(tr, va);
  return to.out;
}

std::string bytes_of(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("cli: an output that is an input is refused before any work; the input stays as it was") {
  const fs::path dir = test::temp_dir("outputs-same");
  const fs::path model = tiny_model(dir);
  const fs::path img = dir / "img.nii.gz";
  write_phantom(make_phantom(tiny_phantom(5)), img.string(), (dir / "lab.nii.gz").string());
  fs::create_symlink(img, dir / "link.nii.gz");
  const std::string before = bytes_of(img), model_before = bytes_of(model);
  const std::string bin = test::patchwork_bin() + " ";
  std::string out;
  // apply: the same path, a link to the input, the model itself
  for (const fs::path& target : {img, dir / "link.nii.gz", model}) {
    CHECK(test::run_command(bin + "apply --quiet --model " + model.string() + " --in " + img.string() + " --out " +
                                target.string(),
                            &out) == 2);
    CHECK(out.find("the output would replace the input") != std::string::npos);
  }
  // convert IN IN, train --out CONFIG
  CHECK(test::run_command(bin + "convert " + img.string() + " " + img.string(), &out) == 2);
  CHECK(out.find("would replace the input " + img.string()) != std::string::npos);
  std::ofstream(dir / "cfg.json") << "{}";
  CHECK(test::run_command(bin + "train --config " + (dir / "cfg.json").string() + " --out " +
                              (dir / "cfg.json").string(),
                          &out) == 2);
  CHECK(bytes_of(img) == before);
  CHECK(bytes_of(model) == model_before);
  // A folder that does not exist: exit 1 at once, naming it.
  CHECK(test::run_command(bin + "apply --quiet --model " + model.string() + " --in " + img.string() + " --out " +
                              (dir / "nothere" / "seg.nii.gz").string(),
                          &out) == 1);
  CHECK(out.find("does not exist") != std::string::npos);
}

TEST_CASE("cli: apply --in-dir goes on past a bad case, reports it, exits 1; --skip-existing; --out-dir = --in-dir") {
  const fs::path dir = test::temp_dir("outputs-batch");
  const fs::path model = tiny_model(dir);
  const fs::path in = dir / "in", outd = dir / "out";
  fs::create_directories(in);
  write_phantom(make_phantom(tiny_phantom(7)), (in / "a.nii.gz").string(), (dir / "la.nii.gz").string());
  write_phantom(make_phantom(tiny_phantom(8)), (in / "c.nii.gz").string(), (dir / "lc.nii.gz").string());
  std::ofstream(in / "b.nii.gz") << "not a NIfTI file";
  const std::string bin = test::patchwork_bin() + " ";
  const std::string cmd = bin + "apply --quiet --model " + model.string() + " --in-dir " + in.string();
  std::string out;
  CHECK(test::run_command(cmd + " --out-dir " + outd.string(), &out) == 1);
  INFO(out);
  CHECK(fs::exists(outd / "a.nii.gz"));
  CHECK(fs::exists(outd / "c.nii.gz"));
  CHECK(!fs::exists(outd / "b.nii.gz"));
  CHECK(out.find("patchwork: b: ") != std::string::npos);
  CHECK(out.find("2 done, 1 failed, 0 skipped") != std::string::npos);
  CHECK(test::run_command(cmd + " --out-dir " + outd.string() + " --skip-existing", &out) == 1);
  CHECK(out.find("0 done, 1 failed, 2 skipped") != std::string::npos);
  // Outputs into the input folder would replace a.nii.gz and c.nii.gz: refused up front.
  const std::string a_before = bytes_of(in / "a.nii.gz");
  CHECK(test::run_command(cmd + " --out-dir " + in.string(), &out) == 2);
  CHECK(out.find("the output would replace the input") != std::string::npos);
  CHECK(bytes_of(in / "a.nii.gz") == a_before);
}

TEST_CASE("cli: bad numbers and unknown commands are usage errors naming the option; an impossible grid is refused up front") {
  const std::string bin = test::patchwork_bin() + " ";
  std::string out;
  CHECK(test::run_command(bin + "frobnicate", &out) == 2);
  CHECK(out.find("unknown command 'frobnicate'") != std::string::npos);
  CHECK(out.find("apply") != std::string::npos);
  CHECK(test::run_command(bin + "demo --seconds -5", &out) == 2);
  CHECK(out.find("--seconds: must be a number > 0, got -5") != std::string::npos);
  CHECK(test::run_command(bin + "demo --quick --seconds 30", &out) == 2);
  CHECK(test::run_command(bin + "apply --model m --in i --out o --threads -3", &out) == 2);
  CHECK(out.find("--threads: must be a number >= 0") != std::string::npos);
  CHECK(test::run_command(bin + "apply --model m --in i --out o --batch-size 0", &out) == 2);
  CHECK(out.find("--batch-size: must be a number > 0") != std::string::npos);
  CHECK(test::run_command(bin + "train --config c --threads -1", &out) == 2);

  const fs::path dir = test::temp_dir("outputs-grid");
  const fs::path model = tiny_model(dir);
  write_phantom(make_phantom(tiny_phantom(9)), (dir / "img.nii.gz").string(), (dir / "lab.nii.gz").string());
  CHECK(test::run_command(bin + "apply --quiet --model " + model.string() + " --in " + (dir / "img.nii.gz").string() +
                              " --out " + (dir / "seg.nii.gz").string() + " --sampling-factor 100000",
                          &out) == 1);
  CHECK(out.find("more than this machine's") != std::string::npos);
  CHECK(out.find("3200000x3200000x1") != std::string::npos);
  CHECK(!fs::exists(dir / "seg.nii.gz"));
}

TEST_CASE("cli: apply --in-dir --shard K/N (or OMPI_COMM_WORLD_RANK/SIZE) applies only the shard's cases") {
  const fs::path dir = test::temp_dir("outputs-shard");
  const fs::path model = tiny_model(dir);
  const fs::path in = dir / "in", outd = dir / "out";
  fs::create_directories(in);
  for (const char* name : {"a", "b", "c"})
    write_phantom(make_phantom(tiny_phantom(name[0])), (in / (std::string(name) + ".nii.gz")).string(),
                  (dir / (std::string("l") + name + ".nii.gz")).string());
  const std::string cmd = test::patchwork_bin() + " apply --quiet --model " + model.string() + " --in-dir " +
                          in.string() + " --out-dir " + outd.string();
  std::string out;
  // Shard 1 of 2: the second of the sorted cases a, b, c.
  CHECK(test::run_command(cmd + " --shard 1/2", &out) == 0);
  INFO(out);
  CHECK(out.find("1 done, 0 failed, 0 skipped (output exists) of 1 cases (shard 1/2 from --shard of the folder's 3)") !=
        std::string::npos);
  CHECK(!fs::exists(outd / "a.nii.gz"));
  CHECK(fs::exists(outd / "b.nii.gz"));
  CHECK(!fs::exists(outd / "c.nii.gz"));
  // Shard 0 of 2 from the environment of `mpirun -np 2` (rank 0): a and c; --shard wins over it.
  CHECK(test::run_command("OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 " + cmd, &out) == 0);
  CHECK(out.find("of 2 cases (shard 0/2 from OMPI_COMM_WORLD_RANK/SIZE") != std::string::npos);
  CHECK(fs::exists(outd / "a.nii.gz"));
  CHECK(fs::exists(outd / "c.nii.gz"));
  CHECK(test::run_command("OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 " + cmd + " --shard 1/2", &out) == 0);
  CHECK(out.find("(shard 1/2 from --shard") != std::string::npos);
  CHECK(test::run_command(cmd + " --shard 2/2", &out) == 2);
  CHECK(out.find("--shard '2/2'") != std::string::npos);
}

TEST_CASE("cli: apply takes lazyEval and label_colors from the model unless given; --largest-component") {
  const fs::path dir = test::temp_dir("outputs-lazy");
  const fs::path model = tiny_model(dir, {{"depth", 2},
                                          {"lazyEval", {{"fraction", 0.5}, {"attentionFun", "identity"}, {"reduceFun", "max"}}},
                                          {"label_colors", {{10, 20, 30}}}});
  write_phantom(make_phantom(tiny_phantom(3)), (dir / "img.nii.gz").string(), (dir / "lab.nii.gz").string());
  const std::string cmd = test::patchwork_bin() + " apply --model " + model.string() + " --in " +
                          (dir / "img.nii.gz").string() + " --out " + (dir / "seg.nii.gz").string() +
                          " --generate-type random --num-patches 4 ";
  std::string out;
  REQUIRE(test::run_command(cmd, &out) == 0);
  CHECK(out.find("patches per level 4,2") != std::string::npos);  // the model's fraction 0.5
  REQUIRE(test::run_command(cmd + "--lazy-fraction 1 --attention mean --attention-fun sigmoid", &out) == 0);
  CHECK(out.find("patches per level 4,4") != std::string::npos);
  REQUIRE(test::run_command(cmd + "--largest-component --connectivity 6", &out) == 0);
  const Volume seg = read_nifti(dir / "seg.nii.gz");  // the model's colour in the label table
  REQUIRE(seg.extensions.size() == 1);
  const std::string xml(seg.extensions[0].data.begin(), seg.extensions[0].data.end());
  CHECK(xml.find("Red=\"0.039\" Green=\"0.078\" Blue=\"0.118\"") != std::string::npos);
  CHECK(test::run_command(cmd + "--attention-fun tanh", &out) == 2);
  CHECK(out.find("--attention-fun: attentionFun 'tanh'") != std::string::npos);
  CHECK(test::run_command(cmd + "--largest-component --connectivity 8", &out) == 2);
  CHECK(test::run_command(cmd + "--largest-component --out-type float32", &out) == 2);
  CHECK(out.find("needs --out-type atls or mask") != std::string::npos);
  CHECK(test::run_command(cmd + "--label-colors 1:2", &out) == 2);
}
