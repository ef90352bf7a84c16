// Scheme parsing and patch geometry.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "common/test_util.h"
#include "io/error.h"
#include "train/scheme.h"

using namespace pw::train;
using nlohmann::json;

static Patch image_patch(double vx, double vy, double vz, int nx, int ny, int nz) {
  Patch p;
  p.A = Eigen::Matrix4d::Identity();
  p.A(0, 0) = vx;
  p.A(1, 1) = vy;
  p.A(2, 2) = vz;
  p.A(0, 3) = -10;
  p.A(1, 3) = 20;
  p.A(2, 3) = 5;
  p.s = {nx, ny, nz};
  return p;
}

TEST_CASE("scheme: extents from fov_mm and destvox_mm, geometric in between") {
  json j = {{"depth", 3}, {"ndim", 3},
            {"scheme", {{"patch_size", {16, 16, 16}}, {"fov_mm", {160, 160, 80}}, {"destvox_mm", {1, 1, 0.5}}}}};
  Scheme s = Scheme::from_json(j);
  Frame f = make_frame(s, image_patch(1, 1, 1, 100, 100, 100));
  REQUIRE(f.extent.size() == 3);
  CHECK(f.extent[0][0] == doctest::Approx(160));
  CHECK(f.extent[0][2] == doctest::Approx(80));
  CHECK(f.extent[2][0] == doctest::Approx(16));  // 16 voxels of 1 mm
  CHECK(f.extent[2][2] == doctest::Approx(8));   // 16 voxels of 0.5 mm
  CHECK(f.extent[1][0] == doctest::Approx(std::sqrt(160.0 * 16.0)));
  CHECK(f.extent[1][2] == doctest::Approx(std::sqrt(80.0 * 8.0)));
  CHECK(f.voxel[2][2] == doctest::Approx(0.5));
  CHECK(f.voxel[0][0] == doctest::Approx(10));
}

TEST_CASE("scheme: extents relative to the image") {
  json j = {{"depth", 2}, {"ndim", 3},
            {"scheme", {{"patch_size", {{8, 8, 8}, {10, 10, 10}}}, {"fov_rel", 0.5}, {"destvox_rel", {2, 2, 1}}}}};
  Scheme s = Scheme::from_json(j);
  Frame f = make_frame(s, image_patch(2, 1, 3, 50, 60, 40));
  CHECK(f.extent[0][0] == doctest::Approx(0.5 * 50 * 2));
  CHECK(f.extent[0][1] == doctest::Approx(0.5 * 60 * 1));
  CHECK(f.extent[0][2] == doctest::Approx(0.5 * 40 * 3));
  CHECK(f.extent[1][0] == doctest::Approx(10 * 2 * 2.0));
  CHECK(f.extent[1][1] == doctest::Approx(10 * 2 * 1.0));
  CHECK(f.extent[1][2] == doctest::Approx(10 * 1 * 3.0));
  CHECK(f.voxel[0][1] == doctest::Approx(30.0 / 8));
}

TEST_CASE("scheme: 2D keeps the slice axis and depth 1 uses the final extent") {
  json j = {{"depth", 1}, {"ndim", 2}, {"scheme", {{"patch_size", {32, 24}}, {"fov_rel", 1}, {"destvox_mm", 0.5}}}};
  Scheme s = Scheme::from_json(j);
  CHECK(s.patch_size[0][2] == 1);
  Frame f = make_frame(s, image_patch(1, 1, 4, 64, 64, 1));
  CHECK(f.extent[0][0] == doctest::Approx(16));
  CHECK(f.extent[0][1] == doctest::Approx(12));
  CHECK(f.extent[0][2] == doctest::Approx(4));
  Patch p = make_patch(s, f, 0, Eigen::Vector3d(0, 30, 5));
  Eigen::Matrix4d M = resample_matrix(image_patch(1, 1, 4, 64, 64, 1), p);
  // patch voxel (x, y, 0) lands on image slice 0
  Eigen::Vector4d v = M * Eigen::Vector4d(3, 7, 0, 1);
  CHECK(v[2] == doctest::Approx(0));
}

TEST_CASE("scheme: patch centre, voxel size and the patch->image matrix") {
  json j = {{"depth", 1}, {"ndim", 3}, {"scheme", {{"patch_size", {4, 6, 8}}, {"fov_rel", 1}, {"destvox_mm", 2}}}};
  Scheme s = Scheme::from_json(j);
  Patch img = image_patch(1, 1, 1, 20, 20, 20);
  Frame f = make_frame(s, img);
  Eigen::Vector3d c(3, 25, 12);
  Patch p = make_patch(s, f, 0, c);
  CHECK((p.centre_world() - c).norm() < 1e-12);
  Eigen::Matrix4d M = resample_matrix(img, p);
  // one patch voxel step = 2 image voxels along each axis
  CHECK(M(0, 0) == doctest::Approx(2));
  CHECK(M(1, 1) == doctest::Approx(2));
  CHECK(M(2, 2) == doctest::Approx(2));
  Eigen::Vector4d centre_img = M * Eigen::Vector4d(1.5, 2.5, 3.5, 1);
  CHECK(centre_img[0] == doctest::Approx(3 + 10));
  CHECK(centre_img[1] == doctest::Approx(25 - 20));
  CHECK(centre_img[2] == doctest::Approx(12 - 5));
  Patch o = out_patch(s, 0, p);
  CHECK((o.A - p.A).norm() < 1e-12);
}

TEST_CASE("scheme: every child lies inside its parent with snapper 1") {
  json j = {{"depth", 3}, {"ndim", 3},
            {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_mm", 100}, {"destvox_mm", 2}}},
            {"snapper", {0, 1, 1}}};
  Scheme s = Scheme::from_json(j);
  Patch img = image_patch(1, 1, 1, 128, 128, 128);
  Frame f = make_frame(s, img);
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> U(0, 1);
  int stuck_out_without_snap = 0;
  for (int t = 0; t < 200; ++t) {
    // a random rotation for each level
    auto rot = [&] {
      Eigen::Quaterniond q(1, 0.3 * (U(rng) - .5), 0.3 * (U(rng) - .5), 0.3 * (U(rng) - .5));
      return q.normalized().toRotationMatrix();
    };
    Patch p0 = make_patch(s, f, 0, Eigen::Vector3d(64, 64, 64), rot());
    Eigen::Vector3d rel(U(rng), U(rng), U(rng));
    Patch p1 = child_patch(s, f, 1, p0, rel, rot());
    Patch p2 = child_patch(s, f, 2, p1, Eigen::Vector3d(U(rng), U(rng), U(rng)), rot());
    for (auto pr : {std::make_pair(p0, p1), std::make_pair(p1, p2)}) {
      Eigen::Vector3d lo, hi;
      bounding_box(pr.first, pr.second, lo, hi);
      for (int a = 0; a < 3; ++a) {
        CHECK(lo[a] >= -0.5 - 1e-9);
        CHECK(hi[a] <= pr.first.s[a] - 0.5 + 1e-9);
      }
    }
    Scheme s0 = s;
    s0.snapper = {0, 0, 0};
    Patch q1 = child_patch(s0, f, 1, p0, rel);
    Eigen::Vector3d lo, hi;
    bounding_box(p0, q1, lo, hi);
    if (lo.minCoeff() < -0.5 - 1e-9 || hi.maxCoeff() > 7.5 + 1e-9) ++stuck_out_without_snap;
    // without snapping the centre stays where it was drawn
    Eigen::Vector4d cc = resample_matrix(p0, q1) * Eigen::Vector4d(3.5, 3.5, 3.5, 1);
    CHECK(cc[0] == doctest::Approx(rel[0] * 8 - 0.5));
  }
  CHECK(stuck_out_without_snap > 50);  // the test draws children that need snapping
}

TEST_CASE("scheme: system world follows world axes, matrix the voxel axes") {
  // an image whose voxel axes are permuted: image axis 0 runs along world y
  Patch img;
  img.A << 0, 1, 0, 0,  //
      2, 0, 0, 0,       //
      0, 0, 3, 0,       //
      0, 0, 0, 1;
  img.s = {10, 20, 30};
  json j = {{"depth", 1}, {"ndim", 3}, {"scheme", {{"patch_size", {4, 4, 4}}, {"fov_rel", 1}, {"destvox_rel", 1}}}};
  Scheme sm = Scheme::from_json(j);
  j["system"] = "world";
  Scheme sw = Scheme::from_json(j);
  Frame fm = make_frame(sm, img), fw = make_frame(sw, img);
  CHECK((fw.B - Eigen::Matrix3d::Identity()).norm() < 1e-12);
  CHECK(fm.B(1, 0) == doctest::Approx(1));  // patch axis 0 along image axis 0 = world y
  // world axis x is image axis 1 (voxel 1 mm): destvox_rel 1 -> 1 mm, 4 voxels
  CHECK(fw.extent[0][0] == doctest::Approx(4 * 1.0));
  CHECK(fw.extent[0][1] == doctest::Approx(4 * 2.0));
  CHECK(fm.extent[0][0] == doctest::Approx(4 * 2.0));
}

TEST_CASE("scheme: JSON round trip and strict parsing") {
  json j = {{"depth", 2},
            {"ndim", 2},
            {"scheme", {{"patch_size", {32, 32}}, {"fov_rel", {0.8, 0.7}}, {"destvox_mm", 1}}},
            {"system", "world"},
            {"interp_type", "lin"},
            {"smoothfac_data", 0.5},
            {"smoothfac_label", "max"},
            {"normalize_input", "m0s1"},
            {"categorical_label", {1, 2}},
            {"categorical", true}};
  Scheme s = Scheme::from_json(j);
  CHECK(s.num_labels == 2);
  CHECK(s.label_channels() == 3);
  Scheme t = Scheme::from_json(s.to_json());
  CHECK(t.to_json() == s.to_json());
  CHECK(t.smoothfac_label.kind == Smoothing::Kind::max);
  CHECK(t.smoothfac_data.width == doctest::Approx(0.5));

  json bad = j;
  bad["snaper"] = {0, 1};
  try {
    Scheme::from_json(bad);
    FAIL("typo accepted");
  } catch (const pw::InputError& e) {
    CHECK(std::string(e.what()).find("'snaper'") != std::string::npos);
    CHECK(std::string(e.what()).find("did you mean 'snapper'") != std::string::npos);
  }
  bad = j;
  bad["scheme"]["fov_mm"] = 3;
  CHECK_THROWS_AS(Scheme::from_json(bad), pw::InputError);
  bad = j;
  bad["scheme"]["patch_size"] = {32, 32, 32};
  CHECK_THROWS_AS(Scheme::from_json(bad), pw::InputError);
  bad = j;
  bad["interp_type"] = "cubic";
  CHECK_THROWS_AS(Scheme::from_json(bad), pw::InputError);
}

TEST_CASE("scheme: out_patch_size < patch_size: the output patch is the input patch's central crop") {
  json j = {{"depth", 2}, {"ndim", 3},
            {"scheme", {{"patch_size", {{8, 8, 8}, {12, 10, 8}}}, {"out_patch_size", {{4, 6, 8}, {8, 6, 2}}},
                        {"fov_mm", 80}, {"destvox_mm", 2}}}};
  Scheme s = Scheme::from_json(j);
  Frame f = make_frame(s, image_patch(1, 1, 1, 100, 100, 100));
  // destvox is the final level's voxel size, input and output alike: extent = patch_size x destvox
  CHECK(f.voxel[1][0] == doctest::Approx(2));
  CHECK(f.extent[1][1] == doctest::Approx(20));
  CHECK(f.out_extent[1][0] == doctest::Approx(16));  // 8 output voxels of 2 mm
  CHECK(f.out_extent[1][2] == doctest::Approx(4));
  CHECK(f.out_extent[0][0] == doctest::Approx(40));  // level 0: 4 of 8 voxels of 10 mm
  const Eigen::Matrix3d R = Eigen::AngleAxisd(0.4, Eigen::Vector3d(1, 2, 3).normalized()).toRotationMatrix();
  for (int level : {0, 1}) {
    Patch p = make_patch(s, f, level, Eigen::Vector3d(3.25, 40, -7), R);
    Patch o = out_patch(s, level, p);
    CHECK(o.s == s.out_patch_size[level]);
    CHECK((o.centre_world() - p.centre_world()).norm() < 1e-9);                     // same centre
    CHECK((o.A.topLeftCorner<3, 3>() - p.A.topLeftCorner<3, 3>()).norm() < 1e-12);  // same axes and voxel size
    // output voxel j is input voxel j + (patch_size - out_patch_size) / 2
    Eigen::Matrix4d M = resample_matrix(p, o);
    Eigen::Matrix4d expect = Eigen::Matrix4d::Identity();
    for (int a = 0; a < 3; ++a) expect(a, 3) = (s.patch_size[level][a] - s.out_patch_size[level][a]) / 2.0;
    CHECK((M - expect).norm() < 1e-9);
  }
  // a child is placed in its parent's output patch and, with snapper, its output stays inside it
  Patch p0 = make_patch(s, f, 0, Eigen::Vector3d(50, 50, 50), R);
  Patch o0 = out_patch(s, 0, p0);
  for (double u : {0.0, 0.5, 1.0}) {
    Patch c = child_patch(s, f, 1, o0, Eigen::Vector3d(u, 1 - u, u), R);
    Eigen::Vector3d lo, hi;
    bounding_box(o0, out_patch(s, 1, c), lo, hi);  // the child's output box
    for (int a = 0; a < 3; ++a) {
      CHECK(lo[a] >= -0.5 - 1e-9);
      CHECK(hi[a] <= o0.s[a] - 0.5 + 1e-9);
    }
  }
  Scheme t = Scheme::from_json(s.to_json());
  CHECK(t.out_patch_size == s.out_patch_size);
}

TEST_CASE("scheme: bad out_patch_size values are refused when the config is read, naming the key") {
  auto with = [](const json& ps, const json& out, int ndim = 3, int depth = 2) {
    return json{{"depth", depth}, {"ndim", ndim},
                {"scheme", {{"patch_size", ps}, {"out_patch_size", out}, {"fov_rel", 1}, {"destvox_rel", 1}}}};
  };
  auto refused = [](const json& j, const std::string& why) {
    try {
      Scheme::from_json(j);
      FAIL("accepted: " << j.dump());
    } catch (const pw::InputError& e) {
      const std::string m = e.what();
      CHECK_MESSAGE(m.find("scheme.out_patch_size") != std::string::npos, m);
      CHECK_MESSAGE(m.find(why) != std::string::npos, m);
    }
  };
  CHECK(Scheme::from_json(with({8, 8, 8}, {4, 6, 8})).out_patch_size[1] == Size3{4, 6, 8});
  refused(with({8, 8, 8}, {10, 8, 8}), "can only be smaller");                 // out > in
  refused(with({8, 8, 8}, {5, 8, 8}), "must be even");                         // no centred crop
  refused(with({8, 8, 8}, {{4, 4, 4}, {4, 4, 4}, {4, 4, 4}}), "one size per level");  // 3 sizes for depth 2
  refused(with({8, 8, 8}, {4, 4}), "3 integers per size");                     // wrong ndim
  refused(with({8, 8}, {4, 4, 4}, 2), "2 integers per size");
  refused(with({8, 8, 8}, {0, 4, 4}), "1..4096");
  refused(with({8, 8, 8}, json::array()), "list of sizes");
  refused(with({{8, 8, 8}, {16, 16, 16}}, {{8, 8, 8}, {16, 16, 15}}), "level 1 axis 2");
}
