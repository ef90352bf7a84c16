// Messages of `patchwork train` (issue 17, item 9): a config path that is a folder, missing or unreadable
// gives one line naming it; mistakes in the network block are found when the config is read (before any
// data), naming the config file and the key, with a "did you mean" for a near miss; an image with a
// non-finite sform is named; and after --resume the training log holds every iteration exactly once.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>

#include "cli_fixture.h"
#include "common/test_util.h"
#include "io/error.h"
#include "io/nifti.h"
#include "train/config.h"
#include "train/phantom.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using pw::test::tiny_config;
using pw::test::write_json;

void write_phantoms(const fs::path& dir) { pw::test::write_phantoms(dir, 3, 2, 80); }

int lines(const std::string& s) {
  int n = 0;
  for (char ch : s) n += ch == '\n';
  return n;
}

// The records of a training log: the "it" of every iteration line, and the final records' "it".
struct LogIts {
  std::vector<int> its, finals;
  std::vector<json> records;
};
LogIts read_log(const fs::path& f) {
  LogIts r;
  std::ifstream in(f);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);  // every line must be valid JSON
    r.records.push_back(j);
    (j.contains("final") ? r.finals : r.its).push_back(j.at("it").get<int>());
  }
  return r;
}

}  // namespace

TEST_CASE("messages: train --config that is a folder, missing or unreadable: one line naming the path") {
  const fs::path dir = pw::test::temp_dir("msg-train-config");
  const std::string bin = pw::test::patchwork_bin() + " train --out " + (dir / "m.safetensors").string() + " --config ";
  std::string out;
  fs::create_directory(dir / "cfgdir");
  CHECK(pw::test::run_command(bin + (dir / "cfgdir").string(), &out) == 1);
  CHECK(out == "patchwork: " + (dir / "cfgdir").string() + ": is a folder, not a config file\n");
  CHECK(out.find("underflow") == std::string::npos);

  CHECK(pw::test::run_command(bin + (dir / "nope.json").string(), &out) == 1);
  CHECK(out == "patchwork: " + (dir / "nope.json").string() + ": config file not found\n");

  std::ofstream(dir / "secret.json") << "{}";
  fs::permissions(dir / "secret.json", fs::perms::none);
  if (geteuid() != 0) {  // root reads it anyway
    CHECK(pw::test::run_command(bin + (dir / "secret.json").string(), &out) == 1);
    CHECK(lines(out) == 1);
    CHECK(out.find((dir / "secret.json").string() + ": cannot read the config file") != std::string::npos);
  }
  fs::permissions(dir / "secret.json", fs::perms::owner_all);

  // The API says the same.
  CHECK_THROWS_WITH_AS(pw::train::TrainConfig::load(dir / "cfgdir"),
                       ((dir / "cfgdir").string() + ": is a folder, not a config file").c_str(), pw::InputError);
}

TEST_CASE("messages: network mistakes are found when the config is read, naming the file and the key") {
  const fs::path dir = pw::test::temp_dir("msg-train-network");
  struct Case {
    json network;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"featurez", {8, 16}}}, "network: unknown key 'featurez' (did you mean 'features'?)"},
      {{{"feature", {8, 16}}}, "network: unknown key 'feature' (did you mean 'features'?)"},
      {{{"features", 4}},
       "network.features: expected a list of 1 to 8 positive channel counts (one per U-Net level), got 4"},
      {{{"features", {8, 0}}},
       "network.features: expected a list of 1 to 8 positive channel counts (one per U-Net level), got [8,0]"},
      {{{"norm", "group"}}, "network.norm: 'group' is not one of none, instance, batch"},
      {{{"convs_per_block", "two"}}, "network.convs_per_block: expected an integer"},
      {{{"dims", 2}}, "network: 'dims' is set by the scheme, leave it out"},
      {{{"features", {4, 8, 16, 32, 64}}},
       "scheme.patch_size: level 0 sizes must be multiples of 16 for a U-Net with 5 levels (network.features)"},
  };
  const std::string bin = pw::test::patchwork_bin();
  int n = 0;
  for (const Case& c : cases) {
    json cfg = tiny_config();
    cfg["scheme"]["patch_size"] = {24, 24};
    cfg["network"] = c.network;
    const fs::path file = dir / ("cfg" + std::to_string(n++) + ".json");
    write_json(file, cfg);
    const std::string want = file.string() + ": " + c.message;
    CHECK_THROWS_WITH_AS(pw::train::TrainConfig::load(file), want.c_str(), pw::InputError);
    // The CLI: before any data (the dataset folder does not even exist), one line, exit 1.
    std::string out;
    const int rc = pw::test::run_command(bin + " train --config " + file.string() + " --dataset " +
                                             (dir / "no-such-dataset").string() + " --out " +
                                             (dir / "m.safetensors").string(),
                                         &out);
    INFO(out);
    CHECK(rc == 1);
    CHECK(out == "patchwork: " + want + "\n");
  }
  // Far from every known key: still an error, without a suggestion (only within 2 edits).
  json cfg = tiny_config();
  cfg["network"] = {{"featu", {4, 8}}};
  write_json(dir / "far.json", cfg);
  CHECK_THROWS_WITH_AS(pw::train::TrainConfig::load(dir / "far.json"),
                       ((dir / "far.json").string() + ": network: unknown key 'featu'").c_str(), pw::InputError);
  // A good network block passes.
  cfg["network"] = {{"features", {4, 8}}, {"norm", "batch"}, {"up", "nearest"}, {"type", "unet"}};
  write_json(dir / "good.json", cfg);
  CHECK_NOTHROW(pw::train::TrainConfig::load(dir / "good.json"));
}

TEST_CASE("messages: out_patch_size mistakes are found when the config is read, naming the key") {
  const fs::path dir = pw::test::temp_dir("msg-train-outpatch");
  struct Case {
    json patch, out, network;
    std::string message;
  };
  const json unet = {{"features", {4, 8}}}, valid = {{"features", {4, 8}}, {"padding", "valid"}};
  const std::vector<Case> cases = {
      {{24, 24}, {26, 24}, unet,
       "scheme.out_patch_size: level 0 axis 0 is 26 for patch_size 24; the output can only be smaller than the input "
       "(a central crop)"},
      {{24, 24}, {24, 21}, unet,
       "scheme.out_patch_size: level 0 axis 1 is 21 for patch_size 24; patch_size - out_patch_size must be even "
       "(a centred crop)"},
      {{24, 24}, {20, 20, 20}, unet, "scheme.out_patch_size: expected 2 integers per size, got [20,20,20]"},
      {{24, 24}, {{20, 20}}, unet, "scheme.out_patch_size: expected one size per level (2), got 1"},
      // valid convolutions: 24 -> 20 -> 10 -> 6 -> 12 -> 8 (two 3x3 convs per block, one down step)
      {{24, 24}, {24, 24}, valid,
       "scheme.out_patch_size: level 0 axis 0: 24, but the U-Net with valid convolutions (network.padding) turns "
       "patch_size 24 into 8"},
      {{23, 24}, {7, 8}, valid,
       "scheme.patch_size: level 0 axis 0: 23 voxels do not pass the U-Net with valid convolutions (network.padding; "
       "every down step needs an even size, every conv takes 2)"},
      {{24, 24}, {8, 8}, {{"padding", "full"}}, "network.padding: 'full' is not one of same, valid"},
  };
  const std::string bin = pw::test::patchwork_bin();
  int n = 0;
  for (const Case& c : cases) {
    json cfg = tiny_config();
    cfg["scheme"]["patch_size"] = c.patch;
    cfg["scheme"]["out_patch_size"] = c.out;
    cfg["network"] = c.network;
    const fs::path file = dir / ("cfg" + std::to_string(n++) + ".json");
    write_json(file, cfg);
    const std::string want = file.string() + ": " + c.message;
    CHECK_THROWS_WITH_AS(pw::train::TrainConfig::load(file), want.c_str(), pw::InputError);
    std::string out;  // the CLI: before any data, one line, exit 1
    const int rc = pw::test::run_command(bin + " train --config " + file.string() + " --dataset " +
                                             (dir / "no-such-dataset").string() + " --out " +
                                             (dir / "m.safetensors").string(),
                                         &out);
    CHECK(rc == 1);
    CHECK(out == "patchwork: " + want + "\n");
  }
  json cfg = tiny_config();  // sizes that fit pass
  cfg["scheme"]["patch_size"] = {24, 28};
  cfg["scheme"]["out_patch_size"] = {8, 12};  // 28 -> 24 -> 12 -> 8 -> 16 -> 12
  cfg["network"] = valid;
  write_json(dir / "good.json", cfg);
  CHECK(pw::train::TrainConfig::load(dir / "good.json").scheme.out_patch_size[1] == pw::train::Size3{8, 12, 1});
}

TEST_CASE("messages: train names an image whose sform holds NaN") {
  const fs::path dir = pw::test::temp_dir("msg-train-sform");
  write_phantoms(dir);
  pw::Volume v = pw::read_nifti(dir / "img1.nii.gz");
  v.srow[0][0] = std::numeric_limits<double>::quiet_NaN();
  pw::write_nifti(v, dir / "img1.nii.gz");
  write_json(dir / "cfg.json", tiny_config());
  std::string out;
  const int rc = pw::test::run_command(pw::test::patchwork_bin() + " train --config " + (dir / "cfg.json").string() +
                                           " --out " + (dir / "m.safetensors").string() + " --threads 2",
                                       &out);
  INFO(out);
  CHECK(rc == 1);
  CHECK(out.find((dir / "img1.nii.gz").string() + ": the sform (sform_code " + std::to_string(v.sform_code) +
                 ") holds a non-finite value: srow_x[0] = nan") != std::string::npos);
  CHECK(out.find("singular") == std::string::npos);
}

TEST_CASE("messages: after --resume the training log holds every iteration exactly once") {
  const fs::path dir = pw::test::temp_dir("msg-train-resume-log");
  write_phantoms(dir);
  const std::string bin = pw::test::patchwork_bin();
  const fs::path model = dir / "m.safetensors", log = dir / "m.safetensors.log.jsonl";
  auto train = [&](int num_its, bool resume) {
    json c = tiny_config();
    c["num_its"] = num_its;
    const fs::path cfg = dir / ("cfg" + std::to_string(num_its) + ".json");
    write_json(cfg, c);
    std::string out;
    const int rc = pw::test::run_command(bin + " train --config " + cfg.string() + " --out " + model.string() +
                                             " --threads 2 --seed 4" + (resume ? " --resume" : ""),
                                         &out);
    INFO(out);
    REQUIRE(rc == 0);
    return out;
  };
  auto check_log = [&](int num_its) {
    const LogIts r = read_log(log);
    std::string text;
    for (const auto& j : r.records) text += j.dump() + "\n";
    INFO("log:\n" << text);
    std::vector<int> want;
    for (int i = 1; i <= num_its; ++i) want.push_back(i);
    CHECK(r.its == want);  // strictly increasing, no duplicates, none missing
    CHECK(r.finals == std::vector<int>{num_its});
    CHECK(r.records.back().contains("final"));
    return r;
  };
  train(3, false);  // checkpoint at iteration 3 (the end)
  check_log(3);
  // A run that got further than its checkpoint before it stopped: iterations 4 and 5 logged, the checkpoint
  // still at 3, and a line cut short by the crash.
  {
    std::ofstream app(log, std::ios::app);
    app << json{{"it", 4}, {"stale", true}}.dump() << "\n" << json{{"it", 5}, {"stale", true}}.dump() << "\n"
        << "{\"it\": 6, \"ti";
  }
  std::string out = train(6, true);
  CHECK(out.find("resuming from") != std::string::npos);
  LogIts r = check_log(6);
  for (const auto& j : r.records) CHECK(!j.contains("stale"));  // the re-run iterations replaced them
  // A plain resume of a finished run, further.
  train(8, true);
  check_log(8);
  // The curves plot still reads the log.
  CHECK(fs::file_size(dir / "m.safetensors.curves.png") > 100);
}
