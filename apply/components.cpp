#include "apply/components.h"

#include <map>
#include <stdexcept>

namespace pw::apply {

namespace {

// The neighbour offsets (dx, dy, dz) of a connectivity; one-slice volumes only use dz = 0.
std::vector<std::array<int, 3>> neighbour_offsets(int connectivity, bool flat) {
  if (connectivity != 6 && connectivity != 26)
    throw std::invalid_argument("connectivity must be 6 or 26, got " + std::to_string(connectivity));
  std::vector<std::array<int, 3>> out;
  for (int dz = flat ? 0 : -1; dz <= (flat ? 0 : 1); ++dz)
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx) {
        const int nonzero = (dx != 0) + (dy != 0) + (dz != 0);
        if (nonzero == 0 || (connectivity == 6 && nonzero > 1)) continue;
        out.push_back({dx, dy, dz});
      }
  return out;
}

}  // namespace

template <class T>
Components connected_components(const T* labels, const std::array<int64_t, 3>& dims, int connectivity) {
  const int64_t nx = dims[0], ny = dims[1], nz = dims[2], n = nx * ny * nz;
  const auto offsets = neighbour_offsets(connectivity, nz == 1);
  Components c;
  c.id.assign(static_cast<size_t>(n), 0);
  c.sizes.assign(1, 0);
  std::vector<int64_t> stack;
  for (int64_t start = 0; start < n; ++start) {
    if (labels[start] == 0 || c.id[start] != 0) continue;
    const int32_t comp = static_cast<int32_t>(c.sizes.size());
    const T value = labels[start];
    int64_t size = 0;
    c.id[start] = comp;
    stack.push_back(start);
    while (!stack.empty()) {  // flood fill of the voxels of `value` reachable from `start`
      const int64_t v = stack.back();
      stack.pop_back();
      ++size;
      const int64_t x = v % nx, y = (v / nx) % ny, z = v / (nx * ny);
      for (const auto& o : offsets) {
        const int64_t xx = x + o[0], yy = y + o[1], zz = z + o[2];
        if (xx < 0 || yy < 0 || zz < 0 || xx >= nx || yy >= ny || zz >= nz) continue;
        const int64_t w = (zz * ny + yy) * nx + xx;
        if (labels[w] != value || c.id[w] != 0) continue;
        c.id[w] = comp;
        stack.push_back(w);
      }
    }
    c.sizes.push_back(size);
  }
  return c;
}

template <class T>
int64_t keep_largest_components(T* labels, const std::array<int64_t, 3>& dims, int connectivity) {
  const Components c = connected_components(labels, dims, connectivity);
  const int64_t n = dims[0] * dims[1] * dims[2];
  std::vector<T> value(c.sizes.size(), 0);  // each component's label value
  for (int64_t v = 0; v < n; ++v) value[c.id[v]] = labels[v];
  std::map<T, int32_t> best;  // label value -> its largest component
  for (int32_t k = 1; k < static_cast<int32_t>(c.sizes.size()); ++k) {
    auto it = best.find(value[k]);
    if (it == best.end() || c.sizes[k] > c.sizes[it->second]) best[value[k]] = k;
  }
  int64_t removed = 0;
  for (int64_t v = 0; v < n; ++v)
    if (c.id[v] != 0 && best[labels[v]] != c.id[v]) {
      labels[v] = 0;
      ++removed;
    }
  return removed;
}

#define PW_COMPONENTS_FOR(T)                                                                                   \
  template Components connected_components<T>(const T*, const std::array<int64_t, 3>&, int);                 \
  template int64_t keep_largest_components<T>(T*, const std::array<int64_t, 3>&, int);
PW_COMPONENTS_FOR(uint8_t)
PW_COMPONENTS_FOR(int16_t)
PW_COMPONENTS_FOR(int32_t)
#undef PW_COMPONENTS_FOR

}  // namespace pw::apply
