// Connected components of label maps: the clean-up at the end of `apply --largest-component` (the original
// toolbox's ccana). Voxels are neighbours when they share a face (connectivity 6), or a face, an edge or a
// corner (26); on a one-slice volume these are the 4- and 8-neighbourhoods. Per-voxel integer work on the
// host, on the output's own array.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace pw::apply {

// The connected components of the nonzero voxels of `labels` (x fastest, dims {nx, ny, nz}); two
// neighbouring voxels belong to one component when their values are equal. Returns per voxel its
// component (1..count in scan order of the first voxel, 0 for background) and the voxel count of each
// (sizes[0] = 0). Throws std::invalid_argument for a connectivity other than 6 or 26.
struct Components {
  std::vector<int32_t> id;
  std::vector<int64_t> sizes;
};
template <class T>
Components connected_components(const T* labels, const std::array<int64_t, 3>& dims, int connectivity);

// Keeps, for every label value, only its largest component (ties: the one met first in scan order); the
// voxels of its other components become 0. Returns the number of voxels removed.
template <class T>
int64_t keep_largest_components(T* labels, const std::array<int64_t, 3>& dims, int connectivity);

}  // namespace pw::apply
