// Brick-wise stitching (apply/bricks.h): bricks equal whole-grid stitching bit for bit, an output built
// brick by brick equals the one built whole (and writes the same file), and an inference holds a slab
// of bricks, not the grid (the accumulators' own byte counter).
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <random>

#include "apply/bricks.h"
#include "apply/infer.h"
#include "apply/outputs.h"
#include "common/test_util.h"
#include "engine/ops_patch.h"
#include "kernels/patch_test_util.h"  // tests/kernels/patch_test_util.h: push_random_matrix

using namespace pw;
using namespace pw::apply;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Collects a whole [C, grid] array from the boxes (grid in array order z, y, x).
struct Collect : BrickSink {
  std::array<int64_t, 3> g;
  int64_t C;
  std::vector<float> y;
  std::vector<int> hits;  // boxes per voxel: must be exactly 1
  Collect(std::array<int64_t, 3> grid, int64_t channels) : g(grid), C(channels) {
    y.assign(C * g[0] * g[1] * g[2], -1.f);
    hits.assign(g[0] * g[1] * g[2], 0);
  }
  void begin(const train::Patch&, int, bool) override {}
  void put(const Box& b, const float* v) override {
    const int64_t n = g[0] * g[1] * g[2];
    for (int64_t z = 0; z < b.size[0]; ++z)
      for (int64_t yy = 0; yy < b.size[1]; ++yy)
        for (int64_t x = 0; x < b.size[2]; ++x) {
          const int64_t gi = ((b.lo[0] + z) * g[1] + b.lo[1] + yy) * g[2] + b.lo[2] + x;
          const int64_t li = (z * b.size[1] + yy) * b.size[2] + x;
          ++hits[gi];
          for (int64_t c = 0; c < C; ++c) y[c * n + gi] = v[c * b.numel() + li];
        }
  }
};

// Random patch matrices over a grid (array order): rotations and scalings from just outside to just
// outside, integer shifts (the CPU's contiguous rows), half-voxel shifts (rounding ties).
std::vector<float> random_mats(int d, const std::array<int64_t, 3>& grid, const std::vector<int64_t>& ps, int n,
                               uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> m;
  std::vector<int64_t> s3(3, 1);
  for (int a = 0; a < d; ++a) s3[3 - d + a] = ps[a];
  for (int i = 0; i < n; ++i) {
    std::vector<double> centre;
    for (int a = 0; a < d; ++a)
      centre.push_back(std::uniform_real_distribution<double>(-2, double(grid[3 - d + a]) + 2)(rng));
    test::patch::push_random_matrix(m, d, centre, s3, 0.6, 1.6, rng);
  }
  for (float frac : {0.f, 0.5f})
    for (int i = 0; i < 3; ++i) {
      for (int r = 0; r <= d; ++r)
        for (int c = 0; c <= d; ++c) {
          float t = float(std::uniform_int_distribution<int>(-3, int(grid[3 - d + std::min(r, d - 1)]) - 2)(rng)) + frac;
          m.push_back(r == d ? (c == d ? 1.f : 0.f) : c == d ? t : r == c ? 1.f : 0.f);
        }
    }
  return m;
}

Shape with_front(std::vector<int64_t> front, const std::vector<int64_t>& rest) {
  front.insert(front.end(), rest.begin(), rest.end());
  return Shape(front.begin(), front.end());
}

}  // namespace

TEST_CASE("bricks: brick stitching equals whole-grid stitching bit for bit (random patches, every window, nearest "
          "and linear, sparse suppression, 2D and 3D)") {
  for (int d : {2, 3}) {
    const std::array<int64_t, 3> grid = d == 3 ? std::array<int64_t, 3>{21, 26, 30} : std::array<int64_t, 3>{1, 37, 41};
    const std::vector<int64_t> ps = d == 3 ? std::vector<int64_t>{7, 9, 11} : std::vector<int64_t>{13, 10};
    const std::vector<int64_t> gs(grid.begin() + (3 - d), grid.end());
    const int64_t C = 3;
    const std::vector<float> mats = random_mats(d, grid, ps, 14, 40 + d);
    const int64_t k2 = (d + 1) * (d + 1), P = static_cast<int64_t>(mats.size()) / k2;
    int64_t pn = 1;
    for (int64_t v : ps) pn *= v;
    const Tensor patches = Tensor::from_vector(with_front({P, C}, ps), test::random_values(P * C * pn, 7, 0.f, 1.f));
    for (Interp mode : {Interp::nearest, Interp::linear})
      for (Window win : {Window::flat, Window::cos, Window::cos2})
        for (float alpha : {0.f, 0.5f})
          for (int64_t brick : {5, 8, 64}) {
            CAPTURE(d);
            CAPTURE(int(mode));
            CAPTURE(int(win));
            CAPTURE(alpha);
            CAPTURE(brick);
            Tensor acc = Tensor::zeros(with_front({C}, gs)), w = Tensor::zeros(with_front({}, gs));
            BrickStitch bs(grid, d, C, Device::cpu, brick);
            for (int64_t p0 = 0; p0 < P; p0 += 5) {  // in batches, as the inference adds them
              const int64_t p1 = std::min(P, p0 + 5);
              std::vector<float> m(mats.begin() + p0 * k2, mats.begin() + p1 * k2);
              stitch_accumulate(patches.rows(p0, p1), Tensor::from_vector({p1 - p0, d + 1, d + 1}, m), mode, win, acc, w);
              bs.add(patches.rows(p0, p1), m, mode, win);
            }
            const std::vector<float> want = stitch_normalize(acc, w, alpha).to_vector();
            Collect got(grid, C);
            bs.finish_all(alpha, got);
            CHECK(bs.bytes() == 0);
            CHECK(std::count(got.hits.begin(), got.hits.end(), 1) == static_cast<long>(got.hits.size()));
            REQUIRE(got.y.size() == want.size());
            CHECK(std::memcmp(got.y.data(), want.data(), want.size() * sizeof(float)) == 0);
            int64_t landed = 0;
            for (float v : w.to_vector()) landed += v > 0;
            CHECK(landed > 0);
            CHECK(landed < w.numel());  // some voxels got nothing: the zero case is exercised
          }
  }
}

TEST_CASE("bricks: only bricks that patches reach exist; finishing twice or adding to a finished brick is refused") {
  const std::array<int64_t, 3> grid{40, 40, 40};
  BrickStitch bs(grid, 3, 2, Device::cpu, 8);
  CHECK(bs.num_bricks() == 5 * 5 * 20);  // 8 x 8 across, 2 deep along z
  // One 6^3 patch at voxel (1, 1, 1): the footprint (planes 0..7 with its margin) meets the first 4 bricks along z.
  std::vector<float> m = {1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1};
  Tensor p = Tensor::full({1, 2, 6, 6, 6}, 0.25f);
  bs.add(p, m, Interp::nearest, Window::flat);
  CHECK(bs.allocated_bricks() == 4);
  CHECK(bs.bytes() == 3 * 8 * 8 * 8 * 4);
  Collect c(grid, 2);
  bs.finish(0, 0.f, c);
  CHECK(c.y[(1 * 40 + 1) * 40 + 1] == 0.25f);
  CHECK_THROWS_AS(bs.finish(0, 0.f, c), std::logic_error);
  CHECK_THROWS_AS(bs.add(p, m, Interp::nearest, Window::flat), std::logic_error);
  bs.finish_all(0.f, c);  // the 499 others: 3 with the patch's planes, the rest zeros, never allocated
  CHECK(bs.allocated_bricks() == 4);
  CHECK(bs.peak_bytes() == 3 * 8 * 8 * 8 * 4);
  CHECK(std::count(c.hits.begin(), c.hits.end(), 1) == 40 * 40 * 40);
  // An origin of 1 would not be exact (coordinates below 0.5 lose bits): refused.
  CHECK_THROWS_AS(BrickStitch(grid, 3, 2, Device::cpu, 1), std::invalid_argument);
  Tensor acc = Tensor::zeros({2, 8, 8, 8}), w = Tensor::zeros({8, 8, 8});
  CHECK_THROWS_AS(stitch_accumulate(p, Tensor::from_vector({1, 4, 4}, m), Interp::nearest, Window::flat, acc, w, {1, 0, 0}),
                  std::invalid_argument);
  stitch_accumulate(p, Tensor::from_vector({1, 4, 4}, m), Interp::nearest, Window::flat, acc, w, {0, 0, 2});
  CHECK(w.to_vector()[(1 * 8 + 1) * 8 + 0] == 1.f);  // grid voxel (1, 1, 2) is brick voxel (1, 1, 0)
}

TEST_CASE("bricks: an output built brick by brick equals the one built whole, and writes the same file") {
  const fs::path dir = test::temp_dir("bricks-outputs");
  Prediction p;
  p.grid.s = {13, 11, 9};
  p.grid.A(0, 0) = 1.5;
  p.grid.A(1, 3) = -4;
  const int64_t n = p.grid.numel();
  for (bool categorical : {true, false}) {
    p.categorical = categorical;
    p.channels = categorical ? 4 : 3;
    p.prob = test::random_values(static_cast<size_t>(p.channels) * n, 11, 0.f, 1.f);
    for (int64_t i = 0; i < n; i += 17)
      for (int c = 0; c < p.channels; ++c) p.prob[c * n + i] = 0.f;  // voxels no patch reached
    LabelInfo info;
    info.categorical = categorical;
    info.values = {2, 7, 300};  // int16 label map
    info.names = {"a", "b", "c"};
    for (const char* type : {"atls", "atls:0.3", "mask", "mask:0.2,0.5,0.9", "float32", "uint8", "int16"}) {
      CAPTURE(type);
      CAPTURE(categorical);
      const OutputType t = parse_output_type(type);
      const Volume whole = make_output(p, t, info);
      OutputBuilder b(t, info);
      b.begin(p.grid, p.channels, p.categorical);
      BrickStitch layout({9, 11, 13}, 3, 1, Device::cpu, 4);  // the boxes of 4^3 bricks (edge ones smaller)
      for (int64_t k = layout.num_bricks() - 1; k >= 0; --k) {  // any order
        const Box bx = layout.box(k);
        std::vector<float> y(static_cast<size_t>(p.channels) * bx.numel());
        for (int c = 0; c < p.channels; ++c)
          for (int64_t z = 0; z < bx.size[0]; ++z)
            for (int64_t yy = 0; yy < bx.size[1]; ++yy)
              for (int64_t x = 0; x < bx.size[2]; ++x)
                y[c * bx.numel() + (z * bx.size[1] + yy) * bx.size[2] + x] =
                    p.prob[c * n + ((bx.lo[0] + z) * 11 + bx.lo[1] + yy) * 13 + bx.lo[2] + x];
        b.put(bx, y.data());
      }
      const Volume bricks = b.take();
      CHECK(bricks.datatype == whole.datatype);
      CHECK(bricks.shape() == whole.shape());
      CHECK(bricks.data == whole.data);
      write_nifti(whole, dir / "whole.nii.gz");
      write_nifti(bricks, dir / "bricks.nii.gz");
      std::ifstream a(dir / "whole.nii.gz", std::ios::binary), c(dir / "bricks.nii.gz", std::ios::binary);
      const std::string fa((std::istreambuf_iterator<char>(a)), {}), fc((std::istreambuf_iterator<char>(c)), {});
      CHECK(fa == fc);
    }
  }
}

namespace {

// Level l's logits: channel c = image crop * (c - 1.5) + 0.1 c (so that every voxel and channel differs).
class CropNet : public LevelNetwork {
 public:
  train::Scheme sc;
  explicit CropNet(const json& j) : sc(train::Scheme::from_json(j)) {}
  const train::Scheme& scheme() const override { return sc; }
  int image_channels() const override { return 1; }
  int out_channels(int) const override { return sc.label_channels(); }
  Tensor forward(int, const Tensor& img, const Tensor&) override {
    const int64_t B = img.dim(0), C = sc.label_channels(), n = img.numel() / B;
    Shape s = img.shape();
    s[1] = C;
    Tensor out = Tensor::empty(s);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < n; ++i)
          out.f32()[(b * C + c) * n + i] = img.f32()[b * n + i] * (float(c) - 1.5f) + 0.1f * float(c);
    return out;
  }
};

InferInput random_image(int nx, int ny, int nz) {
  InferInput in;
  in.image.s = {nx, ny, nz};
  in.image.A(0, 3) = 2.0;
  in.data = Tensor::from_vector({1, nz, ny, nx}, test::random_values(static_cast<size_t>(nx) * ny * nz, 5, -1.f, 1.f));
  return in;
}

const json kScheme = {{"depth", 2},
                      {"ndim", 3},
                      {"categorical_label", {1, 2, 3}},
                      {"categorical", true},
                      {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_mm", {16, 16, 16}}, {"destvox_mm", {1, 1, 1}}}}};

}  // namespace

TEST_CASE("bricks: an inference gives the same result for every brick size and holds a slab of bricks, not the "
          "grid (accumulator bytes counted)") {
  CropNet net(kScheme);
  const InferInput in = random_image(20, 18, 120);
  const int64_t n = in.image.numel(), C = net.sc.label_channels();
  const double dense = double(C + 1) * double(n) * 4;  // whole-grid float accumulators and weight
  for (Interp mode : {Interp::nearest, Interp::linear}) {
    net.sc.scatter_type = mode;
    InferOptions o;
    o.window = Window::cos;
    o.sparse_suppression = 0.3;
    o.brick = 1000;  // one brick: the whole grid
    const Prediction ref = infer(net, in, o);
    CHECK(ref.bricks_total == 1);
    CHECK(ref.stitch_peak_bytes == int64_t(dense));
    for (int brick : {3, 8, 16}) {
      CAPTURE(brick);
      o.brick = brick;
      const Prediction p = infer(net, in, o);
      REQUIRE(p.prob.size() == ref.prob.size());
      CHECK(std::memcmp(p.prob.data(), ref.prob.data(), ref.prob.size() * sizeof(float)) == 0);
      // The sweep holds at most the bricks one patch (8 voxels + 1 margin on each side) spans, the spread of
      // first planes within one batch of patches (< 8), and the partly filled brick layers ahead of and
      // behind them: (18 + 2 depth) planes of the 120, the bricks being sweep_depth(brick) planes deep.
      const double bound = dense * (18.0 + 2.0 * double(BrickGrid::sweep_depth(brick))) / 120.0;
      CHECK(double(p.stitch_peak_bytes) <= bound);
      MESSAGE("brick " << brick << ": peak " << p.stitch_peak_bytes << " B of " << dense << " B dense");
    }
    // The result depends on the window and the splatting: the comparison above is not vacuous.
    double sum = 0;
    for (float v : ref.prob) sum += v;
    CHECK(sum > 0.5 * double(n));
  }
}

TEST_CASE("bricks: lazy random sampling allocates only the bricks its patches reach") {
  CropNet net(kScheme);
  const InferInput in = random_image(64, 64, 64);
  InferOptions o;
  o.generate_type = GenerateType::random;
  o.num_patches = 2;
  o.branch_factor = 2;
  o.brick = 8;
  const Prediction p = infer(net, in, o);
  CHECK(p.bricks_total == 8 * 8 * 32);  // 8 x 8 x 2 voxels each (2 along the sweep axis z)
  CHECK(p.bricks_allocated >= 1);
  CHECK(p.bricks_allocated <= 4 * 3 * 3 * 6);  // 4 patches of 8^3 (+ margin) reach at most 3 x 3 x 6 bricks each
  CHECK(p.stitch_peak_bytes <= p.bricks_allocated * 4 * 128 * 5);
}

TEST_CASE("bricks: resampling brick by brick equals resample_linear within float rounding of the sample positions") {
  for (int d : {2, 3})
    for (double factor : {2.0, 0.7, 3.0}) {
      CAPTURE(d);
      CAPTURE(factor);
      train::Patch src;
      src.s = {13, 9, d == 3 ? 11 : 1};
      src.A(0, 0) = 1.2;
      src.A(1, 1) = 0.9;
      src.A(0, 3) = -5;
      src.A(2, 3) = 7;
      const train::Patch dst = stitch_grid(src, Eigen::Vector3d::Zero(), d, factor);
      const int C = 3;
      const std::vector<float> y = test::random_values(static_cast<size_t>(C) * src.numel(), 17, 0.f, 1.f);
      const std::vector<float> want = resample_linear(y, src, C, dst, d);
      Collect got({d == 3 ? dst.s[2] : 1, dst.s[1], dst.s[0]}, C);
      const int64_t brick = 4;
      ResampleSink rs(src, dst, d, brick, got);
      rs.begin(src, C, false);
      const BrickGrid sg({d == 3 ? src.s[2] : 1, src.s[1], src.s[0]}, d, brick);
      for (int64_t b = sg.num() - 1; b >= 0; --b) {  // any order
        const Box bx = sg.box(b);
        std::vector<float> part(static_cast<size_t>(C) * bx.numel());
        for (int c = 0; c < C; ++c)
          for (int64_t z = 0; z < bx.size[0]; ++z)
            for (int64_t yy = 0; yy < bx.size[1]; ++yy)
              for (int64_t x = 0; x < bx.size[2]; ++x)
                part[c * bx.numel() + (z * bx.size[1] + yy) * bx.size[2] + x] =
                    y[c * src.numel() + ((bx.lo[0] + z) * src.s[1] + bx.lo[1] + yy) * src.s[0] + bx.lo[2] + x];
        rs.put(bx, part.data());
      }
      CHECK(std::count(got.hits.begin(), got.hits.end(), 1) == static_cast<long>(got.hits.size()));
      REQUIRE(got.y.size() == want.size());
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(double(got.y[i]) - want[i]));
      CHECK(worst <= 1.0 / 8192);
      MESSAGE("largest difference " << worst);
      CHECK(rs.peak_bytes() < static_cast<int64_t>(y.size() * sizeof(float)));  // never the whole source
    }
}

namespace {

// Level l's logits depend on the image crop and on the parent crop (channel c reads the parent's channel c):
// K label channels and 2 more features, as a model passing features down.
class ChainNet : public LevelNetwork {
 public:
  train::Scheme sc;
  explicit ChainNet(const json& j) : sc(train::Scheme::from_json(j)) {}
  const train::Scheme& scheme() const override { return sc; }
  int image_channels() const override { return 1; }
  int out_channels(int) const override { return static_cast<int>(sc.label_channels()) + 2; }
  Tensor forward(int, const Tensor& img, const Tensor& parent) override {
    const int64_t B = img.dim(0), C = out_channels(0), n = img.numel() / B;
    Shape s = img.shape();
    s[1] = C;
    Tensor out = Tensor::empty(s);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < n; ++i) {
          float v = img.f32()[b * n + i] * (float(c) - 1.5f) + 0.1f * float(c);
          if (parent.defined()) v += 0.5f * parent.f32()[(b * C + c) * n + i];
          out.f32()[(b * C + c) * n + i] = v;
        }
    return out;
  }
};

const json kChain = {{"depth", 3},
                     {"ndim", 3},
                     {"categorical_label", {1, 2, 3, 4, 5}},
                     {"categorical", true},
                     {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_rel", 1}, {"destvox_mm", {1, 1, 1}}}}};

// Receives the prediction and keeps only a checksum (a label map's worth of memory is not needed here).
struct Checksum : BrickSink {
  double sum = 0;
  int64_t voxels = 0;
  void begin(const train::Patch&, int, bool) override {}
  void put(const Box& b, const float* v) override {
    voxels += b.numel();
    for (int64_t i = 0; i < b.numel(); ++i) sum += v[i] * double(1 + (b.lo[0] + b.lo[1] + b.lo[2] + i) % 7);
  }
};

}  // namespace

TEST_CASE("bricks: the stitched level's parents evaluated on demand give the prediction of the whole level kept, "
          "holding fewer of them") {
  ChainNet net(kChain);
  const InferInput in = random_image(40, 36, 44);
  InferOptions o;
  o.batch_size = 3;  // batches that cut across the parents' children
  const Prediction demand = infer(net, in, o);
  o.lazy_fraction = 0.999999;  // keeps every patch, through the whole-level path (attention, keep_top)
  const Prediction whole = infer(net, in, o);
  MESSAGE("patches per level " << demand.patches_per_level[0] << ", " << demand.patches_per_level[1] << ", "
                               << demand.patches_per_level[2] << "; parents held " << demand.parents_peak_bytes
                               << " B on demand, " << whole.parents_peak_bytes << " B whole");
  REQUIRE(demand.patches_per_level.size() == 3);
  CHECK(demand.patches_per_level == whole.patches_per_level);
  CHECK(demand.patches_per_level[1] >= 8);  // several parents, each with several children
  CHECK(demand.patches_per_level[2] > demand.patches_per_level[1]);
  REQUIRE(demand.prob.size() == whole.prob.size());
  CHECK(std::memcmp(demand.prob.data(), whole.prob.data(), whole.prob.size() * sizeof(float)) == 0);
  const int64_t one = int64_t(net.out_channels(1)) * 8 * 8 * 8 * 4;  // one parent's output
  CHECK(whole.parents_peak_bytes == demand.patches_per_level[1] * one);
  CHECK(demand.parents_peak_bytes > 0);
  CHECK(demand.parents_peak_bytes < whole.parents_peak_bytes);
  // The parents matter: without them (a net ignoring the parent crop) the prediction differs.
  CropNet plain(kChain);
  const Prediction other = infer(plain, in, InferOptions{});
  CHECK(std::memcmp(other.prob.data(), demand.prob.data(), demand.prob.size() * sizeof(float)) != 0);
}

TEST_CASE("bricks: the peak memory of a big-grid inference stays a fraction of whole-grid stitching (VmHWM)") {
  ChainNet net(kChain);
  const InferInput in = random_image(96, 96, 96);
  const double dense = double(net.sc.label_channels() + 1) * 96 * 96 * 96 * 4;  // whole-grid accumulators
  std::string why;
  const double before = test::reset_peak_rss(why);
  if (before < 0) {
    MESSAGE("skipped: " << why);
    return;
  }
  Checksum sink;
  InferOptions o;
  const Prediction p = infer(net, in, o, sink);
  const double peak = test::proc_status_bytes("VmHWM") - before;
  MESSAGE("peak " << peak / 1e6 << " MB (accumulators " << p.stitch_peak_bytes / 1e6 << " MB, parents "
                  << p.parents_peak_bytes / 1e6 << " MB) against " << dense / 1e6 << " MB of whole-grid accumulators; "
                  << p.patches_per_level[2] << " patches stitched");
  CHECK(sink.voxels == 96 * 96 * 96);
  CHECK(sink.sum > 0);
  CHECK(p.patches_per_level[2] >= 1000);
  // The open slab: one patch (8 planes + 2 of margin), the spread of a batch's first planes (< 8) and up to
  // two brick depths (8 each) of the 96 planes.
  CHECK(double(p.stitch_peak_bytes) <= dense * (18 + 2 * 8) / 96.0);
  // Everything (accumulators, parents, crops, the network's outputs, the allocator's slack): measured 0.55 of the
  // whole-grid accumulators alone (13.7 of 24.8 MB) on a loaded 2-core machine.
  CHECK(peak <= 0.75 * dense);
}
