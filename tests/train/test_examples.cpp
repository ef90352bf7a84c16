// The shipped example configs load (every key known, network sizes fit), without their datasets.
#include <doctest/doctest.h>

#include <filesystem>

#include "common/test_util.h"
#include "train/config.h"
#include "train/model.h"

using namespace pw;
using namespace pw::train;
namespace fs = std::filesystem;

TEST_CASE("examples: every config in examples/ loads and builds its model") {
  const fs::path dir = test::test_data_dir().parent_path().parent_path() / "examples";
  REQUIRE(fs::is_directory(dir));
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    CAPTURE(e.path().string());
    const TrainConfig c = TrainConfig::load(e.path());
    CHECK(!c.dataset.root.empty());
    Model m(ModelSpec::from_config(c, 1), 1);
    CHECK(!m.parameters().empty());
    ++n;
  }
  CHECK(n >= 2);
}

TEST_CASE("examples: hippocampus-toolbox.json is the toolbox's setup") {
  const TrainConfig c =
      TrainConfig::load(test::test_data_dir().parent_path().parent_path() / "examples" / "hippocampus-toolbox.json");
  CHECK(c.scheme.depth == 3);
  CHECK(c.forward_type == ForwardType::bridge);
  CHECK(c.loss == std::vector<LossKind>(3, LossKind::bce));
  CHECK(c.intermediate_loss);
  CHECK(c.lazy_eval.fraction == 0.5);
  CHECK(c.balance.autoweight);
  CHECK(c.epochs == 5);
  CHECK(c.batch_size == 32);
}
