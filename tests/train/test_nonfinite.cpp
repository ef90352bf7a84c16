// NaN and infinity never flow silently from training to a model file: the finiteness check, a
// diverging learning rate stopped with one message (iteration, level), no model file written, the
// last good checkpoint kept, and model files with non-finite weights refused on save and on load.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "apply/demo.h"
#include "apply/model_network.h"
#include "cli_fixture.h"
#include "common/test_util.h"
#include "engine/safetensors.h"
#include "io/error.h"
#include "train/phantom.h"
#include "train/trainer.h"

using namespace pw;
using namespace pw::train;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

Subject phantom(const Scheme& sc, uint64_t seed) {
  PhantomOptions o;
  o.dims = {40, 40, 1};
  o.spacing_mm = {1.0, 1.0, 1.0};
  o.num_labels = 1;
  o.seed = seed;
  o.noise = 0.05;
  return apply::phantom_subject("phantom" + std::to_string(seed), make_phantom(o), sc);
}

json tiny(double lr, int its) {
  return {{"depth", 2},
          {"ndim", 2},
          {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 0.8}, {"destvox_rel", 1}}},
          {"categorical_label", {1}},
          {"categorical", true},
          {"network", {{"features", {4, 8}}}},
          {"num_its", its},
          {"num_patches", 4},
          {"batch_size", 4},
          {"validation_every", 1},
          {"optimizer", {{"type", "sgd"}, {"lr", lr}}},
          {"seed", 7}};
}

std::string bytes_of(const fs::path& f) {
  std::ifstream in(f, std::ios::binary);
  std::ostringstream o;
  o << in.rdbuf();
  return o.str();
}

// Runs the trainer; returns the error message ("" when it finished).
std::string train_error(const json& j, const fs::path& out, bool resume, std::vector<Subject>& subjects) {
  TrainOptions o;
  o.out = out;
  o.quiet = true;
  o.resume = resume;
  Trainer t(TrainConfig::from_json(j), o);
  std::vector<Subject> val;
  try {
    t.run(subjects, val);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("nonfinite: all_finite finds NaN, +inf and -inf (inf and -inf together too); huge values pass") {
  std::vector<Device> devices{Device::cpu};
  if (cuda_available()) devices.push_back(Device::cuda);
  for (Device d : devices) {
    INFO(device_name(d));
    Tensor ok = Tensor::from_vector({5}, {1.f, -2.f, 3e38f, -3e38f, 0.f}).to(d);  // sum(ok) would overflow
    CHECK(all_finite(ok));
    for (std::vector<float> bad : {std::vector<float>{1.f, kNaN, 2.f}, {kInf, 1.f, 2.f}, {1.f, 2.f, -kInf},
                                   {kInf, -kInf, 1.f}}) {
      Tensor t = Tensor::from_vector({3}, bad).to(d);
      CHECK_FALSE(all_finite(t));
      CHECK_FALSE(all_finite({ok, t}));  // one check over several tensors
    }
    FiniteCheck c;  // accumulates, one download in ok()
    c.add(ok);
    c.add(Tensor::full({1000}, 1.f, d));
    CHECK(c.ok());
    c.add(Tensor::from_vector({2}, {0.f, kNaN}).to(d));
    CHECK_FALSE(c.ok());
    CHECK_FALSE(c.ok());  // stays failed
    CHECK(all_finite(Tensor::zeros({3}, DType::i32)));  // integers are always finite
    CHECK(all_finite(Tensor()));
  }
}

TEST_CASE("nonfinite: a diverging learning rate stops training with one message; no model, the checkpoint kept") {
  Scheme sc = TrainConfig::from_json(tiny(0.05, 2)).scheme;
  std::vector<Subject> subjects;
  for (int i = 0; i < 2; ++i) subjects.push_back(phantom(sc, 40 + i));
  const fs::path dir = pw::test::temp_dir("train_diverge");

  // From scratch: stops at the first non-finite loss or gradient; no model file.
  const fs::path fresh = dir / "fresh.safetensors";
  std::string err = train_error(tiny(1e6, 10), fresh, false, subjects);
  MESSAGE("diverged from scratch: " << err);
  CHECK(err.rfind("training diverged at iteration ", 0) == 0);
  CHECK(err.find("(lower the learning rate)") != std::string::npos);
  CHECK(err.find('\n') == std::string::npos);
  CHECK_FALSE(fs::exists(fresh));
  if (fs::exists(fresh.string() + ".ckpt")) CHECK_NOTHROW(Model::load(fresh.string() + ".ckpt"));  // only good ones

  // With validation cases (the application path runs every iteration) the message is the same kind.
  {
    TrainOptions o;
    o.out = dir / "val.safetensors";
    o.quiet = true;
    Trainer t(TrainConfig::from_json(tiny(1e6, 10)), o);
    t.set_predictor(apply::validation_predictor());
    std::vector<Subject> val{phantom(sc, 49)};
    std::string e;
    try {
      t.run(subjects, val);
    } catch (const InputError& x) {
      e = x.what();
    }
    MESSAGE("diverged with validation: " << e);
    CHECK(e.rfind("training diverged at iteration ", 0) == 0);
    CHECK_FALSE(fs::exists(o.out));
  }

  // A good start (2 iterations: model file and checkpoint), then --resume with the diverging rate.
  const fs::path out = dir / "m.safetensors";
  const fs::path ckpt = out.string() + ".ckpt";
  REQUIRE(train_error(tiny(0.05, 2), out, false, subjects).empty());
  REQUIRE(fs::exists(out));
  REQUIRE(fs::exists(ckpt));
  const std::string model_before = bytes_of(out), ckpt_before = bytes_of(ckpt);
  err = train_error(tiny(1e6, 10), out, true, subjects);
  MESSAGE("diverged after resuming: " << err);
  REQUIRE(err.rfind("training diverged at iteration ", 0) == 0);
  const int at = std::stoi(err.substr(std::string("training diverged at iteration ").size()));
  CHECK(at >= 3);  // after the resumed iteration 2
  CHECK(bytes_of(out) == model_before);  // the model file is neither replaced nor rewritten
  // The checkpoint is the last good one: untouched when iteration 3 diverged, else one of a later
  // iteration before the divergence; always finite (Model::load refuses anything else).
  if (at == 3) CHECK(bytes_of(ckpt) == ckpt_before);
  std::map<std::string, std::string> meta;
  CHECK_NOTHROW(Model::load(ckpt, Device::cpu, nullptr, &meta));
  CHECK(std::stoi(meta.at("iteration")) == at - 1);
}

TEST_CASE("nonfinite: a NaN loss at level 1 is named: iteration and level") {
  // Hard mining carries chains in the checkpoint; a NaN put into a kept chain's level-1 input makes
  // the level-1 loss of the first resumed iteration NaN while level 0 stays finite.
  json j = tiny(0.05, 1);
  j["hard_mining"] = 0.5;
  Scheme sc = TrainConfig::from_json(j).scheme;
  std::vector<Subject> subjects;
  for (int i = 0; i < 2; ++i) subjects.push_back(phantom(sc, 40 + i));
  const fs::path dir = pw::test::temp_dir("train_nan_level");
  const fs::path out = dir / "m.safetensors", ckpt = out.string() + ".ckpt";
  REQUIRE(train_error(j, out, false, subjects).empty());
  SafetensorsContent c = load_safetensors(ckpt);
  REQUIRE(c.tensors.count("kept.level1.input"));
  Tensor& in1 = c.tensors.at("kept.level1.input");
  in1 = in1.clone();
  in1.f32()[0] = kNaN;
  save_safetensors(ckpt, c.tensors, c.metadata);
  const std::string model_before = bytes_of(out), ckpt_before = bytes_of(ckpt);
  j["num_its"] = 3;
  std::string err = train_error(j, out, true, subjects);
  MESSAGE(err);
  CHECK(err == "training diverged at iteration 2: level 1 loss is NaN (lower the learning rate)");
  CHECK(bytes_of(out) == model_before);
  CHECK(bytes_of(ckpt) == ckpt_before);
}

TEST_CASE("nonfinite: NaN outputs in validation (the application path) stop training the same way") {
  Scheme sc = TrainConfig::from_json(tiny(0.05, 3)).scheme;
  std::vector<Subject> subjects{phantom(sc, 40), phantom(sc, 41)}, val{phantom(sc, 49)};
  const fs::path dir = pw::test::temp_dir("train_nan_validation");
  TrainOptions o;
  o.out = dir / "m.safetensors";
  o.quiet = true;
  Trainer t(TrainConfig::from_json(tiny(0.05, 3)), o);
  int calls = 0;
  t.set_predictor([&](Model& m, Subject& s, const ProbBox& out) {
    if (++calls == 2) throw InputError("level 1 of the network produced NaN or infinite outputs (stand-in)");
    apply::validation_predictor()(m, s, out);
  });
  CHECK_THROWS_WITH_AS(t.run(subjects, val),
                       "training diverged at iteration 2: validation case phantom49: level 1 of the network produced "
                       "NaN or infinite outputs (stand-in) (lower the learning rate)",
                       InputError);
  CHECK_FALSE(fs::exists(o.out));
  std::map<std::string, std::string> meta;
  CHECK_NOTHROW(Model::load(o.out.string() + ".ckpt", Device::cpu, nullptr, &meta));
  CHECK(meta.at("iteration") == "1");
}

TEST_CASE("nonfinite: Model::save and Model::load refuse non-finite weights, naming the tensor") {
  TrainConfig cfg = TrainConfig::from_json(tiny(0.05, 1));
  Model m(ModelSpec::from_config(cfg, 1), 1);
  CHECK(m.non_finite_weight().empty());
  const fs::path dir = pw::test::temp_dir("model_nonfinite");
  m.save(dir / "good.safetensors");
  std::map<std::string, Tensor> st = m.state();
  std::string name;
  for (const auto& kv : st)
    if (kv.first.rfind("level1.", 0) == 0 && kv.second.dtype() == DType::f32) name = kv.first;
  REQUIRE(!name.empty());
  for (float bad : {kNaN, kInf, -kInf}) {
    CAPTURE(bad);
    std::map<std::string, Tensor> s2 = st;
    s2[name] = st[name].clone();
    s2[name].f32()[s2[name].numel() - 1] = bad;
    // load: a file holding the bad weight (as a diverged training of an older version wrote it)
    std::map<std::string, std::string> meta{{"patchwork", m.spec().to_json().dump()}};
    save_safetensors(dir / "bad.safetensors", s2, meta);
    CHECK_THROWS_WITH_AS(Model::load(dir / "bad.safetensors"),
                         ((dir / "bad.safetensors").string() + ": weight '" + name +
                          "' holds NaN or infinite values (a diverged training?); the model cannot be used")
                             .c_str(),
                         InputError);
    // save: a model holding it in memory is not written; an existing file stays as it was
    Model w(ModelSpec::from_config(cfg, 1), 1);
    w.load_state(s2);
    CHECK(w.non_finite_weight() == name);
    const std::string before = bytes_of(dir / "good.safetensors");
    const std::string said = "weight '" + name + "' holds NaN";
    CHECK_THROWS_WITH_AS(w.save(dir / "good.safetensors"), doctest::Contains(said.c_str()), InputError);
    CHECK(bytes_of(dir / "good.safetensors") == before);
    CHECK_THROWS_AS(w.save(dir / "new.safetensors"), InputError);
    CHECK_FALSE(fs::exists(dir / "new.safetensors"));
  }
  // other non-weight content (a checkpoint's kept targets use NaN for don't care) is not checked
  CHECK_NOTHROW(m.save(dir / "extra.safetensors", {{"kept.level0.target", Tensor::full({2}, kNaN)}}));
  std::map<std::string, Tensor> extra;
  CHECK_NOTHROW(Model::load(dir / "extra.safetensors", Device::cpu, &extra));
  CHECK(extra.count("kept.level0.target") == 1);
}

TEST_CASE("nonfinite: cli: train with a diverging rate and apply of a NaN model exit 1 with one line") {
  const fs::path dir = pw::test::temp_dir("cli_nonfinite");
  pw::test::write_phantoms(dir, 2, 1, 60);
  json cfg = tiny(1e6, 10);
  cfg["dataset"] = {{"pairs",
                     {{{"image", "img0.nii.gz"}, {"label", "lab0.nii.gz"}},
                      {{"image", "img1.nii.gz"}, {"label", "lab1.nii.gz"}}}}};
  std::ofstream(dir / "cfg.json") << cfg.dump(2);
  const std::string bin = pw::test::patchwork_bin();
  const fs::path model = dir / "m.safetensors";
  std::string out;
  int rc = pw::test::run_command(bin + " train --config " + (dir / "cfg.json").string() + " --out " + model.string() +
                                     " --threads 2",
                                 &out);
  MESSAGE("patchwork train: " << out);
  CHECK(rc == 1);
  // progress lines, then the one error line, last
  const size_t at = out.find("patchwork: training diverged at iteration ");
  REQUIRE(at != std::string::npos);
  CHECK((at == 0 || out[at - 1] == '\n'));
  CHECK(out.find('\n', at) == out.size() - 1);
  CHECK(out.find("diverged") == out.rfind("diverged"));
  CHECK_FALSE(fs::exists(model));

  // A model file with one NaN weight: apply stops before any work, naming the file and the tensor.
  Model m(ModelSpec::from_config(TrainConfig::from_json(tiny(0.05, 1)), 1), 1);
  std::map<std::string, Tensor> st = m.state();
  const std::string name = st.begin()->first;
  st[name] = st[name].clone();
  st[name].f32()[0] = kNaN;
  save_safetensors(model, st, {{"patchwork", m.spec().to_json().dump()}});
  const fs::path seg = dir / "seg.nii.gz";
  rc = pw::test::run_command(bin + " apply --model " + model.string() + " --in " + (dir / "img0.nii.gz").string() +
                                 " --out " + seg.string() + " --device cpu",
                             &out);
  MESSAGE("patchwork apply: " << out);
  CHECK(rc == 1);
  CHECK(out == "patchwork: " + model.string() + ": weight '" + name +
                   "' holds NaN or infinite values (a diverged training?); the model cannot be used\n");
  CHECK_FALSE(fs::exists(seg));
}
