// Connected components and the largest-component clean-up of apply (--largest-component) on hand-made volumes.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <vector>

#include "apply/components.h"
#include "apply/outputs.h"

using namespace pw;
using namespace pw::apply;

namespace {

struct Vol {
  std::array<int64_t, 3> dims;
  std::vector<uint8_t> v;
  Vol(int64_t nx, int64_t ny, int64_t nz) : dims{nx, ny, nz}, v(static_cast<size_t>(nx * ny * nz), 0) {}
  uint8_t& at(int64_t x, int64_t y, int64_t z) { return v[static_cast<size_t>((z * dims[1] + y) * dims[0] + x)]; }
  void box(int64_t x0, int64_t y0, int64_t z0, int64_t x1, int64_t y1, int64_t z1, uint8_t val) {
    for (int64_t z = z0; z < z1; ++z)
      for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x) at(x, y, z) = val;
  }
  int64_t count(uint8_t val) const {
    int64_t n = 0;
    for (uint8_t x : v) n += x == val;
    return n;
  }
};

}  // namespace

TEST_CASE("components: two blobs of one label, the smaller removed; another label keeps its own largest") {
  Vol a(12, 10, 8);
  a.box(0, 0, 0, 4, 4, 4, 1);   // 64 voxels of label 1
  a.box(8, 6, 4, 10, 8, 6, 1);  // 8 voxels of label 1, apart
  a.box(5, 0, 0, 6, 2, 1, 2);   // 2 voxels of label 2, touching nothing of label 2
  const Components c = connected_components(a.v.data(), a.dims, 26);
  REQUIRE(c.sizes.size() == 4);  // background + 3 components
  CHECK(c.sizes[1] == 64);
  CHECK(c.sizes[3] == 8);        // scan order: label 2's first voxel (x=5, z=0) comes before the far blob
  CHECK(c.sizes[2] == 2);
  CHECK(keep_largest_components(a.v.data(), a.dims, 26) == 8);
  CHECK(a.count(1) == 64);
  CHECK(a.count(2) == 2);
  CHECK(a.at(9, 7, 5) == 0);
  CHECK(a.at(1, 1, 1) == 1);
}

TEST_CASE("components: 26- versus 6-connectivity (a diagonal touch), one-slice volumes use 8/4") {
  Vol a(6, 6, 6);
  a.box(0, 0, 0, 2, 2, 2, 1);  // 8 voxels
  a.at(2, 2, 2) = 1;           // touches the cube at a corner only
  a.box(4, 4, 4, 6, 6, 6, 1);  // 8 voxels, apart
  CHECK(connected_components(a.v.data(), a.dims, 26).sizes == std::vector<int64_t>{0, 9, 8});
  CHECK(connected_components(a.v.data(), a.dims, 6).sizes == std::vector<int64_t>{0, 8, 1, 8});
  Vol b = a;
  CHECK(keep_largest_components(b.v.data(), b.dims, 6) == 9);  // a tie of 8: the first met stays
  CHECK(b.count(1) == 8);
  CHECK(b.at(0, 0, 0) == 1);
  CHECK(keep_largest_components(a.v.data(), a.dims, 26) == 8);
  CHECK(a.at(2, 2, 2) == 1);

  Vol flat(5, 5, 1);  // a 2-D diagonal: one component with 8-neighbours, three with 4
  flat.at(0, 0, 0) = flat.at(1, 1, 0) = flat.at(2, 2, 0) = 3;
  CHECK(connected_components(flat.v.data(), flat.dims, 26).sizes.size() == 2);
  CHECK(connected_components(flat.v.data(), flat.dims, 6).sizes.size() == 4);
  CHECK_THROWS_AS(connected_components(flat.v.data(), flat.dims, 18), std::invalid_argument);
}

TEST_CASE("outputs: --largest-component in atls and mask outputs") {
  Prediction p;
  p.grid.s = {10, 4, 4};
  p.grid.A = Eigen::Matrix4d::Identity();
  p.channels = 1;
  const int64_t n = 160;
  p.prob.assign(n, 0.f);
  auto at = [&](int x, int y, int z) -> float& { return p.prob[(z * 4 + y) * 10 + x]; };
  for (int z = 0; z < 2; ++z)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x) at(x, y, z) = 0.9f;  // 12 voxels
  at(8, 3, 3) = 0.8f;                                  // one voxel apart
  LabelInfo info;
  info.values = {5};
  for (OutKind kind : {OutKind::atls, OutKind::mask}) {
    OutputType t{kind, {}};
    Volume plain = make_output(p, t, info);
    t.largest_component = 26;
    Volume clean = make_output(p, t, info);
    std::vector<float> a = plain.to_float(), b = clean.to_float();
    const float on = kind == OutKind::atls ? 5.f : 1.f;
    CHECK(std::count(a.begin(), a.end(), on) == 13);
    CHECK(std::count(b.begin(), b.end(), on) == 12);
    CHECK(b[(3 * 4 + 3) * 10 + 8] == 0.f);
  }
}
