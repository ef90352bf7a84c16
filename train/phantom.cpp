#include "train/phantom.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "io/nifti.h"

namespace pw {

namespace {

struct Ellipsoid {
  double c[3], r[3];
};

bool inside(const Ellipsoid& e, const double p[3], bool is2d) {
  double s = 0;
  for (int a = 0; a < (is2d ? 2 : 3); ++a) {
    double d = (p[a] - e.c[a]) / e.r[a];
    s += d * d;
  }
  return s <= 1.0;
}

// Distance from p to the segment a-b (only x,y in 2D).
double segment_distance(const double p[3], const double a[3], const double b[3], bool is2d) {
  const int nd = is2d ? 2 : 3;
  double ab2 = 0, t = 0;
  for (int k = 0; k < nd; ++k) {
    ab2 += (b[k] - a[k]) * (b[k] - a[k]);
    t += (p[k] - a[k]) * (b[k] - a[k]);
  }
  t = ab2 > 0 ? std::clamp(t / ab2, 0.0, 1.0) : 0.0;
  double d2 = 0;
  for (int k = 0; k < nd; ++k) {
    double q = a[k] + t * (b[k] - a[k]) - p[k];
    d2 += q * q;
  }
  return std::sqrt(d2);
}

// Diagonal spacing, the image centre at the world origin.
std::array<double, 16> centred_affine(const std::array<int64_t, 3>& dims, const std::array<double, 3>& mm) {
  std::array<double, 16> A{};
  for (int a = 0; a < 3; ++a) {
    A[a * 4 + a] = mm[a];
    A[a * 4 + 3] = -0.5 * (dims[a] - 1) * mm[a];
  }
  A[15] = 1.0;
  return A;
}

}  // namespace

Phantom make_phantom(const PhantomOptions& opt) {
  for (int a = 0; a < 3; ++a)
    if (opt.dims[a] < 1 || opt.spacing_mm[a] <= 0) throw std::invalid_argument("make_phantom: bad dims or spacing");
  if (opt.dims[0] < 8 || opt.dims[1] < 8) throw std::invalid_argument("make_phantom: at least 8x8 voxels");
  if (opt.num_labels < 1 || opt.num_labels > 3) throw std::invalid_argument("make_phantom: num_labels must be 1..3");
  const bool is2d = opt.dims[2] == 1;
  std::mt19937_64 rng(opt.seed);
  std::uniform_real_distribution<double> U(0.0, 1.0);

  Phantom p;
  p.dims = opt.dims;
  // Normalised coordinates u in [-1, 1] along each axis (the centre of the image is 0).
  // Body: a large ellipsoid; structures are placed in normalised coordinates inside it.
  Ellipsoid body{{0, 0, 0}, {0.9, 0.85, 0.9}};
  Ellipsoid organ{{-0.25 + 0.2 * U(rng), -0.2 + 0.2 * U(rng), -0.1 + 0.2 * U(rng)},
                  {0.28 + 0.08 * U(rng), 0.22 + 0.08 * U(rng), 0.3 + 0.1 * U(rng)}};
  Ellipsoid small{{0.3 + 0.15 * U(rng), 0.25 + 0.15 * U(rng), -0.2 + 0.4 * U(rng)},
                  {0.13 + 0.04 * U(rng), 0.15 + 0.04 * U(rng), 0.17 + 0.05 * U(rng)}};
  double ta[3] = {-0.5 + 0.2 * U(rng), 0.45 + 0.1 * U(rng), -0.6 + 0.2 * U(rng)};
  double tb[3] = {0.55 + 0.1 * U(rng), -0.45 - 0.1 * U(rng), 0.6 - 0.2 * U(rng)};
  const double tube_r = 0.07 + 0.02 * U(rng);
  // Inhomogeneity: exp(bias * smooth field), a sum of low-frequency cosines with random phases.
  double ph[3], fr[3];
  for (int a = 0; a < 3; ++a) {
    ph[a] = 6.283 * U(rng);
    fr[a] = 0.5 + U(rng);
  }
  const float I_body = 0.3f, I_organ = 0.75f, I_small = 0.5f, I_tube = 1.0f;

  const int64_t n = opt.dims[0] * opt.dims[1] * opt.dims[2];
  p.image.resize(n);
  p.labels.resize(n);
  std::normal_distribution<double> N(0.0, 1.0);
  for (int64_t z = 0; z < opt.dims[2]; ++z)
    for (int64_t y = 0; y < opt.dims[1]; ++y)
      for (int64_t x = 0; x < opt.dims[0]; ++x) {
        const int64_t idx[3] = {x, y, z};
        double u[3];
        for (int a = 0; a < 3; ++a)
          u[a] = opt.dims[a] == 1 ? 0.0 : 2.0 * (static_cast<double>(idx[a]) + 0.5) / opt.dims[a] - 1.0;
        int label = 0;
        float v = 0.05f;
        if (inside(body, u, is2d)) v = I_body;
        if (inside(organ, u, is2d)) {
          label = 1;
          v = I_organ;
        }
        if (opt.num_labels >= 2 && inside(small, u, is2d)) {
          label = 2;
          v = I_small;
        }
        if (opt.num_labels >= 3 && segment_distance(u, ta, tb, is2d) <= tube_r) {
          label = 3;
          v = I_tube;
        }
        double field = 0;
        for (int a = 0; a < (is2d ? 2 : 3); ++a) field += std::cos(fr[a] * 3.1416 * u[a] + ph[a]);
        field /= is2d ? 2.0 : 3.0;
        double val = v * std::exp(opt.bias * field) + opt.noise * N(rng);
        const int64_t i = x + opt.dims[0] * (y + opt.dims[1] * z);
        p.image[i] = static_cast<float>(val);
        p.labels[i] = label;
      }
  p.affine = centred_affine(opt.dims, opt.spacing_mm);
  return p;
}

Phantom make_many_label_phantom(const ManyLabelPhantomOptions& opt) {
  const bool is2d = opt.dims[2] == 1;
  const int d = is2d ? 2 : 3;
  if (opt.num_labels < 1 || opt.num_labels > 255) throw std::invalid_argument("make_many_label_phantom: 1..255 labels");
  int G = 1;
  while (std::pow(G, d) < opt.num_labels) ++G;
  int bits = 1;  // contrasts: one bit of the label's code each
  while ((1 << bits) < opt.num_labels) ++bits;
  std::mt19937_64 rng(opt.seed);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  std::normal_distribution<double> N(0.0, 1.0);
  const int cells = is2d ? G * G : G * G * G;
  std::vector<int> cell(cells), label(opt.num_labels);
  for (int i = 0; i < cells; ++i) cell[i] = i;
  for (int i = 0; i < opt.num_labels; ++i) label[i] = i + 1;
  std::shuffle(cell.begin(), cell.end(), rng);
  std::shuffle(label.begin(), label.end(), rng);
  // One ball per label: centre and radius in voxels.
  std::vector<Ellipsoid> balls(opt.num_labels);
  std::vector<int> ball_of_cell(cells, -1);
  for (int i = 0; i < opt.num_labels; ++i) {
    ball_of_cell[cell[i]] = i;
    const int idx[3] = {cell[i] % G, (cell[i] / G) % G, cell[i] / (G * G)};
    const double r = 0.28 + 0.12 * U(rng);  // in cell sizes
    for (int a = 0; a < 3; ++a) {
      const double size = static_cast<double>(opt.dims[a]) / G;
      const double jitter = (U(rng) - 0.5) * (1.0 - 2.0 * r - 0.1);
      balls[i].c[a] = a < d ? (idx[a] + 0.5 + jitter) * size - 0.5 : 0.0;
      balls[i].r[a] = a < d ? r * size : 1.0;
    }
  }
  Phantom p;
  p.dims = opt.dims;
  p.channels = bits;
  const int64_t n = opt.dims[0] * opt.dims[1] * opt.dims[2];
  p.image.assign(static_cast<size_t>(bits * n), 0.f);
  p.labels.assign(static_cast<size_t>(n), 0);
  for (int64_t z = 0; z < opt.dims[2]; ++z)
    for (int64_t y = 0; y < opt.dims[1]; ++y)
      for (int64_t x = 0; x < opt.dims[0]; ++x) {
        const double q[3] = {double(x), double(y), double(z)};
        const int64_t v = x + opt.dims[0] * (y + opt.dims[1] * z);
        // a ball lies inside its cell: only the voxel's cell can hold it
        const int64_t ci = x * G / opt.dims[0] + G * (y * G / opt.dims[1] + G * (z * G / opt.dims[2]));
        const int i = ball_of_cell[ci];
        if (i >= 0 && inside(balls[i], q, is2d)) p.labels[v] = label[i];
        const int l = p.labels[v] - 1;
        for (int c = 0; c < bits; ++c) {
          const double level = l < 0 ? 0.5 : 0.1 + 0.8 * ((l >> c) & 1);
          p.image[c * n + v] = static_cast<float>(level + opt.noise * N(rng));
        }
      }
  p.affine = centred_affine(opt.dims, opt.spacing_mm);
  return p;
}

void write_phantom(const Phantom& p, const std::string& image_path, const std::string& label_path) {
  Eigen::Matrix4d A;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) A(r, c) = p.affine[r * 4 + c];
  std::vector<int64_t> dims = {p.dims[0], p.dims[1]};
  if (p.dims[2] > 1 || p.channels > 1) dims.push_back(p.dims[2]);
  std::vector<int64_t> img_dims = dims;
  if (p.channels > 1) img_dims.push_back(p.channels);
  Volume img = Volume::from_values(img_dims, p.image.data(), A);
  img.xyzt_units = 2;  // mm
  img.descrip = "patchwork phantom";
  write_nifti(img, image_path);
  std::vector<uint8_t> lab(p.labels.begin(), p.labels.end());
  Volume seg = Volume::from_values(dims, lab.data(), A);
  seg.xyzt_units = 2;
  seg.descrip = "patchwork phantom labels";
  write_nifti(seg, label_path);
}

}  // namespace pw
