// Procedural synthetic phantoms: a "body" with a few labelled structures (two ellipsoids and a
// tube), Gaussian noise and a smooth multiplicative intensity inhomogeneity. Used by
// `patchwork demo` and by the tests (no data needed). 2D phantoms have dims[2] == 1.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace pw {

struct PhantomOptions {
  std::array<int64_t, 3> dims = {48, 48, 40};        // x, y, z voxels (z = 1: a 2D image)
  std::array<double, 3> spacing_mm = {1.5, 1.5, 2.0};
  int num_labels = 3;       // 1: the large ellipsoid, 2: + a small ellipsoid, 3: + a tube
  double noise = 0.08;      // standard deviation of the additive Gaussian noise
  double bias = 0.25;       // strength of the smooth multiplicative inhomogeneity
  uint64_t seed = 1;        // positions, sizes, noise and bias field are drawn from it
};

struct Phantom {
  std::array<int64_t, 3> dims{};
  std::array<double, 16> affine{};  // voxel -> world (mm), row-major 4x4; centred on the origin
  std::vector<float> image;         // x fastest
  std::vector<int32_t> labels;      // 0 background, 1..num_labels
};

Phantom make_phantom(const PhantomOptions& opt);

// Writes image and label map as NIfTI files (float32 and uint8) with the phantom's affine.
void write_phantom(const Phantom& p, const std::string& image_path, const std::string& label_path);

}  // namespace pw
