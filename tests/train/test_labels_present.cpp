// A label that occurs in no training case is refused before training, naming it.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "apply/demo.h"
#include "common/test_util.h"
#include "io/error.h"
#include "train/phantom.h"
#include "train/trainer.h"

using namespace pw;
using nlohmann::json;

TEST_CASE("training: a categorical_label value found in no training case is refused, naming it") {
  json j = {{"depth", 1},
            {"ndim", 2},
            {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 1.0}, {"destvox_rel", 1}}},
            {"categorical_label", {1, 7}},
            {"categorical", true},
            {"network", {{"features", {4}}}},
            {"num_its", 1},
            {"num_patches", 2},
            {"batch_size", 2}};
  train::TrainConfig cfg = train::TrainConfig::from_json(j);
  PhantomOptions po;
  po.dims = {32, 32, 1};
  po.num_labels = 2;  // labels 1 and 2: no 7
  std::vector<train::Subject> tr, va;
  for (int i = 0; i < 2; ++i) {
    po.seed = 30 + i;
    tr.push_back(apply::phantom_subject("p" + std::to_string(i), make_phantom(po), cfg.scheme));
  }
  train::TrainOptions to;
  to.out = test::temp_dir("labels-present") / "model.safetensors";
  to.quiet = true;
  train::Trainer trainer(cfg, to);
  try {
    trainer.run(tr, va);
    FAIL("training with an absent label did not fail");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()) == "label 7 occurs in none of the 2 training cases (check categorical_label and the label files)");
  }
  CHECK(!std::filesystem::exists(to.out));
}
