// The training loop: hard mining, phantoms learned to Dice >= 0.9, determinism, resume, config errors.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <random>

#include "apply/demo.h"
#include "apply/model_network.h"
#include "train/phantom.h"
#include "common/test_util.h"
#include "engine/safetensors.h"
#include "io/error.h"
#include "train/trainer.h"

using namespace pw;
using namespace pw::train;
using nlohmann::json;

namespace {

Subject phantom_subject(const Scheme& sc, std::array<int64_t, 3> dims, int labels, uint64_t seed) {
  PhantomOptions o;
  o.dims = dims;
  o.spacing_mm = {1.0, 1.0, 1.0};
  o.num_labels = labels;
  o.seed = seed;
  o.noise = 0.05;
  return apply::phantom_subject("phantom" + std::to_string(seed), make_phantom(o), sc);
}

Predictor tree_predictor() { return apply::validation_predictor(); }

// The 2D phantom task: 4 training and 1 validation 64x64 phantoms, one label, depth 2, 32x32 patches.
json phantom_2d_config() {
  return {{"depth", 2},
          {"ndim", 2},
          {"scheme", {{"patch_size", {32, 32}}, {"fov_rel", 0.9}, {"destvox_rel", 1}}},
          {"categorical_label", {1}},
          {"categorical", false},
          {"normalize_input", "m0s1"},
          {"network", {{"features", {8, 16}}}},
          {"intermediate_out", 2},
          {"intermediate_loss", true},
          {"loss", "bce+dice"},
          {"num_its", 25},
          {"num_patches", 8},
          {"batch_size", 8},
          {"balance", {{"ratio", 0.5}}},
          {"augment", {{"dphi", 0.1}}},
          {"optimizer", {{"type", "adam"}, {"lr", 3e-3}}},
          {"parallel", true},
          {"seed", 3}};
}

// Trains `cfg` on the 2D phantom task into `opt.out` = temp dir `dir`/m.safetensors (validated by the tree predictor).
TrainResult train_2d_phantom(const TrainConfig& cfg, const std::string& dir, TrainOptions& opt) {
  std::vector<Subject> train, val;
  for (int i = 0; i < 4; ++i) train.push_back(phantom_subject(cfg.scheme, {64, 64, 1}, 1, 10 + i));
  val.push_back(phantom_subject(cfg.scheme, {64, 64, 1}, 1, 99));
  opt.out = pw::test::temp_dir(dir) / "m.safetensors";
  opt.quiet = true;
  Trainer tr(cfg, opt);
  tr.set_predictor(tree_predictor());
  return tr.run(train, val);
}

std::vector<json> read_log(const std::filesystem::path& f) {
  std::vector<json> out;
  std::ifstream in(f);
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

}  // namespace

TEST_CASE("trainer: hard mining keeps the hardest chains and ages them out") {
  ChainScores s;
  s.loss = {0.1f, 0.9f, 0.5f, 0.8f, 0.2f};
  s.f1 = {0.9f, 0.1f, 0.5f, 0.0f, 0.95f};
  s.present = {{1, 0}, {1, 0}, {1, 1}, {1, 0}, {0, 0}};
  std::vector<int> age = {0, 0, 0, 0, 0};
  CHECK(hard_mining_select(s, age, 0.4, 3, HardOrder::loss) == std::vector<int64_t>{1, 3});
  CHECK(hard_mining_select(s, age, 0.4, 3, HardOrder::f1) == std::vector<int64_t>{1, 3});
  CHECK(hard_mining_select(s, age, 0.2, 3, HardOrder::balance) == std::vector<int64_t>{2});  // the only label-2 chain
  age[3] = 3;  // too old: replaced by the next hardest
  CHECK(hard_mining_select(s, age, 0.4, 3, HardOrder::loss) == std::vector<int64_t>{1, 2});
  CHECK(hard_mining_select(s, age, 0.1, 3, HardOrder::loss).empty());  // floor(0.5) = 0
}

TEST_CASE("trainer: chain scores and Dice") {
  Scheme sc = Scheme::from_json({{"depth", 1},
                                 {"ndim", 2},
                                 {"scheme", {{"patch_size", {2, 1}}, {"fov_rel", 1}, {"destvox_rel", 1}}},
                                 {"categorical_label", {1}},
                                 {"categorical", true}});
  // two chains of 2 voxels, logits for classes 0/1
  Tensor X = Tensor::from_vector({2, 2, 1, 2}, {5, -5, -5, 5, /**/ 5, 5, -5, -5});
  Tensor t = Tensor::from_vector({2, 1, 2}, {0, 0, 0, 0});
  Tensor ti = Tensor::empty({2, 1, 2}, DType::i32);
  int32_t tv[4] = {0, 1, 1, 1};
  for (int i = 0; i < 4; ++i) ti.i32()[i] = tv[i];
  ChainScores cs = chain_scores(X, ti, sc);
  CHECK(cs.f1[0] == doctest::Approx(1.0));  // predicts class 0 then 1, as labelled
  CHECK(cs.f1[1] == doctest::Approx(0.0));  // predicts 0 where 1 is labelled
  CHECK(cs.loss[1] > cs.loss[0]);
  CHECK(cs.present[1][0] == 1);

  Patch img;
  img.s = {4, 1, 1};
  Subject s = make_subject("d", img, Tensor::zeros({1, 1, 1, 4}), Tensor::from_vector({4}, {0, 1, 1, 0}), sc, false);
  Tensor prob = Tensor::from_vector({1, 1, 1, 4}, {0.2f, 0.9f, 0.45f, 0.6f});
  auto d = dice_per_label(prob, s, {0.5});
  CHECK(d[0] == doctest::Approx(2.0 * 1 / (2 + 2)));
  d = dice_per_label(prob, s, {0.4});
  CHECK(d[0] == doctest::Approx(2.0 * 2 / (3 + 2)));
}

// The probabilities of box lo/size of a dense [K, z, y, x] volume, contiguous (as a Predictor hands them).
static std::vector<float> box_of(const Tensor& prob, const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& size) {
  const int64_t K = prob.dim(0), Z = prob.dim(1), Y = prob.dim(2), X = prob.dim(3);
  std::vector<float> b;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t z = 0; z < size[0]; ++z)
      for (int64_t y = 0; y < size[1]; ++y)
        for (int64_t x = 0; x < size[2]; ++x)
          b.push_back(prob.f32()[((k * Z + lo[0] + z) * Y + lo[1] + y) * X + lo[2] + x]);
  return b;
}

TEST_CASE("trainer: Dice tallied box by box equals Dice of the whole volume, for several thresholds at once") {
  for (bool cat : {true, false}) {
    CAPTURE(cat);
    Scheme sc = Scheme::from_json({{"depth", 1},
                                   {"ndim", 3},
                                   {"scheme", {{"patch_size", {2, 2, 2}}, {"fov_rel", 1}, {"destvox_rel", 1}}},
                                   {"categorical_label", {1, 2, 3}},
                                   {"categorical", cat}});
    Patch img;
    img.s = {5, 4, 3};  // x, y, z
    const int64_t n = 60;
    std::mt19937_64 rng(7);
    std::vector<float> raw(n), pv(3 * n);
    for (auto& v : raw) v = static_cast<float>(static_cast<int>(rng() % 5) - 1);  // -1 (don't care) .. 3
    for (auto& v : pv) v = static_cast<float>(rng() % 1000) / 1000.f;
    Subject s = make_subject("d", img, Tensor::zeros({1, 3, 4, 5}), Tensor::from_vector({n}, raw), sc, true);
    Tensor prob = Tensor::from_vector({3, 3, 4, 5}, pv);
    const std::vector<std::vector<double>> t{{0.5, 0.5, 0.5}, {0.3, 0.6, 0.7}};
    DiceTally tally(s, t);
    for (auto [lo, size] : std::vector<std::pair<std::array<int64_t, 3>, std::array<int64_t, 3>>>{
             {{0, 0, 0}, {1, 4, 5}}, {{1, 0, 0}, {2, 2, 5}}, {{1, 2, 0}, {2, 2, 2}}, {{1, 2, 2}, {2, 2, 3}}}) {
      std::vector<float> b = box_of(prob, lo, size);
      tally.add(lo, size, b.data());
    }
    for (int g = 0; g < 2; ++g) {
      const std::vector<double> whole = dice_per_label(prob, s, t[g]), boxes = tally.dice(g);
      for (int k = 0; k < 3; ++k) {
        CAPTURE(g);
        CAPTURE(k);
        CHECK(std::isfinite(whole[k]));
        CHECK(boxes[k] == doctest::Approx(whole[k]));
      }
    }
    CHECK(tally.dice(0) != tally.dice(1));  // the thresholds matter
  }
}

TEST_CASE("trainer: the validation predictor streams what predict_subject gives whole") {
  TrainConfig cfg = TrainConfig::from_json(phantom_2d_config());
  Model m(ModelSpec::from_config(cfg, 1), 3);
  m.set_training(false);
  Subject s = phantom_subject(cfg.scheme, {64, 64, 1}, 1, 11);
  const Tensor whole = apply::predict_subject(m, s);
  Tensor got = Tensor::zeros(whole.shape());
  int64_t boxes = 0, voxels = 0;
  const int64_t n = s.image.numel();
  apply::validation_predictor()(m, s, [&](const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& size,
                                          const float* p) {
    ++boxes;
    const int64_t bn = size[0] * size[1] * size[2];
    voxels += bn;
    for (int64_t y = 0; y < size[1]; ++y)
      for (int64_t x = 0; x < size[2]; ++x)
        got.f32()[(lo[1] + y) * s.image.s[0] + lo[2] + x] = p[y * size[2] + x];
  });
  CHECK(boxes > 1);
  CHECK(voxels == n);
  for (int64_t v = 0; v < n; ++v) REQUIRE(got.f32()[v] == whole.f32()[v]);
}

TEST_CASE("trainer: a config with a typo is refused, naming the key") {
  json j = {{"depth", 2},
            {"ndim", 2},
            {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 1}, {"destvox_rel", 1}}},
            {"num_patchs", 4}};
  try {
    TrainConfig::from_json(j);
    FAIL("accepted");
  } catch (const InputError& e) {
    std::string m = e.what();
    CHECK(m.find("'num_patchs'") != std::string::npos);
    CHECK(m.find("did you mean 'num_patches'") != std::string::npos);
  }
  j.erase("num_patchs");
  j["balance"] = {{"ratoi", 0.5}};
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("balance: unknown key 'ratoi'"), InputError);
  j.erase("balance");
  j["augment"] = {{"dphi", 0.1}, {"flips", {1, 0}}};
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("did you mean 'flip'"), InputError);
  j.erase("augment");
  j["loss"] = "ce";  // needs categorical
  CHECK_THROWS_AS(TrainConfig::from_json(j), InputError);
  j["loss"] = "bce+dice";
  CHECK(TrainConfig::from_json(j).loss.size() == 2);
}

TEST_CASE("trainer: a 2D phantom is learned to Dice >= 0.9, every level trains") {
  auto t0 = std::chrono::steady_clock::now();
  TrainConfig cfg = TrainConfig::from_json(phantom_2d_config());
  TrainOptions opt;
  TrainResult r = train_2d_phantom(cfg, "train2d", opt);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("2D phantom: Dice " << r.validation_dice[0] << " threshold " << r.thresholds[0] << " in " << secs << " s");
  REQUIRE(r.validation_dice.size() == 1);
  CHECK(r.validation_dice[0] >= 0.9);
  // every level's loss went down (intermediate loss)
  auto log = read_log(opt.out.string() + ".log.jsonl");
  REQUIRE(log.size() >= 26);
  for (int k = 0; k < 2; ++k) {
    double first = (log[0]["loss"][k].get<double>() + log[1]["loss"][k].get<double>()) / 2;
    double last = (log[23]["loss"][k].get<double>() + log[24]["loss"][k].get<double>()) / 2;
    CHECK(last < 0.7 * first);  // level 0 (bce+dice at the coarse level) plateaus near 0.62
  }
  CHECK(log.back()["final"] == true);
  // the model file holds the thresholds and loads
  Model m = Model::load(opt.out);
  CHECK(m.spec().thresholds == r.thresholds);
  CHECK(m.spec().training["validation_dice"][0].get<double>() == doctest::Approx(r.validation_dice[0]));
}

TEST_CASE("trainer: a 2D phantom is learned to Dice >= 0.9 with out_patch_size < patch_size") {
  for (bool valid : {true, false}) {
    CAPTURE(valid);
    auto t0 = std::chrono::steady_clock::now();
    // valid convolutions: 32 -> 28 -> 14 -> 10 -> 20 -> 16 at both levels; else the central crop of the padded U-Net
    json j = phantom_2d_config();
    j["scheme"]["out_patch_size"] = valid ? json{16, 16} : json{{24, 24}, {20, 16}};
    if (valid) j["network"]["padding"] = "valid";
    TrainConfig cfg = TrainConfig::from_json(j);
    TrainOptions opt;
    TrainResult r = train_2d_phantom(cfg, valid ? "train2d_valid" : "train2d_crop", opt);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("2D phantom, " << std::string(valid ? "valid convolutions" : "central crop") << ": Dice " << r.validation_dice[0]
                           << " in " << secs << " s");
    REQUIRE(r.validation_dice.size() == 1);
    CHECK(r.validation_dice[0] >= 0.9);
    Model m = Model::load(opt.out);  // the file keeps the output sizes
    CHECK(m.spec().scheme.out_patch_size == cfg.scheme.out_patch_size);
    const Size3& so = cfg.scheme.out_patch_size[1];
    const Tensor y = m.forward(1, Tensor::zeros({3, 1, 32, 32}), Tensor::zeros({3, 3, 32, 32}));
    CHECK(y.shape() == Shape{3, 1, so[1], so[0]});
  }
}

// 50 iterations: with 30 the second class's Dice spread over seeds 1-10 from 0 (one seed) to 0.95, and a
// change in the last bits of exp moved seed 5 from 0.945 to 0.896; with 50 it was 0.922-0.980 for all ten.
TEST_CASE("trainer: a 3D phantom is learned to Dice >= 0.9") {
  auto t0 = std::chrono::steady_clock::now();
  json j = {{"depth", 2},
            {"ndim", 3},
            {"scheme", {{"patch_size", {16, 16, 16}}, {"fov_rel", 0.9}, {"destvox_rel", 1}}},
            {"categorical_label", {1, 2}},
            {"categorical", true},
            {"normalize_input", "m0s1"},
            {"network", {{"features", {8, 16}}}},
            {"intermediate_out", 2},
            {"loss", "ce+dice"},
            {"num_its", 50},
            {"num_patches", 4},
            {"batch_size", 8},
            {"balance", {{"ratio", 0.6}, {"autoweight", true}}},
            {"optimizer", {{"type", "adamw"}, {"lr", 3e-3}, {"weight_decay", 1e-4}}},
            {"hard_mining", 0.25},
            {"hard_mining_maxage", 2},
            {"seed", 5}};
  TrainConfig cfg = TrainConfig::from_json(j);
  std::vector<Subject> train, val;
  for (int i = 0; i < 8; ++i) train.push_back(phantom_subject(cfg.scheme, {32, 32, 32}, 2, 20 + i));
  val.push_back(phantom_subject(cfg.scheme, {32, 32, 32}, 2, 98));
  TrainOptions opt;
  opt.out = pw::test::temp_dir("train3d") / "m.safetensors";
  opt.quiet = true;
  Trainer tr(cfg, opt);
  tr.set_predictor(tree_predictor());
  TrainResult r = tr.run(train, val);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("3D phantom: Dice " << r.validation_dice[0] << " / " << r.validation_dice[1] << " in " << secs << " s");
  REQUIRE(r.validation_dice.size() == 2);
  CHECK(r.validation_dice[0] >= 0.9);
  CHECK(r.validation_dice[1] >= 0.9);
  // hard mining: sets grow by the kept chains (32 fresh + 8 kept)
  auto log = read_log(opt.out.string() + ".log.jsonl");
  CHECK(log[0]["patches"] == 32);
  CHECK(log[1]["patches"] == 40);
}

TEST_CASE("trainer: a fixed seed gives identical models; resume continues exactly") {
  json j = {{"depth", 2},
            {"ndim", 2},
            {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 0.8}, {"destvox_rel", 1}}},
            {"categorical_label", {1}},
            {"categorical", true},
            {"network", {{"features", {4, 8}}}},
            {"num_its", 4},
            {"num_patches", 4},
            {"batch_size", 4},
            {"augment", {{"dphi", 0.2}, {"flip", {1, 0}}}},
            {"balance", {{"ratio", 0.5}}},
            {"hard_mining", 0.5},
            {"validation_every", 2},
            {"seed", 11}};
  TrainConfig cfg = TrainConfig::from_json(j);
  std::vector<Subject> train, val;
  for (int i = 0; i < 2; ++i) train.push_back(phantom_subject(cfg.scheme, {40, 40, 1}, 1, 30 + i));
  auto dir = pw::test::temp_dir("train_seed");
  auto run = [&](const std::string& name, int its, bool resume) {
    TrainConfig c = cfg;
    c.num_its = its;
    TrainOptions o;
    o.out = dir / name;
    o.quiet = true;
    o.resume = resume;
    Trainer t(c, o);
    t.run(train, val);
    return load_safetensors(o.out).tensors;
  };
  auto a = run("a.safetensors", 4, false);
  auto b = run("b.safetensors", 4, false);
  REQUIRE(a.size() == b.size());
  for (const auto& kv : a) CHECK(kv.second.to_vector() == b.at(kv.first).to_vector());
  // 2 iterations, then resume to 4 from the checkpoint
  run("c.safetensors", 2, false);
  auto c = run("c.safetensors", 4, true);
  for (const auto& kv : a) CHECK(kv.second.to_vector() == c.at(kv.first).to_vector());
  // SGD with momentum resumes exactly too (its momentum buffers are in the checkpoint)
  cfg = TrainConfig::from_json([&] {
    json js = j;
    js["optimizer"] = {{"type", "sgd"}, {"lr", 0.05}, {"momentum", 0.9}};
    return js;
  }());
  auto d = run("d.safetensors", 4, false);
  run("e.safetensors", 2, false);
  auto e = run("e.safetensors", 4, true);
  bool moved = false;
  for (const auto& kv : d) {
    CHECK(kv.second.to_vector() == e.at(kv.first).to_vector());
    moved |= kv.second.to_vector() != a.at(kv.first).to_vector();
  }
  CHECK(moved);  // really another optimizer
}

TEST_CASE("trainer: optimizer.schedule_over time needs a time limit and a poly or constant schedule") {
  json j = {{"depth", 2},
            {"ndim", 2},
            {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 1}, {"destvox_rel", 1}}},
            {"optimizer", {{"schedule", "poly"}, {"schedule_over", "time"}}}};
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("needs time_limit_s > 0"), InputError);
  j["time_limit_s"] = 60;
  CHECK(TrainConfig::from_json(j).schedule_over_time);
  j["optimizer"]["schedule"] = "step";
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("not step"), InputError);
  j["optimizer"]["schedule"] = "poly";
  j["optimizer"]["schedule_over"] = "epochs";
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("expected \"iterations\" or \"time\""),
                       InputError);
}

TEST_CASE("trainer: on_iteration sees each log line; returning false ends the run with that iteration's model") {
  json j = {{"depth", 2},
            {"ndim", 2},
            {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 0.8}, {"destvox_rel", 1}}},
            {"categorical_label", {1}},
            {"categorical", true},
            {"network", {{"features", {4, 8}}}},
            {"num_patches", 4},
            {"batch_size", 4},
            {"seed", 5}};
  TrainConfig cfg = TrainConfig::from_json(j);
  std::vector<Subject> train, val;
  for (int i = 0; i < 2; ++i) train.push_back(phantom_subject(cfg.scheme, {40, 40, 1}, 1, 60 + i));
  auto dir = pw::test::temp_dir("train_on_iteration");
  std::vector<std::string> lines;
  auto run = [&](const std::string& name, int its, bool stop_after_2) {
    TrainConfig c = cfg;
    c.num_its = its;
    TrainOptions o;
    o.out = dir / name;
    o.quiet = true;
    if (stop_after_2)
      o.on_iteration = [&](const std::string& line) {
        lines.push_back(line);
        return json::parse(line)["it"].get<int>() < 2;
      };
    Trainer t(c, o);
    CHECK(t.run(train, val).iterations == 2);
    return load_safetensors(o.out).tensors;
  };
  auto stopped = run("stopped.safetensors", 50, true);
  auto two = run("two.safetensors", 2, false);
  REQUIRE(lines.size() == 2);
  const std::vector<json> log = read_log(dir / "stopped.safetensors.log.jsonl");
  CHECK(json::parse(lines[0]) == log[0]);
  CHECK(json::parse(lines[1]) == log[1]);
  for (const auto& kv : two) CHECK(kv.second.to_vector() == stopped.at(kv.first).to_vector());
}
