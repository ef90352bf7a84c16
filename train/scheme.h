// The patching scheme (paper: "Patchwork architecture", API list A) and the patch geometry
// that training (train/sampler) and application (apply/) both build on.
//
// Conventions (one way, used everywhere):
//  * A patch is p = (A, s): s = matrix size in voxel-index order (x, y, z) = NIfTI (i, j, k);
//    A = 4x4 homogeneous matrix from patch voxel index (x, y, z, 1) to world millimetres.
//    The image itself is a patch: A = its NIfTI voxel-to-world affine, s = its size.
//  * Tensor layout of a patch's data: [.., s_z, s_y, s_x] (3D) or [.., s_y, s_x] (2D): the
//    x index runs fastest, exactly like the NIfTI data.
//  * 2D (ndim 2) uses the same 4x4 matrices with s_z = 1: the third column of A is the image's
//    slice direction, so a 2D patch's voxel (x, y, 0) maps to slice k = 0 of a 2D image.
//  * Voxel v covers [v - 0.5, v + 0.5]; a patch's extent along an axis is s * voxel size and
//    its centre is the world point of voxel index (s - 1) / 2.
//  * Resampling D'[v] = D[M v] with M = A_src^-1 A_dst (resample_matrix(src, dst)).
//
// Levels: extent E_0 from fov_mm (millimetres along the patch axes) or fov_rel (fraction of
// the image's extent); the final extent E_{N-1} = patch_size[N-1] * destvox (destvox_mm, or
// destvox_rel times the image voxel size); E_k = E_0 (E_{N-1}/E_0)^(k/(N-1)) (geometric
// interpolation; depth 1 uses E_{N-1}). Level k's voxel size is E_k / patch_size[k].
//
// Output patches: a block maps its input matrix patch_size[k] to out_patch_size[k] <= patch_size[k]
// (the block output's central crop). The output patch is the input patch's central
// out_patch_size[k] voxels: the same centre, axes and voxel size, extent E_k out/patch. The losses,
// the children (their centres and the nested crop) and the stitching use the output patch.
//
// system: 'matrix' aligns unaugmented patches with the image's voxel axes (patch axis a runs
// along image axis a); 'world' aligns them with the world axes (2D: the image's in-plane axes
// snapped to the nearest world axes). Per-axis quantities given in the config (fov, destvox)
// are along the patch axes.
#pragma once
#include <Eigen/Dense>
#include <array>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "kernels/gather.h"
#include "kernels/smooth.h"

namespace pw::train {

using Size3 = std::array<int64_t, 3>;  // (x, y, z); 2D: z = 1

struct Patch {
  Eigen::Matrix4d A = Eigen::Matrix4d::Identity();  // patch voxel index -> world mm
  Size3 s{1, 1, 1};

  Eigen::Vector3d centre_world() const;  // world point of voxel (s-1)/2
  int64_t numel() const { return s[0] * s[1] * s[2]; }
};

// The matrix mapping a voxel index of `dst` to a voxel index of `src`: M = A_src^-1 A_dst.
// Gathering dst's data from src's data samples src at M v. With src = the image this is the
// "patch-voxel -> image-voxel" matrix; with src = the parent patch, "child-voxel -> parent-voxel".
Eigen::Matrix4d resample_matrix(const Patch& src, const Patch& dst);

// The same matrix as the kernels want it (kernels/gather.h, kernels/scatter.h): row-major
// (ndim+1)x(ndim+1) floats in ARRAY AXIS ORDER ((D, H, W) for 3D, (H, W) for 2D), i.e. with
// the (x, y, z) components reversed. Appends to `out` (so a batch of matrices is built in one vector).
void append_kernel_matrix(const Eigen::Matrix4d& M, int ndim, std::vector<float>& out);

// Smoothing before a crop (smoothfac_data / smoothfac_label): a number w (Gaussian of width
// w times the undersampling; 0 = none) or one of "boxcar", "max", "mixture".
struct Smoothing {
  using Kind = kernels::SmoothKind;  // none, gaussian (a number), box ("boxcar"), max, mixture
  Kind kind = Kind::none;
  double width = 0;  // gaussian only
  nlohmann::json to_json() const;
  static Smoothing from_json(const nlohmann::json& j, const std::string& key);
};

enum class System { world, matrix };
// Interpolation: the patch kernels' enum (kernels/gather.h), "NN" = nearest, "lin" = linear.
using Interp = kernels::Interp;
enum class Normalize { none, max, mean, m0s1, patch_m0s1 };

// The CropGenerator options of the paper (API list A).
struct Scheme {
  int depth = 3;
  int ndim = 3;
  std::vector<Size3> patch_size;      // per level (one entry repeated when given once)
  std::vector<Size3> out_patch_size;  // per level; = patch_size when not given; <= patch_size, even difference
  bool fov_is_mm = false;             // fov_mm vs fov_rel
  Eigen::Vector3d fov{1, 1, 1};       // per patch axis (2D: z unused)
  bool destvox_is_mm = false;         // destvox_mm vs destvox_rel
  Eigen::Vector3d destvox{1, 1, 1};
  System system = System::matrix;
  std::vector<int> snapper;  // per level; default [0, 1, 1, ...]
  Interp interp_type = Interp::nearest;
  Interp scatter_type = Interp::nearest;
  Smoothing smoothfac_data, smoothfac_label;
  Normalize normalize_input = Normalize::none;
  // Label mapping. categorical_label = [l_1..l_K]: label value l_k -> class k (k = 1..K), any
  // other value -> background 0. Empty: labels are given as a 4-D volume with K channels.
  std::vector<int> categorical_label;
  // true: classes are mutually exclusive (softmax over K+1 channels incl. background, CE);
  // false: K independent sigmoid channels (BCE), channel k-1 = (label == l_k) or the 4th dim.
  bool categorical = false;
  int num_labels = 0;  // K; 0 = derive from categorical_label (or the label volume)
  // Many classes (paper, "Training": > 50 labels): the K+1 classes are embedded in `dim` dimensions
  // (a learned embedding in the model, train/model.h); the network's label outputs are `dim`
  // feature channels, trained with the candidate-sampling cross entropy over the true class and
  // `candidates` sampled classes per voxel (train/trainer.h), decided by the maximal response.
  // Needs categorical; dim 0 = off. JSON: "candidate_sampling": {"dim": m, "candidates": n}.
  struct CandidateSampling {
    int dim = 0;
    int candidates = 0;
    bool enabled() const { return dim > 0; }
  } candidate_sampling;
  std::vector<int> crop_fdim;  // the input channels used (indices into all files' channels); empty = all

  // Parses the CropGenerator object: {depth, ndim, scheme: {patch_size, out_patch_size, fov_mm |
  // fov_rel, destvox_mm | destvox_rel}, system, snapper, interp_type, scatter_type, smoothfac_data,
  // smoothfac_label, normalize_input, categorical_label, categorical, num_labels, candidate_sampling}. Unknown keys,
  // wrong types and inconsistent values throw pw::InputError naming the key.
  static Scheme from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;  // the same shape; from_json(to_json()) == *this
  static const std::vector<std::string>& json_keys();  // the top-level keys from_json accepts

  // Number of network output channels for the labels: the embedding dimension with candidate
  // sampling, else K+1 when categorical, else K.
  int label_channels() const {
    return candidate_sampling.enabled() ? candidate_sampling.dim : categorical ? num_labels + 1 : num_labels;
  }
};

// The scheme evaluated for one image: the unaugmented patch axes and every level's extent.
struct Frame {
  Eigen::Matrix3d B = Eigen::Matrix3d::Identity();  // columns: patch axis directions in world (unit)
  std::vector<Eigen::Vector3d> extent;              // per level, mm along the patch axes
  std::vector<Eigen::Vector3d> voxel;               // per level, input voxel size (extent / patch_size)
  std::vector<Eigen::Vector3d> out_extent;          // per level, the output patch's extent (voxel * out_patch_size)
};
Frame make_frame(const Scheme& scheme, const Patch& image);

// Level `level`'s input patch centred at world point `centre` with augmentation `L` (linear
// part in the patch frame, R1 Sigma R2; identity = none): A = [B L diag(voxel) | t].
Patch make_patch(const Scheme& scheme, const Frame& frame, int level, const Eigen::Vector3d& centre,
                 const Eigen::Matrix3d& L = Eigen::Matrix3d::Identity());

// A child (level `level` >= 1) of `parent` (the parent level's OUTPUT patch, out_patch: the region the
// child's crop C is taken from) centred at `centre_rel` in [0,1]^3 of the parent's
// extent (0 and 1 = the parent's borders; 2D: z ignored). With snapper[level] = 1 a child that
// would stick out of the parent is shifted (in the parent's voxel coordinates) so that the bounding
// box of its OUTPUT patch lies inside, or centred on the parent when it is larger (children tile the
// parent with their outputs; with out_patch_size < patch_size the child's input may reach past the
// parent's output, where its crop of the parent output is 0).
Patch child_patch(const Scheme& scheme, const Frame& frame, int level, const Patch& parent,
                  const Eigen::Vector3d& centre_rel, const Eigen::Matrix3d& L = Eigen::Matrix3d::Identity());

// The output patch of level `level` for input patch `in`: its central out_patch_size[level] voxels
// (same centre, axes and voxel size; output voxel j is input voxel j + (patch_size - out_patch_size) / 2).
Patch out_patch(const Scheme& scheme, int level, const Patch& in);

// Bounding box of `p`'s voxel cells in `ref`'s voxel coordinates: lo/hi per axis.
void bounding_box(const Patch& ref, const Patch& p, Eigen::Vector3d& lo, Eigen::Vector3d& hi);

}  // namespace pw::train
