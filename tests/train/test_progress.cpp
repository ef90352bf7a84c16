// The training progress line of a time-limited run counts time, not a num_its it will never reach.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <sstream>

#include "apply/demo.h"
#include "common/test_util.h"
#include "train/phantom.h"
#include "train/trainer.h"

using namespace pw;
using nlohmann::json;

TEST_CASE("training progress: a run ended by time_limit_s shows elapsed and remaining time") {
  json j = {{"depth", 1},
            {"ndim", 2},
            {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 1.0}, {"destvox_rel", 1}}},
            {"network", {{"features", {4}}}},
            {"num_its", 100000},
            {"time_limit_s", 2},
            {"num_patches", 2},
            {"batch_size", 2}};
  train::TrainConfig cfg = train::TrainConfig::from_json(j);
  PhantomOptions po;
  po.dims = {32, 32, 1};
  po.num_labels = 1;
  std::vector<train::Subject> tr, va;
  tr.push_back(apply::phantom_subject("p0", make_phantom(po), cfg.scheme));
  train::TrainOptions to;
  to.out = test::temp_dir("progress") / "model.safetensors";
  to.log_every = 1;
  std::ostringstream err;
  std::streambuf* old = std::cerr.rdbuf(err.rdbuf());
  train::TrainResult r = train::Trainer(cfg, to).run(tr, va);
  std::cerr.rdbuf(old);
  const std::string out = err.str();
  INFO(out);
  CHECK(r.iterations > 1);
  CHECK(out.find("/100000") == std::string::npos);
  CHECK(out.find(" of 0m02s, ") != std::string::npos);
  CHECK(out.find(" left") != std::string::npos);
}
