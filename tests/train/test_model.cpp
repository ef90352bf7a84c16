// The multi-level model: nested crops with gradient, forward types, identical blocks, model file.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "common/test_util.h"
#include "engine/ops.h"
#include "engine/safetensors.h"
#include "io/error.h"
#include "train/model.h"
#include "train/sampler.h"

using namespace pw;
using namespace pw::train;
using nlohmann::json;

namespace {

TrainConfig small_config(int ndim, int depth, bool categorical) {
  json j = {{"depth", depth},
            {"ndim", ndim},
            {"scheme", {{"patch_size", ndim == 2 ? json{8, 8} : json{8, 8, 8}}, {"fov_rel", 0.8}, {"destvox_rel", 1}}},
            {"categorical_label", {1, 2}},
            {"categorical", categorical},
            {"network", {{"features", {4, 8}}}},
            {"intermediate_out", 2}};
  return TrainConfig::from_json(j);
}

double f_lin(const Eigen::Vector3d& w) { return 0.3 * w[0] - 0.2 * w[1] + 0.1 * w[2] + 1.0; }

// A subject of size s (x, y, z) with a repeating intensity pattern and labels 0, 1, 2 in turn.
Subject pattern_subject(const Scheme& sc, const Size3& s) {
  Patch img;
  img.s = s;
  Tensor data = Tensor::empty({1, s[2], s[1], s[0]}), lab = Tensor::empty({img.numel()});
  for (int64_t i = 0; i < img.numel(); ++i) {
    data.f32()[i] = float((i * 7919) % 13) / 13.f;
    lab.f32()[i] = float(i % 3);
  }
  return make_subject("s", img, data, lab, sc, false);
}

}  // namespace

TEST_CASE("model: nested crop of the parent output equals a direct crop of the parent") {
  for (const char* interp : {"lin", "NN"}) {
    json j = {{"depth", 2},
              {"ndim", 3},
              {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_mm", 40}, {"destvox_mm", 2}}},
              {"interp_type", interp}};
    Scheme sc = Scheme::from_json(j);
    Patch img;
    img.s = {64, 64, 64};
    Frame f = make_frame(sc, img);
    std::mt19937_64 rng(2);
    Augment aug;
    aug.dphi = Eigen::Vector3d(0.5, 0.5, 0.5);
    const int P = 4;
    Tensor X = Tensor::empty({P, 2, 8, 8, 8});
    std::vector<float> mats;
    std::vector<Patch> parents, children;
    for (int i = 0; i < P; ++i) {
      Patch p = make_patch(sc, f, 0, Eigen::Vector3d(30 + i, 31, 29), draw_augmentation(aug, 3, rng).L());
      Patch c = child_patch(sc, f, 1, p, Eigen::Vector3d(0.3 + 0.1 * i, 0.7, 0.5), draw_augmentation(aug, 3, rng).L());
      parents.push_back(p);
      children.push_back(c);
      Patch po = out_patch(sc, 0, p);
      for (int v = 0; v < 512; ++v) {  // parent output: channel 0 = f(world), channel 1 = 2 f
        Eigen::Vector4d w = po.A * Eigen::Vector4d(v % 8, (v / 8) % 8, v / 64, 1);
        X.f32()[(i * 2 + 0) * 512 + v] = float(f_lin(w.head<3>()));
        X.f32()[(i * 2 + 1) * 512 + v] = float(2 * f_lin(w.head<3>()));
      }
      append_kernel_matrix(resample_matrix(po, c), 3, mats);
    }
    Var Xv = variable(X, true);
    Var C = crop_parent_outputs(Xv, Tensor::from_vector({P, 16}, mats), sc, 1);
    REQUIRE(C->value.shape() == Shape{P, 2, 8, 8, 8});
    int compared = 0;
    for (int i = 0; i < P; ++i) {
      Eigen::Matrix4d M = resample_matrix(out_patch(sc, 0, parents[i]), children[i]);
      for (int v = 0; v < 512; ++v) {
        Eigen::Vector4d cv(v % 8, (v / 8) % 8, v / 64, 1);
        Eigen::Vector4d q = M * cv;
        float got = C->value.f32()[(i * 2 + 1) * 512 + v];
        if (std::string(interp) == "lin") {
          if (q.head<3>().minCoeff() < 0 || q.head<3>().maxCoeff() > 7) continue;  // needs all 8 neighbours
          double expect = 2 * f_lin((children[i].A * cv).head<3>());
          CHECK(got == doctest::Approx(expect).epsilon(1e-4));
        } else {
          long x = std::lround(q[0]), y = std::lround(q[1]), z = std::lround(q[2]);
          if (std::abs(q[0] - std::round(q[0])) > 0.49 || std::abs(q[1] - std::round(q[1])) > 0.49 ||
              std::abs(q[2] - std::round(q[2])) > 0.49)
            continue;
          REQUIRE(x >= 0);
          REQUIRE(x <= 7);  // snapper keeps children inside
          CHECK(got == X.f32()[(i * 2 + 1) * 512 + (z * 8 + y) * 8 + x]);
        }
        ++compared;
      }
    }
    CHECK(compared > 500);
    // the gradient reaches the parent output: sum(C) -> every parent voxel gets its use count
    backward(sum(C));
    REQUIRE(Xv->grad.defined());
    double g = 0;
    for (float x : Xv->grad.to_vector()) g += x;
    CHECK(g == doctest::Approx(double(C->value.numel())).epsilon(0.02));  // weights sum to 1 per inside sample
  }
}

TEST_CASE("model: forward shapes, forward types, identical blocks") {
  TrainConfig cfg = small_config(2, 3, true);
  ModelSpec spec = ModelSpec::from_config(cfg, 1);
  CHECK(spec.out_channels == std::vector<int>{5, 5, 3});
  CHECK(spec.block_in_channels(0) == 1);
  CHECK(spec.block_in_channels(1) == 6);
  Model m(spec, 1);
  Tensor I = Tensor::full({2, 1, 8, 8}, 0.5f);
  CHECK(m.forward(0, I, Tensor()).shape() == Shape{2, 5, 8, 8});
  CHECK(m.forward(2, I, Tensor::full({2, 5, 8, 8}, 0.1f)).shape() == Shape{2, 3, 8, 8});

  cfg.forward_type = ForwardType::mult;
  ModelSpec ms = ModelSpec::from_config(cfg, 2);
  CHECK(ms.block_in_channels(1) == 2 + 2 * 5 + 5);
  Model mm(ms, 1);
  CHECK(mm.forward(1, Tensor::full({1, 2, 8, 8}, 1.f), Tensor::full({1, 5, 8, 8}, 1.f)).shape() == Shape{1, 5, 8, 8});

  TrainConfig ci = small_config(2, 3, true);
  ci.identical_blocks = true;
  ModelSpec is = ModelSpec::from_config(ci, 1);
  CHECK(is.out_channels == std::vector<int>{5, 5, 5});
  Model mi(is, 1);
  Model md(spec, 1);
  CHECK(mi.parameters().size() * 3 == md.parameters().size());
  CHECK(mi.forward(0, I, Tensor()).shape() == Shape{2, 5, 8, 8});

  // patch sizes that the U-Net cannot halve are refused
  json bad = cfg.raw;
  bad["scheme"]["patch_size"] = {6, 6};
  bad["network"] = {{"features", {4, 8, 16}}};
  TrainConfig bc = TrainConfig::from_json(bad);
  CHECK_THROWS_AS(Model(ModelSpec::from_config(bc, 1), 1), InputError);
}

TEST_CASE("model: the last level's loss trains the first level through the crop") {
  TrainConfig cfg = small_config(3, 2, true);
  Model m(ModelSpec::from_config(cfg, 1), 3);
  Subject s = pattern_subject(cfg.scheme, {20, 20, 20});
  CropGenerator gen(cfg.scheme, SamplerOptions{});
  std::mt19937_64 rng(1);
  PatchSet set = gen.sample({&s}, 3, rng);
  std::vector<Var> X = m.forward_chain({constant(set.levels[0].input), constant(set.levels[1].input)},
                                       {Tensor(), set.levels[1].parent_mats});
  CHECK(X[1]->value.shape() == Shape{3, 3, 8, 8, 8});
  backward(mean(slice(X[1], 0, 3)));
  int with_grad = 0, level0 = 0;
  auto params = m.parameters();  // level 0's first, then level 1's (same architecture)
  const size_t half = params.size() / 2;
  for (size_t i = 0; i < half; ++i) {
    ++level0;
    if (params[i]->grad.defined()) {
      double g = 0;
      for (float x : params[i]->grad.to_vector()) g += std::abs(x);
      with_grad += g > 0;
    }
  }
  CHECK(level0 > 0);
  CHECK(with_grad > level0 / 2);
}

TEST_CASE("model: model file round trip") {
  TrainConfig cfg = small_config(2, 2, false);
  cfg.augment.dphi = Eigen::Vector3d(0.2, 0, 0);
  ModelSpec spec = ModelSpec::from_config(cfg, 1);
  spec.thresholds = {0.4, 0.6};
  spec.label_names = {"a", "b"};
  Model m(spec, 5);
  auto dir = pw::test::temp_dir("train_model");
  m.save(dir / "m.safetensors", {{"opt.m.0", Tensor::full({2}, 1.f)}}, {{"iteration", "7"}});
  std::map<std::string, Tensor> extra;
  std::map<std::string, std::string> meta;
  Model l = Model::load(dir / "m.safetensors", Device::cpu, &extra, &meta);
  CHECK(l.spec().to_json() == m.spec().to_json());
  CHECK(l.spec().thresholds == std::vector<double>{0.4, 0.6});
  CHECK(extra.count("opt.m.0") == 1);
  CHECK(meta.at("iteration") == "7");
  m.set_training(false);
  Tensor I = Tensor::full({1, 1, 8, 8}, 0.3f);
  I.f32()[5] = 2.f;
  CHECK(m.forward(0, I, Tensor()).to_vector() == l.forward(0, I, Tensor()).to_vector());
  // a file without the description is refused
  save_safetensors(dir / "x.safetensors", {{"w", Tensor::full({1}, 1.f)}});
  CHECK_THROWS_AS(Model::load(dir / "x.safetensors"), InputError);
}

TEST_CASE("model: a description with wrong thresholds, too few channels or an unknown forward_type is refused") {
  const json good = ModelSpec::from_config(small_config(2, 2, true), 1).to_json();  // 2 labels, 3 channels
  REQUIRE(good["out_channels"] == json({5, 3}));
  CHECK_NOTHROW(ModelSpec::from_json(good));
  auto refused = [&](const char* key, const json& value, const std::string& says) {
    json j = good;
    j[key] = value;
    CAPTURE(value.dump());
    CHECK_THROWS_WITH_AS(ModelSpec::from_json(j), doctest::Contains(says.c_str()), InputError);
  };
  refused("thresholds", {0.5}, "thresholds: 1 values for 2 labels (one per label, or none)");
  refused("thresholds", {0.5, 0.5, 0.5}, "thresholds: 3 values for 2 labels");
  refused("thresholds", {0.5, 1.5}, "thresholds: 1.500000 is not a probability in [0, 1]");
  refused("thresholds", {-0.1, 0.5}, "is not a probability");
  refused("out_channels", {5, 2}, "out_channels: level 1 has 2 channels, fewer than the labels need (3)");
  refused("out_channels", {1, 3}, "out_channels: level 0 has 1 channels");
  refused("forward_type", "multi", "forward_type: expected \"simple\", \"mult\" or \"bridge\", got \"multi\"");
  json j = good;
  j["thresholds"] = {0.3, 0.7};
  j["forward_type"] = "mult";
  CHECK(ModelSpec::from_json(j).thresholds == std::vector<double>{0.3, 0.7});
  CHECK(ModelSpec::from_json(j).forward_type == ForwardType::mult);
}

TEST_CASE("model: final block after the last level") {
  json j = small_config(2, 2, true).raw;
  j["final_block"] = {{"features", 6}, {"convs", 2}};
  TrainConfig cfg = TrainConfig::from_json(j);
  Model plain(ModelSpec::from_config(small_config(2, 2, true), 1), 1);
  Model m(ModelSpec::from_config(cfg, 1), 1);
  // 2 conv-norm layers (weight + norm weight/bias each) and a 1x1 head (weight, bias)
  CHECK(m.parameters().size() == plain.parameters().size() + 2 * 3 + 2);
  Tensor I = Tensor::full({1, 1, 8, 8}, 0.5f);
  CHECK(m.forward(1, I, Tensor::full({1, 5, 8, 8}, 0.2f)).shape() == Shape{1, 3, 8, 8});
  auto dir = pw::test::temp_dir("train_final");
  m.save(dir / "f.safetensors");
  Model l = Model::load(dir / "f.safetensors");
  m.set_training(false);
  const Tensor C = Tensor::full({1, 5, 8, 8}, 0.2f);
  CHECK(l.finalize(1, l.forward(1, I, C)).to_vector() == m.finalize(1, m.forward(1, I, C)).to_vector());
  CHECK(m.finalize(1, m.forward(1, I, C)).to_vector() != m.forward(1, I, C).to_vector());
  CHECK(m.finalize(0, m.forward(0, I, Tensor())).to_vector() == m.forward(0, I, Tensor()).to_vector());
  j["final_block"] = {{"feature", 6}};
  CHECK_THROWS_AS(TrainConfig::from_json(j), InputError);
}

namespace {

// The parameter count (weights) of each level's block, from the model file names "levelK.".
std::vector<int64_t> level_weights(const Model& m, int depth) {
  std::vector<int64_t> n(depth, 0);
  for (const auto& kv : m.named_parameters())
    for (int k = 0; k < depth; ++k)
      if (kv.first.rfind("level" + std::to_string(k) + ".", 0) == 0) n[k] += kv.second->value.numel();
  return n;
}

Tensor random_tensor(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = U(rng);
  return t;
}

// Channels [c0, c1) of a [B, C, ...] tensor as a flat vector.
std::vector<float> channels(const Tensor& t, int64_t c0, int64_t c1) {
  const int64_t B = t.dim(0), C = t.dim(1), n = t.numel() / (B * C);
  std::vector<float> out;
  for (int64_t b = 0; b < B; ++b)
    out.insert(out.end(), t.f32() + (b * C + c0) * n, t.f32() + (b * C + c1) * n);
  return out;
}

}  // namespace

TEST_CASE("model: forward_type bridge adds the parent crop to the block output (level > 0), level 0 unchanged") {
  TrainConfig cfg = small_config(2, 3, true);  // out_channels 5, 5, 3
  Model simple(ModelSpec::from_config(cfg, 1), 4);
  json j = cfg.raw;
  j["forward_type"] = "bridge";
  TrainConfig bc = TrainConfig::from_json(j);
  CHECK(bc.forward_type == ForwardType::bridge);
  Model bridge(ModelSpec::from_config(bc, 1), 4);  // same seed, same blocks: the same weights
  CHECK(bridge.spec().block_in_channels(1) == simple.spec().block_in_channels(1));
  simple.set_training(false);
  bridge.set_training(false);
  const Tensor I = random_tensor({2, 1, 8, 8}, 1), C = random_tensor({2, 5, 8, 8}, 2);
  CHECK(bridge.forward(0, I, Tensor()).to_vector() == simple.forward(0, I, Tensor()).to_vector());
  for (int level : {1, 2}) {
    const Tensor s = simple.forward(level, I, C), b = bridge.forward(level, I, C);
    REQUIRE(b.shape() == s.shape());
    const int64_t out = s.dim(1);
    std::vector<float> expect = channels(s, 0, out), c = channels(C, 0, out), got = channels(b, 0, out);
    for (size_t i = 0; i < expect.size(); ++i) CHECK(got[i] == doctest::Approx(expect[i] + c[i]).epsilon(1e-6));
  }
  // the model file keeps the forward type
  auto dir = pw::test::temp_dir("train_bridge");
  bridge.save(dir / "b.safetensors");
  CHECK(Model::load(dir / "b.safetensors").spec().forward_type == ForwardType::bridge);
  j["forward_type"] = "bridged";
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("\"bridge\""), InputError);
}

TEST_CASE("model: finalizeOnApply leaves the final block out of training; finalBlock_all_levels after every level") {
  json j = small_config(2, 2, true).raw;  // out_channels 5, 3
  j["final_block"] = {{"features", 4}, {"convs", 1}};
  j["finalizeOnApply"] = true;
  Model m(ModelSpec::from_config(TrainConfig::from_json(j), 1), 2);
  const Tensor I0 = random_tensor({2, 1, 8, 8}, 3), I1 = random_tensor({2, 1, 8, 8}, 4);
  Tensor mats = Tensor::empty({2, 9});
  for (int i = 0; i < 2; ++i) {  // child voxel -> parent voxel: the identity
    float id[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    std::copy(id, id + 9, mats.f32() + 9 * i);
  }
  auto chain = [&](Model& model) {
    return model.forward_chain({constant(I0), constant(I1)}, {Tensor(), mats});
  };
  m.set_training(true);
  std::vector<Var> train_out = chain(m);
  const Tensor X1 = m.forward(1, I1, m.forward(0, I0, Tensor()));  // no final block: X_1
  CHECK(train_out[1]->value.to_vector() == X1.to_vector());
  m.set_training(false);
  std::vector<Var> apply_out = chain(m);
  CHECK(apply_out[1]->value.to_vector() == m.finalize(1, X1).to_vector());
  CHECK(apply_out[1]->value.to_vector() != X1.to_vector());
  CHECK(apply_out[0]->value.to_vector() == m.forward(0, I0, Tensor()).to_vector());  // only the last level

  // finalBlock_all_levels (training sees it): F on the first 3 channels of level 0, the rest unchanged;
  // level 1 crops level 0's X, not F(X)
  j["finalizeOnApply"] = false;
  j["finalBlock_all_levels"] = true;
  Model a(ModelSpec::from_config(TrainConfig::from_json(j), 1), 2);
  a.set_training(false);
  std::vector<Var> out = chain(a);
  const Tensor X0 = a.forward(0, I0, Tensor());
  const Tensor F0 = a.finalize(0, X0);
  REQUIRE(F0.shape() == Shape{2, 5, 8, 8});
  CHECK(channels(F0, 3, 5) == channels(X0, 3, 5));
  CHECK(channels(F0, 0, 3) != channels(X0, 0, 3));
  CHECK(out[0]->value.to_vector() == F0.to_vector());
  CHECK(out[1]->value.to_vector() == a.finalize(1, a.forward(1, I1, X0)).to_vector());
  // the file keeps both options
  auto dir = pw::test::temp_dir("train_finalize");
  a.save(dir / "a.safetensors");
  CHECK(Model::load(dir / "a.safetensors").spec().final_block_all_levels);
  // the options need a final block
  j.erase("final_block");
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("needs a final_block"), InputError);
}

TEST_CASE("model: network as a list builds one block per level; identical_blocks needs one description") {
  json j = small_config(2, 3, true).raw;
  const json nets = json::array({{{"features", {2}}}, {{"features", {4, 8}}}, {{"features", {3, 6}}, {"norm", "none"}}});
  j["network"] = nets;
  TrainConfig cfg = TrainConfig::from_json(j);
  ModelSpec spec = ModelSpec::from_config(cfg, 1);
  Model m(spec, 1);
  const std::vector<int64_t> got = level_weights(m, 3);
  for (int k = 0; k < 3; ++k) {  // each level as a model with that one description everywhere
    json one = small_config(2, 3, true).raw;
    one["network"] = nets[k];
    Model single(ModelSpec::from_config(TrainConfig::from_json(one), 1), 1);
    CHECK(got[k] == level_weights(single, 3)[k]);
  }
  CHECK(got[0] != got[1]);
  CHECK(m.forward(2, Tensor::full({1, 1, 8, 8}, 0.5f), Tensor::full({1, 5, 8, 8}, 0.1f)).shape() == Shape{1, 3, 8, 8});
  auto dir = pw::test::temp_dir("train_levels");
  m.save(dir / "l.safetensors");
  CHECK(level_weights(Model::load(dir / "l.safetensors"), 3) == got);

  j["identical_blocks"] = true;
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("identical_blocks"), InputError);
  j["identical_blocks"] = false;
  j["network"] = json::array({nets[0], nets[1]});
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("one block description per level (3)"), InputError);
  j["network"] = json::array({nets[0], nets[1], {{"feature", {4}}}});
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("network[2]: unknown key 'feature'"), InputError);
}

// The central sub-block of x [P, C, (Z), Y, X] starting at `lo` (x, y, z) of size `s` (x, y, z).
static std::vector<float> sub_block(const Tensor& x, const Size3& lo, const Size3& s) {
  const int nd = x.ndim() - 2;
  const int64_t X = x.dim(x.ndim() - 1), Y = x.dim(x.ndim() - 2), Z = nd == 3 ? x.dim(2) : 1;
  std::vector<float> out;
  for (int64_t pc = 0; pc < x.dim(0) * x.dim(1); ++pc)
    for (int64_t z = 0; z < s[2]; ++z)
      for (int64_t y = 0; y < s[1]; ++y)
        for (int64_t xx = 0; xx < s[0]; ++xx)
          out.push_back(x.f32()[((pc * Z + lo[2] + z) * Y + lo[1] + y) * X + lo[0] + xx]);
  return out;
}

TEST_CASE("model: out_patch_size < patch_size: each level outputs the central crop of its block") {
  for (int nd : {2, 3}) {
    json j = small_config(nd, 3, true).raw;
    const json ps = nd == 2 ? json{8, 8} : json{8, 8, 8};
    j["scheme"]["out_patch_size"] = nd == 2 ? json{{8, 8}, {6, 4}, {2, 4}} : json{{8, 8, 8}, {6, 4, 8}, {2, 4, 6}};
    TrainConfig cfg = TrainConfig::from_json(j);
    Model m(ModelSpec::from_config(cfg, 1), 4);
    Model full(ModelSpec::from_config(small_config(nd, 3, true), 1), 4);  // the same weights, no crop
    m.set_training(false);
    full.set_training(false);
    const int64_t B = 2;
    auto shape = [&](int64_t c, const Size3& s) {
      return nd == 2 ? Shape{B, c, s[1], s[0]} : Shape{B, c, s[2], s[1], s[0]};
    };
    Tensor I = Tensor::empty(shape(1, {8, 8, nd == 2 ? 1 : 8}));
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> U(-1, 1);
    for (int64_t i = 0; i < I.numel(); ++i) I.f32()[i] = U(rng);
    Tensor C = Tensor::empty(shape(5, {8, 8, nd == 2 ? 1 : 8}));
    for (int64_t i = 0; i < C.numel(); ++i) C.f32()[i] = U(rng);
    for (int level = 0; level < 3; ++level) {
      CAPTURE(nd);
      CAPTURE(level);
      Tensor parent = level > 0 ? C : Tensor();
      Tensor y = m.forward(level, I, parent), yf = full.forward(level, I, parent);
      const Size3& so = cfg.scheme.out_patch_size[level];
      CHECK(y.shape() == shape(level < 2 ? 5 : 3, so));
      Size3 lo{(8 - so[0]) / 2, (8 - so[1]) / 2, nd == 2 ? 0 : (8 - so[2]) / 2};
      CHECK(y.to_vector() == sub_block(yf, lo, so));
    }
    // a chain: the losses see every level's output patch; the gradient passes the crop
    Subject s = pattern_subject(cfg.scheme, {24, 24, nd == 2 ? 1 : 24});
    CropGenerator gen(cfg.scheme, SamplerOptions{});
    std::mt19937_64 r(1);
    PatchSet set = gen.sample({&s}, 2, r);
    m.set_training(true);
    std::vector<Var> X = m.forward_chain({constant(set.levels[0].input), constant(set.levels[1].input),
                                          constant(set.levels[2].input)},
                                         {Tensor(), set.levels[1].parent_mats, set.levels[2].parent_mats});
    for (int level = 0; level < 3; ++level) {
      CHECK(X[level]->value.shape() == shape(level < 2 ? 5 : 3, cfg.scheme.out_patch_size[level]));
      Shape t = X[level]->value.shape();
      t.erase(t.begin() + 1);  // categorical targets: i32 [P, spatial] on the same output grid
      CHECK(set.levels[level].target.shape() == t);
    }
    backward(mean(X[2]));
    double g = 0;
    for (float x : m.parameters()[0]->grad.to_vector()) g += std::abs(x);
    CHECK(g > 0);  // level 0's first weights get a gradient through two crops
  }
}
