// Regressions for what the fuzz targets (tests/fuzz/fuzz_config.cpp, tests/fuzz/fuzz_model.cpp, run by
// scripts/fuzz.sh) found: each input reproduced through the normal API, refused with a pw::InputError
// instead of another exception type escaping, undefined behaviour or an absurd allocation.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "common/test_util.h"
#include "engine/safetensors.h"
#include "io/error.h"
#include "train/config.h"
#include "train/model.h"

using namespace pw;
using namespace pw::train;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path write_text(const fs::path& file, const std::string& text) {
  std::ofstream(file, std::ios::binary) << text;
  return file;
}

// A small valid model file (depth 2, 2D, a final block), then the same weights with the description
// changed by `edit`, as a corrupt file would carry it.
fs::path model_with(const fs::path& dir, const std::string& name, void (*edit)(json&)) {
  json cfg = {{"depth", 2},
              {"ndim", 2},
              {"scheme", {{"patch_size", {8, 8}}, {"fov_rel", 1}, {"destvox_rel", 1}}},
              {"categorical_label", {1}},
              {"categorical", true},
              {"final_block", {{"features", 2}, {"convs", 1}}},
              {"network", {{"features", {2, 2}}, {"convs_per_block", 1}}}};
  Model m(ModelSpec::from_config(TrainConfig::from_json(cfg), 1), 1);
  const fs::path good = dir / "good.safetensors";
  m.save(good);
  SafetensorsContent c = load_safetensors(good);
  json spec = json::parse(c.metadata.at("patchwork"));
  edit(spec);
  c.metadata["patchwork"] = spec.dump();
  const fs::path file = dir / name;
  save_safetensors(file, c.tensors, c.metadata);
  return file;
}

}  // namespace

TEST_CASE("fuzz regression: a config number beyond a double's range is a clear InputError") {
  // nlohmann throws out_of_range (406, number overflow), not parse_error: it escaped TrainConfig::load.
  auto dir = pw::test::temp_dir("fuzz_cfg");
  const fs::path f = write_text(dir / "big.json", R"({"depth": 1, "num_its": 7e0002049638230412172402})");
  CHECK_THROWS_WITH_AS(TrainConfig::load(f), doctest::Contains("not valid JSON"), InputError);
  write_text(f, "777777777700000000000000000e0002049638230412172402Q7777777");  // the fuzzer's input
  CHECK_THROWS_AS(TrainConfig::load(f), InputError);
}

TEST_CASE("fuzz regression: deeply nested JSON is refused instead of overflowing the stack") {
  // Parsing is iterative, but copying and printing (check_keys' message) recursed once per level.
  const int n = 1000000;
  const std::string deep = std::string(n, '[') + std::string(n, ']');
  auto dir = pw::test::temp_dir("fuzz_deep");
  CHECK_THROWS_WITH_AS(TrainConfig::load(write_text(dir / "deep.json", deep)), doctest::Contains("nested deeper"),
                       InputError);
  CHECK_THROWS_WITH_AS(TrainConfig::load(write_text(dir / "deep2.json", "{\"network\": " + deep + "}")),
                       doctest::Contains("nested deeper"), InputError);
  // The same in a model file's description (a string in the safetensors metadata, parsed by Model::load).
  fs::path f = model_with(dir, "m.safetensors", [](json&) {});
  SafetensorsContent c = load_safetensors(f);
  std::string& d = c.metadata.at("patchwork");
  const size_t at = d.find("\"training\":{}");
  REQUIRE(at != std::string::npos);
  d.replace(at, 13, "\"training\":" + deep);
  save_safetensors(f, c.tensors, c.metadata);
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains("nested deeper"), InputError);
}

TEST_CASE("fuzz regression: a model file's final_block of the wrong type is a clear InputError") {
  // Model() read it with json::value(), which threw nlohmann type_error out of Model::load.
  auto dir = pw::test::temp_dir("fuzz_model_final");
  fs::path f = model_with(dir, "a.safetensors", [](json& s) { s["final_block"] = {{"features", "x"}}; });
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains("final_block.features"), InputError);
  f = model_with(dir, "b.safetensors", [](json& s) { s["final_block"] = json::array({1}); });
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains("final_block"), InputError);
  f = model_with(dir, "c.safetensors", [](json& s) { s["final_block"] = {{"convs", -1}}; });
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains("final_block.convs"), InputError);
  f = model_with(dir, "d.safetensors", [](json& s) { s["final_block"] = {{"features", 2}, {"bogus", 1}}; });
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains("bogus"), InputError);
}

TEST_CASE("fuzz regression: a model description far larger than the file's weights is refused before allocating") {
  // Model::load built the blocks the description asked for before comparing them with the file: a
  // 7 GB allocation (in_channels 10^8), 10^8 modules (convs_per_block) or 10^12 weights (features).
  auto dir = pw::test::temp_dir("fuzz_model_size");
  const char* want = "needs at least";
  fs::path f = model_with(dir, "a.safetensors", [](json& s) { s["in_channels"] = 100000000; });
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains(want), InputError);
  f = model_with(dir, "b.safetensors", [](json& s) { s["network"]["convs_per_block"] = 100000000; });
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains(want), InputError);
  f = model_with(dir, "c.safetensors", [](json& s) { s["network"]["features"] = {1000000, 1000000}; });
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains(want), InputError);
  f = model_with(dir, "d.safetensors", [](json& s) { s["network"]["features"] = {1000000, 1}; });  // decoder
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains(want), InputError);
  f = model_with(dir, "e.safetensors", [](json& s) { s["final_block"] = {{"features", 2}, {"convs", 100000000}}; });
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains(want), InputError);
  // Channel counts that overflow an int in block_in_channels ("mult": in + in * crop + crop), or are < 1.
  f = model_with(dir, "f.safetensors", [](json& s) {
    s["forward_type"] = "mult";
    s["in_channels"] = 2000000000;
  });
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains("too many channels"), InputError);
  f = model_with(dir, "g.safetensors", [](json& s) { s["out_channels"] = {0, 2}; });
  CHECK_THROWS_WITH_AS(Model::load(f), doctest::Contains("out_channels"), InputError);
  // The unedited file (and an identical-blocks model, which stores one block) still loads.
  f = model_with(dir, "h.safetensors", [](json&) {});
  CHECK_NOTHROW(Model::load(f));
  json cfg = {{"depth", 3}, {"ndim", 3}, {"scheme", {{"patch_size", {4, 4, 4}}, {"fov_rel", 1}, {"destvox_rel", 1}}},
              {"categorical_label", {1}}, {"identical_blocks", true},
              {"network", {{"features", {1, 1}}, {"convs_per_block", 1}, {"up", "linear"}}}};
  Model m(ModelSpec::from_config(TrainConfig::from_json(cfg), 1), 1);
  m.save(dir / "ident.safetensors");
  CHECK_NOTHROW(Model::load(dir / "ident.safetensors"));
}

TEST_CASE("fuzz regression: an integer option beyond int's range is refused, not converted (UB)") {
  nlohmann::json j = {{"depth", 1e300}, {"ndim", 2}, {"scheme", {{"patch_size", {16, 16}}}}};
  CHECK_THROWS_WITH_AS(pw::train::TrainConfig::from_json(j), doctest::Contains("out of range"), pw::InputError);
  j["depth"] = 4294967296LL;
  CHECK_THROWS_WITH_AS(pw::train::TrainConfig::from_json(j), doctest::Contains("out of range"), pw::InputError);
}
