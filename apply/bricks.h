// Brick-wise stitching (issue 12): the stitching accumulators of `apply` held as bricks of
// brick x brick voxels across and brick/4 (at least 2) along the sweep axis (z; 2-D: y), default 32 x 32 x 8,
// each allocated when the first patch lands in it and freed when it is
// finished. A background brick that no patch reaches never exists. The stitching math is the
// engine's stitch_accumulate on a brick-sized target with the brick's origin (exact: a brick holds
// bit for bit what the same voxels of a whole-grid accumulator would hold, see kernels/gather.h).
//
// Finishing a brick normalises it (Y = acc / sqrt(W^2 + 3 alpha), the engine's stitch_normalize)
// and hands Y [C, box] to a BrickSink, which turns it into the requested output (a label map, masks,
// probabilities, or the whole prediction); a brick no patch reached is handed over as zeros.
// Precision: accumulators and weights stay float32. Half precision (f16/bf16) would change the
// stitched sums by up to 2^-11 relative and with it label decisions near ties; float32 accumulators
// held only for the bricks in flight keep the result identical to whole-grid stitching.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "engine/ops_patch.h"
#include "engine/tensor.h"
#include "train/scheme.h"

namespace pw::apply {

// A box of voxels in array axis order (z, y, x); a 2-D grid has lo[0] = 0, size[0] = 1.
struct Box {
  std::array<int64_t, 3> lo{0, 0, 0};
  std::array<int64_t, 3> size{1, 1, 1};
  int64_t numel() const { return size[0] * size[1] * size[2]; }
};

// Copies the values of `box`, [channels, box] (C-order, x fastest), into their place in a dense
// [channels, grid] array (grid: sizes in array order z, y, x).
void copy_box(const Box& box, const float* y, int64_t channels, const std::array<int64_t, 3>& grid, float* dst);

// Receives the finished prediction box by box. `y` is host f32 [channels, box] (C-order, x fastest).
// Every voxel of the grid arrives exactly once (boxes do not overlap and cover the grid).
class BrickSink {
 public:
  virtual ~BrickSink() = default;
  // Called once before any box: the grid (voxel -> world, size x, y, z), the channels, and whether
  // channel 0 is the background.
  virtual void begin(const train::Patch& grid, int channels, bool categorical) = 0;
  virtual void put(const Box& box, const float* y) = 0;
};

// The bricks of a grid: `brick` voxels along y and x and sweep_depth(brick) along the sweep axis (the
// slowest: z, 2-D y), the last ones along an axis clipped to the grid; numbered z-major (x fastest).
// Thin along the sweep axis because the stitched level's patches arrive in a sweep along it: the open slab
// of bricks is about one patch plus one to two brick depths thick.
struct BrickGrid {
  std::array<int64_t, 3> grid{1, 1, 1}, count{1, 1, 1};
  std::array<int64_t, 3> edge{1, 32, 32};  // brick size per array axis (z, y, x)
  int ndim = 3;
  BrickGrid() = default;
  BrickGrid(const std::array<int64_t, 3>& grid, int ndim, int64_t brick);
  static int64_t sweep_depth(int64_t brick) { return brick / 4 < 2 ? std::min<int64_t>(brick, 2) : brick / 4; }
  int64_t num() const { return count[0] * count[1] * count[2]; }
  Box box(int64_t b) const;
  int64_t at(const std::array<int64_t, 3>& v) const;  // the brick holding voxel v
  // The bricks meeting the voxels lo..hi (inclusive, array order, inside the grid), ascending.
  std::vector<int64_t> meeting(const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& hi) const;
};

class BrickStitch {
 public:
  // grid: size in array order (2-D: {1, H, W}); channels: C of the stitched patches.
  BrickStitch(const std::array<int64_t, 3>& grid, int ndim, int64_t channels, Device dev, int64_t brick = 32);

  // The voxels of the grid that a patch of size `patch` (array order) with matrix `mat` ((d+1)x(d+1)
  // row-major, patch voxel -> grid voxel) may splat into, conservative by one voxel; false if none.
  bool footprint(const float* mat, const std::array<int64_t, 3>& patch, Interp mode, Box& fp) const;
  // The bricks (ascending indices) that footprint() meets.
  std::vector<int64_t> touched(const float* mat, const std::array<int64_t, 3>& patch, Interp mode) const;

  // Adds patches [P, C, s] (f32 on the device) with their P matrices (as touched()). Per brick the
  // patches are added in ascending order, as stitch_accumulate does on a whole grid.
  void add(const Tensor& patches, const std::vector<float>& mats, Interp mode, Window window);

  // Normalises brick b, hands it to `sink` (zeros if nothing landed) and frees it. Once per brick.
  void finish(int64_t b, float alpha, BrickSink& sink);
  // Finishes every brick not yet finished, in index order.
  void finish_all(float alpha, BrickSink& sink);
  // The raw accumulators as whole-grid tensors (acc [C, grid], weight [grid], on the device); for
  // --level mix, which blends the raw weights of several levels. Frees the bricks.
  void to_dense(Tensor& acc, Tensor& weight);

  int64_t num_bricks() const { return layout_.num(); }
  Box box(int64_t b) const { return layout_.box(b); }
  int64_t bytes() const { return bytes_; }            // accumulator bytes held now
  int64_t peak_bytes() const { return peak_bytes_; }  // the most held at any time
  int64_t allocated_bricks() const { return allocated_; }  // bricks ever allocated

 private:
  struct Brick {
    Tensor acc, weight;
    bool finished = false;
  };
  Shape brick_shape(const Box& bx, int64_t lead) const;
  void allocate(int64_t b);
  void release(int64_t b);

  BrickGrid layout_;
  std::array<int64_t, 3> grid_;
  int ndim_;
  int64_t channels_;
  Device dev_;
  std::vector<Brick> bricks_;
  int64_t bytes_ = 0, peak_bytes_ = 0, allocated_ = 0;
};

}  // namespace pw::apply
