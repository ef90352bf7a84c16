#include "apply/metrics.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "kernels/parallel.h"

namespace pw {

double dice(const uint8_t* a, const uint8_t* b, int64_t n) {
  int64_t na = 0, nb = 0, both = 0;
  for (int64_t i = 0; i < n; ++i) {
    na += a[i] != 0;
    nb += b[i] != 0;
    both += (a[i] != 0) & (b[i] != 0);
  }
  if (na + nb == 0) return 1.0;
  return 2.0 * static_cast<double>(both) / static_cast<double>(na + nb);
}

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) throw std::invalid_argument("percentile: no values");
  double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, v.size() - 1);
  std::nth_element(v.begin(), v.begin() + lo, v.end());
  double a = v[lo];
  double b = a;
  if (hi != lo) b = *std::min_element(v.begin() + lo + 1, v.end());
  return a + (pos - static_cast<double>(lo)) * (b - a);
}

namespace {

using Dims = std::array<int64_t, 3>;

// Squared distance transform along one line of n samples (spacing h): f holds 0 at feature
// samples and +inf elsewhere on input (or the previous pass's squared distances); on output the
// squared distance to the nearest feature. Felzenszwalb & Huttenlocher's lower envelope of parabolas.
void edt_line(double* f, int64_t n, double h, std::vector<double>& d, std::vector<int64_t>& v, std::vector<double>& z) {
  const double inf = std::numeric_limits<double>::infinity();
  d.resize(n);
  v.resize(n);
  z.resize(n + 1);
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    if (!std::isfinite(f[q])) continue;
    double pq = q * h;
    while (k >= 0) {
      double pv = v[k] * h;
      double s = ((f[q] + pq * pq) - (f[v[k]] + pv * pv)) / (2 * (pq - pv));
      if (s <= z[k]) {
        --k;
        continue;
      }
      ++k;
      v[k] = q;
      z[k] = s;
      z[k + 1] = inf;
      break;
    }
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -inf;
      z[1] = inf;
    }
  }
  if (k < 0) return;  // no feature on this line: all stay +inf
  int64_t j = 0;
  for (int64_t q = 0; q < n; ++q) {
    while (z[j + 1] < q * h) ++j;
    double dq = (q - v[j]) * h;
    d[q] = dq * dq + f[v[j]];
  }
  std::copy(d.begin(), d.begin() + n, f);
}

// Squared Euclidean distance (mm^2) of every voxel of the box to the nearest feature voxel.
std::vector<double> squared_edt(const std::vector<uint8_t>& feature, Dims n, std::array<double, 3> h) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> f(feature.size());
  for (size_t i = 0; i < f.size(); ++i) f[i] = feature[i] ? 0.0 : inf;
  const int64_t sx = 1, sy = n[0], sz = n[0] * n[1];
  const int64_t stride[3] = {sx, sy, sz};
  for (int axis = 0; axis < 3; ++axis) {
    if (n[axis] == 1) continue;
    int a1 = (axis + 1) % 3, a2 = (axis + 2) % 3;
    int64_t lines = n[a1] * n[a2];
    parallel_for(
        lines,
        [&](int64_t begin, int64_t end) {
          std::vector<double> line(n[axis]), d;
          std::vector<int64_t> v;
          std::vector<double> z;
          for (int64_t l = begin; l < end; ++l) {
            int64_t i1 = l % n[a1], i2 = l / n[a1];
            int64_t base = i1 * stride[a1] + i2 * stride[a2];
            for (int64_t q = 0; q < n[axis]; ++q) line[q] = f[base + q * stride[axis]];
            edt_line(line.data(), n[axis], h[axis], d, v, z);
            for (int64_t q = 0; q < n[axis]; ++q) f[base + q * stride[axis]] = line[q];
          }
        },
        64);
  }
  return f;
}

// Surface voxels of a mask within the box (the image border counts as outside).
std::vector<uint8_t> surface(const std::vector<uint8_t>& m, Dims n, const Dims& full, const Dims& off) {
  std::vector<uint8_t> s(m.size(), 0);
  for (int64_t z = 0; z < n[2]; ++z)
    for (int64_t y = 0; y < n[1]; ++y)
      for (int64_t x = 0; x < n[0]; ++x) {
        int64_t i = x + n[0] * (y + n[1] * z);
        if (!m[i]) continue;
        bool edge = false;
        const int64_t c[3] = {x, y, z};
        for (int a = 0; a < 3 && !edge; ++a) {
          if (full[a] == 1) continue;  // 2D: no neighbours along the flat axis
          int64_t st = a == 0 ? 1 : a == 1 ? n[0] : n[0] * n[1];
          for (int dir = -1; dir <= 1; dir += 2) {
            int64_t g = c[a] + off[a] + dir;  // neighbour in full-image coordinates
            if (g < 0 || g >= full[a]) {
              edge = true;
              break;
            }
            int64_t lc = c[a] + dir;  // the box has a one-voxel margin where possible
            if (lc < 0 || lc >= n[a] || !m[i + dir * st]) {
              edge = true;
              break;
            }
          }
        }
        s[i] = edge;
      }
  return s;
}

}  // namespace

double hd95(const uint8_t* a, const uint8_t* b, Dims dims, std::array<double, 3> h) {
  // Bounding box of both masks, grown by one voxel so surface tests see the outside.
  Dims lo = {dims[0], dims[1], dims[2]}, hi = {-1, -1, -1};
  bool any_a = false, any_b = false;
  for (int64_t z = 0; z < dims[2]; ++z)
    for (int64_t y = 0; y < dims[1]; ++y) {
      int64_t row = dims[0] * (y + dims[1] * z);
      for (int64_t x = 0; x < dims[0]; ++x) {
        bool ia = a[row + x] != 0, ib = b[row + x] != 0;
        any_a |= ia;
        any_b |= ib;
        if (ia || ib) {
          lo = {std::min(lo[0], x), std::min(lo[1], y), std::min(lo[2], z)};
          hi = {std::max(hi[0], x), std::max(hi[1], y), std::max(hi[2], z)};
        }
      }
    }
  if (!any_a && !any_b) return 0.0;
  if (!any_a || !any_b) return std::numeric_limits<double>::infinity();
  Dims n;
  for (int k = 0; k < 3; ++k) {
    lo[k] = std::max<int64_t>(0, lo[k] - 1);
    hi[k] = std::min<int64_t>(dims[k] - 1, hi[k] + 1);
    n[k] = hi[k] - lo[k] + 1;
  }
  std::vector<uint8_t> ma(n[0] * n[1] * n[2]), mb(ma.size());
  for (int64_t z = 0; z < n[2]; ++z)
    for (int64_t y = 0; y < n[1]; ++y)
      for (int64_t x = 0; x < n[0]; ++x) {
        int64_t src = (x + lo[0]) + dims[0] * ((y + lo[1]) + dims[1] * (z + lo[2]));
        int64_t dst = x + n[0] * (y + n[1] * z);
        ma[dst] = a[src] != 0;
        mb[dst] = b[src] != 0;
      }
  std::vector<uint8_t> sa = surface(ma, n, dims, lo), sb = surface(mb, n, dims, lo);
  auto directed = [&](const std::vector<uint8_t>& from, const std::vector<uint8_t>& to) {
    std::vector<double> d2 = squared_edt(to, n, h);
    std::vector<double> d;
    for (size_t i = 0; i < from.size(); ++i)
      if (from[i]) d.push_back(std::sqrt(d2[i]));
    return percentile(d, 95.0);
  };
  return std::max(directed(sa, sb), directed(sb, sa));
}

std::vector<LabelMetrics> evaluate_labels(const int32_t* pred, const int32_t* ref, Dims dims,
                                          std::array<double, 3> h, std::vector<int> labels) {
  const int64_t n = dims[0] * dims[1] * dims[2];
  if (labels.empty()) {
    std::set<int> found;
    for (int64_t i = 0; i < n; ++i) {
      if (pred[i] != 0) found.insert(pred[i]);
      if (ref[i] != 0) found.insert(ref[i]);
    }
    labels.assign(found.begin(), found.end());
  }
  const double voxel_ml = h[0] * h[1] * h[2] / 1000.0;
  std::vector<LabelMetrics> out;
  std::vector<uint8_t> a(n), b(n);
  for (int label : labels) {
    LabelMetrics m;
    m.label = label;
    for (int64_t i = 0; i < n; ++i) {
      a[i] = pred[i] == label;
      b[i] = ref[i] == label;
      m.voxels_pred += a[i];
      m.voxels_ref += b[i];
    }
    m.volume_pred_ml = m.voxels_pred * voxel_ml;
    m.volume_ref_ml = m.voxels_ref * voxel_ml;
    m.volume_diff_ml = m.volume_pred_ml - m.volume_ref_ml;
    m.volume_diff_rel = m.voxels_ref > 0 ? m.volume_diff_ml / m.volume_ref_ml : std::nan("");
    m.dice = dice(a.data(), b.data(), n);
    m.hd95_mm = hd95(a.data(), b.data(), dims, h);
    out.push_back(m);
  }
  return out;
}

}  // namespace pw
