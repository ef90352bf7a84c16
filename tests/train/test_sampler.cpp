// CropGenerator: balance, augmentation, nesting, label mapping.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "common/test_util.h"
#include "io/error.h"
#include "io/nifti.h"
#include "train/sampler.h"

using namespace pw;
using namespace pw::train;
using nlohmann::json;

namespace {

Patch iso_image(int nx, int ny, int nz) {
  Patch p;
  p.s = {nx, ny, nz};
  return p;
}

// A 3-D subject with labels set by `label(x, y, z)`.
template <class F>
Subject cube_subject(const Scheme& sc, int n, F label, bool dontcare = false) {
  Patch img = iso_image(n, n, n);
  Tensor data = Tensor::empty({1, n, n, n});
  Tensor lab = Tensor::empty({1, n, n, n});
  for (int z = 0; z < n; ++z)
    for (int y = 0; y < n; ++y)
      for (int x = 0; x < n; ++x) {
        int64_t i = (int64_t(z) * n + y) * n + x;
        data.f32()[i] = float(x + 2 * y + 3 * z);
        lab.f32()[i] = float(label(x, y, z));
      }
  return make_subject("cube", img, data, lab, sc, dontcare);
}

// depth-1 scheme of single-voxel patches: the target of a chain is the label at its drawn centre
Scheme point_scheme(bool categorical, std::vector<int> labels) {
  json j = {{"depth", 1}, {"ndim", 3}, {"scheme", {{"patch_size", {1, 1, 1}}, {"fov_rel", 1}, {"destvox_rel", 1}}}};
  if (!labels.empty()) {
    j["categorical_label"] = labels;
    j["categorical"] = categorical;
  }
  return Scheme::from_json(j);
}

}  // namespace

TEST_CASE("sampler: balance ratio is reached") {
  Scheme sc = point_scheme(false, {1});
  Subject s = cube_subject(sc, 32, [](int x, int y, int z) { return x >= 4 && x < 8 && y >= 10 && y < 14 && z < 4; });
  for (double ratio : {0.3, 0.7}) {
    SamplerOptions o;
    o.balance.ratio = ratio;
    CropGenerator gen(sc, o);
    std::mt19937_64 rng(3);
    PatchSet set = gen.sample({&s}, 4000, rng);
    double on = 0;
    for (int64_t i = 0; i < set.size(); ++i) on += set.levels[0].target.f32()[i];
    double frac = on / double(set.size());
    CHECK(frac == doctest::Approx(ratio).epsilon(0.1));
  }
  // without balance the centres are uniform: 64 of 32768 voxels are labelled
  CropGenerator plain(sc, SamplerOptions{});
  std::mt19937_64 rng(4);
  PatchSet set = plain.sample({&s}, 4000, rng);
  double on = 0;
  for (int64_t i = 0; i < set.size(); ++i) on += set.levels[0].target.f32()[i];
  CHECK(on / double(set.size()) < 0.01);
}

TEST_CASE("sampler: don't-care voxels of a u8 label map arrive as -1 in the drawn targets") {
  Scheme sc = point_scheme(true, {1, 2});
  // label value -1 (don't care) where x < 4, class 2 where x >= 28, else class 1
  Subject s = cube_subject(sc, 32, [](int x, int, int) { return x < 4 ? -1 : x >= 28 ? 2 : 1; }, true);
  REQUIRE(s.labels.dtype() == DType::u8);
  CropGenerator gen(sc, SamplerOptions{});
  std::mt19937_64 rng(5);
  PatchSet set = gen.sample({&s}, 2000, rng);
  std::map<int32_t, int> seen;
  for (int64_t i = 0; i < set.size(); ++i) {
    const int32_t t = set.levels[0].target.i32()[i];
    const Eigen::Vector3d c = set.levels[0].patches[i].A.block<3, 1>(0, 3);  // the point patch's voxel = its centre
    const int x = static_cast<int>(std::lround(c[0]));
    CHECK(t == (x < 4 ? -1 : x >= 28 ? 2 : 1));
    ++seen[t];
  }
  CHECK(seen.size() == 3);
}

TEST_CASE("sampler: autoweight equalises small and large labels") {
  Scheme sc = point_scheme(true, {1, 2});
  Subject s = cube_subject(sc, 32, [](int x, int y, int z) {
    if (x < 2 && y < 2 && z < 2) return 1;                                   // 8 voxels
    if (x >= 10 && x < 16 && y >= 10 && y < 16 && z >= 10 && z < 16) return 2;  // 216 voxels
    return 0;
  });
  CHECK(s.label_volume[0] == 8);
  CHECK(s.label_volume[1] == 216);
  SamplerOptions o;
  o.balance.ratio = 0.6;
  o.balance.autoweight = true;
  CropGenerator gen(sc, o);
  gen.set_autoweight({&s});
  CHECK(gen.label_weight()[0] / gen.label_weight()[1] == doctest::Approx(27.0));
  std::mt19937_64 rng(5);
  PatchSet set = gen.sample({&s}, 6000, rng);
  double n1 = 0, n2 = 0;
  for (int64_t i = 0; i < set.size(); ++i) {
    n1 += set.levels[0].target.i32()[i] == 1;
    n2 += set.levels[0].target.i32()[i] == 2;
  }
  CHECK(n1 / set.size() == doctest::Approx(0.3).epsilon(0.15));
  CHECK(n2 / set.size() == doctest::Approx(0.3).epsilon(0.15));
  // without autoweight the large label dominates
  SamplerOptions o2;
  o2.balance.ratio = 0.6;
  CropGenerator gen2(sc, o2);
  PatchSet set2 = gen2.sample({&s}, 6000, rng);
  double m1 = 0;
  for (int64_t i = 0; i < set2.size(); ++i) m1 += set2.levels[0].target.i32()[i] == 1;
  CHECK(m1 / set2.size() < 0.05);
}

TEST_CASE("sampler: augmentation is rotation x scale x flip") {
  Augment a;
  a.dphi = Eigen::Vector3d(0.4, 0.4, 0.4);
  a.flip = Eigen::Vector3d(1, 0, 1);
  a.dscale = Eigen::Vector3d(0.1, 0.2, 0.0);
  std::mt19937_64 rng(7);
  const int n = 4000;
  int flips[3] = {0, 0, 0};
  double logs2[3] = {0, 0, 0};
  double ang2 = 0;
  for (int i = 0; i < n; ++i) {
    AugmentDraw d = draw_augmentation(a, 3, rng);
    for (const Eigen::Matrix3d& R : {d.R1, d.R2}) {
      CHECK((R.transpose() * R - Eigen::Matrix3d::Identity()).norm() < 1e-9);
      CHECK(R.determinant() == doctest::Approx(1.0));
    }
    CHECK((d.L() - d.R1 * d.sigma.asDiagonal() * d.R2).norm() < 1e-12);
    // the singular values of L are the scalings
    Eigen::JacobiSVD<Eigen::Matrix3d> svd(d.L());
    Eigen::Vector3d sv = svd.singularValues(), as = d.sigma.cwiseAbs();
    std::sort(as.data(), as.data() + 3, std::greater<double>());
    CHECK((sv - as).norm() < 1e-9);
    for (int k = 0; k < 3; ++k) {
      flips[k] += d.sigma[k] < 0;
      logs2[k] += std::log(std::abs(d.sigma[k])) * std::log(std::abs(d.sigma[k]));
    }
    Eigen::AngleAxisd aa(d.R1);
    ang2 += aa.angle() * aa.angle();
  }
  CHECK(flips[0] / double(n) == doctest::Approx(0.5).epsilon(0.08));
  CHECK(flips[1] == 0);
  CHECK(flips[2] / double(n) == doctest::Approx(0.5).epsilon(0.08));
  CHECK(std::sqrt(logs2[0] / n) == doctest::Approx(0.1).epsilon(0.08));
  CHECK(std::sqrt(logs2[1] / n) == doctest::Approx(0.2).epsilon(0.08));
  CHECK(logs2[2] == 0);
  // quaternion (1, N(0, dphi/2) per axis): angle = 2 atan(|v|), about 2|v| for small v -> rms ~ dphi*sqrt(3)
  CHECK(std::sqrt(ang2 / n) == doctest::Approx(0.4 * std::sqrt(3.0)).epsilon(0.12));

  // 2D: rotations act in the x-y plane only
  Augment b;
  b.dphi = Eigen::Vector3d(0.5, 0, 0);
  AugmentDraw d = draw_augmentation(b, 2, rng);
  CHECK(d.L()(2, 2) == doctest::Approx(1.0));
  CHECK(d.L()(0, 2) == 0);
  CHECK(d.L()(2, 0) == 0);
}

TEST_CASE("sampler: chains are nested, crops match the image, targets use the same patches") {
  json j = {{"depth", 3},
            {"ndim", 3},
            {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_rel", 0.9}, {"destvox_rel", 1}}},
            {"categorical_label", {1}},
            {"categorical", true}};
  Scheme sc = Scheme::from_json(j);
  Subject s = cube_subject(sc, 40, [](int x, int, int) { return x > 20 ? 1 : 0; });
  SamplerOptions o;
  o.augment.dphi = Eigen::Vector3d(0.3, 0.3, 0.3);
  o.augment.flip = Eigen::Vector3d(1, 1, 1);
  o.independent_augmentation = true;
  o.balance.ratio = 0.5;
  CropGenerator gen(sc, o);
  std::mt19937_64 rng(11);
  PatchSet set = gen.sample({&s}, 30, rng);
  REQUIRE(set.levels.size() == 3);
  CHECK(set.levels[2].input.shape() == Shape{30, 1, 8, 8, 8});
  CHECK(set.levels[2].target.shape() == Shape{30, 8, 8, 8});
  CHECK(set.levels[1].parent_mats.shape() == Shape{30, 16});
  for (int k = 1; k < 3; ++k)
    for (int64_t i = 0; i < set.size(); ++i) {
      Eigen::Vector3d lo, hi;
      bounding_box(set.levels[k - 1].patches[i], set.levels[k].patches[i], lo, hi);
      for (int a = 0; a < 3; ++a) {
        CHECK(lo[a] >= -0.5 - 1e-6);
        CHECK(hi[a] <= 7.5 + 1e-6);
      }
    }
  // the input crop at voxel v equals the image value at the nearest voxel of A_img^-1 A_p v;
  // the target there is the label at the same voxel
  for (int64_t i = 0; i < set.size(); i += 7) {
    const Patch& p = set.levels[2].patches[i];
    Eigen::Matrix4d M = resample_matrix(s.image, p);
    for (int v = 0; v < 512; v += 37) {
      int x = v % 8, y = (v / 8) % 8, z = v / 64;
      Eigen::Vector4d q = M * Eigen::Vector4d(x, y, z, 1);
      long ix = std::lround(q[0]), iy = std::lround(q[1]), iz = std::lround(q[2]);
      if (std::abs(q[0] - std::round(q[0])) > 0.49 || std::abs(q[1] - std::round(q[1])) > 0.49 ||
          std::abs(q[2] - std::round(q[2])) > 0.49)
        continue;  // too close to a rounding tie
      bool inside = ix >= 0 && ix < 40 && iy >= 0 && iy < 40 && iz >= 0 && iz < 40;
      float expect = inside ? float(ix + 2 * iy + 3 * iz) : 0.f;
      CHECK(set.levels[2].input.f32()[i * 512 + v] == doctest::Approx(expect));
      int32_t lab = inside ? (ix > 20 ? 1 : 0) : 0;
      CHECK(set.levels[2].target.i32()[i * 512 + v] == lab);
    }
  }
  // hard-mining helpers keep rows
  PatchSet two = take_rows(set, {3, 5});
  CHECK(two.size() == 2);
  CHECK(two.levels[1].input.f32()[0] == set.levels[1].input.f32()[3 * 512]);
  PatchSet cat = concat_sets(set, two);
  CHECK(cat.size() == 32);
  CHECK(cat.levels[2].target.i32()[31 * 512 + 10] == set.levels[2].target.i32()[5 * 512 + 10]);
}

TEST_CASE("sampler: label mapping, 4-D labels, dontcare and normalisation") {
  Scheme sc = point_scheme(true, {4, 16});
  Patch img = iso_image(2, 2, 1);
  Tensor data = Tensor::from_vector({1, 1, 2, 2}, {1, 2, 3, 6});
  Tensor lab = Tensor::from_vector({4}, {16, 4, -1, 7});
  Subject a = make_subject("a", img, data, lab, sc, /*dontcare=*/true);
  CHECK(a.labels.dtype() == DType::u8);  // 2 classes: one byte per voxel
  CHECK(a.label_class(0) == 2);
  CHECK(a.label_class(1) == 1);
  CHECK(a.label_class(2) == -1);
  CHECK(a.label_class(3) == 0);
  Subject b = make_subject("b", img, data.clone(), lab, sc, /*dontcare=*/false);
  CHECK(b.label_class(2) == 0);
  {  // more than 254 classes: i32, the same classes
    std::vector<int> many(300);
    for (int k = 0; k < 300; ++k) many[k] = k + 1;
    many[1] = 16, many[15] = 2;  // 16 -> class 2, 4 -> class 4, 7 -> class 7
    Scheme wide = point_scheme(true, {4, 16});
    wide.categorical_label = many;
    wide.num_labels = 300;
    Subject w = make_subject("w", img, data.clone(), lab, wide, true);
    CHECK(w.labels.dtype() == DType::i32);
    CHECK(std::vector<int32_t>{w.label_class(0), w.label_class(1), w.label_class(2), w.label_class(3)} ==
          std::vector<int32_t>{2, 4, -1, 7});
  }
  // runs of equal values and returns to earlier ones (the mapping looks up once per run)
  Patch img8 = iso_image(2, 2, 2);
  Tensor data8 = Tensor::from_vector({1, 2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 9});
  Tensor lab8 = Tensor::from_vector({8}, {16, 16, 4, 4.2f, 7, 16, 0, 3.6f});
  Subject r = make_subject("r", img8, data8, lab8, sc, false);
  std::vector<int32_t> rc;
  for (int64_t v = 0; v < 8; ++v) rc.push_back(r.label_class(v));
  CHECK(rc == std::vector<int32_t>{2, 2, 1, 1, 0, 2, 0, 1});
  CHECK(r.label_volume == std::vector<double>{3, 3});

  Scheme nc = point_scheme(false, {4, 16});
  Subject c = make_subject("c", img, data.clone(), lab, nc, true);
  CHECK(c.labels.shape() == Shape{2, 1, 2, 2});
  CHECK(c.labels.f32()[1] == 1.f);      // channel 0 (label 4) at voxel 1
  CHECK(c.labels.f32()[4 + 0] == 1.f);  // channel 1 (label 16) at voxel 0
  CHECK(std::isnan(c.labels.f32()[2]));

  Scheme four = point_scheme(false, {});
  Tensor lab4 = Tensor::from_vector({3, 1, 2, 2}, {0, 1, 0, 0, 0, 0, 1, 1, 0.5f, 0, 0, 0});
  Subject d = make_subject("d", img, data.clone(), lab4, four, false);
  CHECK(d.labels.shape() == Shape{3, 1, 2, 2});
  CHECK(d.label_volume[1] == 2);
  CHECK(d.label_volume[2] == doctest::Approx(0.5));

  Tensor x = Tensor::from_vector({1, 4}, {1, 2, 3, 6});
  normalize_image(x, Normalize::max);
  CHECK(x.f32()[3] == doctest::Approx(1.0));
  x = Tensor::from_vector({1, 4}, {1, 2, 3, 6});
  normalize_image(x, Normalize::mean);
  CHECK(x.f32()[0] == doctest::Approx(1.0 / 3.0));
  x = Tensor::from_vector({1, 4}, {1, 2, 3, 6});
  normalize_image(x, Normalize::m0s1);
  double m = 0, v = 0;
  for (int i = 0; i < 4; ++i) m += x.f32()[i];
  for (int i = 0; i < 4; ++i) v += x.f32()[i] * x.f32()[i];
  CHECK(m / 4 == doctest::Approx(0).epsilon(1e-6));
  CHECK(v / 4 == doctest::Approx(1).epsilon(1e-3));

  Tensor bad = Tensor::from_vector({5}, {0, 0, 0, 0, 0});
  CHECK_THROWS_AS(make_subject("e", img, data.clone(), bad, sc, false), InputError);
  Tensor nan = Tensor::from_vector({1, 1, 2, 2}, {1, NAN, 3, 6});
  CHECK_THROWS_AS(make_subject("f", img, nan, lab, sc, false), InputError);
}

TEST_CASE("sampler: same seed, same set") {
  json j = {{"depth", 2}, {"ndim", 2}, {"scheme", {{"patch_size", {8, 8}}, {"fov_rel", 0.8}, {"destvox_rel", 1}}}};
  Scheme sc = Scheme::from_json(j);
  Patch img = iso_image(30, 30, 1);
  Tensor data = Tensor::empty({1, 1, 30, 30}), lab = Tensor::zeros({900});
  for (int i = 0; i < 900; ++i) data.f32()[i] = float(i % 17);
  sc.num_labels = 1;
  Subject s = make_subject("s", img, data, lab, sc, false);
  SamplerOptions o;
  o.augment.dphi = Eigen::Vector3d(0.5, 0, 0);
  o.augment.dscale = Eigen::Vector3d(0.1, 0.1, 0);
  std::mt19937_64 r1(9), r2(9);
  CropGenerator gen(sc, o);
  PatchSet a = gen.sample({&s}, 10, r1), b = gen.sample({&s}, 10, r2);
  CHECK(a.levels[1].input.to_vector() == b.levels[1].input.to_vector());
  CHECK(a.levels[1].input.shape() == Shape{10, 1, 8, 8});
}

TEST_CASE("sampler: several contrasts as channels and a 4-D label file") {
  auto dir = pw::test::temp_dir("train_contrasts");
  Eigen::Matrix4d A = Eigen::Matrix4d::Identity();
  A(0, 0) = 2;
  std::vector<float> c1(4 * 3 * 2), c2(4 * 3 * 2), lab(4 * 3 * 2 * 2, 0.f);
  for (size_t i = 0; i < c1.size(); ++i) {
    c1[i] = float(i);
    c2[i] = 100.f + float(i);
  }
  lab[5] = 1.f;                 // label 1 at voxel 5
  lab[24 + 7] = 1.f;            // label 2 at voxel 7
  write_nifti(Volume::from_values<float>({4, 3, 2}, c1.data(), A), dir / "t1.nii.gz");
  write_nifti(Volume::from_values<float>({4, 3, 2}, c2.data(), A), dir / "t2.nii.gz");
  write_nifti(Volume::from_values<float>({4, 3, 2, 2}, lab.data(), A), dir / "lab.nii.gz");
  Scheme sc = point_scheme(false, {});
  DataPair p;
  p.images = {dir / "t1.nii.gz", dir / "t2.nii.gz"};
  p.label = dir / "lab.nii.gz";
  p.name = "case";
  Subject s = load_subject(p, sc, false);
  CHECK(s.data.shape() == Shape{2, 2, 3, 4});
  CHECK(s.data.f32()[24 + 3] == 103.f);
  CHECK(s.labels.shape() == Shape{2, 2, 3, 4});
  CHECK(s.label_volume == std::vector<double>{1, 1});
  CHECK(s.image.A(0, 0) == 2);
  CHECK(s.image.s == Size3{4, 3, 2});
  // a label file of another size is refused, naming it
  write_nifti(Volume::from_values<float>({4, 3, 1}, c1.data(), A), dir / "small.nii.gz");
  p.label = dir / "small.nii.gz";
  CHECK_THROWS_WITH_AS(load_subject(p, sc, false), doctest::Contains("small.nii.gz"), InputError);
}

TEST_CASE("sampler: crop_fdim takes the listed channels of a 4-D input, in the listed order") {
  auto dir = pw::test::temp_dir("train_crop_fdim");
  Eigen::Matrix4d A = Eigen::Matrix4d::Identity();
  std::vector<float> four(24 * 3), lab(24, 0.f);
  for (size_t i = 0; i < four.size(); ++i) four[i] = float(1000 * (i / 24) + i % 24);  // channel c: 1000 c + voxel
  write_nifti(Volume::from_values<float>({4, 3, 2, 3}, four.data(), A), dir / "multi.nii.gz");
  write_nifti(Volume::from_values<float>({4, 3, 2}, lab.data(), A), dir / "lab.nii.gz");
  json j = {{"depth", 1}, {"ndim", 3}, {"num_labels", 1}, {"crop_fdim", {2, 0}},
            {"scheme", {{"patch_size", {4, 4, 4}}, {"fov_rel", 1}, {"destvox_rel", 1}}}};
  Scheme sc = Scheme::from_json(j);
  CHECK(sc.crop_fdim == std::vector<int>{2, 0});
  CHECK(Scheme::from_json(sc.to_json()).crop_fdim == sc.crop_fdim);  // kept in the model file
  Patch g;
  Tensor data;
  load_image_channels({dir / "multi.nii.gz"}, sc, g, data);
  REQUIRE(data.shape() == Shape{2, 2, 3, 4});
  CHECK(data.f32()[5] == 2005.f);
  CHECK(data.f32()[24 + 5] == 5.f);
  DataPair p{{dir / "multi.nii.gz"}, dir / "lab.nii.gz", "case"};
  CHECK(load_subject(p, sc, false).data.dim(0) == 2);
  sc.crop_fdim = {3};
  CHECK_THROWS_WITH_AS(load_image_channels({dir / "multi.nii.gz"}, sc, g, data),
                       doctest::Contains("crop_fdim lists channel 3, the input has 3 channel(s)"), InputError);
  j["crop_fdim"] = {-1};
  CHECK_THROWS_AS(Scheme::from_json(j), InputError);
}

TEST_CASE("sampler: tree sampling puts children on the parent's tiling") {
  json j = {{"depth", 2}, {"ndim", 2}, {"scheme", {{"patch_size", {16, 16}}, {"fov_mm", 64}, {"destvox_mm", 1}}}};
  Scheme sc = Scheme::from_json(j);
  Patch img = iso_image(80, 80, 1);
  Tensor data = Tensor::zeros({1, 1, 80, 80}), lab = Tensor::zeros({6400});
  sc.num_labels = 1;
  Subject s = make_subject("s", img, data, lab, sc, false);
  SamplerOptions o;
  o.tree = true;
  CropGenerator gen(sc, o);
  std::mt19937_64 rng(1);
  PatchSet set = gen.sample({&s}, 200, rng);
  int tiles_seen[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < set.size(); ++i) {
    const Patch& p = set.levels[0].patches[i];
    const Patch& c = set.levels[1].patches[i];
    Eigen::Vector4d q = resample_matrix(p, c) * Eigen::Vector4d(7.5, 7.5, 0, 1);  // child centre in parent voxels
    for (int a = 0; a < 2; ++a) {
      double rel = (q[a] + 0.5) / 16.0 * 4.0;  // in tiles
      double t = std::floor(rel);
      CHECK(std::abs(rel - t - 0.5) <= 0.25 + 1e-9);
      tiles_seen[int(t)] += 1;
    }
  }
  for (int t = 0; t < 4; ++t) CHECK(tiles_seen[t] > 50);
}

TEST_CASE("sampler: smoothing before the crop and per-patch normalisation") {
  json j = {{"depth", 2}, {"ndim", 3}, {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_rel", 1}, {"destvox_rel", 1}}},
            {"smoothfac_data", "mixture"}, {"normalize_input", "patch_m0s1"}};
  Scheme sc = Scheme::from_json(j);
  sc.num_labels = 1;
  Subject s = cube_subject(sc, 32, [](int x, int, int) { return x > 10; });
  CropGenerator gen(sc, SamplerOptions{});
  CHECK(gen.input_channels(1) == 3);
  // level 0 undersamples 4x: box / max / min of width 4; level 1 is at image resolution: unfiltered
  const Tensor& d0 = gen.level_data(s, 0);
  CHECK(d0.shape() == Shape{3, 32, 32, 32});
  const Tensor& d1 = gen.level_data(s, 1);
  REQUIRE(d1.shape() == Shape{3, 32, 32, 32});
  for (int c = 0; c < 3; ++c)  // width 1: box, max and min leave the image as it is
    CHECK(std::equal(s.data.f32(), s.data.f32() + 32768, d1.f32() + c * 32768));
  // data = x + 2y + 3z (linear): max/min = the window's extremes, box in between
  auto at = [&](const Tensor& t, int c, int x, int y, int z) { return t.f32()[((c * 32 + z) * 32 + y) * 32 + x]; };
  // window offsets -1..2 per axis: max - min = 3 * (1 + 2 + 3)
  CHECK(at(d0, 1, 10, 10, 10) - at(d0, 2, 10, 10, 10) == doctest::Approx(18.0));
  CHECK(at(d0, 1, 10, 10, 10) == doctest::Approx(at(s.data, 0, 12, 12, 12)));
  CHECK(at(d0, 1, 10, 10, 10) >= at(d0, 0, 10, 10, 10));
  CHECK(at(d0, 0, 10, 10, 10) >= at(d0, 2, 10, 10, 10));
  std::mt19937_64 rng(1);
  PatchSet set = gen.sample({&s}, 4, rng);
  CHECK(set.levels[0].input.shape() == Shape{4, 3, 8, 8, 8});
  for (int p = 0; p < 4; ++p)
    for (int c = 0; c < 3; ++c) {
      double m = 0, v = 0;
      const float* x = set.levels[0].input.f32() + (p * 3 + c) * 512;
      for (int i = 0; i < 512; ++i) m += x[i];
      m /= 512;
      for (int i = 0; i < 512; ++i) v += (x[i] - m) * (x[i] - m);
      CHECK(std::abs(m) < 1e-3);
      CHECK(v / 512 == doctest::Approx(1.0).epsilon(1e-2));
    }
}

TEST_CASE("sampler: the sparse balance draw follows P(v) proportional to L(v) + b") {
  // 1000 voxels, 3 labelled with masses 1, 2, 5 (sum 8), ratio 0.4: b = 0.6 * 8 / (400 - 8)
  std::vector<float> mass(1000, 0.f);
  mass[10] = 1.f, mass[500] = 2.f, mass[999] = 5.f;
  BalanceDraw d(mass, 0.4);
  CHECK(d.index == std::vector<uint32_t>{10, 500, 999});
  CHECK(d.index.capacity() == 3);  // sized exactly
  const double b = 0.6 * 8 / (400.0 - 8);
  CHECK(d.uniform == doctest::Approx(1000 * b));
  std::mt19937_64 rng(3);
  std::vector<int> hits(1000, 0);
  const int N = 200000;
  for (int i = 0; i < N; ++i) ++hits[d.draw(rng)];
  const double total = 8 + 1000 * b;
  for (int v : {10, 500, 999, 0, 250}) {
    double p = (mass[v] + b) / total;
    CHECK(hits[v] / double(N) == doctest::Approx(p).epsilon(0.1));
  }
  int labelled = hits[10] + hits[500] + hits[999];
  CHECK(labelled / double(N) == doctest::Approx(0.4 + 3 * b / total).epsilon(0.02));
  // no labels, or labels already at the ratio: uniform, no table
  BalanceDraw u(std::vector<float>(50, 0.f), 0.5);
  CHECK(u.index.empty());
  CHECK(u.uniform == 50);
  for (int i = 0; i < 100; ++i) {
    int64_t v = u.draw(rng);
    CHECK((v >= 0 && v < 50));
  }
}

TEST_CASE("sampler: out_patch_size < patch_size: labels on the output grid, children in the parent's output patch") {
  for (bool categorical : {true, false}) {
    CAPTURE(categorical);
    json j = {{"depth", 2},
              {"ndim", 3},
              {"scheme", {{"patch_size", {8, 8, 8}}, {"out_patch_size", {{4, 4, 6}, {6, 2, 8}}}, {"fov_rel", 0.6},
                          {"destvox_rel", 1}}},
              {"categorical_label", {1}},
              {"categorical", categorical}};
    Scheme sc = Scheme::from_json(j);
    json jf = j;
    jf["scheme"].erase("out_patch_size");
    Scheme full = Scheme::from_json(jf);  // the same input patches, targets over the whole input patch
    Subject s = cube_subject(sc, 32, [](int x, int y, int z) { return (x + 2 * y + 3 * z) % 5 == 0 ? 1 : 0; });
    SamplerOptions o;
    o.augment.dphi = Eigen::Vector3d(0.3, 0.3, 0.3);
    o.balance.ratio = 0.5;
    CropGenerator gen(sc, o), gen_full(full, o);
    std::mt19937_64 rng(5);
    PatchSet set = gen.sample({&s}, 12, rng);
    for (int k = 0; k < 2; ++k) {
      const LevelPatches& L = set.levels[k];
      const Size3& so = sc.out_patch_size[k];
      CHECK(L.input.shape() == Shape{12, 1, 8, 8, 8});
      CHECK(L.target.shape() == (categorical ? Shape{12, so[2], so[1], so[0]} : Shape{12, 1, so[2], so[1], so[0]}));
      // the target is the central crop of the target over the whole input patch
      Tensor whole = categorical ? Tensor::empty({12, 8, 8, 8}, DType::i32) : Tensor::empty({12, 1, 8, 8, 8});
      gen_full.crop_targets(s, k, L.patches, whole, 0);
      const Size3 lo{(8 - so[0]) / 2, (8 - so[1]) / 2, (8 - so[2]) / 2};
      int64_t n = 0, ones = 0;
      for (int64_t i = 0; i < 12; ++i)
        for (int64_t z = 0; z < so[2]; ++z)
          for (int64_t y = 0; y < so[1]; ++y)
            for (int64_t x = 0; x < so[0]; ++x, ++n) {
              const int64_t w = ((i * 8 + lo[2] + z) * 8 + lo[1] + y) * 8 + lo[0] + x;
              const float got = categorical ? float(L.target.i32()[n]) : L.target.f32()[n];
              const float expect = categorical ? float(whole.i32()[w]) : whole.f32()[w];
              CHECK(got == expect);
              ones += got == 1;
            }
      CHECK(ones > 0);
    }
    // level 1: its output inside its parent's OUTPUT patch (snapper), parent_mats map into that patch
    for (int64_t i = 0; i < set.size(); ++i) {
      const Patch po = out_patch(sc, 0, set.levels[0].patches[i]);
      Eigen::Vector3d lo, hi;
      bounding_box(po, out_patch(sc, 1, set.levels[1].patches[i]), lo, hi);
      for (int a = 0; a < 3; ++a) {
        CHECK(lo[a] >= -0.5 - 1e-6);
        CHECK(hi[a] <= po.s[a] - 0.5 + 1e-6);
      }
      std::vector<float> m;
      append_kernel_matrix(resample_matrix(po, set.levels[1].patches[i]), 3, m);
      for (int e = 0; e < 16; ++e) CHECK(set.levels[1].parent_mats.f32()[i * 16 + e] == m[e]);
    }
  }
}
