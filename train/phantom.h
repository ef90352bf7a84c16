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
  int channels = 1;                 // contrasts in `image`, one volume after the other
  std::vector<float> image;         // x fastest
  std::vector<int32_t> labels;      // 0 background, 1..num_labels
};

Phantom make_phantom(const PhantomOptions& opt);

// Many labels (for candidate sampling): the image is cut into a grid of G^d cells (G = the smallest
// with G^d >= num_labels); num_labels of them, chosen by the seed, each hold a disk (ball in 3-D) of
// radius 0.28..0.4 cell sizes, jittered inside the cell, with a label in 1..num_labels assigned by a
// seeded permutation (so position does not tell the label). B contrasts (the smallest B with 2^B >=
// num_labels: 6 for 64), one per bit of l - 1: 0.1 (darker than the background 0.5) where the bit is 0,
// 0.9 (brighter) where it is 1, plus Gaussian noise: every structure is told apart by its code over all
// contrasts, none by one alone. Darker or brighter than the background, each voxel's code survives the
// per-patch normalisation of a network's instance norm (0.3 / 0.9 on a background of 0 would not: a
// patch whose structures all have the bit set looks, normalised, like one whose structures all lack it).
struct ManyLabelPhantomOptions {
  std::array<int64_t, 3> dims = {128, 128, 1};  // z = 1: a 2D image
  std::array<double, 3> spacing_mm = {1.0, 1.0, 1.0};
  int num_labels = 64;
  double noise = 0.02;
  uint64_t seed = 1;
};
Phantom make_many_label_phantom(const ManyLabelPhantomOptions& opt);

// Writes image (float32; 4-D with one volume per contrast when channels > 1) and label map (uint8)
// as NIfTI files with the phantom's affine.
void write_phantom(const Phantom& p, const std::string& image_path, const std::string& label_path);

}  // namespace pw
