#include "apply/bricks.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

namespace pw::apply {

BrickGrid::BrickGrid(const std::array<int64_t, 3>& g, int d, int64_t b) : grid(g), ndim(d) {
  if (d != 2 && d != 3) throw std::invalid_argument("BrickGrid: ndim must be 2 or 3");
  if (b < 2) throw std::invalid_argument("BrickGrid: the brick size must be >= 2 (exact brick origins)");
  if (d == 2 && g[0] != 1) throw std::invalid_argument("BrickGrid: a 2-D grid has one slice");
  edge = {1, b, b};
  edge[3 - d] = sweep_depth(b);
  for (int a = 0; a < 3; ++a) count[a] = (grid[a] + edge[a] - 1) / edge[a];
}

void copy_box(const Box& box, const float* y, int64_t channels, const std::array<int64_t, 3>& grid, float* dst) {
  const int64_t n = grid[0] * grid[1] * grid[2], bn = box.numel();
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t z = 0; z < box.size[0]; ++z)
      for (int64_t yy = 0; yy < box.size[1]; ++yy)
        std::copy_n(y + c * bn + (z * box.size[1] + yy) * box.size[2], box.size[2],
                    dst + c * n + ((box.lo[0] + z) * grid[1] + box.lo[1] + yy) * grid[2] + box.lo[2]);
}

Box BrickGrid::box(int64_t b) const {
  Box bx;
  const int64_t idx[3] = {b / (count[1] * count[2]), (b / count[2]) % count[1], b % count[2]};
  for (int a = 0; a < 3; ++a) {
    bx.lo[a] = idx[a] * edge[a];
    bx.size[a] = std::min(edge[a], grid[a] - bx.lo[a]);
  }
  return bx;
}

int64_t BrickGrid::at(const std::array<int64_t, 3>& v) const {
  return ((v[0] / edge[0]) * count[1] + v[1] / edge[1]) * count[2] + v[2] / edge[2];
}

std::vector<int64_t> BrickGrid::meeting(const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& hi) const {
  int64_t l[3], h[3];
  for (int a = 0; a < 3; ++a) {
    l[a] = lo[a] / edge[a];
    h[a] = hi[a] / edge[a];
  }
  std::vector<int64_t> out;
  for (int64_t z = l[0]; z <= h[0]; ++z)
    for (int64_t y = l[1]; y <= h[1]; ++y)
      for (int64_t x = l[2]; x <= h[2]; ++x) out.push_back((z * count[1] + y) * count[2] + x);
  return out;
}

BrickStitch::BrickStitch(const std::array<int64_t, 3>& grid, int ndim, int64_t channels, Device dev, int64_t brick)
    : layout_(grid, ndim, brick), grid_(grid), ndim_(ndim), channels_(channels), dev_(dev) {
  if (channels < 1) throw std::invalid_argument("BrickStitch: channels must be >= 1");
  bricks_.resize(static_cast<size_t>(layout_.num()));
}

Shape BrickStitch::brick_shape(const Box& bx, int64_t lead) const {
  Shape s;
  if (lead > 0) s.push_back(lead);
  for (int a = 3 - ndim_; a < 3; ++a) s.push_back(bx.size[a]);
  return s;
}

bool BrickStitch::footprint(const float* mat, const std::array<int64_t, 3>& patch, Interp mode, Box& fp) const {
  const int d = ndim_;
  fp = Box();
  for (int r = 0; r < d; ++r) {
    double cmin = INFINITY, cmax = -INFINITY;
    for (int corner = 0; corner < (1 << d); ++corner) {
      double c = mat[r * (d + 1) + d];
      for (int a = 0; a < d; ++a) c += double(mat[r * (d + 1) + a]) * ((corner >> a) & 1 ? double(patch[3 - d + a] - 1) : 0.0);
      cmin = std::min(cmin, c);
      cmax = std::max(cmax, c);
    }
    if (!(cmin <= cmax)) return false;  // NaN matrix: the kernel splats nothing
    const bool lin = mode == Interp::linear;
    const double vlo = (lin ? std::floor(cmin) : std::floor(cmin + 0.5)) - 1;
    const double vhi = (lin ? std::floor(cmax) + 1 : std::floor(cmax + 0.5)) + 1;
    const int64_t n = grid_[3 - d + r];
    if (vhi < 0 || vlo > double(n - 1)) return false;
    const int64_t lo = static_cast<int64_t>(std::max(vlo, 0.0)), hi = static_cast<int64_t>(std::min(vhi, double(n - 1)));
    fp.lo[3 - d + r] = lo;
    fp.size[3 - d + r] = hi - lo + 1;
  }
  return true;
}

std::vector<int64_t> BrickStitch::touched(const float* mat, const std::array<int64_t, 3>& patch, Interp mode) const {
  Box fp;
  if (!footprint(mat, patch, mode, fp)) return {};
  return layout_.meeting(fp.lo, {fp.lo[0] + fp.size[0] - 1, fp.lo[1] + fp.size[1] - 1, fp.lo[2] + fp.size[2] - 1});
}

void BrickStitch::allocate(int64_t b) {
  Brick& k = bricks_[b];
  if (k.finished) throw std::logic_error("BrickStitch: a patch lands in brick " + std::to_string(b) + ", already finished");
  if (k.acc.defined()) return;
  const Box bx = box(b);
  k.acc = Tensor::zeros(brick_shape(bx, channels_), DType::f32, dev_);
  k.weight = Tensor::zeros(brick_shape(bx, 0), DType::f32, dev_);
  bytes_ += (channels_ + 1) * bx.numel() * static_cast<int64_t>(sizeof(float));
  peak_bytes_ = std::max(peak_bytes_, bytes_);
  ++allocated_;
}

void BrickStitch::release(int64_t b) {
  Brick& k = bricks_[b];
  if (k.acc.defined()) bytes_ -= (channels_ + 1) * box(b).numel() * static_cast<int64_t>(sizeof(float));
  k.acc = Tensor();
  k.weight = Tensor();
  k.finished = true;
}

void BrickStitch::add(const Tensor& patches, const std::vector<float>& mats, Interp mode, Window window) {
  const int d = ndim_;
  const int64_t k2 = (d + 1) * (d + 1), P = patches.defined() ? patches.dim(0) : 0;
  if (patches.ndim() != d + 2 || patches.dim(1) != channels_ || static_cast<int64_t>(mats.size()) != P * k2)
    throw std::invalid_argument("BrickStitch::add: patches " + shape_str(patches.shape()) + " and " +
                                std::to_string(mats.size()) + " matrix entries do not fit " + std::to_string(channels_) +
                                " channels of a " + std::to_string(d) + "-D grid");
  std::array<int64_t, 3> ps{1, 1, 1};
  for (int a = 0; a < d; ++a) ps[3 - d + a] = patches.dim(2 + a);
  std::vector<std::pair<int64_t, int64_t>> hits;  // (brick, patch), sorted: per brick ascending patches
  for (int64_t p = 0; p < P; ++p)
    for (int64_t b : touched(mats.data() + p * k2, ps, mode)) hits.emplace_back(b, p);
  std::sort(hits.begin(), hits.end());
  for (size_t i = 0; i < hits.size();) {
    // One call per run of consecutive patches landing in the same brick.
    size_t j = i + 1;
    while (j < hits.size() && hits[j].first == hits[i].first && hits[j].second == hits[j - 1].second + 1) ++j;
    const int64_t b = hits[i].first, p0 = hits[i].second, p1 = hits[j - 1].second + 1;
    allocate(b);
    const Box bx = box(b);
    std::vector<int64_t> origin(bx.lo.begin() + (3 - d), bx.lo.end());
    std::vector<float> m(mats.begin() + p0 * k2, mats.begin() + p1 * k2);
    Brick& k = bricks_[b];
    stitch_accumulate(patches.rows(p0, p1), Tensor::from_vector({p1 - p0, d + 1, d + 1}, m), mode, window, k.acc,
                      k.weight, origin);
    i = j;
  }
}

void BrickStitch::finish(int64_t b, float alpha, BrickSink& sink) {
  Brick& k = bricks_.at(b);
  if (k.finished) throw std::logic_error("BrickStitch: brick " + std::to_string(b) + " finished twice");
  const Box bx = box(b);
  std::vector<float> y;
  if (k.acc.defined()) y = stitch_normalize(k.acc, k.weight, alpha).to_vector();
  else y.assign(static_cast<size_t>(channels_ * bx.numel()), 0.f);
  release(b);
  sink.put(bx, y.data());
}

void BrickStitch::finish_all(float alpha, BrickSink& sink) {
  for (int64_t b = 0; b < num_bricks(); ++b)
    if (!bricks_[b].finished) finish(b, alpha, sink);
}

void BrickStitch::to_dense(Tensor& acc, Tensor& weight) {
  const int64_t n = grid_[0] * grid_[1] * grid_[2];
  std::vector<float> a(static_cast<size_t>(channels_ * n), 0.f), w(static_cast<size_t>(n), 0.f);
  for (int64_t b = 0; b < num_bricks(); ++b) {
    Brick& k = bricks_[b];
    if (!k.acc.defined()) continue;
    const Box bx = box(b);
    const std::vector<float> ka = k.acc.to_vector(), kw = k.weight.to_vector();
    for (int64_t z = 0; z < bx.size[0]; ++z)
      for (int64_t y = 0; y < bx.size[1]; ++y) {
        const int64_t src = (z * bx.size[1] + y) * bx.size[2];
        const int64_t dst = ((bx.lo[0] + z) * grid_[1] + bx.lo[1] + y) * grid_[2] + bx.lo[2];
        for (int64_t c = 0; c < channels_; ++c)
          std::copy_n(ka.begin() + c * bx.numel() + src, bx.size[2], a.begin() + c * n + dst);
        std::copy_n(kw.begin() + src, bx.size[2], w.begin() + dst);
      }
    release(b);
  }
  Shape ws;
  for (int ax = 3 - ndim_; ax < 3; ++ax) ws.push_back(grid_[ax]);
  Shape as = ws;
  as.insert(as.begin(), channels_);
  acc = Tensor::from_vector(as, a, dev_);
  weight = Tensor::from_vector(ws, w, dev_);
}

}  // namespace pw::apply
