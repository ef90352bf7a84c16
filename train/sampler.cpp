#include "train/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>

#include "io/error.h"
#include "io/nifti.h"
#include "kernels/gather.h"
#include "engine/ops_patch.h"
#include "kernels/smooth.h"

namespace pw::train {

namespace {

// Spatial size [Z, Y, X] of a patch, as the tensor wants it (2D: [Y, X]).
Shape spatial_shape(const Size3& s, int ndim) {
  if (ndim == 2) return {s[1], s[0]};
  return {s[2], s[1], s[0]};
}

Shape with_front(Shape front, const Shape& rest) {
  front.insert(front.end(), rest.begin(), rest.end());
  return front;
}

std::vector<float> kernel_mats(const Patch& src, const std::vector<Patch>& dst, int ndim) {
  std::vector<float> m;
  for (const auto& p : dst) append_kernel_matrix(resample_matrix(src, p), ndim, m);
  return m;
}

Tensor copy_rows(const Tensor& t, const std::vector<int64_t>& idx) {
  if (!t.defined()) return t;
  Shape sh = t.shape();
  int64_t row = t.numel() / sh[0];
  sh[0] = static_cast<int64_t>(idx.size());
  Tensor out = Tensor::empty(sh, t.dtype());
  size_t bytes = static_cast<size_t>(row) * dtype_size(t.dtype());
  const char* src = static_cast<const char*>(t.raw());
  char* dst = static_cast<char*>(out.raw());
  for (size_t i = 0; i < idx.size(); ++i) std::memcpy(dst + i * bytes, src + idx[i] * bytes, bytes);
  return out;
}

Tensor concat_rows(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  Shape sh = a.shape();
  sh[0] += b.dim(0);
  Tensor out = Tensor::empty(sh, a.dtype());
  std::memcpy(out.raw(), a.raw(), a.nbytes());
  std::memcpy(static_cast<char*>(out.raw()) + a.nbytes(), b.raw(), b.nbytes());
  return out;
}

}  // namespace

// ---- normalisation --------------------------------------------------------------------------------

static void normalize_block(float* x, int64_t n, Normalize mode) {
  if (mode == Normalize::none || n == 0) return;
  if (mode == Normalize::max || mode == Normalize::mean) {
    double acc = mode == Normalize::max ? -std::numeric_limits<double>::infinity() : 0.0;
    for (int64_t i = 0; i < n; ++i) acc = mode == Normalize::max ? std::max(acc, double(x[i])) : acc + x[i];
    if (mode == Normalize::mean) acc /= double(n);
    if (acc == 0 || !std::isfinite(acc)) return;
    float inv = static_cast<float>(1.0 / acc);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
    return;
  }
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  double m = s / double(n);
  for (int64_t i = 0; i < n; ++i) s2 += (x[i] - m) * (x[i] - m);
  double sd = std::sqrt(s2 / double(n));
  float inv = static_cast<float>(1.0 / (sd + 1e-5));
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>((x[i] - m) * inv);
}

void normalize_image(Tensor& data, Normalize mode) {
  if (mode == Normalize::patch_m0s1) return;
  int64_t c = data.dim(0), n = data.numel() / c;
  for (int64_t i = 0; i < c; ++i) normalize_block(data.f32() + i * n, n, mode);
}

void normalize_patches(Tensor& patches, Normalize mode) {
  if (mode != Normalize::patch_m0s1) return;
  int64_t pc = patches.dim(0) * patches.dim(1), n = patches.numel() / pc;
  for (int64_t i = 0; i < pc; ++i) normalize_block(patches.f32() + i * n, n, Normalize::m0s1);
}

// ---- subjects -------------------------------------------------------------------------------------

namespace {

bool is_dontcare_value(float v) { return std::isnan(v) || v == -1.f; }

// categorical_label with categorical: one class map (u8 where the classes fit, else i32; class k + 1 for
// label value cl[k], 0 for any other value, -1 / kDontCareU8 for don't care), and each class's voxel count.
void class_map(Subject& s, const float* r, int64_t nvox, const std::vector<int>& cl, bool dontcare) {
  const int K = static_cast<int>(cl.size());
  const bool small = K < Subject::kDontCareU8;
  const Patch& image = s.image;
  s.labels = Tensor::empty({image.s[2], image.s[1], image.s[0]}, small ? DType::u8 : DType::i32);
  s.label_volume.assign(K, 0);
  auto put = [&](int64_t v, int32_t c) {
    if (small) s.labels.u8()[v] = c < 0 ? Subject::kDontCareU8 : static_cast<uint8_t>(c);
    else s.labels.i32()[v] = c;
  };
  std::map<long, int32_t> cls;  // label value -> class (the last of repeated values, as before)
  for (int k = 0; k < K; ++k) cls[cl[k]] = k + 1;
  long last_value = 0;
  int32_t last_class = cls.count(0) ? cls[0] : 0;
  for (int64_t v = 0; v < nvox; ++v) {
    int32_t c = 0;
    if (dontcare && is_dontcare_value(r[v])) c = -1;
    else if (std::isfinite(r[v])) {
      long lv = std::lround(r[v]);
      if (lv != last_value) {  // label maps are runs of equal values: one lookup per run
        auto it = cls.find(lv);
        last_value = lv, last_class = it == cls.end() ? 0 : it->second;
      }
      c = last_class;
    }
    if (c > 0) s.label_volume[c - 1] += 1;
    put(v, c);
  }
}

// categorical_label without categorical: one 0/1 volume per listed label value (NaN for don't care).
void one_hot_volumes(Subject& s, const float* r, int64_t nvox, const std::vector<int>& cl, bool dontcare) {
  const int K = static_cast<int>(cl.size());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  s.labels = Tensor::empty({K, s.image.s[2], s.image.s[1], s.image.s[0]});
  s.label_volume.assign(K, 0);
  float* out = s.labels.f32();
  for (int k = 0; k < K; ++k)
    for (int64_t v = 0; v < nvox; ++v) {
      float val = dontcare && is_dontcare_value(r[v]) ? nan
                                                      : (std::isfinite(r[v]) && std::lround(r[v]) == cl[k] ? 1.f : 0.f);
      if (val == 1.f) s.label_volume[k] += 1;
      out[k * nvox + v] = val;
    }
}

// No categorical_label: the L label volumes as they are (don't care: NaN, or 0 without dontcare).
void raw_volumes(Subject& s, const float* r, int64_t nvox, int64_t L, bool dontcare) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  s.labels = Tensor::empty({L, s.image.s[2], s.image.s[1], s.image.s[0]});
  s.label_volume.assign(L, 0);
  float* out = s.labels.f32();
  for (int64_t i = 0; i < L * nvox; ++i) {
    float v = r[i];
    if (is_dontcare_value(v)) v = dontcare ? nan : 0.f;
    out[i] = v;
    if (v > 0) s.label_volume[i / nvox] += v;
  }
}

}  // namespace

Subject make_subject(const std::string& name, const Patch& image, Tensor channels, const Tensor& raw_labels,
                     const Scheme& scheme, bool dontcare) {
  Subject s;
  s.name = name;
  s.image = image;
  const int64_t nvox = image.numel();
  if (channels.ndim() != 4 || channels.numel() != channels.dim(0) * nvox)
    throw InputError(name + ": image data does not match the image size");
  const float* cv = channels.f32();
  for (int64_t i = 0, n = channels.numel(); i < n; ++i)
    if (!std::isfinite(cv[i])) throw InputError(name + ": image contains NaN or infinite values");
  normalize_image(channels, scheme.normalize_input);
  s.data = channels;
  if (!raw_labels.defined()) return s;
  if (raw_labels.numel() % nvox != 0 || raw_labels.numel() == 0)
    throw InputError(name + ": label volume size differs from the image size");
  const int64_t L = raw_labels.numel() / nvox;
  const auto& cl = scheme.categorical_label;
  if (cl.empty()) {
    if (scheme.num_labels && L != scheme.num_labels)
      throw InputError(name + ": expected " + std::to_string(scheme.num_labels) + " label volumes (num_labels), got " +
                       std::to_string(L));
    raw_volumes(s, raw_labels.f32(), nvox, L, dontcare);
    return s;
  }
  if (L != 1) throw InputError(name + ": categorical_label needs a 3-D label map, got " + std::to_string(L) + " label volumes");
  if (scheme.categorical) class_map(s, raw_labels.f32(), nvox, cl, dontcare);
  else one_hot_volumes(s, raw_labels.f32(), nvox, cl, dontcare);
  return s;
}

static Patch volume_geometry(const Volume& v, int ndim, const std::string& file) {
  Patch p;
  p.A = v.affine();
  p.s = {v.dims[0], v.ndim >= 2 ? v.dims[1] : 1, v.ndim >= 3 ? v.dims[2] : 1};
  if (ndim == 2 && p.s[2] != 1)
    throw InputError(file + ": a 2-D scheme (ndim 2) needs 2-D images, got " + std::to_string(p.s[2]) + " slices");
  return p;
}

void load_image_channels(const std::vector<std::filesystem::path>& files, const Scheme& scheme, Patch& image,
                         Tensor& data) {
  std::vector<std::string> names;
  for (const auto& f : files) names.push_back(f.string());
  image_channels(names, [&](size_t i) { return read_nifti(files[i]); }, scheme, image, data);
}

void image_channels(const std::vector<std::string>& names, const std::function<Volume(size_t)>& volume,
                    const Scheme& scheme, Patch& image, Tensor& data) {
  if (names.empty()) throw InputError("no image file given");
  std::vector<std::vector<float>> chans;
  for (size_t f = 0; f < names.size(); ++f) {
    Volume v = volume(f);
    Patch g = volume_geometry(v, scheme.ndim, names[f]);
    if (f == 0) image = g;
    else if (g.s != image.s) throw InputError(names[f] + ": size differs from " + names[0]);
    std::vector<float> vals = v.to_float();
    int64_t n = image.numel(), c = static_cast<int64_t>(vals.size()) / n;
    for (int64_t i = 0; i < c; ++i) chans.emplace_back(vals.begin() + i * n, vals.begin() + (i + 1) * n);
  }
  if (!scheme.crop_fdim.empty()) {  // crop_fdim: only the listed channels, in the listed order
    std::vector<std::vector<float>> kept;
    for (int c : scheme.crop_fdim) {
      if (c >= static_cast<int>(chans.size()))
        throw InputError(names[0] + ": crop_fdim lists channel " + std::to_string(c) + ", the input has " +
                         std::to_string(chans.size()) + " channel(s)");
      kept.push_back(chans[c]);
    }
    chans = std::move(kept);
  }
  int64_t n = image.numel();
  data = Tensor::empty({static_cast<int64_t>(chans.size()), image.s[2], image.s[1], image.s[0]});
  for (size_t c = 0; c < chans.size(); ++c) std::memcpy(data.f32() + c * n, chans[c].data(), n * sizeof(float));
  const float* dv = data.f32();
  for (int64_t i = 0, nd = data.numel(); i < nd; ++i)
    if (!std::isfinite(dv[i])) throw InputError(names[0] + ": image contains NaN or infinite values");
  normalize_image(data, scheme.normalize_input);
}

Subject load_subject(const DataPair& pair, const Scheme& scheme, bool dontcare) {
  Patch image;
  Tensor data;
  Normalize none = Normalize::none;
  Scheme raw = scheme;
  raw.normalize_input = none;  // make_subject normalises
  load_image_channels(pair.images, raw, image, data);
  Volume lv = read_nifti(pair.label);
  Patch lg = volume_geometry(lv, scheme.ndim, pair.label.string());
  if (lg.s != image.s) throw InputError(pair.label.string() + ": label size differs from the image size");
  std::vector<float> lab = lv.to_float();
  Tensor labels = Tensor::empty({static_cast<int64_t>(lab.size())});
  std::memcpy(labels.f32(), lab.data(), lab.size() * sizeof(float));
  return make_subject(pair.name, image, data, labels, scheme, dontcare);
}

// ---- augmentation ---------------------------------------------------------------------------------

AugmentDraw draw_augmentation(const Augment& aug, int ndim, std::mt19937_64& rng) {
  AugmentDraw d;
  std::normal_distribution<double> N(0.0, 1.0);
  std::uniform_int_distribution<int> coin(0, 1);
  auto rotation = [&]() -> Eigen::Matrix3d {
    if (ndim == 2) {
      double phi = 0.5 * aug.dphi[0] * N(rng);
      Eigen::Matrix3d R = Eigen::Matrix3d::Identity();
      R(0, 0) = std::cos(phi);
      R(0, 1) = -std::sin(phi);
      R(1, 0) = std::sin(phi);
      R(1, 1) = std::cos(phi);
      return R;
    }
    double x = 0.5 * aug.dphi[0] * N(rng), y = 0.5 * aug.dphi[1] * N(rng), z = 0.5 * aug.dphi[2] * N(rng);
    return Eigen::Quaterniond(1.0, x, y, z).normalized().toRotationMatrix();
  };
  // Draw in a fixed order so a seed gives the same set whatever options are on.
  Eigen::Matrix3d R1 = rotation(), R2 = rotation();
  if (aug.dphi.any()) {
    d.R1 = R1;
    d.R2 = R2;
  }
  for (int a = 0; a < ndim; ++a) {
    double g = N(rng);
    int f = coin(rng);
    d.sigma[a] = std::exp(aug.dscale[a] * g);
    if (aug.flip[a] > 0 && f) d.sigma[a] = -d.sigma[a];
  }
  return d;
}

// ---- row helpers ----------------------------------------------------------------------------------

PatchSet take_rows(const PatchSet& s, const std::vector<int64_t>& idx) {
  PatchSet out;
  for (int64_t i : idx) {
    out.subject.push_back(s.subject.at(i));
    out.age.push_back(s.age.at(i));
  }
  for (const auto& l : s.levels) {
    LevelPatches o;
    if (!l.patches.empty())
      for (int64_t i : idx) o.patches.push_back(l.patches.at(i));
    o.input = copy_rows(l.input, idx);
    o.parent_mats = copy_rows(l.parent_mats, idx);
    o.target = copy_rows(l.target, idx);
    out.levels.push_back(std::move(o));
  }
  return out;
}

PatchSet concat_sets(const PatchSet& a, const PatchSet& b) {
  if (a.size() == 0) return b;
  if (b.size() == 0) return a;
  PatchSet out = a;
  out.subject.insert(out.subject.end(), b.subject.begin(), b.subject.end());
  out.age.insert(out.age.end(), b.age.begin(), b.age.end());
  for (size_t k = 0; k < out.levels.size(); ++k) {
    auto& o = out.levels[k];
    const auto& l = b.levels[k];
    if (o.patches.size() == static_cast<size_t>(a.size()) && l.patches.size() == static_cast<size_t>(b.size()))
      o.patches.insert(o.patches.end(), l.patches.begin(), l.patches.end());
    else
      o.patches.clear();  // patches are bookkeeping only; the tensors carry the data
    o.input = concat_rows(a.levels[k].input, l.input);
    o.parent_mats = concat_rows(a.levels[k].parent_mats, l.parent_mats);
    o.target = concat_rows(a.levels[k].target, l.target);
  }
  return out;
}

// ---- the generator --------------------------------------------------------------------------------

CropGenerator::CropGenerator(const Scheme& scheme, SamplerOptions opt) : scheme_(scheme), opt_(std::move(opt)) {
  label_weight_.assign(std::max(1, scheme_.num_labels), 1.0);
  if (!opt_.balance.label_weight.empty()) label_weight_ = opt_.balance.label_weight;
}

void CropGenerator::set_autoweight(const std::vector<Subject*>& subjects) {
  if (!opt_.balance.autoweight) return;
  std::vector<double> vol(label_weight_.size(), 0.0);
  for (const Subject* s : subjects)
    for (size_t k = 0; k < vol.size() && k < s->label_volume.size(); ++k) vol[k] += s->label_volume[k];
  double mean = 0;
  int cnt = 0;
  for (size_t k = 0; k < vol.size(); ++k)
    if (vol[k] > 0) {
      label_weight_[k] = 1.0 / vol[k];
      mean += label_weight_[k];
      ++cnt;
    }
  if (cnt == 0) return;
  mean /= cnt;
  for (size_t k = 0; k < vol.size(); ++k) label_weight_[k] = vol[k] > 0 ? label_weight_[k] / mean : 0.0;
  root_draw_.clear();
}

int CropGenerator::input_channels(int image_channels) const {
  return scheme_.smoothfac_data.kind == Smoothing::Kind::mixture ? 3 * image_channels : image_channels;
}

// Smooths `in` [C, Z, Y, X] for a crop at `level` (engine presmooth): the filter widths follow the
// undersampling of the level's unaugmented patch relative to the image.
static Tensor smooth_for_level(const Tensor& in, const Subject& s, const Scheme& scheme, int level,
                               const Smoothing& sm) {
  if (sm.kind == Smoothing::Kind::none) return in;
  Frame f = make_frame(scheme, s.image);
  Patch p = make_patch(scheme, f, level, s.image.centre_world());
  std::vector<float> m;
  append_kernel_matrix(resample_matrix(s.image, p), scheme.ndim, m);
  float u[3];
  kernels::undersampling(m.data(), scheme.ndim, u);
  Tensor src = scheme.ndim == 2 ? in.reshape({in.dim(0), in.dim(2), in.dim(3)}) : in;
  Tensor out = presmooth(src, sm.kind, u, static_cast<float>(sm.width));
  Shape sh = in.shape();
  sh[0] = out.dim(0);
  return out.reshape(sh);
}

const Tensor& CropGenerator::level_data(Subject& s, int level) {
  if (scheme_.smoothfac_data.kind == Smoothing::Kind::none) return s.data;
  std::lock_guard<std::mutex> lk(*s.cache_mutex);
  if (s.data_level.size() != static_cast<size_t>(scheme_.depth)) s.data_level.assign(scheme_.depth, Tensor());
  if (!s.data_level[level].defined()) s.data_level[level] = smooth_for_level(s.data, s, scheme_, level, scheme_.smoothfac_data);
  return s.data_level[level];
}

// Smoothed labels: one channel per class (categorical: K+1 with background) as f32.
const Tensor& CropGenerator::level_labels(Subject& s, int level) {
  std::lock_guard<std::mutex> lk(*s.cache_mutex);
  if (s.label_level.size() != static_cast<size_t>(scheme_.depth)) s.label_level.assign(scheme_.depth, Tensor());
  if (!s.label_level[level].defined()) {
    Tensor onehot = s.labels;
    if (scheme_.categorical) {
      const int K1 = scheme_.num_labels + 1;
      const int64_t n = s.labels.numel();
      onehot = Tensor::zeros({K1, s.image.s[2], s.image.s[1], s.image.s[0]});
      for (int64_t v = 0; v < n; ++v) {
        const int c = s.label_class(v);
        if (c >= 0) onehot.f32()[c * n + v] = 1.f;
      }
    }
    s.label_level[level] = smooth_for_level(onehot, s, scheme_, level, scheme_.smoothfac_label);
  }
  return s.label_level[level];
}

namespace {

// A [C, Z, Y, X] volume as the patch ops take it: C,spatial (2D: without the Z axis of length 1).
Tensor as_source(const Tensor& t, int ndim) {
  return ndim == 2 ? t.reshape({t.dim(0), t.dim(2), t.dim(3)}) : t;
}

// Rows [row0, row0 + n) of a batch tensor, viewed as n,C,spatial (the crop ops' output).
Tensor batch_rows(const Tensor& out, int64_t row0, int64_t n, int64_t channels, const Size3& ps, int ndim) {
  return out.rows(row0, row0 + n).reshape(with_front({n, channels}, spatial_shape(ps, ndim)));
}

Tensor mats_tensor(const Patch& src, const std::vector<Patch>& dst, int ndim) {
  const int64_t m = ndim + 1;
  return Tensor::from_vector({static_cast<int64_t>(dst.size()), m, m}, kernel_mats(src, dst, ndim));
}

}  // namespace

void CropGenerator::crop_inputs(Subject& s, int level, const std::vector<Patch>& patches, Tensor& out, int64_t row0) {
  const Tensor& data = level_data(s, level);
  const int64_t n = static_cast<int64_t>(patches.size());
  Tensor dst = batch_rows(out, row0, n, data.dim(0), scheme_.patch_size[level], scheme_.ndim);
  gather_patches_into(as_source(data, scheme_.ndim), mats_tensor(s.image, patches, scheme_.ndim),
                      scheme_.interp_type, dst);
  if (scheme_.normalize_input != Normalize::patch_m0s1) return;
  Tensor host = dst.cpu();  // patch_m0s1 runs on the host (a view of `out` when that is on the CPU)
  normalize_patches(host, Normalize::patch_m0s1);
  if (dst.is_cuda()) dst.copy_from(host);
}

void CropGenerator::crop_targets(Subject& s, int level, const std::vector<Patch>& patches, Tensor& out,
                                 int64_t row0) {
  std::vector<Patch> outs;
  for (const auto& p : patches) outs.push_back(out_patch(scheme_, level, p));
  const Size3& ps = scheme_.out_patch_size[level];
  const int nd = scheme_.ndim;
  const int64_t n = static_cast<int64_t>(patches.size());
  const Tensor mats = mats_tensor(s.image, outs, nd);
  const bool smooth = scheme_.smoothfac_label.kind != Smoothing::Kind::none;
  if (scheme_.categorical && !smooth) {
    Tensor dst = batch_rows(out, row0, n, 1, ps, nd);
    gather_labels_into(as_source(s.labels.reshape(with_front({1}, s.labels.shape())), nd), mats, dst);
    if (s.labels.dtype() == DType::u8)  // the u8 map's don't-care mark -> -1
      for (int32_t* t = dst.i32(), *e = t + dst.numel(); t < e; ++t)
        if (*t == Subject::kDontCareU8) *t = -1;
    return;
  }
  if (scheme_.categorical) {  // smoothed one-hot maps, linear crops, then the most probable class
    const Tensor& oh = level_labels(s, level);
    Tensor tmp = Tensor::empty(with_front({n, oh.dim(0)}, spatial_shape(ps, nd)));
    gather_patches_into(as_source(oh, nd), mats, Interp::linear, tmp);
    const int64_t K1 = oh.dim(0), pn = tmp.numel() / (n * K1);
    int32_t* dst = out.i32() + row0 * pn;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t v = 0; v < pn; ++v) {
        int best = 0;
        float bv = -1;
        for (int64_t c = 0; c < K1; ++c) {
          float x = tmp.f32()[(i * K1 + c) * pn + v];
          if (x > bv) bv = x, best = static_cast<int>(c);
        }
        dst[i * pn + v] = best;
      }
    return;
  }
  const Tensor& lab = smooth ? level_labels(s, level) : s.labels;
  Tensor dst = batch_rows(out, row0, n, lab.dim(0), ps, nd);
  gather_patches_into(as_source(lab, nd), mats, smooth ? Interp::linear : Interp::nearest, dst);
  if (smooth)
    for (float* x = dst.f32(), *e = x + dst.numel(); x < e; ++x)
      if (!std::isnan(*x)) *x = *x >= 0.5f ? 1.f : 0.f;
}

std::vector<float> CropGenerator::label_mass(const Tensor& labels, int64_t row) const {
  std::vector<float> mass;
  if (scheme_.categorical) {
    // whole map [Z, Y, X] (row < 0; u8 with 255 = don't care, or i32) or targets i32 [P, ...]
    int64_t n = row >= 0 ? labels.numel() / labels.dim(0) : labels.numel();
    mass.resize(n);
    auto fill = [&](const auto* l, int32_t dont_care) {
      for (int64_t v = 0; v < n; ++v)
        mass[v] = l[v] > 0 && l[v] != dont_care ? static_cast<float>(label_weight_[l[v] - 1]) : 0.f;
    };
    if (labels.dtype() == DType::u8) fill(labels.u8() + (row >= 0 ? row * n : 0), Subject::kDontCareU8);
    else fill(labels.i32() + (row >= 0 ? row * n : 0), -1);
    return mass;
  }
  // f32 [(P,) K, vox]
  int64_t K = row >= 0 ? labels.dim(1) : labels.dim(0);
  int64_t n = labels.numel() / (row >= 0 ? labels.dim(0) * K : K);
  const float* l = labels.f32() + (row >= 0 ? row * K * n : 0);
  mass.assign(n, 0.f);
  for (int64_t k = 0; k < K; ++k) {
    float w = static_cast<float>(k < static_cast<int64_t>(label_weight_.size()) ? label_weight_[k] : 1.0);
    for (int64_t v = 0; v < n; ++v) {
      float x = l[k * n + v];
      if (x > 0) mass[v] = std::max(mass[v], w * x);
    }
  }
  return mass;
}

// b = (1-r) pos / (n r - pos), where pos = sum L: then the labelled voxels get the share r.
BalanceDraw::BalanceDraw(const std::vector<float>& mass, double r) : n(static_cast<int64_t>(mass.size())) {
  double pos = 0;
  for (float m : mass) pos += m;
  const double nd = static_cast<double>(n);
  if (pos == 0 || pos - nd * r > -0.01) {  // no labels, or they already reach the ratio: uniform
    uniform = nd;
    return;
  }
  uniform = nd * (1 - r) * pos / (nd * r - pos);
  if (n > int64_t{std::numeric_limits<uint32_t>::max()})
    throw InputError("balance: a label map of " + std::to_string(n) + " voxels is too large (at most 2^32 - 1)");
  const int64_t labelled = std::count_if(mass.begin(), mass.end(), [](float m) { return m > 0; });
  index.reserve(labelled);  // exactly: growth by doubling left up to half of these tables unused
  cum.reserve(labelled);
  double acc = 0;
  for (int64_t v = 0; v < n; ++v)
    if (mass[v] > 0) {
      acc += mass[v];
      index.push_back(static_cast<uint32_t>(v));
      cum.push_back(acc);
    }
}

int64_t BalanceDraw::draw(std::mt19937_64& rng) const {
  const double pos = cum.empty() ? 0.0 : cum.back();
  std::uniform_real_distribution<double> U(0.0, pos + uniform);
  const double x = U(rng);
  if (x < pos) {
    auto it = std::upper_bound(cum.begin(), cum.end(), x);
    return index[std::min<size_t>(static_cast<size_t>(it - cum.begin()), index.size() - 1)];
  }
  const double u = (x - pos) / uniform * static_cast<double>(n);
  return std::clamp<int64_t>(static_cast<int64_t>(u), 0, n - 1);
}

int64_t CropGenerator::draw_balanced(const std::vector<float>& mass, std::mt19937_64& rng) const {
  return BalanceDraw(mass, opt_.balance.ratio).draw(rng);
}

// Voxel index (flat, x fastest) -> (x, y, z) plus a uniform jitter inside the voxel.
static Eigen::Vector3d jitter_voxel(int64_t v, const Size3& s, int ndim, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> J(-0.5, 0.5);
  Eigen::Vector3d p(static_cast<double>(v % s[0]), static_cast<double>((v / s[0]) % s[1]),
                    static_cast<double>(v / (s[0] * s[1])));
  for (int a = 0; a < 3; ++a) {
    double j = J(rng);
    if (a < ndim) p[a] += j;
  }
  return p;
}

Eigen::Vector3d CropGenerator::draw_root_centre(Subject& s, std::mt19937_64& rng) {
  Eigen::Vector3d v;
  if (opt_.balance.enabled() && s.labels.defined()) {
    BalanceDraw& d = root_draw_[&s];
    if (d.empty()) d = BalanceDraw(label_mass(s.labels, -1), opt_.balance.ratio);
    v = jitter_voxel(d.draw(rng), s.image.s, scheme_.ndim, rng);
  } else {
    std::uniform_real_distribution<double> U(0.0, 1.0);
    for (int a = 0; a < 3; ++a) {
      double u = U(rng);
      v[a] = a < scheme_.ndim ? u * static_cast<double>(s.image.s[a]) - 0.5 : 0.0;
    }
  }
  return (s.image.A * Eigen::Vector4d(v[0], v[1], v[2], 1.0)).head<3>();
}

Eigen::Vector3d CropGenerator::draw_child_centre(const Tensor& parent_target, int64_t row, const Frame& frame,
                                                 int level, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> U(0.0, 1.0);
  Eigen::Vector3d rel(0.5, 0.5, 0.5);
  if (opt_.balance.enabled() && parent_target.defined()) {
    const Size3& so = scheme_.out_patch_size[level - 1];
    Eigen::Vector3d v = jitter_voxel(draw_balanced(label_mass(parent_target, row), rng), so, scheme_.ndim, rng);
    for (int a = 0; a < scheme_.ndim; ++a) rel[a] = (v[a] + 0.5) / static_cast<double>(so[a]);
    return rel;
  }
  for (int a = 0; a < scheme_.ndim; ++a) {
    double u = U(rng);
    if (opt_.tree) {  // a tile of the parent's tiling by children, jittered by a quarter tile
      double tiles = std::max(1.0, std::ceil(frame.out_extent[level - 1][a] / frame.out_extent[level][a]));
      double t = std::floor(u * tiles);
      double j = U(rng) - 0.5;
      rel[a] = (t + 0.5 + 0.5 * j) / tiles;
    } else {
      rel[a] = u;
    }
  }
  return rel;
}

PatchSet CropGenerator::sample(const std::vector<Subject*>& subjects, int per_subject, std::mt19937_64& rng) {
  const int depth = scheme_.depth, nd = scheme_.ndim;
  const int64_t P = static_cast<int64_t>(subjects.size()) * per_subject;
  PatchSet set;
  set.levels.resize(depth);
  std::vector<Frame> frames;
  for (Subject* s : subjects) frames.push_back(make_frame(scheme_, s->image));
  std::vector<Eigen::Matrix3d> shared_aug(P);
  for (size_t i = 0; i < subjects.size(); ++i)
    for (int j = 0; j < per_subject; ++j) {
      set.subject.push_back(static_cast<int>(i));
      set.age.push_back(0);
    }
  const int C = subjects.empty() ? 0 : input_channels(static_cast<int>(subjects[0]->data.dim(0)));
  const bool labeled = !subjects.empty() && subjects[0]->labels.defined();
  for (int k = 0; k < depth; ++k) {
    LevelPatches& L = set.levels[k];
    // draw the patches (serially: deterministic)
    for (int64_t i = 0; i < P; ++i) {
      Subject& s = *subjects[set.subject[i]];
      const Frame& f = frames[set.subject[i]];
      Eigen::Matrix3d aug = Eigen::Matrix3d::Identity();
      if (opt_.augment.any()) {
        if (k == 0 || opt_.independent_augmentation) aug = draw_augmentation(opt_.augment, nd, rng).L();
        else aug = shared_aug[i];
      }
      if (k == 0) {
        shared_aug[i] = aug;
        L.patches.push_back(make_patch(scheme_, f, 0, draw_root_centre(s, rng), aug));
      } else {
        const LevelPatches& up = set.levels[k - 1];
        Eigen::Vector3d rel = draw_child_centre(up.target, i, f, k, rng);
        L.patches.push_back(child_patch(scheme_, f, k, out_patch(scheme_, k - 1, up.patches[i]), rel, aug));
      }
    }
    // crop, subject by subject (rows of one subject are contiguous)
    const Shape sp = spatial_shape(scheme_.patch_size[k], nd), so = spatial_shape(scheme_.out_patch_size[k], nd);
    L.input = Tensor::empty(with_front({P, C}, sp));
    if (labeled)
      L.target = scheme_.categorical ? Tensor::empty(with_front({P}, so), DType::i32)
                                     : Tensor::empty(with_front({P, subjects[0]->labels.dim(0)}, so));
    for (size_t si = 0; si < subjects.size(); ++si) {
      int64_t r0 = static_cast<int64_t>(si) * per_subject;
      std::vector<Patch> ps(L.patches.begin() + r0, L.patches.begin() + r0 + per_subject);
      crop_inputs(*subjects[si], k, ps, L.input, r0);
      if (labeled) crop_targets(*subjects[si], k, ps, L.target, r0);
    }
    if (k > 0) {
      std::vector<float> m;
      for (int64_t i = 0; i < P; ++i)
        append_kernel_matrix(resample_matrix(out_patch(scheme_, k - 1, set.levels[k - 1].patches[i]), L.patches[i]), nd, m);
      L.parent_mats = Tensor::from_vector({P, static_cast<int64_t>((nd + 1) * (nd + 1))}, m);
    }
  }
  return set;
}

}  // namespace pw::train
