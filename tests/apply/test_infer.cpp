// Hierarchical inference with hand-made networks: coverage of tree and random sampling, lazy
// evaluation, windows and the sparse suppression rule, --level mix, 2D images.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "apply/apply_case.h"
#include "apply/infer.h"
#include "engine/profile.h"
#include "io/error.h"
#include "common/test_util.h"

using namespace pw;
using namespace pw::apply;
using nlohmann::json;

namespace {

// Level l outputs the constant logit `logit[l]` everywhere (one label channel, plus `extra`
// intermediate channels), or, when `from_image` is set at level 0, the patch's mean intensity.
class ConstNet : public LevelNetwork {
 public:
  train::Scheme sc;
  std::vector<float> logit;
  bool from_image = false;
  int extra = 0;
  std::vector<float> level0_means;  // in call order
  std::vector<int64_t> calls;       // patches per level

  explicit ConstNet(const json& j, std::vector<float> l) : sc(train::Scheme::from_json(j)), logit(std::move(l)) {
    calls.assign(sc.depth, 0);
  }
  const train::Scheme& scheme() const override { return sc; }
  int image_channels() const override { return 1; }
  int out_channels(int level) const override { return sc.label_channels() + (level + 1 < sc.depth ? extra : 0); }
  Tensor forward(int level, const Tensor& img, const Tensor& crop) override {
    const int64_t B = img.dim(0);
    calls[level] += B;
    if (level > 0) REQUIRE(crop.defined());
    if (level > 0) CHECK(crop.dim(1) == out_channels(level - 1));
    Shape s = img.shape();
    s[1] = out_channels(level);
    const auto& os = sc.out_patch_size[level];
    if (sc.ndim == 3) {
      s[2] = os[2];
      s[3] = os[1];
      s[4] = os[0];
    } else {
      s[2] = os[1];
      s[3] = os[0];
    }
    Tensor out = Tensor::empty(s);
    const int64_t per = out.numel() / B, inper = img.numel() / B;
    for (int64_t b = 0; b < B; ++b) {
      float v = logit[level];
      if (level == 0 && from_image) {
        double m = 0;
        for (int64_t i = 0; i < inper; ++i) m += img.f32()[b * inper + i];
        v = static_cast<float>(m / inper);
        level0_means.push_back(v);
      }
      for (int64_t i = 0; i < per; ++i) out.f32()[b * per + i] = v;
    }
    return out;
  }
};

InferInput cube(int nx, int ny, int nz, double vs = 1.0) {
  InferInput in;
  in.image.A = Eigen::Matrix4d::Identity();
  for (int a = 0; a < 3; ++a) in.image.A(a, a) = vs;
  in.image.A(0, 3) = 3.0;
  in.image.A(1, 3) = -7.0;
  in.image.s = {nx, ny, nz};
  in.data = Tensor::zeros({1, nz, ny, nx});
  return in;
}

float min_of(const std::vector<float>& v) { return *std::min_element(v.begin(), v.end()); }
float max_of(const std::vector<float>& v) { return *std::max_element(v.begin(), v.end()); }

}  // namespace

TEST_CASE("infer: tree sampling covers every voxel through two levels") {
  json j = {{"depth", 2}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_mm", {16, 16, 16}}, {"destvox_mm", {1, 1, 1}}}}};
  ConstNet net(j, {10.f, 10.f});
  InferInput in = cube(24, 20, 22);
  InferOptions o;
  o.generate_type = GenerateType::tree;
  Prediction p = infer(net, in, o);
  REQUIRE(p.prob.size() == static_cast<size_t>(in.data.numel()));
  CHECK(p.grid.s == in.image.s);
  CHECK(p.grid.A.isApprox(in.image.A));
  CHECK(min_of(p.prob) > 0.999f);  // every voxel received the level-1 probability 1
  // Tree: per axis ceil(extent ratio) + 1 children: 24/16 -> 3, 20/16 -> 3, 22/16 -> 3; 16/8 -> 3.
  CHECK(p.patches_per_level[0] == 27);
  CHECK(p.patches_per_level[1] == 27 * 27);
  CHECK(net.calls[1] == 27 * 27);
}

TEST_CASE("infer: tree_children tile the parent with overlap, jitter keeps the coverage") {
  std::mt19937_64 rng(3);
  for (double jitter : {0.0, 1.0}) {
    auto c = tree_children(Eigen::Vector3d(30, 10, 7), Eigen::Vector3d(8, 10, 2), 3, jitter, rng);
    // x: ceil(30/8)+1 = 5, y: 1 (child covers), z: ceil(3.5)+1 = 5
    REQUIRE(c.size() == 25);
    // Along x, sorted centres: first/last children touch the borders, neighbours overlap.
    std::vector<double> xs;
    for (auto& v : c)
      if (v[2] == c[0][2]) xs.push_back(v[0] * 30);
    REQUIRE(xs.size() == 5);
    CHECK(xs.front() == doctest::Approx(4));
    CHECK(xs.back() == doctest::Approx(26));
    for (size_t i = 1; i < xs.size(); ++i) CHECK(xs[i] - xs[i - 1] < 8.0);
    CHECK(c[0][1] == doctest::Approx(0.5));
  }
}

TEST_CASE("infer: random sampling with enough chunks covers every voxel") {
  json j = {{"depth", 1}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {10, 10, 10}}, {"destvox_mm", {1, 1, 1}}, {"fov_rel", 1}}}};
  ConstNet net(j, {10.f});
  InferInput in = cube(16, 16, 16);
  InferOptions o;
  o.generate_type = GenerateType::random;
  o.num_patches = 40;
  o.num_chunks = 10;
  Prediction p = infer(net, in, o);
  CHECK(p.patches_per_level[0] == 400);
  CHECK(min_of(p.prob) > 0.999f);
  // One chunk of 2 patches cannot cover it: uncovered voxels are exactly 0.
  o.num_patches = 2;
  o.num_chunks = 1;
  Prediction q = infer(net, in, o);
  CHECK(min_of(q.prob) == 0.f);
  CHECK(max_of(q.prob) > 0.999f);
}

TEST_CASE("infer: lazy evaluation keeps exactly the top fraction; children stay inside their parents") {
  json j = {{"depth", 2}, {"ndim", 3}, {"num_labels", 1}, {"snapper", {0, 1}},
            {"scheme", {{"patch_size", {6, 6, 6}}, {"fov_mm", {12, 12, 12}}, {"destvox_mm", {1, 1, 1}}}}};
  ConstNet net(j, {0.f, 5.f});
  net.from_image = true;
  InferInput in = cube(30, 30, 30);
  // A ramp: the attention (mean of sigmoid(mean intensity)) differs between patches.
  for (int z = 0; z < 30; ++z)
    for (int y = 0; y < 30; ++y)
      for (int x = 0; x < 30; ++x) in.data.f32()[x + 30 * (y + 30 * z)] = 0.1f * x - 0.05f * y + 0.02f * z;
  std::vector<train::Patch> l0;
  std::vector<std::pair<train::Patch, int>> l1;
  InferOptions o;
  o.generate_type = GenerateType::random;
  o.num_patches = 20;
  o.branch_factor = 2;
  o.lazy_fraction = 0.25;
  o.observe = [&](int level, const train::Patch& p, int parent) {
    if (level == 0) {
      CHECK(parent == -1);
      l0.push_back(p);
    } else {
      l1.emplace_back(p, parent);
    }
  };
  Prediction p = infer(net, in, o);
  REQUIRE(l0.size() == 20);
  CHECK(p.patches_per_level[1] == 5 * 2);  // round(0.25 * 20) parents, 2 children each
  REQUIRE(l1.size() == 10);
  REQUIRE(net.level0_means.size() == 20);
  // The kept parents are exactly the 5 with the highest attention.
  std::vector<float> att(20);
  for (int i = 0; i < 20; ++i) att[i] = 1.f / (1.f + std::exp(-net.level0_means[i]));
  std::vector<int> order(20);
  for (int i = 0; i < 20; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return att[a] > att[b]; });
  std::set<int> top(order.begin(), order.begin() + 5), got;
  for (auto& [child, parent] : l1) {
    got.insert(parent);
    // Inside the parent (snapper = 1): the child's box in parent voxel coordinates.
    Eigen::Vector3d lo, hi;
    train::bounding_box(l0[parent], child, lo, hi);
    for (int a = 0; a < 3; ++a) {
      CHECK(lo[a] >= -0.5 - 1e-6);
      CHECK(hi[a] <= l0[parent].s[a] - 0.5 + 1e-6);
    }
  }
  CHECK(got == top);
  CHECK(top_fraction({0.1f, 0.9f, 0.5f, 0.9f}, 0.5) == std::vector<int>{1, 3});
  CHECK(top_fraction({0.3f, 0.2f, 0.1f}, 0.01) == std::vector<int>{0});
}

TEST_CASE("infer: cos/cos2 windows and the sqrt(n^2 + 3 alpha) rule") {
  // One patch exactly on the image grid (depth 1, fov = the image): each voxel is seen once.
  json j = {{"depth", 1}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {9, 7, 5}}, {"destvox_rel", {1, 1, 1}}, {"fov_rel", 1}}}};
  ConstNet net(j, {40.f});  // probability 1
  InferInput in = cube(9, 7, 5);
  const double pi = 3.14159265358979323846;
  for (auto win : {kernels::Window::flat, kernels::Window::cos, kernels::Window::cos2}) {
    for (double alpha : {0.0, 1.0}) {
      InferOptions o;
      o.window = win;
      o.sparse_suppression = alpha;
      Prediction p = infer(net, in, o);
      CHECK(p.patches_per_level[0] == 1);
      for (int z = 0; z < 5; ++z)
        for (int y = 0; y < 7; ++y)
          for (int x = 0; x < 9; ++x) {
            double w = 1;
            if (win != kernels::Window::flat) {
              // sin(pi x/(s-1)) is exactly 0 at both ends (the kernels evaluate it symmetrically)
              auto f = [&](int i, int s) { return std::sin(pi * std::min(i, s - 1 - i) / (s - 1)); };
              w = f(x, 9) * f(y, 7) * f(z, 5);
              if (win == kernels::Window::cos2) w = std::sqrt(std::abs(w));
            }
            double expect = w == 0 ? 0.0 : w / std::sqrt(w * w + 3 * alpha);
            float got = p.prob[x + 9 * (y + 7 * z)];
            INFO("window " << int(win) << " alpha " << alpha << " voxel " << x << "," << y << "," << z);
            CHECK(got == doctest::Approx(expect).epsilon(1e-4));
            if (alpha == 1.0) CHECK(got <= 0.5f + 1e-6f);  // seen once never exceeds 0.5
          }
    }
  }
}

TEST_CASE("infer: --level mix falls back to coarser levels where the finest has no patch") {
  json j = {{"depth", 2}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_rel", 1}, {"destvox_mm", {1, 1, 1}}}}};
  ConstNet net(j, {10.f, -10.f});  // level 0 says 1, level 1 says 0
  InferInput in = cube(32, 32, 32);
  InferOptions o;
  o.generate_type = GenerateType::random;
  o.num_patches = 1;
  o.branch_factor = 3;  // three 8 mm children in a 32 mm image: most voxels see no level-1 patch
  Prediction plain = infer(net, in, o);
  CHECK(max_of(plain.prob) < 0.01f);  // only level 1 is stitched
  o.level_mix = true;
  Prediction mix = infer(net, in, o);
  // --level 0 stitches the coarse level only (same seed: the same level-0 patch).
  o.level_mix = false;
  o.level = 0;
  Prediction l0 = infer(net, in, o);
  CHECK(l0.patches_per_level.size() == 1);
  int64_t fine = 0, coarse = 0, covered0 = 0;
  for (size_t i = 0; i < mix.prob.size(); ++i) {
    fine += mix.prob[i] < 0.01f;
    coarse += mix.prob[i] > 0.99f;
    covered0 += l0.prob[i] > 0.99f;
    if (l0.prob[i] < 0.01f) CHECK(mix.prob[i] < 0.01f);  // nothing where no level saw the voxel
  }
  CHECK(covered0 > 8000);
  CHECK(fine >= 3 * 8 * 8 * 8 / 2);                 // inside the level-1 patches: level 1
  CHECK(coarse >= covered0 - 3 * 8 * 8 * 8 - 1500);  // elsewhere in level 0's patch: level 0
}

TEST_CASE("infer: 2D image, tree coverage, output on the image grid") {
  json j = {{"depth", 2}, {"ndim", 2}, {"num_labels", 1},
            {"scheme", {{"patch_size", {8, 8}}, {"fov_rel", 0.6}, {"destvox_rel", 1}}}};
  ConstNet net(j, {10.f, 10.f});
  InferInput in = cube(40, 30, 1, 0.7);
  Prediction p = infer(net, in, InferOptions{});
  REQUIRE(p.prob.size() == 40 * 30);
  CHECK(p.grid.s == in.image.s);
  CHECK(min_of(p.prob) > 0.999f);
}

TEST_CASE("infer: coarse final level is stitched on a coarser grid and resampled; sampling_factor refines") {
  // Final voxel 2 mm on a 1 mm image: nearest splatting on the image grid would leave holes.
  json j = {{"depth", 1}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_rel", 1}, {"destvox_mm", {2, 2, 2}}}}};
  ConstNet net(j, {10.f});
  InferInput in = cube(20, 20, 20);
  InferOptions o;
  Prediction p = infer(net, in, o);
  CHECK(p.grid.s == in.image.s);
  CHECK(min_of(p.prob) > 0.999f);
  o.sampling_factor = 2;  // output voxel 0.5 mm
  Prediction q = infer(net, in, o);
  CHECK(q.grid.s == train::Size3{40, 40, 40});
  CHECK(q.grid.A(0, 0) == doctest::Approx(0.5));
  CHECK(min_of(q.prob) > 0.999f);
  o.sampling_factor = 1;
  o.scale_to_original = false;  // the network's own grid: 2 mm
  Prediction r = infer(net, in, o);
  CHECK(r.grid.s == train::Size3{10, 10, 10});
  CHECK(r.grid.A(0, 0) == doctest::Approx(2.0));
}

TEST_CASE("infer: bad options are refused") {
  json j = {{"depth", 1}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_rel", 1}, {"destvox_rel", 1}}}};
  ConstNet net(j, {0.f});
  InferInput in = cube(8, 8, 8);
  InferOptions o;
  o.level = 3;
  CHECK_THROWS_AS(infer(net, in, o), std::invalid_argument);
  o = InferOptions{};
  o.lazy_fraction = 0;
  CHECK_THROWS_AS(infer(net, in, o), std::invalid_argument);
  InferInput flat = cube(8, 8, 1);
  CHECK_THROWS_AS(infer(net, flat, InferOptions{}), std::invalid_argument);
}

namespace {
// A network whose test-time augmentation is a random rotation about z.
class RotNet : public ConstNet {
 public:
  bool independent = false;
  using ConstNet::ConstNet;
  Eigen::Matrix3d augmentation(int, std::mt19937_64& rng) const override {
    double a = std::uniform_real_distribution<double>(-0.5, 0.5)(rng);
    Eigen::Matrix3d R = Eigen::Matrix3d::Identity();
    R(0, 0) = R(1, 1) = std::cos(a);
    R(0, 1) = -std::sin(a);
    R(1, 0) = std::sin(a);
    return R;
  }
  bool independent_augmentation() const override { return independent; }
};
}  // namespace

TEST_CASE("infer: test-time augmentation rotates the patches; children share their parent's unless independent") {
  json j = {{"depth", 2}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {6, 6, 6}}, {"fov_mm", {14, 14, 14}}, {"destvox_mm", {1, 1, 1}}}}};
  for (bool independent : {false, true}) {
    RotNet net(j, {0.f, 0.f});
    net.independent = independent;
    InferInput in = cube(20, 20, 20);
    std::vector<train::Patch> l0;
    int same = 0, children = 0, rotated = 0;
    InferOptions o;
    o.generate_type = GenerateType::random;
    o.num_patches = 6;
    o.branch_factor = 2;
    o.augment = true;
    auto dir = [](const train::Patch& p) { return Eigen::Vector3d(p.A.block<3, 1>(0, 0).normalized()); };
    o.observe = [&](int level, const train::Patch& p, int parent) {
      if (level == 0) {
        l0.push_back(p);
        rotated += std::abs(dir(p)[1]) > 1e-3;
      } else {
        ++children;
        same += (dir(p) - dir(l0[parent])).norm() < 1e-9;
      }
    };
    infer(net, in, o);
    CHECK(children == 12);
    CHECK(rotated == 6);
    if (independent) CHECK(same == 0);
    else CHECK(same == 12);
  }
}

TEST_CASE("infer: 'world' system on an image with permuted axes: the coarse level is stitched without holes") {
  json j = {{"depth", 1}, {"ndim", 3}, {"num_labels", 1}, {"system", "world"},
            {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_rel", 1}, {"destvox_mm", {2, 1, 1}}}}};
  ConstNet net(j, {10.f});
  InferInput in = cube(20, 18, 16);
  in.image.A.setZero();
  in.image.A(1, 0) = 1;  // image axis 0 runs along world y
  in.image.A(0, 1) = 1;  // image axis 1 runs along world x (the patches' coarse 2 mm axis)
  in.image.A(2, 2) = 1;
  in.image.A(3, 3) = 1;
  Prediction p = infer(net, in, InferOptions{});
  CHECK(p.grid.s == in.image.s);
  CHECK(min_of(p.prob) > 0.999f);
}

TEST_CASE("infer: every crop, parent crop and stitch goes through the engine's dispatched patch ops") {
  // The op profile counts the kernel calls that PW_DISPATCH routes by the tensors' device; infer
  // calls no kernel directly, so with a GPU network the same calls run on the GPU.
  json j = {{"depth", 2}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_mm", {16, 16, 16}}, {"destvox_mm", {1, 1, 1}}}}};
  ConstNet net(j, {10.f, 10.f});
  net.extra = 2;
  InferInput in = cube(24, 20, 22);
  InferOptions o;
  o.batch_size = 27;
  profile_enable(true);
  profile_reset();
  Prediction p = infer(net, in, o);
  const int64_t gathers = profile_calls("gather_affine", Device::cpu);
  const int64_t scatters = profile_calls("scatter_affine", Device::cpu);
  const int64_t normalize = profile_calls("stitch_normalize", Device::cpu);
  profile_enable(false);
  // Level 0: one batch of 27 image crops; level 1: 27 batches of image crops and 27 of parent crops.
  CHECK(gathers == 1 + 27 + 27);
  // The last level's 27 batches, each scattered once per slab of stitching bricks it reaches (bricks are
  // 32x32x8, thin along the sweep: the 22 planes make 3 slabs, each normalised once when it is done).
  CHECK(scatters >= 27);
  CHECK(scatters <= 27 * 3);
  CHECK(normalize == 3);
  CHECK(p.patches_per_level[1] == 27 * 27);
}

TEST_CASE("infer: NaN or infinite network outputs are an error naming the level, never a silent result") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  json j = {{"depth", 2}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_mm", {16, 16, 16}}, {"destvox_mm", {1, 1, 1}}}}};
  const std::string what = " of the network produced NaN or infinite outputs (a diverged or damaged model)";
  for (float bad : {nan, inf, -inf}) {
    CAPTURE(bad);
    ConstNet net(j, {10.f, bad});  // level 1 is stitched
    InferOptions o;
    CHECK_THROWS_WITH_AS(infer(net, cube(24, 20, 22), o), ("level 1" + what).c_str(), InputError);
    ConstNet net0(j, {bad, 10.f});  // level 0 only feeds level 1 (not stitched): stopped there, at its first batch
    CHECK_THROWS_WITH_AS(infer(net0, cube(24, 20, 22), o), ("level 0" + what).c_str(), InputError);
    CHECK(net0.calls[0] == o.batch_size);
    CHECK(net0.calls[1] == 0);
    o.lazy_fraction = 0.5;  // lazy evaluation does not hide it either
    o.level_mix = true;
    ConstNet lazy(j, {bad, 10.f});
    CHECK_THROWS_WITH_AS(infer(lazy, cube(24, 20, 22), o), ("level 0" + what).c_str(), InputError);
  }
  // 2D
  json j2 = {{"depth", 1}, {"ndim", 2}, {"categorical_label", {1, 2}}, {"categorical", true},
             {"scheme", {{"patch_size", {8, 8}}, {"fov_rel", 1}, {"destvox_rel", 1}}}};
  ConstNet net2(j2, {nan});
  CHECK_THROWS_WITH_AS(infer(net2, cube(8, 8, 1), InferOptions{}), ("level 0" + what).c_str(), InputError);
}

TEST_CASE("infer: attentionFun and reduceFun on constructed logits") {
  // categorical, background + 2 classes, 2 patches of 1x2 voxels; logits [patch][channel][voxel]
  const float v[2][3][2] = {{{0, 2}, {1, 0}, {-1, 0}}, {{0, 0}, {3, 0}, {0, -2}}};
  Tensor logits = Tensor::empty({2, 3, 1, 2});
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < 2; ++i) logits.f32()[(b * 3 + c) * 2 + i] = v[b][c][i];
  auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
  auto fg = [&](int b, int i) {  // 1 - p(background)
    double z = std::exp(v[b][0][i]), s = z + std::exp(v[b][1][i]) + std::exp(v[b][2][i]);
    return 1 - z / s;
  };
  for (int b = 0; b < 2; ++b) {
    CAPTURE(b);
    double smean = 0, smax = 0, imean = 0, imax = -1e9;
    for (int c = 1; c < 3; ++c)
      for (int i = 0; i < 2; ++i) {
        smean += sig(v[b][c][i]) / 4;
        smax = std::max(smax, sig(v[b][c][i]));
        imean += v[b][c][i] / 4.0;
        imax = std::max(imax, double(v[b][c][i]));
      }
    CHECK(attention_of(logits, 3, true, AttentionFun::sigmoid, Reduce::mean)[b] == doctest::Approx(smean));
    CHECK(attention_of(logits, 3, true, AttentionFun::sigmoid, Reduce::max)[b] == doctest::Approx(smax));
    CHECK(attention_of(logits, 3, true, AttentionFun::identity, Reduce::mean)[b] == doctest::Approx(imean));
    CHECK(attention_of(logits, 3, true, AttentionFun::identity, Reduce::max)[b] == doctest::Approx(imax));
    CHECK(attention_of(logits, 3, true, AttentionFun::softmax, Reduce::mean)[b] ==
          doctest::Approx((fg(b, 0) + fg(b, 1)) / 2));
    CHECK(attention_of(logits, 3, true, AttentionFun::softmax, Reduce::max)[b] ==
          doctest::Approx(std::max(fg(b, 0), fg(b, 1))));
  }
  // non-categorical: every channel is a label; softmax = each label's share
  const double e0 = std::exp(0.0), e1 = std::exp(1.0), em1 = std::exp(-1.0);
  CHECK(attention_of(logits, 3, false, AttentionFun::softmax, Reduce::max)[0] ==
        doctest::Approx(std::max(e1 / (e0 + e1 + em1), std::exp(2.0) / (std::exp(2.0) + 2))));
  CHECK(parse_attention_fun("identity") == AttentionFun::identity);
  CHECK_THROWS_AS(parse_attention_fun("tanh"), UsageError);
  CHECK_THROWS_AS(parse_reduce("median"), UsageError);
}

namespace {

// Level 0's logit is the image crop itself (one sigmoid label); level 1 outputs zeros. Records the crops.
class ImageLogitNet : public LevelNetwork {
 public:
  train::Scheme sc;
  std::vector<std::vector<float>> crops;  // level-0 crops in call order
  explicit ImageLogitNet(const json& j) : sc(train::Scheme::from_json(j)) {}
  const train::Scheme& scheme() const override { return sc; }
  int image_channels() const override { return 1; }
  int out_channels(int) const override { return 1; }
  Tensor forward(int level, const Tensor& img, const Tensor&) override {
    if (level > 0) return Tensor::zeros(img.shape());
    const int64_t B = img.dim(0), per = img.numel() / B;
    for (int64_t b = 0; b < B; ++b) crops.emplace_back(img.f32() + b * per, img.f32() + (b + 1) * per);
    return img.clone();
  }
};

}  // namespace

TEST_CASE("infer: the attention function and reduction decide the patches lazy evaluation keeps") {
  json j = {{"depth", 2}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {6, 6, 6}}, {"fov_mm", {12, 12, 12}}, {"destvox_mm", {1, 1, 1}}}}};
  InferInput in = cube(30, 30, 30);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  for (int64_t i = 0; i < in.data.numel(); ++i) in.data.f32()[i] = U(rng) + (U(rng) > 0.98f ? 12.f : 0.f);
  auto kept = [&](AttentionFun fun, Reduce reduce, std::set<int>& expect) {
    ImageLogitNet net(j);
    InferOptions o;
    o.generate_type = GenerateType::random;
    o.num_patches = 20;
    o.lazy_fraction = 0.25;
    o.attention = reduce;
    o.attention_fun = fun;
    std::set<int> parents;
    o.observe = [&](int level, const train::Patch&, int parent) {
      if (level == 1) parents.insert(parent);
    };
    infer(net, in, o);
    REQUIRE(net.crops.size() == 20);
    std::vector<float> att;
    for (const auto& c : net.crops) {
      double s = 0, m = -1e9;
      for (float x : c) {
        const double a = fun == AttentionFun::sigmoid ? 1 / (1 + std::exp(-double(x))) : double(x);
        s += a;
        m = std::max(m, a);
      }
      att.push_back(float(reduce == Reduce::mean ? s / double(c.size()) : m));
    }
    const std::vector<int> top = top_fraction(att, 0.25);
    expect = std::set<int>(top.begin(), top.end());
    return parents;
  };
  std::set<int> e1, e2;
  const std::set<int> sig_mean = kept(AttentionFun::sigmoid, Reduce::mean, e1);
  const std::set<int> id_max = kept(AttentionFun::identity, Reduce::max, e2);
  CHECK(sig_mean.size() == 5);
  CHECK(sig_mean == e1);
  CHECK(id_max == e2);
  CHECK(sig_mean != id_max);  // the constructed image makes the two choices differ
}

namespace {

// A one-level network whose output patch is the central out_patch_size crop of its input's channel 0
// (the identity, cut like a block with out_patch_size < patch_size), scaled by `gain`, plus `bias`.
class CentreCropNet : public LevelNetwork {
 public:
  train::Scheme sc;
  float gain = 1, bias = 0;
  bool index_logits = false;  // instead: output voxel j (x fastest) gets the logit 0.1 j
  explicit CentreCropNet(const json& j) : sc(train::Scheme::from_json(j)) {}
  const train::Scheme& scheme() const override { return sc; }
  int image_channels() const override { return 1; }
  int out_channels(int) const override { return 1; }
  Tensor forward(int level, const Tensor& img, const Tensor&) override {
    const auto &ps = sc.patch_size[level], &os = sc.out_patch_size[level];
    const int64_t B = img.dim(0), Z = os[2], Y = os[1], X = os[0];
    Tensor out = Tensor::empty(sc.ndim == 3 ? Shape{B, 1, Z, Y, X} : Shape{B, 1, Y, X});
    const int64_t dz = (ps[2] - Z) / 2, dy = (ps[1] - Y) / 2, dx = (ps[0] - X) / 2;
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t z = 0; z < Z; ++z)
        for (int64_t y = 0; y < Y; ++y)
          for (int64_t x = 0; x < X; ++x, ++n) {
            const int64_t in = ((b * ps[2] + dz + z) * ps[1] + dy + y) * ps[0] + dx + x;
            out.f32()[n] = index_logits ? 0.1f * static_cast<float>(n % (Z * Y * X)) : gain * img.f32()[in] + bias;
          }
    return out;
  }
};

float logistic(float x) { return 1.f / (1.f + std::exp(-x)); }

}  // namespace

TEST_CASE("infer: out_patch_size < patch_size: an output patch is stitched over its own world box") {
  // Constructed: a 4x4 image, input patches 8x8 of its voxel size; the one tree patch is centred on the
  // image, so its 4x4 output patch is the image grid itself: output voxel j lands on image voxel j.
  // (Stitched over the input patch's 8x8 box, the output would land elsewhere or be resampled.)
  json j = {{"depth", 1}, {"ndim", 2}, {"num_labels", 1},
            {"scheme", {{"patch_size", {8, 8}}, {"out_patch_size", {4, 4}}, {"fov_rel", 1}, {"destvox_rel", 1}}}};
  CentreCropNet net(j);
  net.index_logits = true;
  InferInput in = cube(4, 4, 1);
  InferOptions o;
  o.generate_type = GenerateType::tree;
  Prediction p = infer(net, in, o);
  CHECK(p.patches_per_level[0] == 1);
  REQUIRE(p.prob.size() == 16);
  for (int v = 0; v < 16; ++v) CHECK(p.prob[v] == doctest::Approx(logistic(0.1f * v)).epsilon(1e-6));

  // Random placements at fractional positions, 2D and 3D: with nearest crop and splat, an identity
  // network cut to its central output reproduces the image wherever an output patch lands, and nothing
  // lands elsewhere (every voxel is checked against the output boxes of the patches drawn).
  for (int nd : {2, 3}) {
    CAPTURE(nd);
    json k = {{"depth", 1}, {"ndim", nd}, {"num_labels", 1},
              {"scheme", {{"patch_size", nd == 2 ? json{8, 10} : json{8, 10, 6}},
                          {"out_patch_size", nd == 2 ? json{2, 4} : json{2, 4, 4}},
                          {"fov_rel", 1},
                          {"destvox_rel", 1}}}};
    CentreCropNet id(k);
    id.gain = 0.05f;
    id.bias = -1;
    InferInput im = cube(14, 12, nd == 2 ? 1 : 9);
    for (int64_t v = 0; v < im.data.numel(); ++v) im.data.f32()[v] = static_cast<float>((v * 37) % 41);
    InferOptions r;
    r.generate_type = GenerateType::random;
    r.num_patches = 6;
    std::vector<train::Patch> seen;
    r.observe = [&](int, const train::Patch& patch, int) { seen.push_back(patch); };
    Prediction q = infer(id, im, r);
    // the voxels whose centres lie in an output patch's world box
    std::vector<int> inside(im.image.numel(), 0);
    for (const train::Patch& s : seen) {
      const train::Patch op = train::out_patch(id.sc, 0, s);
      Eigen::Vector3d lo, hi;
      train::bounding_box(im.image, op, lo, hi);  // image voxel coordinates
      for (int64_t v = 0; v < im.image.numel(); ++v) {
        const int64_t nx = im.image.s[0], ny = im.image.s[1];
        const int64_t x = v % nx, y = (v / nx) % ny, z = v / (nx * ny);
        if (x > lo[0] && x < hi[0] && y > lo[1] && y < hi[1] && (nd == 2 || (z > lo[2] && z < hi[2]))) inside[v] = 1;
      }
    }
    int covered = 0;
    for (int64_t v = 0; v < im.image.numel(); ++v) {
      CAPTURE(v);
      if (inside[v]) {
        CHECK(q.prob[v] == doctest::Approx(logistic(0.05f * im.data.f32()[v] - 1)).epsilon(1e-6));
        ++covered;
      } else {
        CHECK(q.prob[v] == 0.f);  // no output box holds it: nothing stitched there
      }
    }
    CHECK(covered >= 6 * (nd == 2 ? 8 : 32) / 2);  // the 6 output boxes (8 or 32 voxels) reached the image
  }
}

TEST_CASE("infer: out_patch_size < patch_size: tree tiles the image with output patches through two levels") {
  json j = {{"depth", 2}, {"ndim", 3}, {"num_labels", 1},
            {"scheme", {{"patch_size", {{8, 8, 8}, {12, 8, 8}}}, {"out_patch_size", {{4, 6, 8}, {4, 4, 2}}},
                        {"fov_mm", {16, 16, 16}}, {"destvox_mm", {1, 1, 1}}}}};
  ConstNet net(j, {10.f, 10.f});
  InferInput in = cube(20, 18, 16);
  InferOptions o;
  o.generate_type = GenerateType::tree;
  std::vector<train::Patch> level0;
  std::vector<std::pair<train::Patch, int>> level1;
  o.observe = [&](int level, const train::Patch& p, int parent) {
    if (level == 0) level0.push_back(p);
    else level1.emplace_back(p, parent);
  };
  Prediction p = infer(net, in, o);
  CHECK(min_of(p.prob) > 0.999f);  // every voxel received a level-1 output
  // per axis ceil(image / level-0 output extent) + 1 parents: 20/8 -> 4, 18/12 -> 3, 16/16 -> 1 (covers)
  CHECK(p.patches_per_level[0] == 4 * 3 * 1);
  // children tile each parent's output patch (8x12x16 mm) with their outputs (4x4x2 mm): 3 x 4 x 9
  CHECK(p.patches_per_level[1] == 12 * 3 * 4 * 9);
  for (const auto& [c, parent] : level1) {  // a child lies in its parent's output patch
    Eigen::Vector3d lo, hi;
    const train::Patch po = train::out_patch(net.sc, 0, level0[parent]);
    train::bounding_box(po, train::out_patch(net.sc, 1, c), lo, hi);  // the child's output box
    for (int a = 0; a < 3; ++a) {
      CHECK(lo[a] >= -0.5 - 1e-9);
      CHECK(hi[a] <= po.s[a] - 0.5 + 1e-9);
    }
  }
}

TEST_CASE("lazyEval of the model: apply's defaults and the validation's options; explicit options win") {
  train::ModelSpec spec;
  spec.lazy_eval.fraction = 0.4;
  spec.lazy_eval.attention_fun = "identity";
  spec.lazy_eval.reduce_fun = "max";
  const InferOptions o = model_lazy_options(spec);
  CHECK(o.lazy_fraction == 0.4);
  CHECK(o.attention == Reduce::max);
  REQUIRE(o.attention_fun.has_value());
  CHECK(*o.attention_fun == AttentionFun::identity);
  CHECK(o.generate_type == GenerateType::tree);  // the rest as apply's defaults

  ApplyOptions given;
  given.lazy_fraction = 0.9;
  given.attention = "mean";
  ApplyRequest r = make_request(given);
  set_lazy_defaults(r, given, spec);
  CHECK(r.infer.lazy_fraction == 0.9);
  CHECK(r.infer.attention == Reduce::mean);
  REQUIRE(r.infer.attention_fun.has_value());
  CHECK(*r.infer.attention_fun == AttentionFun::identity);

  train::ModelSpec plain;  // no lazyEval in the config: full evaluation, the attention function by model kind
  const InferOptions p = model_lazy_options(plain);
  CHECK(p.lazy_fraction == 1.0);
  CHECK_FALSE(p.attention_fun.has_value());
}
