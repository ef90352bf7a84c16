#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

#include "common/test_util.h"
#include "engine/gradcheck.h"
#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/safetensors.h"
#include "io/error.h"
#include "test_random.h"

using namespace pw;
using namespace pw::test;

namespace {

// A tiny segmentation task: noisy images holding a few bright disks (2D) or balls (3D); the
// target is the disk mask (class 1) against the background (class 0).
struct Batch {
  Tensor x, y;
};
Batch make_task(int dims, int64_t n, int64_t size, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> uni(0.f, 1.f);
  std::normal_distribution<float> noise(0.f, 0.3f);
  const int64_t d = dims == 3 ? size : 1;
  Shape xs{n, 1}, ys{n};
  for (int i = 0; i < dims; ++i) xs.push_back(size), ys.push_back(size);
  Batch b{Tensor::empty(xs), Tensor::zeros(ys, DType::i32)};
  for (int64_t s = 0; s < n; ++s) {
    float cz[2], cy[2], cx[2], r[2];
    for (int k = 0; k < 2; ++k) {
      cz[k] = uni(rng) * d, cy[k] = uni(rng) * size, cx[k] = uni(rng) * size, r[k] = 1.5f + uni(rng) * size / 5.f;
    }
    for (int64_t z = 0; z < d; ++z)
      for (int64_t yy = 0; yy < size; ++yy)
        for (int64_t xx = 0; xx < size; ++xx) {
          bool in = false;
          for (int k = 0; k < 2; ++k) {
            float dz = dims == 3 ? z - cz[k] : 0.f, dy = yy - cy[k], dx = xx - cx[k];
            in = in || dz * dz + dy * dy + dx * dx < r[k] * r[k];
          }
          const int64_t i = (s * d + z) * size * size + yy * size + xx;
          b.x.f32()[i] = (in ? 1.f : 0.f) + noise(rng);
          b.y.i32()[i] = in ? 1 : 0;
        }
  }
  return b;
}

// Trains a small U-Net on the task with Adam; returns the loss of every step.
std::vector<float> train_unet(const UNetConfig& cfg, int steps, int64_t size) {
  UNet net(cfg, 42);
  Adam opt(net.parameters(), AdamOptions{1e-2f});
  std::vector<float> losses;
  for (int s = 0; s < steps; ++s) {
    Batch b = make_task(cfg.dims, 4, size, 1000 + s);
    Var loss = cross_entropy(net.forward(variable(b.x)), b.y);
    losses.push_back(loss->value.to_vector()[0]);
    backward(loss);
    opt.step();
    opt.zero_grad();
  }
  return losses;
}

}  // namespace

TEST_CASE("U-Net 2D learns a tiny segmentation task, deterministically") {
  UNetConfig cfg;
  cfg.dims = 2;
  cfg.features = {8, 16};
  cfg.norm = NormKind::instance;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> a = train_unet(cfg, 60, 16);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("2D U-Net: loss " << a.front() << " -> " << a.back() << " in 60 steps, " << seconds << " s");
  // Mean of the last 5 steps below 0.15 (chance level is ln 2 = 0.69).
  float tail = 0.f;
  for (size_t i = a.size() - 5; i < a.size(); ++i) tail += a[i] / 5.f;
  CHECK(a.front() > 0.4f);
  CHECK(tail < 0.15f);
  std::vector<float> b = train_unet(cfg, 60, 16);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);  // bit-identical runs
}

TEST_CASE("U-Net 3D learns the task too (batch norm, strided conv down, linear up)") {
  UNetConfig cfg;
  cfg.dims = 3;
  cfg.features = {4, 8};
  cfg.norm = NormKind::batch;
  cfg.down = DownKind::strided_conv;
  cfg.up = UpKind::linear;
  cfg.activation = ActKind::relu;
  std::vector<float> a = train_unet(cfg, 40, 8);
  MESSAGE("3D U-Net: loss " << a.front() << " -> " << a.back());
  float tail = 0.f;
  for (size_t i = a.size() - 5; i < a.size(); ++i) tail += a[i] / 5.f;
  CHECK(tail < 0.25f);
  CHECK(tail < 0.5f * a.front());
}

TEST_CASE("U-Net variants: output shapes, parameter names, errors") {
  for (int dims : {2, 3})
    for (NormKind norm : {NormKind::none, NormKind::instance, NormKind::batch})
      for (DownKind down : {DownKind::maxpool, DownKind::strided_conv})
        for (UpKind up : {UpKind::transposed_conv, UpKind::nearest, UpKind::linear}) {
          UNetConfig cfg;
          cfg.dims = dims;
          cfg.in_channels = 2;
          cfg.out_channels = 3;
          cfg.features = {3, 4, 5};
          cfg.norm = norm;
          cfg.down = down;
          cfg.up = up;
          UNet net(cfg);
          Shape in{2, 2}, out{2, 3};
          for (int i = 0; i < dims; ++i) in.push_back(4 + 4 * i), out.push_back(4 + 4 * i);
          Var y = net.forward(variable(random_tensor(in, 1)));
          INFO(cfg.to_json().dump());
          CHECK(y->value.shape() == out);
        }
  UNetConfig cfg;
  cfg.dims = 2;
  cfg.features = {4, 8};
  cfg.norm = NormKind::batch;
  UNet net(cfg);
  std::vector<std::string> names;
  for (auto& [name, v] : net.named_parameters()) {
    names.push_back(name);
    CHECK(v->name == name);
    CHECK(v->requires_grad);
  }
  CHECK(names.front() == "enc0.0.conv.weight");
  CHECK(std::find(names.begin(), names.end(), "enc0.0.norm.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "up0.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "dec0.1.conv.weight") != names.end());
  CHECK(names.back() == "head.bias");
  // No conv bias before a norm; buffers appear in the state, not in the parameters.
  CHECK(std::find(names.begin(), names.end(), "enc0.0.conv.bias") == names.end());
  auto state = net.state_dict();
  CHECK(state.count("enc1.1.norm.running_var") == 1);
  CHECK(state.size() > names.size());
  CHECK_THROWS_AS(net.forward(variable(Tensor::zeros({1, 1, 5, 8}))), std::invalid_argument);  // 5 not even
  CHECK_THROWS_AS(net.forward(variable(Tensor::zeros({1, 2, 8, 8}))), std::invalid_argument);  // channels
}

TEST_CASE("U-Net with valid convolutions: output sizes, the skip's centre, equality with the padded net inside") {
  UNetConfig cfg;
  cfg.dims = 2;
  cfg.features = {4, 8};
  cfg.valid = true;
  // 24 -> 20 (two 3x3 convs) -> 10 (pool) -> 6 -> 12 (up) -> 8; 28 -> 12; an odd size at the pool fails
  CHECK(cfg.output_size(24) == 8);
  CHECK(cfg.output_size(28) == 12);
  CHECK(cfg.output_size(23) == -1);
  CHECK(cfg.output_size(8) == -1);  // 8 -> 4 -> 2 -> -2
  cfg.convs_per_block = 1;
  cfg.features = {2, 3, 4};  // 3 levels, one conv per block: 20 -> 18 -> 9: odd at the second pool
  CHECK(cfg.output_size(20) == -1);
  CHECK(cfg.output_size(30) == 10);  // 30 -> 28 -> 14 -> 12 -> 6 -> 4, up: 8 - 2 = 6, 12 - 2 = 10
  UNetConfig same = cfg;
  same.valid = false;
  CHECK(same.output_size(24) == 24);
  CHECK(same.output_size(22) == -1);  // not a multiple of 4
  for (int dims : {2, 3})
    for (UpKind up : {UpKind::transposed_conv, UpKind::nearest}) {
      UNetConfig c;
      c.dims = dims;
      c.in_channels = 2;
      c.out_channels = 3;
      c.features = {3, 4};
      c.up = up;
      c.valid = true;
      UNet net(c);
      Shape in{2, 2}, out{2, 3};
      for (int i = 0; i < dims; ++i) in.push_back(24 + 4 * i), out.push_back(c.output_size(24 + 4 * i));
      CHECK(net.forward(variable(random_tensor(in, 1)))->value.shape() == out);
    }
  CHECK(UNetConfig::from_json({{"padding", "valid"}}).valid);
  CHECK(UNetConfig::from_json(UNetConfig::from_json({{"padding", "valid"}}).to_json()).valid);
  CHECK_THROWS_AS(UNetConfig::from_json({{"padding", "full"}}), InputError);
  UNet bad(UNetConfig::from_json({{"padding", "valid"}, {"features", {4, 8}}, {"dims", 2}}));
  CHECK_THROWS_AS(bad.forward(variable(Tensor::zeros({1, 1, 23, 24}))), std::invalid_argument);
  // One level without norm: every output voxel of the valid net sees no padding, so it equals the centre of
  // the padded net's output (same weights).
  UNetConfig one;
  one.dims = 2;
  one.features = {3};
  one.norm = NormKind::none;
  UNetConfig onev = one;
  onev.valid = true;
  UNet a(one, 9), b(onev, 9);
  Tensor x = random_tensor({2, 1, 12, 10}, 4);
  Var ya = a.forward(variable(x)), yb = b.forward(variable(x, true));
  REQUIRE(yb->value.shape() == Shape{2, 2, 8, 6});
  const std::vector<float> va = ya->value.to_vector(), vb = yb->value.to_vector();
  for (int64_t p = 0; p < 4; ++p)
    for (int64_t y = 0; y < 8; ++y)
      for (int64_t xx = 0; xx < 6; ++xx)
        CHECK(vb[(p * 8 + y) * 6 + xx] == doctest::Approx(va[(p * 12 + y + 2) * 10 + xx + 2]).epsilon(1e-5));
}

TEST_CASE("He init: weight scale sqrt(2/fan_in), same seed same weights") {
  UNetConfig cfg;
  cfg.dims = 3;
  cfg.features = {16, 32};
  UNet a(cfg, 7), b(cfg, 7), c(cfg, 8);
  auto find = [](const UNet& net, const std::string& name) {
    for (auto& [n, v] : net.named_parameters())
      if (n == name) return v->value;
    FAIL("no parameter " << name);
    return Tensor();
  };
  // enc1.0.conv.weight: 32 x 16 x 3^3, fan_in 432, leaky 0.01 gain ~ sqrt(2)
  const Tensor w = find(a, "enc1.0.conv.weight");
  CHECK(w.shape() == Shape{32, 16, 3, 3, 3});
  double s2 = 0;
  for (int64_t i = 0; i < w.numel(); ++i) s2 += double(w.f32()[i]) * w.f32()[i];
  double stddev = std::sqrt(s2 / w.numel());
  CHECK(stddev == doctest::Approx(std::sqrt(2.0 / 1.0001 / 432.0)).epsilon(0.03));
  CHECK(std::memcmp(w.raw(), find(b, "enc1.0.conv.weight").raw(), w.nbytes()) == 0);
  CHECK(std::memcmp(w.raw(), find(c, "enc1.0.conv.weight").raw(), w.nbytes()) != 0);
  // Biases start at zero, norm weights at one.
  for (float v : find(a, "head.bias").to_vector()) CHECK(v == 0.f);
  for (float v : find(a, "enc0.0.norm.weight").to_vector()) CHECK(v == 1.f);
}

TEST_CASE("train/eval: batch norm running statistics change only in training mode") {
  UNetConfig cfg;
  cfg.dims = 2;
  cfg.features = {2, 4};
  cfg.norm = NormKind::batch;
  UNet net(cfg);
  Tensor x = random_tensor({2, 1, 4, 4}, 3, 0.f, 4.f);
  auto before = net.state_dict().at("enc0.0.norm.running_mean").clone();
  net.eval();
  CHECK_FALSE(net.training());
  Var y1 = net.forward(variable(x));
  Var y2 = net.forward(variable(x));
  CHECK(net.state_dict().at("enc0.0.norm.running_mean").to_vector() == before.to_vector());
  CHECK(y1->value.to_vector() == y2->value.to_vector());
  net.train();
  net.forward(variable(x));
  CHECK(net.state_dict().at("enc0.0.norm.running_mean").to_vector() != before.to_vector());
}

TEST_CASE("U-Net: the whole network passes the gradient check with respect to its input") {
  UNetConfig cfg;
  cfg.dims = 2;
  cfg.features = {2, 3};
  cfg.norm = NormKind::instance;
  cfg.down = DownKind::strided_conv;
  cfg.up = UpKind::transposed_conv;
  UNet net(cfg, 3);
  GradcheckResult r = gradcheck([&](const std::vector<Var>& v) { return net.forward(v[0]); },
                                {random_tensor({1, 1, 4, 4}, 9, -2.f, 2.f)});
  CHECK_MESSAGE(r.ok, r.message);
  cfg.dims = 3;
  cfg.norm = NormKind::none;
  cfg.down = DownKind::maxpool;
  cfg.up = UpKind::nearest;
  UNet net3(cfg, 3);
  r = gradcheck([&](const std::vector<Var>& v) { return sum(mul(net3.forward(v[0]), net3.forward(v[0]))); },
                {random_tensor({1, 1, 2, 4, 2}, 10, -2.f, 2.f)});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("model description JSON and weights rebuild the same network from a safetensors file") {
  UNetConfig cfg;
  cfg.dims = 3;
  cfg.in_channels = 2;
  cfg.out_channels = 3;
  cfg.features = {4, 6, 8};
  cfg.norm = NormKind::batch;
  cfg.activation = ActKind::leaky;
  cfg.leaky_slope = 0.2f;
  cfg.down = DownKind::strided_conv;
  cfg.up = UpKind::nearest;
  UNet net(cfg, 5);
  Tensor x = random_tensor({1, 2, 4, 4, 8}, 4);
  net.forward(variable(x));  // training step: running statistics move away from their init
  net.eval();
  Tensor y = net.forward(variable(x))->value;

  fs::path file = temp_dir("nn") / "unet.safetensors";
  save_safetensors(file, net.state_dict(), {{"model", cfg.to_json().dump()}});
  SafetensorsContent c = load_safetensors(file);
  UNetConfig back = UNetConfig::from_json(nlohmann::json::parse(c.metadata.at("model")));
  CHECK(back.to_json() == cfg.to_json());
  UNet rebuilt(back, 999);  // different init, replaced by the file's weights
  rebuilt.load_state_dict(c.tensors, file.string());
  rebuilt.eval();
  Tensor y2 = rebuilt.forward(variable(x))->value;
  CHECK(std::memcmp(y.raw(), y2.raw(), y.nbytes()) == 0);

  // A mismatching file is refused with a clear message.
  auto bad = c.tensors;
  bad.erase("head.bias");
  CHECK_THROWS_WITH_AS(rebuilt.load_state_dict(bad, "m"), "m: missing tensor 'head.bias'", InputError);
  bad = c.tensors;
  bad["extra"] = Tensor::zeros({1});
  CHECK_THROWS_AS(rebuilt.load_state_dict(bad, "m"), InputError);
  bad = c.tensors;
  bad["head.bias"] = Tensor::zeros({4});
  CHECK_THROWS_AS(rebuilt.load_state_dict(bad, "m"), InputError);
}

TEST_CASE("U-Net description: unknown keys and bad values are errors") {
  using nlohmann::json;
  CHECK(UNetConfig::from_json(json::parse(R"({"dims": 2, "features": [8, 16, 32]})")).features.size() == 3);
  CHECK_THROWS_WITH_AS(UNetConfig::from_json(json::parse(R"({"dims": 2, "levels": 3})")),
                       "unet: unknown key 'levels'", InputError);
  CHECK_THROWS_AS(UNetConfig::from_json(json::parse(R"({"dims": 4})")), InputError);
  CHECK_THROWS_AS(UNetConfig::from_json(json::parse(R"({"norm": "group"})")), InputError);
  CHECK_THROWS_AS(UNetConfig::from_json(json::parse(R"({"features": []})")), InputError);
  CHECK_THROWS_AS(UNetConfig::from_json(json::parse(R"({"features": [8, "16"]})")), InputError);
  CHECK_THROWS_AS(UNetConfig::from_json(json::parse(R"({"type": "resnet"})")), InputError);
  CHECK_THROWS_AS(UNetConfig::from_json(json::parse(R"({"up": "pixelshuffle"})")), InputError);
}
