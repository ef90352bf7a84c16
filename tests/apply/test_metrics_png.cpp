// Metrics on hand-made volumes (known Dice, volumes, HD95 against a brute-force reference), the
// PNG writer (decoded back with zlib) and the phantoms.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cmath>
#include <fstream>

#include "apply/metrics.h"
#include "train/phantom.h"
#include "io/png.h"
#include "apply/preview.h"
#include "common/test_util.h"
#include "io/nifti.h"

using namespace pw;

namespace {

using Dims = std::array<int64_t, 3>;

std::vector<int32_t> box(Dims d, Dims lo, Dims hi, int32_t value) {
  std::vector<int32_t> v(d[0] * d[1] * d[2], 0);
  for (int64_t z = lo[2]; z < hi[2]; ++z)
    for (int64_t y = lo[1]; y < hi[1]; ++y)
      for (int64_t x = lo[0]; x < hi[0]; ++x) v[x + d[0] * (y + d[1] * z)] = value;
  return v;
}

// Brute force: surface voxels (6-neighbourhood), all pairwise distances, numpy-style percentile.
double hd95_brute(const std::vector<int32_t>& a, const std::vector<int32_t>& b, Dims d, std::array<double, 3> h) {
  auto surf = [&](const std::vector<int32_t>& m) {
    std::vector<std::array<int64_t, 3>> s;
    for (int64_t z = 0; z < d[2]; ++z)
      for (int64_t y = 0; y < d[1]; ++y)
        for (int64_t x = 0; x < d[0]; ++x) {
          if (!m[x + d[0] * (y + d[1] * z)]) continue;
          bool edge = false;
          const int64_t c[3] = {x, y, z};
          for (int ax = 0; ax < 3; ++ax) {
            if (d[ax] == 1) continue;
            for (int s2 = -1; s2 <= 1; s2 += 2) {
              int64_t q[3] = {c[0], c[1], c[2]};
              q[ax] += s2;
              if (q[ax] < 0 || q[ax] >= d[ax] || !m[q[0] + d[0] * (q[1] + d[1] * q[2])]) edge = true;
            }
          }
          if (edge) s.push_back({x, y, z});
        }
    return s;
  };
  auto sa = surf(a), sb = surf(b);
  auto directed = [&](const auto& from, const auto& to) {
    std::vector<double> dist;
    for (auto& p : from) {
      double best = 1e300;
      for (auto& q : to) {
        double s = 0;
        for (int k = 0; k < 3; ++k) s += std::pow((p[k] - q[k]) * h[k], 2);
        best = std::min(best, s);
      }
      dist.push_back(std::sqrt(best));
    }
    return percentile(dist, 95);
  };
  return std::max(directed(sa, sb), directed(sb, sa));
}

}  // namespace

TEST_CASE("metrics: percentile matches numpy's linear interpolation") {
  std::vector<double> v = {5, 1, 4, 2, 3};
  CHECK(percentile(v, 95) == doctest::Approx(4.8));  // numpy.percentile([1..5], 95) = 4.8
  std::vector<double> w = {7};
  CHECK(percentile(w, 95) == 7);
  std::vector<double> u = {0, 10};
  CHECK(percentile(u, 50) == doctest::Approx(5));
}

TEST_CASE("metrics: two parallel slabs 4 voxels apart have HD95 = 4 * spacing, Dice 0") {
  Dims d = {12, 9, 7};
  auto a = box(d, {3, 0, 0}, {4, 9, 7}, 1);
  auto b = box(d, {7, 0, 0}, {8, 9, 7}, 1);
  std::vector<int32_t> pred = a, ref = b;
  auto m = evaluate_labels(pred.data(), ref.data(), d, {2.0, 1.0, 0.5});
  REQUIRE(m.size() == 1);
  CHECK(m[0].dice == 0.0);
  CHECK(m[0].hd95_mm == doctest::Approx(8.0));
}

TEST_CASE("metrics: shifted cubes: Dice, volumes and HD95 against brute force") {
  Dims d = {30, 28, 26};
  std::array<double, 3> h = {1.5, 1.0, 2.0};
  auto ref = box(d, {8, 8, 8}, {18, 18, 18}, 3);       // 1000 voxels
  auto pred = box(d, {10, 8, 8}, {20, 18, 18}, 3);     // shifted by 2 along x: overlap 800
  // A second label only in the prediction, one only in the reference.
  auto p2 = box(d, {1, 1, 1}, {3, 3, 3}, 5);
  for (size_t i = 0; i < pred.size(); ++i)
    if (p2[i]) pred[i] = 5;
  ref[ref.size() - 1] = 7;
  auto m = evaluate_labels(pred.data(), ref.data(), d, h);
  REQUIRE(m.size() == 3);
  CHECK(m[0].label == 3);
  CHECK(m[0].dice == doctest::Approx(0.8));
  CHECK(m[0].voxels_pred == 1000);
  CHECK(m[0].volume_ref_ml == doctest::Approx(1000 * 1.5 * 1.0 * 2.0 / 1000));
  CHECK(m[0].volume_diff_ml == doctest::Approx(0));
  std::vector<int32_t> a(pred.size()), b(ref.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = pred[i] == 3;
    b[i] = ref[i] == 3;
  }
  double brute = hd95_brute(a, b, d, h);
  CHECK(m[0].hd95_mm == doctest::Approx(brute).epsilon(1e-9));
  CHECK(brute > 0);
  CHECK(m[1].label == 5);
  CHECK(m[1].dice == 0.0);
  CHECK(std::isinf(m[1].hd95_mm));
  CHECK(std::isnan(m[1].volume_diff_rel));
  CHECK(m[2].label == 7);
  CHECK(m[2].voxels_ref == 1);
  // Asked-for labels only; an absent label is perfect (both empty).
  auto only = evaluate_labels(pred.data(), ref.data(), d, h, {3, 9});
  REQUIRE(only.size() == 2);
  CHECK(only[1].dice == 1.0);
  CHECK(only[1].hd95_mm == 0.0);
}

TEST_CASE("metrics: irregular shapes agree with brute force (3D and 2D)") {
  for (Dims d : {Dims{20, 18, 16}, Dims{40, 35, 1}}) {
    std::vector<int32_t> a(d[0] * d[1] * d[2]), b(a.size());
    for (int64_t z = 0; z < d[2]; ++z)
      for (int64_t y = 0; y < d[1]; ++y)
        for (int64_t x = 0; x < d[0]; ++x) {
          double u = x - d[0] * 0.45, v = y - d[1] * 0.5, w = d[2] > 1 ? z - d[2] * 0.5 : 0;
          a[x + d[0] * (y + d[1] * z)] = u * u / 30 + v * v / 20 + w * w / 15 < 1;
          double u2 = x - d[0] * 0.55, v2 = y - d[1] * 0.45;
          b[x + d[0] * (y + d[1] * z)] = (u2 * u2 / 40 + v2 * v2 / 12 + w * w / 20 < 1) || (x == 2 && y == 3);
        }
    std::array<double, 3> h = {0.8, 1.3, 2.5};
    std::vector<uint8_t> a8(a.begin(), a.end()), b8(b.begin(), b.end());
    CHECK(hd95(a8.data(), b8.data(), d, h) == doctest::Approx(hd95_brute(a, b, d, h)));
  }
}

TEST_CASE("png: a valid file that decodes back to the pixels") {
  RgbImage img(5, 3, 10, 20, 30);
  img.set(4, 2, 255, 0, 128);
  img.set(9, 9, 1, 1, 1);  // outside: ignored
  std::vector<uint8_t> f = encode_png(img);
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  REQUIRE(f.size() > 8 + 25 + 12 + 12);
  CHECK(std::equal(sig, sig + 8, f.begin()));
  auto u32 = [&](size_t at) {
    return (uint32_t(f[at]) << 24) | (uint32_t(f[at + 1]) << 16) | (uint32_t(f[at + 2]) << 8) | f[at + 3];
  };
  // Walk the chunks, checking every CRC; inflate IDAT.
  size_t at = 8;
  std::vector<uint8_t> idat;
  std::vector<std::string> types;
  while (at < f.size()) {
    uint32_t len = u32(at);
    std::string type(f.begin() + at + 4, f.begin() + at + 8);
    types.push_back(type);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, f.data() + at + 4, len + 4);
    CHECK(u32(at + 8 + len) == uint32_t(crc));
    if (type == "IHDR") {
      CHECK(u32(at + 8) == 5);
      CHECK(u32(at + 12) == 3);
      CHECK(f[at + 16] == 8);
      CHECK(f[at + 17] == 2);
    }
    if (type == "IDAT") idat.insert(idat.end(), f.begin() + at + 8, f.begin() + at + 8 + len);
    at += 12 + len;
  }
  CHECK(types == std::vector<std::string>{"IHDR", "IDAT", "IEND"});
  std::vector<uint8_t> raw(3 * (1 + 5 * 3));
  uLongf rl = raw.size();
  REQUIRE(uncompress(raw.data(), &rl, idat.data(), idat.size()) == Z_OK);
  CHECK(rl == raw.size());
  CHECK(raw[0] == 0);                      // filter type 0
  CHECK(raw[1] == 10);
  CHECK(raw[2] == 20);
  CHECK(raw[3] == 30);
  const size_t last = 2 * 16 + 1 + 4 * 3;  // row 2, pixel 4
  CHECK(raw[last] == 255);
  CHECK(raw[last + 1] == 0);
  CHECK(raw[last + 2] == 128);
}

TEST_CASE("phantom: labelled structures, deterministic, 2D and 3D, NIfTI with the affine") {
  PhantomOptions o;
  o.dims = {40, 36, 30};
  Phantom p = make_phantom(o), q = make_phantom(o);
  CHECK(p.image == q.image);
  int64_t count[4] = {0, 0, 0, 0};
  for (int32_t l : p.labels) {
    REQUIRE(l >= 0);
    REQUIRE(l <= 3);
    ++count[l];
  }
  for (int l = 1; l <= 3; ++l) CHECK(count[l] > 20);
  // Structures are brighter than the body on average.
  double mean[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < p.image.size(); ++i) mean[p.labels[i]] += p.image[i];
  for (int l = 0; l < 4; ++l) mean[l] /= std::max<int64_t>(1, count[l]);
  CHECK(mean[1] > mean[0] + 0.2);
  CHECK(mean[3] > mean[1]);
  o.seed = 2;
  CHECK(make_phantom(o).labels != p.labels);
  o.dims = {64, 48, 1};
  Phantom f = make_phantom(o);
  int64_t fl = 0;
  for (int32_t l : f.labels) fl += l > 0;
  CHECK(fl > 100);
  auto dir = test::temp_dir("phantom");
  write_phantom(p, (dir / "img.nii.gz").string(), (dir / "lab.nii.gz").string());
  Volume vi = read_nifti(dir / "img.nii.gz"), vl = read_nifti(dir / "lab.nii.gz");
  CHECK(vi.shape() == std::vector<int64_t>{40, 36, 30});
  CHECK(vl.datatype == nifti_dt::uint8);
  CHECK(vi.affine()(0, 0) == doctest::Approx(1.5));
  CHECK(vi.affine()(2, 2) == doctest::Approx(2.0));
  CHECK(vi.affine()(0, 3) == doctest::Approx(-0.5 * 39 * 1.5));
  CHECK(vl.value(5 + 40 * (6 + 36 * 7)) == p.labels[5 + 40 * (6 + 36 * 7)]);
  // The preview of a phantom: three panels side by side, coloured where labelled.
  RgbImage pv = apply::preview_montage(p.image.data(), p.labels.data(), p.dims, o.spacing_mm);
  CHECK(pv.width > pv.height);
  int coloured = 0;
  for (int i = 0; i < pv.width * pv.height; ++i) {
    const uint8_t* c = &pv.rgb[i * 3];
    coloured += !(c[0] == c[1] && c[1] == c[2]);
  }
  CHECK(coloured > 50);
}
