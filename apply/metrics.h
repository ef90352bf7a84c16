// Segmentation metrics per label: Dice, volumes and the 95% Hausdorff distance in millimetres.
//
// Both label maps lie on one voxel grid (x fastest, then y, then z; a 2D image has nz = 1) with
// voxel spacing `spacing_mm` (the column norms of the affine). Distances are measured on that
// grid, so they are exact world distances when the affine's axes are orthogonal (every scanner
// affine); a sheared affine is measured with its column lengths.
//
// Surface: a voxel of the mask with at least one 6-neighbour (4 in 2D) outside the mask or
// outside the image. HD95 = max(p95(d(S_pred -> S_ref)), p95(d(S_ref -> S_pred))) with the
// linear-interpolation percentile (numpy's default), d the distance to the nearest surface voxel
// of the other mask, computed with an exact separable Euclidean distance transform
// (Felzenszwalb & Huttenlocher) restricted to the bounding box of both masks.
#pragma once
#include <array>
#include <cstdint>
#include <limits>
#include <vector>

namespace pw {

struct LabelMetrics {
  int label = 0;
  int64_t voxels_pred = 0, voxels_ref = 0;
  double volume_pred_ml = 0, volume_ref_ml = 0;
  double volume_diff_ml = 0;   // pred - ref
  double volume_diff_rel = 0;  // (pred - ref) / ref; NaN when ref is empty
  double dice = 0;             // 1 when both are empty
  double hd95_mm = 0;          // 0 when both empty, +inf when exactly one is empty
};

// Metrics of `pred` against `ref` (label values, 0 = background) for each label in `labels`
// (empty: every non-zero value found in either map, ascending).
std::vector<LabelMetrics> evaluate_labels(const int32_t* pred, const int32_t* ref, std::array<int64_t, 3> dims,
                                          std::array<double, 3> spacing_mm, std::vector<int> labels = {});

// Dice of two binary masks (1 when both are empty).
double dice(const uint8_t* a, const uint8_t* b, int64_t n);

// HD95 in mm between two binary masks on the grid (see above).
double hd95(const uint8_t* a, const uint8_t* b, std::array<int64_t, 3> dims, std::array<double, 3> spacing_mm);

// numpy.percentile(values, q) with linear interpolation; values are reordered.
double percentile(std::vector<double>& values, double q);

}  // namespace pw
