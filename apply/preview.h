// The preview picture of a segmentation: the three mid-slices (axial, coronal, sagittal) through
// the centroid of the largest predicted structure, image in grey (1st..99th percentile window),
// labels overlaid in colour (apply/outputs.h label_colour). A 2D image gives one panel.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "io/png.h"

namespace pw::apply {

// image: one channel, x fastest; colour_index: per voxel 0 (none) or 1..K (the label's colour);
// spacing sets each panel's aspect ratio. The montage is about 600 to 900 pixels wide.
RgbImage preview_montage(const float* image, const int32_t* colour_index, std::array<int64_t, 3> dims,
                         std::array<double, 3> spacing_mm);

}  // namespace pw::apply
