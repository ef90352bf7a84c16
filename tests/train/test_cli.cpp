// `patchwork train` end to end: NIfTI files in an explicit list, model file, log, checkpoint,
// resume, and clear errors.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "train/phantom.h"
#include "cli_fixture.h"
#include "common/test_util.h"
#include "engine/safetensors.h"
#include "train/model.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using pw::test::tiny_config;
using pw::test::write_json;

}  // namespace

TEST_CASE("cli: patchwork train writes the model, log and checkpoint; resumes; refuses typos") {
  fs::path dir = pw::test::temp_dir("cli_train");
  pw::test::write_phantoms(dir, 3, 2, 50);
  write_json(dir / "cfg.json", tiny_config());
  const std::string bin = pw::test::patchwork_bin();
  std::string out;
  int rc = pw::test::run_command(bin + " train --config " + (dir / "cfg.json").string() + " --out " +
                                     (dir / "m.safetensors").string() + " --threads 2 --seed 4",
                                 &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK(out.find("validation Dice per label:") != std::string::npos);
  CHECK(fs::exists(dir / "m.safetensors"));
  CHECK(fs::exists(dir / "m.safetensors.ckpt"));
  CHECK(fs::file_size(dir / "m.safetensors.curves.png") > 100);
  pw::train::Model m = pw::train::Model::load(dir / "m.safetensors");
  CHECK(m.spec().thresholds.size() == 2);
  CHECK(m.spec().training["train_cases"] == 2);
  CHECK(m.spec().training["validation_cases"] == 1);
  {
    std::ifstream log(dir / "m.safetensors.log.jsonl");
    std::string line;
    int n = 0;
    bool has_dice = false;
    while (std::getline(log, line)) {
      json j = json::parse(line);
      has_dice = has_dice || j.contains("val_dice");
      ++n;
    }
    CHECK(n == 4);  // 3 iterations + the final record
    CHECK(has_dice);
  }
  // resume: continue the same run to 5 iterations
  json c = tiny_config();
  c["num_its"] = 5;
  write_json(dir / "cfg5.json", c);
  rc = pw::test::run_command(bin + " train --config " + (dir / "cfg5.json").string() + " --out " +
                                 (dir / "m.safetensors").string() + " --resume --seed 4",
                             &out);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.find("resuming from") != std::string::npos);
  CHECK(out.find("it 5/5") != std::string::npos);
  CHECK(out.find("it 1/5") == std::string::npos);

  // a typo: exit 1, one line naming the key
  json bad = tiny_config();
  bad["hard_minning"] = 0.2;
  write_json(dir / "bad.json", bad);
  rc = pw::test::run_command(bin + " train --config " + (dir / "bad.json").string(), &out);
  CHECK(rc == 1);
  CHECK(out.find("unknown key 'hard_minning' (did you mean 'hard_mining'?)") != std::string::npos);
  // a missing label file
  json miss = tiny_config();
  miss["dataset"]["pairs"][0]["label"] = "nope.nii.gz";
  write_json(dir / "miss.json", miss);
  rc = pw::test::run_command(bin + " train --config " + (dir / "miss.json").string(), &out);
  CHECK(rc == 1);
  CHECK(out.find("nope.nii.gz: label file not found") != std::string::npos);
  // usage: missing --config
  rc = pw::test::run_command(bin + " train", &out);
  CHECK(rc == 2);
}

TEST_CASE("cli: --device is checked the same way by train and apply") {
  const std::string bin = pw::test::patchwork_bin();
  fs::path dir = pw::test::temp_dir("cli_device");
  write_json(dir / "cfg.json", tiny_config());
  const std::string train = bin + " train --config " + (dir / "cfg.json").string() + " --out " +
                            (dir / "m.safetensors").string();
  const std::string apply = bin + " apply --model " + (dir / "m.safetensors").string() + " --in " +
                            (dir / "img.nii.gz").string() + " --out " + (dir / "seg.nii.gz").string();
  for (const std::string& cmd : {train, apply}) {
    std::string out;
    CHECK(pw::test::run_command(cmd + " --device tpu", &out) == 2);  // a usage error, named
    CHECK(out.find("--device must be cpu or cuda, got 'tpu'") != std::string::npos);
    if (!pw::cuda_available()) {  // asking for the GPU where there is none: one clear message, exit 1
      CHECK(pw::test::run_command(cmd + " --device cuda", &out) == 1);
      CHECK(out.find("device cuda requested but no CUDA GPU is available") != std::string::npos);
    }
  }
}
