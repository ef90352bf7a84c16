// Patch resampling ops (engine/ops_patch.h): shape checks, device placement, dispatch, backward.
#include "engine/ops_patch.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/dispatch.h"

namespace pw {
namespace {

std::string vec_str(const std::vector<int64_t>& v) { return shape_str(Shape(v.begin(), v.end())); }

// Fills the kernel geometry from a batch of Q volumes (shape Q,C,spatial when `batched`, else
// C,spatial) and checks the matrices and patch size.
kernels::PatchGeom make_geom(const char* op, const Tensor& src, bool batched, const Tensor& mats,
                             const std::vector<int64_t>& patch_size) {
  const int lead = batched ? 2 : 1;
  const int d = src.ndim() - lead;
  if (d != 2 && d != 3)
    throw std::invalid_argument(std::string(op) + ": source must be " + (batched ? "Q,C,H,W or Q,C,D,H,W" : "C,H,W or C,D,H,W") +
                                ", got " + shape_str(src.shape()));
  if (int(patch_size.size()) != d)
    throw std::invalid_argument(std::string(op) + ": patch size " + vec_str(patch_size) + " has " +
                                std::to_string(patch_size.size()) + " entries for a " + std::to_string(d) + "D source");
  if (mats.dtype() != DType::f32 || mats.ndim() != 3 || mats.dim(1) != d + 1 || mats.dim(2) != d + 1)
    throw std::invalid_argument(std::string(op) + ": matrices must be f32 P," + std::to_string(d + 1) + "," +
                                std::to_string(d + 1) + ", got " + mats.str());
  kernels::PatchGeom g;
  g.ndim = d;
  g.num_vols = batched ? src.dim(0) : 1;
  g.channels = src.dim(lead - 1);
  g.num_patches = mats.dim(0);
  for (int a = 0; a < d; ++a) {
    if (patch_size[a] < 1) throw std::invalid_argument(std::string(op) + ": patch size " + vec_str(patch_size) + " has an empty axis");
    g.vol[3 - d + a] = src.dim(lead + a);
    g.patch[3 - d + a] = patch_size[a];
  }
  return g;
}

Shape patch_shape(const kernels::PatchGeom& g, int64_t channels) {
  Shape s = {g.num_patches, channels};
  for (int a = 3 - g.ndim; a < 3; ++a) s.push_back(g.patch[a]);
  return s;
}

// The parent indices, checked on the host, then placed on `device`.
Tensor checked_parents(const Tensor& parent_index, const kernels::PatchGeom& g, Device device) {
  if (parent_index.dtype() != DType::i32 || parent_index.ndim() != 1 || parent_index.dim(0) != g.num_patches)
    throw std::invalid_argument("gather_patches_nested: parent_index must be i32 of " + std::to_string(g.num_patches) +
                                " entries (one per matrix), got " + parent_index.str());
  Tensor host = parent_index.cpu();
  for (int64_t p = 0; p < g.num_patches; ++p)
    if (host.i32()[p] < 0 || host.i32()[p] >= g.num_vols)
      throw std::invalid_argument("gather_patches_nested: parent_index[" + std::to_string(p) + "] = " +
                                  std::to_string(host.i32()[p]) + " is outside [0, " + std::to_string(g.num_vols) + ")");
  return parent_index.to(device);
}

// The spatial shape of a P,C,s tensor.
std::vector<int64_t> spatial_of(const Tensor& t) { return std::vector<int64_t>(t.shape().begin() + 2, t.shape().end()); }

// Checks that `out` is the P,C,s tensor (dtype, device) a crop with geometry g writes.
void check_out(const char* op, const Tensor& out, const kernels::PatchGeom& g, int64_t channels, DType dt, Device dev) {
  if (!out.defined() || out.shape() != patch_shape(g, channels) || out.dtype() != dt || out.device() != dev)
    throw std::invalid_argument(std::string(op) + ": output must be " + dtype_name(dt) + shape_str(patch_shape(g, channels)) +
                                " " + device_name(dev) + ", got " + (out.defined() ? out.str() : "undefined"));
}

void gather_kernel(const Tensor& x, const kernels::PatchGeom& g, const Tensor& mats, const int32_t* par, Interp mode,
                   bool inside_mask, Tensor& y) {
  const Device dev = x.device();
  switch (x.dtype()) {
    case DType::f32: PW_DISPATCH(dev, gather_affine, x.f32(), g, mats.f32(), par, mode, inside_mask, y.f32()); break;
    case DType::u8: PW_DISPATCH(dev, gather_affine, x.u8(), g, mats.f32(), par, mode, inside_mask, y.f32()); break;
    case DType::i32: PW_DISPATCH(dev, gather_affine, x.i32(), g, mats.f32(), par, mode, inside_mask, y.f32()); break;
  }
}

Var gather_common(const char* op, const Var& src, const Tensor* parent_index, const Tensor& mats_in,
                  const std::vector<int64_t>& patch_size, Interp mode, bool inside_mask) {
  const Tensor& x = src->value;
  const kernels::PatchGeom g = make_geom(op, x, parent_index != nullptr, mats_in, patch_size);
  const Device dev = x.device();
  Tensor mats = mats_in.to(dev);
  Tensor parents = parent_index ? checked_parents(*parent_index, g, dev) : Tensor();
  const int32_t* par = parent_index ? parents.i32() : nullptr;
  Tensor y = Tensor::empty(patch_shape(g, g.channels + (inside_mask ? 1 : 0)), DType::f32, dev);
  gather_kernel(x, g, mats, par, mode, inside_mask, y);
  if (x.dtype() != DType::f32) return constant(y);
  return record(y, {src}, [g, mats, parents, mode, inside_mask](Node& self) {
    Node& s = *self.parents[0];
    if (!s.requires_grad) return;
    Tensor gs = Tensor::zeros_like(s.value);
    const int32_t* par = parents.defined() ? parents.i32() : nullptr;
    PW_DISPATCH(gs.device(), gather_affine_backward, self.grad.f32(), g, mats.f32(), par, mode, inside_mask, gs.f32());
    accumulate(s, gs);
  });
}

}  // namespace

Var gather_patches(const Var& src, const Tensor& mats, const std::vector<int64_t>& patch_size, Interp mode,
                   bool inside_mask) {
  return gather_common("gather_patches", src, nullptr, mats, patch_size, mode, inside_mask);
}

Var gather_patches_nested(const Var& parents, const Tensor& parent_index, const Tensor& mats,
                          const std::vector<int64_t>& patch_size, Interp mode, bool inside_mask) {
  return gather_common("gather_patches_nested", parents, &parent_index, mats, patch_size, mode, inside_mask);
}

Var crop_centre(const Var& x, const std::vector<int64_t>& size) {
  const Tensor& t = x->value;
  const int d = t.ndim() - 2;
  if (d < 2 || static_cast<int>(size.size()) != d)
    throw std::invalid_argument("crop_centre: size " + vec_str(size) + " for x " + shape_str(t.shape()));
  std::vector<float> one((d + 1) * (d + 1), 0.f);
  for (int a = 0; a <= d; ++a) one[a * (d + 1) + a] = 1.f;
  for (int a = 0; a < d; ++a) {
    const int64_t shift = t.dim(2 + a) - size[a];
    if (shift < 0 || shift % 2 != 0)
      throw std::invalid_argument("crop_centre: cannot take the centre " + vec_str(size) + " of " +
                                  shape_str(t.shape()));
    one[a * (d + 1) + d] = static_cast<float>(shift / 2);
  }
  const int64_t N = t.dim(0);
  std::vector<float> mats;
  Tensor index = Tensor::empty({N}, DType::i32);
  for (int64_t i = 0; i < N; ++i) {
    mats.insert(mats.end(), one.begin(), one.end());
    index.i32()[i] = static_cast<int32_t>(i);
  }
  return gather_patches_nested(x, index.to(t.device()), Tensor::from_vector({N, d + 1, d + 1}, mats), size,
                               Interp::nearest);
}

void gather_patches_into(const Tensor& src, const Tensor& mats_in, Interp mode, Tensor& out, bool inside_mask) {
  const kernels::PatchGeom g = make_geom("gather_patches_into", src, false, mats_in, spatial_of(out));
  check_out("gather_patches_into", out, g, g.channels + (inside_mask ? 1 : 0), DType::f32, src.device());
  gather_kernel(src, g, mats_in.to(src.device()), nullptr, mode, inside_mask, out);
}

Tensor gather_labels(const Tensor& labels, const Tensor& mats, const std::vector<int64_t>& patch_size) {
  const kernels::PatchGeom g = make_geom("gather_labels", labels, false, mats, patch_size);
  Tensor y = Tensor::empty(patch_shape(g, g.channels), DType::i32, labels.device());
  gather_labels_into(labels, mats, y);
  return y;
}

void gather_labels_into(const Tensor& labels, const Tensor& mats_in, Tensor& y) {
  const kernels::PatchGeom g = make_geom("gather_labels", labels, false, mats_in, spatial_of(y));
  const Device dev = labels.device();
  check_out("gather_labels", y, g, g.channels, DType::i32, dev);
  Tensor mats = mats_in.to(dev);
  switch (labels.dtype()) {
    case DType::u8: PW_DISPATCH(dev, gather_affine_labels, labels.u8(), g, mats.f32(), nullptr, y.i32()); break;
    case DType::i32: PW_DISPATCH(dev, gather_affine_labels, labels.i32(), g, mats.f32(), nullptr, y.i32()); break;
    default: throw std::invalid_argument("gather_labels: labels must be u8 or i32, got " + labels.str());
  }
}

void stitch_accumulate(const Tensor& patches, const Tensor& mats_in, Interp mode, Window window, Tensor& acc,
                       Tensor& weight, const std::vector<int64_t>& origin) {
  if (patches.dtype() != DType::f32 || acc.dtype() != DType::f32 || weight.dtype() != DType::f32)
    throw std::invalid_argument("stitch_accumulate: patches, acc and weight must be f32");
  if (patches.ndim() != acc.ndim() + 1)
    throw std::invalid_argument("stitch_accumulate: patches " + shape_str(patches.shape()) + " do not fit acc " +
                                shape_str(acc.shape()) + " (expected P,C,s for acc C,spatial)");
  std::vector<int64_t> s(patches.shape().begin() + 2, patches.shape().end());
  kernels::PatchGeom g = make_geom("stitch_accumulate", acc, false, mats_in, s);
  if (!origin.empty() && int(origin.size()) != g.ndim)
    throw std::invalid_argument("stitch_accumulate: origin " + vec_str(origin) + " needs " + std::to_string(g.ndim) +
                                " entries");
  for (size_t a = 0; a < origin.size(); ++a) {
    if (origin[a] < 0 || origin[a] == 1 || origin[a] >= (int64_t(1) << 24))
      throw std::invalid_argument("stitch_accumulate: origin " + vec_str(origin) +
                                  " needs entries 0 or in [2, 2^24) (exact offsets, kernels/gather.h)");
    g.origin[3 - g.ndim + a] = origin[a];
  }
  if (patches.dim(0) != g.num_patches || patches.dim(1) != g.channels)
    throw std::invalid_argument("stitch_accumulate: patches " + shape_str(patches.shape()) + " need " +
                                std::to_string(g.num_patches) + " patches (one per matrix) of " +
                                std::to_string(g.channels) + " channels (as acc " + shape_str(acc.shape()) + ")");
  Shape ws(acc.shape().begin() + 1, acc.shape().end());
  if (weight.shape() != ws)
    throw std::invalid_argument("stitch_accumulate: weight must have shape " + shape_str(ws) + ", got " +
                                shape_str(weight.shape()));
  const Device dev = acc.device();
  if (patches.device() != dev || weight.device() != dev)
    throw std::invalid_argument("stitch_accumulate: patches, acc and weight must be on one device");
  Tensor mats = mats_in.to(dev);
  PW_DISPATCH(dev, scatter_affine, patches.f32(), g, mats.f32(), nullptr, mode, window, acc.f32(), weight.f32());
}

Tensor stitch_normalize(const Tensor& acc, const Tensor& weight, float alpha) {
  Shape ws(acc.shape().begin() + (acc.ndim() > 0 ? 1 : 0), acc.shape().end());
  if (acc.dtype() != DType::f32 || weight.dtype() != DType::f32 || acc.ndim() < 2 || weight.shape() != ws ||
      acc.device() != weight.device())
    throw std::invalid_argument("stitch_normalize: expected f32 acc C,spatial and weight spatial on one device, got " +
                                acc.str() + " and " + weight.str());
  if (!(alpha >= 0.f)) throw std::invalid_argument("stitch_normalize: alpha (sparse_suppression) must be >= 0");
  Tensor y = Tensor::empty_like(acc);
  PW_DISPATCH(acc.device(), stitch_normalize, acc.f32(), weight.f32(), acc.dim(0), weight.numel(), alpha, y.f32());
  return y;
}

Tensor presmooth(const Tensor& src, SmoothKind kind, const float u[3], float smoothfac) {
  if (src.dtype() != DType::f32 || (src.ndim() != 3 && src.ndim() != 4))
    throw std::invalid_argument("presmooth: source must be f32 C,H,W or C,D,H,W, got " + src.str());
  if (kind == SmoothKind::none) return src;
  const int d = src.ndim() - 1;
  int64_t vol[3] = {1, 1, 1};
  for (int a = 0; a < d; ++a) vol[3 - d + a] = src.dim(1 + a);
  float sigma[3] = {0, 0, 0};
  int width[3] = {1, 1, 1};
  for (int a = 3 - d; a < 3; ++a) {
    if (!(u[a] > 0.f) || !std::isfinite(u[a]))
      throw std::invalid_argument("presmooth: undersampling factors must be positive and finite");
    if (kind == SmoothKind::gaussian && u[a] > 1.f) sigma[a] = smoothfac * u[a];
    width[a] = std::max(1, int(std::lround(u[a])));
  }
  if (kind == SmoothKind::gaussian && !(smoothfac >= 0.f))
    throw std::invalid_argument("presmooth: smoothfac must be >= 0");
  const Device dev = src.device();
  const int64_t C = src.dim(0);
  Tensor tmp = Tensor::empty_like(src);
  auto run = [&](SmoothKind k, float* out) {
    PW_DISPATCH(dev, smooth, src.f32(), C, vol, k, sigma, width, tmp.f32(), out);
  };
  if (kind != SmoothKind::mixture) {
    Tensor y = Tensor::empty_like(src);
    run(kind, y.f32());
    return y;
  }
  Shape s = src.shape();
  s[0] = 3 * C;
  Tensor y = Tensor::empty(s, DType::f32, dev);
  const int64_t n = src.numel();
  run(SmoothKind::box, y.f32());
  run(SmoothKind::max, y.f32() + n);
  run(SmoothKind::min, y.f32() + 2 * n);
  return y;
}

}  // namespace pw
