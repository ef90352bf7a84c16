#include "apply/infer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <unistd.h>

#include "kernels/common/patch_math.h"
#include "kernels/gather.h"
#include "kernels/parallel.h"

namespace pw::apply {

using train::Patch;
using train::Scheme;

// ---- building blocks ----------------------------------------------------------------------------

std::vector<Eigen::Vector3d> tree_children(const Eigen::Vector3d& parent, const Eigen::Vector3d& child, int ndim,
                                           double jitter, std::mt19937_64& rng) {
  std::vector<double> pos[3];
  std::uniform_real_distribution<double> U(-1.0, 1.0);
  for (int a = 0; a < 3; ++a) {
    if (a >= ndim || child[a] >= parent[a] * (1 - 1e-9)) {
      pos[a] = {0.5};
      continue;
    }
    const double ratio = parent[a] / child[a];
    const int k = static_cast<int>(std::ceil(ratio - 1e-9)) + 1;
    const double step = (parent[a] - child[a]) / (k - 1);  // centre spacing (< child extent)
    const double overlap = child[a] - step;
    for (int i = 0; i < k; ++i) {
      double c = 0.5 * child[a] + i * step;
      if (i > 0 && i < k - 1) c += jitter * 0.5 * overlap * U(rng);
      pos[a].push_back(c / parent[a]);
    }
  }
  std::vector<Eigen::Vector3d> out;
  for (double z : pos[2])
    for (double y : pos[1])
      for (double x : pos[0]) out.emplace_back(x, y, z);
  return out;
}

std::vector<int> top_fraction(const std::vector<float>& attention, double fraction) {
  const int n = static_cast<int>(attention.size());
  if (n == 0) return {};
  int keep = static_cast<int>(std::floor(fraction * n + 0.5));
  keep = std::clamp(keep, 1, n);
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return attention[a] > attention[b]; });
  idx.resize(keep);
  std::sort(idx.begin(), idx.end());
  return idx;
}

// A grid covering the same box as `image` with voxel sizes scaled by r (per image axis).
static Patch regrid(const Patch& image, const Eigen::Vector3d& r) {
  Patch g;
  Eigen::Matrix4d T = Eigen::Matrix4d::Identity();
  for (int a = 0; a < 3; ++a) {
    g.s[a] = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(image.s[a] / r[a] - 1e-6)));
    T(a, a) = r[a];
    T(a, 3) = -0.5 + 0.5 * r[a];
  }
  g.A = image.A * T;
  return g;
}

Patch stitch_grid(const Patch& image, const Eigen::Vector3d& level_voxel_mm, int ndim, double sampling_factor) {
  if (!(sampling_factor > 0)) throw std::invalid_argument("sampling_factor must be > 0");
  Eigen::Vector3d r = Eigen::Vector3d::Ones();
  bool changed = false;
  for (int a = 0; a < ndim; ++a) {
    double vs = image.A.topLeftCorner<3, 3>().col(a).norm();
    double want = vs / sampling_factor;
    // The finest voxel a patch of this level has along image axis a (the level voxel sizes are
    // along the patch axes; in 'matrix' system they coincide with the image axes).
    double lv = level_voxel_mm[a];
    if (lv > want * (1 + 1e-6)) want = lv;
    r[a] = want / vs;
    if (std::abs(r[a] - 1) > 1e-9) changed = true;
  }
  return changed ? regrid(image, r) : image;
}

std::vector<float> resample_linear(const std::vector<float>& src0, const Patch& sg0, int channels, const Patch& dst,
                                   int ndim) {
  if (static_cast<int64_t>(src0.size()) != channels * sg0.numel())
    throw std::invalid_argument("resample_linear: source size does not match its grid");
  // Pad the source by one replicated voxel on each side (in-plane only for 2D), so that points
  // between the outermost voxel centres and the grid's border keep the edge value instead of
  // fading towards the kernels' zero padding.
  Patch sg = sg0;
  int pad[3] = {1, 1, ndim == 3 ? 1 : 0};
  for (int a = 0; a < 3; ++a) sg.s[a] = sg0.s[a] + 2 * pad[a];
  Eigen::Matrix4d T = Eigen::Matrix4d::Identity();
  for (int a = 0; a < 3; ++a) T(a, 3) = -pad[a];
  sg.A = sg0.A * T;
  std::vector<float> src(static_cast<size_t>(channels) * sg.numel());
  for (int c = 0; c < channels; ++c)
    for (int64_t z = 0; z < sg.s[2]; ++z)
      for (int64_t y = 0; y < sg.s[1]; ++y)
        for (int64_t x = 0; x < sg.s[0]; ++x) {
          int64_t sx = std::clamp<int64_t>(x - pad[0], 0, sg0.s[0] - 1);
          int64_t sy = std::clamp<int64_t>(y - pad[1], 0, sg0.s[1] - 1);
          int64_t sz = std::clamp<int64_t>(z - pad[2], 0, sg0.s[2] - 1);
          src[c * sg.numel() + x + sg.s[0] * (y + sg.s[1] * z)] =
              src0[c * sg0.numel() + sx + sg0.s[0] * (sy + sg0.s[1] * sz)];
        }
  const int64_t n_dst = dst.numel();
  std::vector<float> out(static_cast<size_t>(channels) * n_dst);
  kernels::PatchGeom g;
  g.ndim = ndim;
  g.channels = channels;
  g.num_vols = 1;
  g.vol[0] = sg.s[2];
  g.vol[1] = sg.s[1];
  g.vol[2] = sg.s[0];
  g.num_patches = 1;
  g.patch[0] = dst.s[2];
  g.patch[1] = dst.s[1];
  g.patch[2] = dst.s[0];
  std::vector<float> m;
  train::append_kernel_matrix(train::resample_matrix(sg, dst), ndim, m);
  kernels::cpu::gather_affine(src.data(), g, m.data(), nullptr, kernels::Interp::linear, false, out.data());
  return out;
}

Tensor LevelNetwork::crop_image(int level, const InferInput& input, const std::vector<Patch>& patches) {
  const Scheme& sc = scheme();
  const int64_t P = static_cast<int64_t>(patches.size());
  const train::Size3& ps = sc.patch_size[level];
  kernels::PatchGeom g;
  g.ndim = sc.ndim;
  g.channels = input.channels();
  g.vol[0] = input.image.s[2];
  g.vol[1] = input.image.s[1];
  g.vol[2] = input.image.s[0];
  g.num_patches = P;
  g.patch[0] = ps[2];
  g.patch[1] = ps[1];
  g.patch[2] = ps[0];
  std::vector<float> mats;
  for (int64_t i = 0; i < P; ++i) train::append_kernel_matrix(train::resample_matrix(input.image, patches[i]), sc.ndim, mats);
  Shape shape = sc.ndim == 3 ? Shape{P, g.channels, ps[2], ps[1], ps[0]} : Shape{P, g.channels, ps[1], ps[0]};
  Tensor out = Tensor::empty(shape);
  kernels::cpu::gather_affine(input.data.f32(), g, mats.data(), nullptr,
                              sc.interp_type == train::Interp::lin ? kernels::Interp::linear : kernels::Interp::nearest,
                              false, out.f32());
  return out;
}

// ---- the inference ------------------------------------------------------------------------------

namespace {

struct PatchRec {
  Patch in;        // the level's input patch
  int parent = -1; // index into the previous level's kept outputs
  Eigen::Matrix3d L = Eigen::Matrix3d::Identity();  // its test-time augmentation (shared down a chain
                                                    // unless the model augments levels independently)
};

kernels::PatchGeom geom_for(int ndim, int64_t channels, const train::Size3& vol, int64_t num_vols,
                            const train::Size3& patch, int64_t num_patches) {
  kernels::PatchGeom g;
  g.ndim = ndim;
  g.channels = channels;
  g.num_vols = num_vols;
  g.vol[0] = vol[2];
  g.vol[1] = vol[1];
  g.vol[2] = vol[0];
  g.num_patches = num_patches;
  g.patch[0] = patch[2];
  g.patch[1] = patch[1];
  g.patch[2] = patch[0];
  return g;
}

Shape patch_shape(int64_t b, int64_t c, const train::Size3& s, int ndim) {
  if (ndim == 3) return {b, c, s[2], s[1], s[0]};
  return {b, c, s[1], s[0]};
}

kernels::Interp interp_of(train::Interp i) {
  return i == train::Interp::lin ? kernels::Interp::linear : kernels::Interp::nearest;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Converts the label logits of a batch [B, Cout, n] to probabilities [B, K, n] (softmax over the
// K = label_channels when categorical, else sigmoid); attention per patch when `att` != nullptr.
void label_probabilities(const float* logits, int64_t B, int64_t cout, int64_t K, int64_t n, bool categorical,
                         Reduce reduce, std::vector<float>& prob, std::vector<float>* att) {
  prob.assign(static_cast<size_t>(B * K * n), 0.f);
  if (att) att->assign(B, 0.f);
  for (int64_t b = 0; b < B; ++b) {
    const float* L = logits + b * cout * n;
    float* P = prob.data() + b * K * n;
    double sum = 0, mx = 0;
    for (int64_t v = 0; v < n; ++v) {
      double fg_att = 0;
      if (categorical) {
        double m = L[v];
        for (int64_t c = 1; c < K; ++c) m = std::max<double>(m, L[c * n + v]);
        double z = 0;
        for (int64_t c = 0; c < K; ++c) z += std::exp(L[c * n + v] - m);
        for (int64_t c = 0; c < K; ++c) P[c * n + v] = static_cast<float>(std::exp(L[c * n + v] - m) / z);
        fg_att = 1.0 - P[v];  // probability of any foreground class
        sum += fg_att;
        mx = std::max(mx, fg_att);
      } else {
        for (int64_t c = 0; c < K; ++c) {
          double p = sigmoid(L[c * n + v]);
          P[c * n + v] = static_cast<float>(p);
          sum += p;
          mx = std::max(mx, p);
        }
      }
    }
    if (att) {
      const double cnt = categorical ? static_cast<double>(n) : static_cast<double>(K * n);
      (*att)[b] = static_cast<float>(reduce == Reduce::mean ? sum / cnt : mx);
    }
  }
}

class Progress {
 public:
  explicit Progress(bool on) : on_(on), tty_(on && isatty(fileno(stderr))), t0_(std::chrono::steady_clock::now()) {}
  void report(int chunk, int chunks, int level, int64_t done, int64_t total) {
    if (!on_) return;
    double el = seconds();
    if (el - last_ < 1.0 && done < total) return;
    last_ = el;
    // ETA from the fraction of chunks done (the levels of one chunk are weighted equally).
    double frac = (chunk + (done / std::max<double>(1, total)) * 0.5) / chunks;
    double eta = frac > 0 ? el * (1 / frac - 1) : 0;
    // A terminal gets one rewritten line; a pipe or file gets plain lines.
    std::fprintf(stderr, "%sapply: chunk %d/%d level %d: %lld/%lld patches, %.1f s elapsed, ETA %.0f s%s",
                 tty_ ? "\r" : "", chunk + 1, chunks, level, static_cast<long long>(done), static_cast<long long>(total),
                 el, eta, tty_ ? "\033[K" : "\n");
    printed_ = true;
  }
  ~Progress() {
    if (tty_ && printed_) std::fputc('\n', stderr);
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  bool on_, tty_, printed_ = false;
  std::chrono::steady_clock::time_point t0_;
  double last_ = -10;
};

// Stitching target: accumulators for K channels and the weight on a grid.
struct Accum {
  Patch grid;
  std::vector<float> acc, weight;
  void init(const Patch& g, int64_t K) {
    grid = g;
    acc.assign(static_cast<size_t>(K * g.numel()), 0.f);
    weight.assign(static_cast<size_t>(g.numel()), 0.f);
  }
};

}  // namespace

Prediction infer(LevelNetwork& net, const InferInput& input, const InferOptions& opt) {
  const Scheme& sc = net.scheme();
  const int ndim = sc.ndim;
  const int depth = sc.depth;
  const int last = opt.level < 0 ? depth + opt.level : opt.level;
  if (last < 0 || last >= depth)
    throw std::invalid_argument("level " + std::to_string(opt.level) + " is outside the model's depth " +
                                std::to_string(depth));
  if (opt.num_patches < 1) throw std::invalid_argument("num_patches must be >= 1");
  if (opt.branch_factor < 1) throw std::invalid_argument("branch_factor must be >= 1");
  if (opt.num_chunks < 1) throw std::invalid_argument("num_chunks must be >= 1");
  if (!(opt.lazy_fraction > 0 && opt.lazy_fraction <= 1)) throw std::invalid_argument("lazy_fraction must be in (0, 1]");
  if (opt.batch_size < 1) throw std::invalid_argument("batch_size must be >= 1");
  if (opt.sparse_suppression < 0) throw std::invalid_argument("sparse_suppression must be >= 0");
  if (input.channels() != net.image_channels())
    throw std::invalid_argument("the model expects " + std::to_string(net.image_channels()) +
                                " image channel(s), got " + std::to_string(input.channels()));
  if (input.data.ndim() != 4 || input.data.numel() != input.channels() * input.image.numel() ||
      input.data.dtype() != DType::f32)
    throw std::invalid_argument("infer: image data must be f32 [C, z, y, x] matching its dims");
  if ((ndim == 2) != (input.image.s[2] == 1))
    throw std::invalid_argument(std::string("the model is ") + (ndim == 2 ? "2D" : "3D") + " but the image is " +
                                (input.image.s[2] == 1 ? "2D" : "3D"));

  Progress progress(opt.progress);
  const int64_t K = sc.label_channels();
  const train::Frame frame = train::make_frame(sc, input.image);

  // Stitch targets: the selected level, and for mix each coarser level on its own grid.
  std::vector<Accum> accs(last + 1);
  const Patch out_grid = input.image;  // overwritten below when sampling_factor != 1
  // A level's output voxel size along each IMAGE axis i: max over the patch axes a of
  // voxel_a |B_a . d_i| (equal to voxel_i in the 'matrix' system, where B_a = d_a).
  auto level_voxel = [&](int l) {
    Eigen::Vector3d v = Eigen::Vector3d::Zero();
    const Eigen::Matrix3d M = input.image.A.topLeftCorner<3, 3>();
    for (int i = 0; i < 3; ++i) {
      const Eigen::Vector3d d = M.col(i).normalized();
      for (int a = 0; a < 3; ++a) {
        const double va = frame.extent[l][a] / static_cast<double>(sc.out_patch_size[l][a]);
        v[i] = std::max(v[i], va * std::abs(frame.B.col(a).dot(d)));
      }
    }
    return v;
  };
  accs[last].init(stitch_grid(input.image, level_voxel(last), ndim, opt.sampling_factor), K);
  if (opt.level_mix)
    for (int l = 0; l < last; ++l) accs[l].init(stitch_grid(input.image, level_voxel(l), ndim, opt.sampling_factor), K);

  Prediction pred;
  pred.channels = static_cast<int>(K);
  pred.categorical = sc.categorical;
  pred.patches_per_level.assign(last + 1, 0);

  std::mt19937_64 rng(opt.seed);
  const kernels::Interp interp = interp_of(sc.interp_type);
  const kernels::Interp scatter = interp_of(sc.scatter_type);
  auto aug = [&](int level) -> Eigen::Matrix3d {
    return opt.augment ? net.augmentation(level, rng) : Eigen::Matrix3d::Identity();
  };

  // The image box in the frame (for tree tiling and random centres at level 0).
  const Eigen::Vector3d img_centre = input.image.centre_world();
  Eigen::Vector3d img_extent;
  {
    Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = -lo;
    for (int c = 0; c < 8; ++c) {
      Eigen::Vector4d v((c & 1) ? input.image.s[0] - 0.5 : -0.5, (c & 2) ? input.image.s[1] - 0.5 : -0.5,
                        (c & 4) ? input.image.s[2] - 0.5 : -0.5, 1.0);
      Eigen::Vector3d q = frame.B.transpose() * ((input.image.A * v).head<3>() - img_centre);
      lo = lo.cwiseMin(q);
      hi = hi.cwiseMax(q);
    }
    img_extent = hi - lo;
  }

  for (int chunk = 0; chunk < opt.num_chunks; ++chunk) {
    // Level 0 patches.
    std::vector<PatchRec> cur;
    if (opt.generate_type == GenerateType::tree) {
      for (const Eigen::Vector3d& c : tree_children(img_extent, frame.extent[0], ndim, opt.tree_jitter, rng)) {
        Eigen::Vector3d off = (c - Eigen::Vector3d::Constant(0.5)).cwiseProduct(img_extent);
        if (ndim == 2) off[2] = 0;
        Eigen::Matrix3d L = aug(0);
        cur.push_back({train::make_patch(sc, frame, 0, img_centre + frame.B * off, L), -1, L});
      }
    } else {
      std::uniform_real_distribution<double> U(0.0, 1.0);
      for (int i = 0; i < opt.num_patches; ++i) {
        Eigen::Vector4d v;
        for (int a = 0; a < 3; ++a) v[a] = input.image.s[a] == 1 ? 0.0 : U(rng) * input.image.s[a] - 0.5;
        v[3] = 1;
        Eigen::Matrix3d L = aug(0);
        cur.push_back({train::make_patch(sc, frame, 0, (input.image.A * v).head<3>(), L), -1, L});
      }
    }

    Tensor parent_out;  // [Q, Cout(level-1), out size of level-1] outputs of the kept parents
    std::vector<Patch> parent_patches;  // their input patches
    std::vector<int> parent_index;      // their index in the previous level's list
    for (int level = 0; level <= last; ++level) {
      const int64_t P = static_cast<int64_t>(cur.size());
      if (opt.observe)
        for (const PatchRec& r : cur) opt.observe(level, r.in, r.parent < 0 ? -1 : parent_index[r.parent]);
      pred.patches_per_level[level] += P;
      const train::Size3 ps = sc.patch_size[level], os = sc.out_patch_size[level];
      const int64_t cout = net.out_channels(level);
      const int64_t on = os[0] * os[1] * os[2];
      const bool keep_outputs = level < last;
      const bool stitch = level == last || opt.level_mix;
      Tensor outputs;
      if (keep_outputs) outputs = Tensor::empty(patch_shape(P, cout, os, ndim));
      std::vector<float> attention(P, 0.f);
      std::vector<float> prob, batt;
      for (int64_t b0 = 0; b0 < P; b0 += opt.batch_size) {
        const int64_t B = std::min<int64_t>(opt.batch_size, P - b0);
        // Image patches.
        std::vector<Patch> batch;
        for (int64_t i = 0; i < B; ++i) batch.push_back(cur[b0 + i].in);
        Tensor img = net.crop_image(level, input, batch);
        std::vector<float> mats;
        // Crops of the parents' outputs.
        Tensor crop;
        if (level > 0) {
          const train::Size3 pos = sc.out_patch_size[level - 1];
          const int64_t pc = parent_out.dim(1);
          crop = Tensor::empty(patch_shape(B, pc, ps, ndim));
          std::vector<int32_t> parent(B);
          for (int64_t i = 0; i < B; ++i) {
            const PatchRec& r = cur[b0 + i];
            parent[i] = r.parent;
            Patch pout = train::out_patch(sc, level - 1, parent_patches[r.parent]);
            train::append_kernel_matrix(train::resample_matrix(pout, r.in), ndim, mats);
          }
          kernels::cpu::gather_affine(parent_out.f32(),
                                      geom_for(ndim, pc, pos, parent_out.dim(0), ps, B), mats.data(), parent.data(),
                                      interp, false, crop.f32());
        }
        Tensor logits = net.forward(level, img, crop).cpu();
        if (logits.dim(0) != B || logits.dim(1) != cout || logits.numel() != B * cout * on)
          throw std::invalid_argument("the network's level " + std::to_string(level) + " output has shape " +
                                      shape_str(logits.shape()) + ", expected " +
                                      shape_str(patch_shape(B, cout, os, ndim)));
        if (keep_outputs) std::copy(logits.f32(), logits.f32() + B * cout * on, outputs.f32() + b0 * cout * on);
        label_probabilities(logits.f32(), B, cout, K, on, sc.categorical, opt.attention, prob,
                            keep_outputs ? &batt : nullptr);
        if (keep_outputs) std::copy(batt.begin(), batt.end(), attention.begin() + b0);
        if (stitch) {
          Accum& A = accs[level];
          mats.clear();
          for (int64_t i = 0; i < B; ++i)
            train::append_kernel_matrix(train::resample_matrix(A.grid, train::out_patch(sc, level, cur[b0 + i].in)),
                                        ndim, mats);
          kernels::cpu::scatter_affine(prob.data(), geom_for(ndim, K, A.grid.s, 1, os, B), mats.data(), nullptr,
                                       scatter, opt.window, A.acc.data(), A.weight.data());
        }
        progress.report(chunk, opt.num_chunks, level, b0 + B, P);
      }
      if (!keep_outputs) break;
      // Lazy evaluation: keep the top fraction; their children form the next level.
      std::vector<int> kept;
      if (opt.lazy_fraction < 1) kept = top_fraction(attention, opt.lazy_fraction);
      else {
        kept.resize(P);
        std::iota(kept.begin(), kept.end(), 0);
      }
      const int64_t Q = static_cast<int64_t>(kept.size());
      Tensor kept_out = Tensor::empty(patch_shape(Q, cout, os, ndim));
      std::vector<Patch> kept_patches;
      std::vector<Eigen::Matrix3d> kept_L;
      for (int64_t q = 0; q < Q; ++q) {
        std::copy(outputs.f32() + kept[q] * cout * on, outputs.f32() + (kept[q] + 1) * cout * on,
                  kept_out.f32() + q * cout * on);
        kept_patches.push_back(cur[kept[q]].in);
        kept_L.push_back(cur[kept[q]].L);
      }
      outputs = Tensor();
      std::vector<PatchRec> next;
      std::uniform_real_distribution<double> U(0.0, 1.0);
      auto child = [&](int64_t q, const Eigen::Vector3d& c) {
        Eigen::Matrix3d L = net.independent_augmentation() ? aug(level + 1) : kept_L[q];
        return PatchRec{train::child_patch(sc, frame, level + 1, kept_patches[q], c, L), static_cast<int>(q), L};
      };
      for (int64_t q = 0; q < Q; ++q) {
        if (opt.generate_type == GenerateType::tree) {
          for (const Eigen::Vector3d& c :
               tree_children(frame.extent[level], frame.extent[level + 1], ndim, opt.tree_jitter, rng))
            next.push_back(child(q, c));
        } else {
          for (int j = 0; j < opt.branch_factor; ++j) {
            Eigen::Vector3d c(U(rng), U(rng), ndim == 2 ? 0.5 : U(rng));
            next.push_back(child(q, c));
          }
        }
      }
      parent_out = kept_out;
      parent_patches = std::move(kept_patches);
      parent_index = kept;
      cur = std::move(next);
    }
  }

  // Normalise: Y = acc / sqrt(W^2 + 3 alpha).
  const float alpha = static_cast<float>(opt.sparse_suppression);
  Accum& F = accs[last];
  const int64_t n = F.grid.numel();
  if (opt.level_mix) {
    // Fine where the selected level has weight >= 1, else blend (t = min(1, W)) with the finest coarser
    // level that has weight there, each coarser level resampled linearly onto the fine grid.
    std::vector<float> y(static_cast<size_t>(K * n)), t(n);
    kernels::cpu::stitch_normalize(F.acc.data(), F.weight.data(), K, n, alpha, y.data());
    for (int64_t v = 0; v < n; ++v) t[v] = std::min(1.f, F.weight[v]);
    for (int l = last - 1; l >= 0; --l) {
      Accum& C = accs[l];
      const int64_t nc = C.grid.numel();
      std::vector<float> yc(static_cast<size_t>(K * nc) + nc);
      kernels::cpu::stitch_normalize(C.acc.data(), C.weight.data(), K, nc, alpha, yc.data());
      for (int64_t v = 0; v < nc; ++v) {
        const float tc = std::min(1.f, C.weight[v]);
        yc[K * nc + v] = tc;
        for (int64_t c = 0; c < K; ++c) yc[c * nc + v] *= tc;  // weight folded in, divided out below
      }
      std::vector<float> r = resample_linear(yc, C.grid, static_cast<int>(K + 1), F.grid, ndim);
      for (int64_t v = 0; v < n; ++v) {
        const float tf = t[v], tc = r[K * n + v];
        if (tf >= 1.f || tc <= 0.f) continue;
        for (int64_t c = 0; c < K; ++c) {
          float pc = r[c * n + v] / tc;
          y[c * n + v] = tf * y[c * n + v] + (1 - tf) * pc;
        }
        t[v] = tf + (1 - tf) * std::min(1.f, tc);
      }
      C = Accum();
    }
    F.acc = std::move(y);
  } else {
    kernels::cpu::stitch_normalize(F.acc.data(), F.weight.data(), K, n, alpha, F.acc.data());
  }
  F.weight = std::vector<float>();

  // Output grid: the input grid (sampling_factor 1) or its refinement; the stitch grid itself when
  // scale_to_original is off.
  Patch target = opt.sampling_factor == 1 ? out_grid : stitch_grid(out_grid, Eigen::Vector3d::Zero(), ndim,
                                                                   opt.sampling_factor);
  if (!opt.scale_to_original) target = F.grid;
  if (target.s == F.grid.s && target.A.isApprox(F.grid.A, 1e-9)) {
    pred.prob = std::move(F.acc);
  } else {
    pred.prob = resample_linear(F.acc, F.grid, static_cast<int>(K), target, ndim);
  }
  pred.grid = target;
  pred.seconds = progress.seconds();
  return pred;
}

}  // namespace pw::apply
