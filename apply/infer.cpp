#include "apply/infer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <unistd.h>

#include "engine/ops.h"
#include "engine/finite.h"
#include "engine/ops_patch.h"
#include "io/error.h"
#include "train/model.h"

namespace pw::apply {

using train::Patch;
using train::Scheme;

namespace {

// Spatial sizes and shapes of a grid or patch of size s (x, y, z) in array order (2D: y, x).
std::vector<int64_t> spatial_size(const train::Size3& s, int ndim) {
  if (ndim == 3) return {s[2], s[1], s[0]};
  return {s[1], s[0]};
}
Shape spatial_shape(const train::Size3& s, int ndim) {
  std::vector<int64_t> v = spatial_size(s, ndim);
  return Shape(v.begin(), v.end());
}
Shape with_front(Shape front, const Shape& rest) {
  front.insert(front.end(), rest.begin(), rest.end());
  return front;
}
// Kernel matrices (train::append_kernel_matrix, P of them) as the f32 P,(d+1),(d+1) tensor of the patch ops.
Tensor mats_tensor(const std::vector<float>& m, int ndim) {
  const int64_t k = ndim + 1;
  return Tensor::from_vector({static_cast<int64_t>(m.size()) / (k * k), k, k}, m);
}

}  // namespace

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
  std::vector<float> m;
  train::append_kernel_matrix(train::resample_matrix(sg, dst), ndim, m);
  Tensor t = Tensor::from_vector(with_front({channels}, spatial_shape(sg.s, ndim)), src);
  return gather_patches(constant(t), mats_tensor(m, ndim), spatial_size(dst.s, ndim), Interp::linear)->value.to_vector();
}

ResampleSink::ResampleSink(const Patch& src, const Patch& dst, int ndim, int64_t brick, BrickSink& out)
    : src_(src), dst_(dst), ndim_(ndim), out_(out) {
  auto arr = [&](const train::Size3& s) { return std::array<int64_t, 3>{ndim == 3 ? s[2] : 1, s[1], s[0]}; };
  sg_ = BrickGrid(arr(src.s), ndim, brick);
  dg_ = BrickGrid(arr(dst.s), ndim, brick);
  const Eigen::Matrix4d M = train::resample_matrix(src, dst);  // dst voxel (x, y, z) -> src voxel
  const int64_t O = dg_.num();
  tile_lo_.resize(O);
  tile_hi_.resize(O);
  reads_.resize(O);
  readers_.resize(sg_.num());
  missing_.assign(O, 0);
  users_.assign(sg_.num(), 0);
  held_.resize(sg_.num());
  for (int64_t ob = 0; ob < O; ++ob) {
    const Box bx = dg_.box(ob);
    std::array<int64_t, 3> lo{0, 0, 0}, hi{0, 0, 0}, clo{0, 0, 0}, chi{0, 0, 0};
    for (int a = 3 - ndim; a < 3; ++a) {  // array axis a <-> xyz component 2 - a
      const int c = 2 - a;
      double umin = INFINITY, umax = -INFINITY;
      for (int corner = 0; corner < 8; ++corner) {
        Eigen::Vector4d x(bx.lo[2] + ((corner & 1) ? bx.size[2] - 1 : 0), bx.lo[1] + ((corner & 2) ? bx.size[1] - 1 : 0),
                          bx.lo[0] + ((corner & 4) ? bx.size[0] - 1 : 0), 1.0);
        const double u = (M * x)[c];
        umin = std::min(umin, u);
        umax = std::max(umax, u);
      }
      const int64_t n = sg_.grid[a];
      // The samples' neighbours with a margin, within the replicated border -1..n.
      lo[a] = std::clamp<int64_t>(static_cast<int64_t>(std::floor(umin)) - 1, -1, n);
      hi[a] = std::clamp<int64_t>(static_cast<int64_t>(std::floor(umax)) + 2, -1, n);
      clo[a] = std::clamp<int64_t>(lo[a], 0, n - 1);
      chi[a] = std::clamp<int64_t>(hi[a], 0, n - 1);
    }
    tile_lo_[ob] = lo;
    tile_hi_[ob] = hi;
    reads_[ob] = sg_.meeting(clo, chi);
    missing_[ob] = static_cast<int64_t>(reads_[ob].size());
    for (int64_t b : reads_[ob]) {
      readers_[b].push_back(ob);
      ++users_[b];
    }
  }
}

void ResampleSink::begin(const Patch& grid, int channels, bool categorical) {
  if (grid.s != src_.s) throw std::logic_error("ResampleSink: begin() with a grid other than its source");
  channels_ = channels;
  out_.begin(dst_, channels, categorical);
  for (int64_t ob = 0; ob < dg_.num(); ++ob)
    if (missing_[ob] == 0) emit(ob);  // reads nothing (cannot happen for a non-empty source)
}

void ResampleSink::put(const Box& box, const float* y) {
  // Every box is one source brick (BrickStitch hands over its own bricks); a whole-grid box (one
  // brick) is split here.
  for (int64_t b : sg_.meeting(box.lo, {box.lo[0] + box.size[0] - 1, box.lo[1] + box.size[1] - 1,
                                        box.lo[2] + box.size[2] - 1})) {
    const Box sb = sg_.box(b);
    std::vector<float>& h = held_[b];
    h.resize(static_cast<size_t>(channels_ * sb.numel()));
    for (int64_t c = 0; c < channels_; ++c)
      for (int64_t z = 0; z < sb.size[0]; ++z)
        for (int64_t yy = 0; yy < sb.size[1]; ++yy)
          std::copy_n(y + c * box.numel() +
                          ((sb.lo[0] - box.lo[0] + z) * box.size[1] + sb.lo[1] - box.lo[1] + yy) * box.size[2] +
                          sb.lo[2] - box.lo[2],
                      sb.size[2], h.begin() + c * sb.numel() + (z * sb.size[1] + yy) * sb.size[2]);
    bytes_ += static_cast<int64_t>(h.size() * sizeof(float));
    peak_bytes_ = std::max(peak_bytes_, bytes_);
    if (users_[b] == 0) {
      bytes_ -= static_cast<int64_t>(h.size() * sizeof(float));
      h = std::vector<float>();
    }
    for (int64_t ob : readers_[b])
      if (--missing_[ob] == 0) emit(ob);
  }
}

// One output brick: the source tile it reads (edges replicated) and a linear gather through the
// resampling matrix with the brick's and the tile's offsets folded in.
void ResampleSink::emit(int64_t ob) {
  const Box bx = dg_.box(ob);
  const std::array<int64_t, 3> lo = tile_lo_[ob], hi = tile_hi_[ob];
  std::array<int64_t, 3> ts{1, 1, 1};
  for (int a = 0; a < 3; ++a) ts[a] = hi[a] - lo[a] + 1;
  const int64_t tn = ts[0] * ts[1] * ts[2];
  std::vector<float> tile(static_cast<size_t>(channels_ * tn));
  for (int64_t z = 0; z < ts[0]; ++z)
    for (int64_t y = 0; y < ts[1]; ++y)
      for (int64_t x = 0; x < ts[2]; ++x) {
        const std::array<int64_t, 3> v{std::clamp<int64_t>(lo[0] + z, 0, sg_.grid[0] - 1),
                                       std::clamp<int64_t>(lo[1] + y, 0, sg_.grid[1] - 1),
                                       std::clamp<int64_t>(lo[2] + x, 0, sg_.grid[2] - 1)};
        const int64_t b = sg_.at(v);
        const Box sb = sg_.box(b);
        const int64_t li = ((v[0] - sb.lo[0]) * sb.size[1] + v[1] - sb.lo[1]) * sb.size[2] + v[2] - sb.lo[2];
        for (int64_t c = 0; c < channels_; ++c)
          tile[c * tn + (z * ts[1] + y) * ts[2] + x] = held_[b][c * sb.numel() + li];
      }
  Eigen::Matrix4d T_out = Eigen::Matrix4d::Identity(), T_tile = Eigen::Matrix4d::Identity();
  for (int a = 0; a < 3; ++a) {
    T_out(2 - a, 3) = static_cast<double>(bx.lo[a]);
    T_tile(2 - a, 3) = -static_cast<double>(lo[a]);
  }
  std::vector<float> m;
  train::append_kernel_matrix(T_tile * train::resample_matrix(src_, dst_) * T_out, ndim_, m);
  Shape tshape = {channels_};
  std::vector<int64_t> psize;
  for (int a = 3 - ndim_; a < 3; ++a) {
    tshape.push_back(ts[a]);
    psize.push_back(bx.size[a]);
  }
  const std::vector<float> y =
      gather_patches(constant(Tensor::from_vector(tshape, tile)), mats_tensor(m, ndim_), psize, Interp::linear)
          ->value.to_vector();
  out_.put(bx, y.data());
  for (int64_t b : reads_[ob])
    if (--users_[b] == 0) {
      bytes_ -= static_cast<int64_t>(held_[b].size() * sizeof(float));
      held_[b] = std::vector<float>();
    }
}

Tensor LevelNetwork::crop_image(int level, const InferInput& input, const std::vector<Patch>& patches) {
  const Scheme& sc = scheme();
  std::vector<float> m;
  for (const Patch& p : patches) train::append_kernel_matrix(train::resample_matrix(input.image, p), sc.ndim, m);
  Tensor src = input.data.reshape(with_front({input.data.dim(0)}, spatial_shape(input.image.s, sc.ndim)));
  return gather_patches(constant(src), mats_tensor(m, sc.ndim), spatial_size(sc.patch_size[level], sc.ndim),
                        sc.interp_type)
      ->value;
}

// ---- the inference ------------------------------------------------------------------------------

namespace {

struct PatchRec {
  Patch in;        // the level's input patch
  int parent = -1; // index into the previous level's kept outputs
  Eigen::Matrix3d L = Eigen::Matrix3d::Identity();  // its test-time augmentation (shared down a chain
                                                    // unless the model augments levels independently)
};

// The previous level's kept patches: their outputs [Q, Cout, out size] on the device, their input
// patches and augmentations, and their index in that level's list. Parents evaluated on demand
// (Inference::OnDemand) have no `out`: their outputs come one by one.
struct Parents {
  Tensor out;
  std::vector<Patch> patches;
  std::vector<Eigen::Matrix3d> L;
  std::vector<int> index;
};

// What evaluating one level leaves for the next: every patch's output (on the device) and attention.
struct LevelResult {
  Tensor outputs;
  std::vector<float> attention;
};

// Logits holding NaN or infinity: an error naming the level.
void require_finite(FiniteCheck& finite, int level) {
  if (!finite.ok())
    throw InputError("level " + std::to_string(level) +
                     " of the network produced NaN or infinite outputs (a diverged or damaged model)");
}

// Probabilities [B, K, s] of the label logits (the first K of the Cout channels): softmax over the
// K classes when categorical, else a sigmoid per channel; on the logits' device. A candidate_sampling
// model's K = m response features are returned as they are (apply/responses.h decides the classes).
Tensor label_probabilities(const Tensor& logits, int64_t K, const Scheme& sc) {
  Var l = constant(logits);
  if (logits.dim(1) != K) l = slice(l, 0, K);
  if (sc.candidate_sampling.enabled()) return l->value;
  return (sc.categorical ? softmax(l) : sigmoid(l))->value;
}

}  // namespace

AttentionFun parse_attention_fun(const std::string& s) {
  if (s == "sigmoid") return AttentionFun::sigmoid;
  if (s == "softmax") return AttentionFun::softmax;
  if (s == "identity") return AttentionFun::identity;
  throw UsageError("attentionFun '" + s + "': expected sigmoid, softmax or identity");
}

Reduce parse_reduce(const std::string& s) {
  if (s == "mean") return Reduce::mean;
  if (s == "max") return Reduce::max;
  throw UsageError("reduceFun '" + s + "': expected mean or max");
}

// The attention values through the engine (on the logits' device), reduced on the host.
std::vector<float> attention_of(const Tensor& logits, int64_t K, bool categorical, AttentionFun fun, Reduce reduce) {
  Var l = constant(logits);
  if (logits.dim(1) != K) l = slice(l, 0, K);
  const bool complement = categorical && fun == AttentionFun::softmax;  // 1 - p(background)
  Var a;
  if (fun == AttentionFun::softmax) a = complement ? slice(softmax(l), 0, 1) : softmax(l);
  else {
    Var fg = categorical ? slice(l, 1, K) : l;
    a = fun == AttentionFun::sigmoid ? sigmoid(fg) : fg;
  }
  const Tensor v = a->value.cpu();
  const int64_t B = v.dim(0), per = v.numel() / std::max<int64_t>(1, B);
  std::vector<float> att(B);
  for (int64_t b = 0; b < B; ++b) {
    const float* P = v.f32() + b * per;
    double sum = 0, mx = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < per; ++i) {
      const double x = complement ? 1.0 - P[i] : P[i];
      sum += x;
      mx = std::max(mx, x);
    }
    att[b] = static_cast<float>(reduce == Reduce::mean ? sum / static_cast<double>(per) : mx);
  }
  return att;
}

namespace {

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

// Sizes (x, y, z) in array order (z, y, x); 2D: {1, y, x}.
std::array<int64_t, 3> array_size(const train::Size3& s, int ndim) { return {ndim == 3 ? s[2] : 1, s[1], s[0]}; }

// A stitching target on the inference's device: bricks of accumulators [K, brick] and weights [brick].
struct Accum {
  Patch grid;
  std::unique_ptr<BrickStitch> bricks;
  void init(const Patch& g, int64_t K, int ndim, Device dev, int brick) {
    grid = g;
    bricks = std::make_unique<BrickStitch>(array_size(g.s, ndim), ndim, K, dev, brick);
  }
};

// Holds a whole normalised prediction [C, grid] (host f32), filled box by box.
class DenseSink : public BrickSink {
 public:
  void begin(const Patch& grid, int channels, bool) override {
    grid_ = grid;
    prob.assign(static_cast<size_t>(channels) * grid.numel(), 0.f);
  }
  void put(const Box& box, const float* y) override {
    const int64_t C = static_cast<int64_t>(prob.size()) / grid_.numel();
    copy_box(box, y, C, {grid_.s[2], grid_.s[1], grid_.s[0]}, prob.data());
  }
  std::vector<float> prob;

 private:
  Patch grid_;
};

// The whole of `grid` as one box.
Box whole_box(const Patch& grid) {
  Box b;
  b.size = {grid.s[2], grid.s[1], grid.s[0]};
  return b;
}

// One run of infer(): the steps of the algorithm, each a member function.
class Inference {
 public:
  Inference(LevelNetwork& net, const InferInput& input, const InferOptions& opt, BrickSink& sink);
  Prediction run();

 private:
  void check(const InferInput& input) const;
  Eigen::Vector3d level_voxel(int level) const;
  Eigen::Vector3d image_extent() const;
  Eigen::Matrix3d aug(int level);
  std::vector<PatchRec> level0_patches();
  LevelResult evaluate_level(int chunk, int level, const std::vector<PatchRec>& cur, const Parents& par);
  Tensor forward_batch(int level, const std::vector<PatchRec>& batch, const Parents& par, FiniteCheck& finite);
  Parents defer_level(int level, const std::vector<PatchRec>& cur, Parents&& par);
  void demand_parents(int chunk, const std::vector<PatchRec>& batch);
  void release_parents(const std::vector<PatchRec>& batch);
  Tensor crop_parents(int level, const std::vector<PatchRec>& batch, const Parents& par) const;
  std::vector<float> stitch_mats(int level, const std::vector<PatchRec>& patches) const;
  void stitch(int level, const Tensor& prob, const std::vector<PatchRec>& batch, int64_t end);
  void plan_finishing(int chunk, std::vector<PatchRec>& cur);
  Parents keep_top(LevelResult&& res, const std::vector<PatchRec>& cur) const;
  std::vector<PatchRec> children(int level, const Parents& par);
  std::vector<float> normalized_mix();
  train::Patch output_grid(const Patch& stitched) const;
  void check_memory(const std::vector<Patch>& grids) const;
  void finish();

  LevelNetwork& net_;
  const InferOptions& opt_;
  const Scheme& sc_;
  const Device dev_;
  InferInput input_;  // the image, its data on dev_ (uploaded once)
  int last_ = 0;      // the level stitched
  int64_t K_ = 0;     // label channels
  train::Frame frame_;
  std::vector<Accum> accs_;
  BrickSink& sink_;       // the output, on output_grid()
  std::unique_ptr<ResampleSink> resample_;  // the stitch grid onto the output grid, when they differ
  BrickSink* stitch_sink_ = nullptr;  // where finished bricks of the stitched level go
  // Last chunk: (index of the last patch reaching it, brick) in that order; the next entry to finish.
  std::vector<std::pair<int64_t, int64_t>> plan_;
  size_t plan_pos_ = 0;
  // The stitched level's parents, evaluated on demand (tree order needs no attention: lazy_fraction 1, no
  // --level mix): a batch of them (the batches of a whole-level evaluation, so the same values) is run
  // when a child first needs one of its patches, and each output is freed after its last child. Only the
  // parents around the sweep are held instead of the whole level's outputs.
  struct OnDemand {
    bool on = false;
    int level = -1;
    std::vector<PatchRec> patches;  // the level's patches
    Parents up;                     // their parents (kept whole)
    std::vector<Tensor> out;        // per patch: its output [Cout, out size] while children are to come
    std::vector<int64_t> uses;      // per patch: children not yet evaluated
    std::vector<char> evaluated;    // per batch
    int64_t bytes = 0;              // outputs held now
  } demand_;
  std::mt19937_64 rng_;
  Progress progress_;
  Prediction pred_;
};

Inference::Inference(LevelNetwork& net, const InferInput& input, const InferOptions& opt, BrickSink& sink)
    : net_(net), opt_(opt), sc_(net.scheme()), dev_(net.device()), sink_(sink), rng_(opt.seed), progress_(opt.progress) {
  last_ = opt.level < 0 ? sc_.depth + opt.level : opt.level;
  check(input);
  input_.image = input.image;
  input_.data = input.data.to(dev_);
  K_ = sc_.label_channels();
  frame_ = train::make_frame(sc_, input.image);
  pred_.channels = static_cast<int>(K_);
  pred_.categorical = sc_.categorical;
  pred_.patches_per_level.assign(last_ + 1, 0);
  // Stitch targets: the selected level, and for mix each coarser level on its own grid; checked
  // against the memory before any work.
  std::vector<Patch> grids(last_ + 1);
  for (int l = opt.level_mix ? 0 : last_; l <= last_; ++l)
    grids[l] = stitch_grid(input.image, level_voxel(l), sc_.ndim, opt.sampling_factor);
  std::vector<Patch> full(grids.begin() + (opt.level_mix ? 0 : last_), grids.end());
  full.push_back(output_grid(grids[last_]));
  check_memory(full);
  accs_.resize(last_ + 1);
  if (opt.brick < 2) throw std::invalid_argument("brick must be >= 2");
  for (int l = opt.level_mix ? 0 : last_; l <= last_; ++l) accs_[l].init(grids[l], K_, sc_.ndim, dev_, opt.brick);
  const Patch target = output_grid(grids[last_]);
  const bool same = target.s == grids[last_].s && target.A.isApprox(grids[last_].A, 1e-9);
  if (!same) resample_ = std::make_unique<ResampleSink>(grids[last_], target, sc_.ndim, opt.brick, sink_);
  stitch_sink_ = same ? &sink_ : static_cast<BrickSink*>(resample_.get());
  stitch_sink_->begin(same ? target : grids[last_], static_cast<int>(K_), sc_.categorical);  // a resampler begins sink_
}

// Refuses, before any work, grids that need more than the machine's physical memory, naming the grid and
// the bytes: --level mix blends whole grids (K + 1 float arrays each), otherwise the least is one byte
// per voxel (a label map; the accumulators are bricks).
void Inference::check_memory(const std::vector<Patch>& grids) const {
  const double bytes_per_voxel = opt_.level_mix ? 4.0 * static_cast<double>(K_ + 1) : 1.0;
  double total = 0;
  for (const Patch& g : grids) total += static_cast<double>(g.s[0]) * g.s[1] * g.s[2] * bytes_per_voxel;
  const double ram = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  if (ram > 0 && total > ram) {
    const Patch& g = grids.back();
    char msg[320];
    std::snprintf(msg, sizeof msg,
                  "the output grid %lldx%lldx%lld (sampling_factor %g) and its stitching arrays need %.1f GB for %lld "
                  "channel(s), more than this machine's %.1f GB of memory",
                  static_cast<long long>(g.s[0]), static_cast<long long>(g.s[1]), static_cast<long long>(g.s[2]),
                  opt_.sampling_factor, total / 1e9, static_cast<long long>(K_), ram / 1e9);
    throw std::invalid_argument(msg);
  }
}

// The output grid: the input grid or its refinement by sampling_factor, or the stitch grid itself when
// scale_to_original is off.
Patch Inference::output_grid(const Patch& stitched) const {
  if (!opt_.scale_to_original) return stitched;
  return opt_.sampling_factor == 1 ? input_.image
                                   : stitch_grid(input_.image, Eigen::Vector3d::Zero(), sc_.ndim, opt_.sampling_factor);
}

void Inference::check(const InferInput& input) const {
  if (last_ < 0 || last_ >= sc_.depth)
    throw std::invalid_argument("level " + std::to_string(opt_.level) + " is outside the model's depth " +
                                std::to_string(sc_.depth));
  if (opt_.num_patches < 1) throw std::invalid_argument("num_patches must be >= 1");
  if (opt_.branch_factor < 1) throw std::invalid_argument("branch_factor must be >= 1");
  if (opt_.num_chunks < 1) throw std::invalid_argument("num_chunks must be >= 1");
  if (!(opt_.lazy_fraction > 0 && opt_.lazy_fraction <= 1)) throw std::invalid_argument("lazy_fraction must be in (0, 1]");
  if (opt_.batch_size < 1) throw std::invalid_argument("batch_size must be >= 1");
  if (opt_.sparse_suppression < 0) throw std::invalid_argument("sparse_suppression must be >= 0");
  if (sc_.candidate_sampling.enabled() && opt_.lazy_fraction < 1)
    throw std::invalid_argument("lazy evaluation (lazy_fraction < 1) is not available for a candidate_sampling model "
                                "(its attention would need every class's probability)");
  if (input.channels() != net_.image_channels())
    throw std::invalid_argument("the model expects " + std::to_string(net_.image_channels()) +
                                " image channel(s), got " + std::to_string(input.channels()));
  if (input.data.ndim() != 4 || input.data.numel() != input.channels() * input.image.numel() ||
      input.data.dtype() != DType::f32)
    throw std::invalid_argument("infer: image data must be f32 [C, z, y, x] matching its dims");
  if ((sc_.ndim == 2) != (input.image.s[2] == 1)) {  // a one-slice volume may have dim[0] = 3: count slices
    const train::Size3& s = input.image.s;
    const std::string dims = std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" + std::to_string(s[2]);
    throw std::invalid_argument(std::string("the model is ") + (sc_.ndim == 2 ? "2-D" : "3-D") + " but the image has " +
                                (s[2] == 1 ? "one slice" : std::to_string(s[2]) + " slices") + " (" + dims + ")");
  }
}

// A level's output voxel size along each IMAGE axis i: max over the patch axes a of
// voxel_a |B_a . d_i| (equal to voxel_i in the 'matrix' system, where B_a = d_a).
Eigen::Vector3d Inference::level_voxel(int l) const {
  Eigen::Vector3d v = Eigen::Vector3d::Zero();
  const Eigen::Matrix3d M = input_.image.A.topLeftCorner<3, 3>();
  for (int i = 0; i < 3; ++i) {
    const Eigen::Vector3d d = M.col(i).normalized();
    for (int a = 0; a < 3; ++a) {
      v[i] = std::max(v[i], frame_.voxel[l][a] * std::abs(frame_.B.col(a).dot(d)));
    }
  }
  return v;
}

// The image box's extent in the frame (for tree tiling at level 0).
Eigen::Vector3d Inference::image_extent() const {
  const Eigen::Vector3d centre = input_.image.centre_world();
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = -lo;
  for (int c = 0; c < 8; ++c) {
    Eigen::Vector4d v((c & 1) ? input_.image.s[0] - 0.5 : -0.5, (c & 2) ? input_.image.s[1] - 0.5 : -0.5,
                      (c & 4) ? input_.image.s[2] - 0.5 : -0.5, 1.0);
    Eigen::Vector3d q = frame_.B.transpose() * ((input_.image.A * v).head<3>() - centre);
    lo = lo.cwiseMin(q);
    hi = hi.cwiseMax(q);
  }
  return hi - lo;
}

Eigen::Matrix3d Inference::aug(int level) {
  return opt_.augment ? net_.augmentation(level, rng_) : Eigen::Matrix3d::Identity();
}

// Level 0: a tiling of the image (tree) or num_patches uniformly placed centres (random).
std::vector<PatchRec> Inference::level0_patches() {
  std::vector<PatchRec> cur;
  const Eigen::Vector3d centre = input_.image.centre_world();
  if (opt_.generate_type == GenerateType::tree) {
    const Eigen::Vector3d ext = image_extent();
    for (const Eigen::Vector3d& c : tree_children(ext, frame_.out_extent[0], sc_.ndim, opt_.tree_jitter, rng_)) {
      Eigen::Vector3d off = (c - Eigen::Vector3d::Constant(0.5)).cwiseProduct(ext);
      if (sc_.ndim == 2) off[2] = 0;
      Eigen::Matrix3d L = aug(0);
      cur.push_back({train::make_patch(sc_, frame_, 0, centre + frame_.B * off, L), -1, L});
    }
    return cur;
  }
  std::uniform_real_distribution<double> U(0.0, 1.0);
  for (int i = 0; i < opt_.num_patches; ++i) {
    Eigen::Vector4d v;
    for (int a = 0; a < 3; ++a) v[a] = input_.image.s[a] == 1 ? 0.0 : U(rng_) * input_.image.s[a] - 0.5;
    v[3] = 1;
    Eigen::Matrix3d L = aug(0);
    cur.push_back({train::make_patch(sc_, frame_, 0, (input_.image.A * v).head<3>(), L), -1, L});
  }
  return cur;
}

// The crops C_level of the parents' outputs for a batch [B, Cout(level-1), patch size], on the device.
// Parents evaluated on demand: the batch's distinct parents are stacked into a small [U, Cout, out size]
// (the same values, so the same crops).
Tensor Inference::crop_parents(int level, const std::vector<PatchRec>& batch, const Parents& par) const {
  std::vector<float> m;
  Tensor index = Tensor::empty({static_cast<int64_t>(batch.size())}, DType::i32);
  std::vector<int> stacked;  // on demand: the parents in `src`
  for (size_t i = 0; i < batch.size(); ++i) {
    int q = batch[i].parent;
    if (!par.out.defined()) {
      const int u = static_cast<int>(std::find(stacked.begin(), stacked.end(), q) - stacked.begin());
      if (u == static_cast<int>(stacked.size())) stacked.push_back(q);
      q = u;
    }
    index.i32()[i] = q;
    Patch pout = train::out_patch(sc_, level - 1, par.patches[batch[i].parent]);
    train::append_kernel_matrix(train::resample_matrix(pout, batch[i].in), sc_.ndim, m);
  }
  Tensor src = par.out;
  if (!src.defined()) {
    Shape shape = demand_.out[stacked[0]].shape();  // [1, Cout, out size]
    shape[0] = static_cast<int64_t>(stacked.size());
    src = Tensor::empty(shape, DType::f32, dev_);
    for (size_t u = 0; u < stacked.size(); ++u) src.rows(u, u + 1).copy_from(demand_.out[stacked[u]]);
  }
  return gather_patches_nested(constant(src), index, mats_tensor(m, sc_.ndim),
                               spatial_size(sc_.patch_size[level], sc_.ndim), sc_.interp_type)
      ->value;
}

// The stitching matrices (output patch voxel -> stitch grid voxel) of `patches` at `level`.
std::vector<float> Inference::stitch_mats(int level, const std::vector<PatchRec>& patches) const {
  std::vector<float> m;
  for (const PatchRec& r : patches)
    train::append_kernel_matrix(train::resample_matrix(accs_[level].grid, train::out_patch(sc_, level, r.in)), sc_.ndim,
                                m);
  return m;
}

// Adds a batch's probabilities [B, K, out size] into the level's bricks (on the device), then
// finishes the bricks that no later patch reaches (`end`: the index after the batch's last patch).
void Inference::stitch(int level, const Tensor& prob, const std::vector<PatchRec>& batch, int64_t end) {
  Accum& A = accs_[level];
  A.bricks->add(prob, stitch_mats(level, batch), sc_.scatter_type, opt_.window);
  if (level != last_) return;
  for (; plan_pos_ < plan_.size() && plan_[plan_pos_].first < end; ++plan_pos_)
    A.bricks->finish(plan_[plan_pos_].second, static_cast<float>(opt_.sparse_suppression), *stitch_sink_);
}

// Before the stitched level: orders its patches by the first plane (along the slowest grid axis) that
// each reaches (stable; independent of the brick size), so that bricks are completed in a sweep; in
// the last chunk (without --level mix) plans when each brick is complete: after the last patch that
// reaches it.
void Inference::plan_finishing(int chunk, std::vector<PatchRec>& cur) {
  BrickStitch& S = *accs_[last_].bricks;
  const std::array<int64_t, 3> ps = array_size(sc_.out_patch_size[last_], sc_.ndim);
  const std::vector<float> m = stitch_mats(last_, cur);
  const int64_t k2 = (sc_.ndim + 1) * (sc_.ndim + 1), P = static_cast<int64_t>(cur.size());
  std::vector<std::vector<int64_t>> hit(P);
  std::vector<int64_t> first(P, std::numeric_limits<int64_t>::max());
  const int slow = sc_.ndim == 3 ? 0 : 1;
  for (int64_t p = 0; p < P; ++p) {
    hit[p] = S.touched(m.data() + p * k2, ps, sc_.scatter_type);
    Box fp;
    if (S.footprint(m.data() + p * k2, ps, sc_.scatter_type, fp)) first[p] = fp.lo[slow];
  }
  std::vector<int64_t> order(P);
  std::iota(order.begin(), order.end(), 0);
  auto key = [&](int64_t p) { return first[p]; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key(a) < key(b); });
  std::vector<PatchRec> sorted;
  for (int64_t p : order) sorted.push_back(cur[p]);
  cur = std::move(sorted);
  plan_.clear();
  plan_pos_ = 0;
  if (chunk != opt_.num_chunks - 1 || opt_.level_mix) return;
  std::vector<int64_t> last(S.num_bricks(), -1);
  for (int64_t i = 0; i < P; ++i)
    for (int64_t b : hit[order[i]]) last[b] = i;
  for (int64_t b = 0; b < S.num_bricks(); ++b)
    if (last[b] >= 0) plan_.emplace_back(last[b], b);
  std::sort(plan_.begin(), plan_.end());
}

// Runs the level's network on `cur` in batches: image crops and parent crops in, logits out (kept on
// the device when a later level needs them), probabilities stitched when this level is stitched.
// Logits holding NaN or infinity are an error naming the level (a scan per batch on the host; on a
// GPU one reduction per batch and one download per level, before anything is written).
LevelResult Inference::evaluate_level(int chunk, int level, const std::vector<PatchRec>& cur, const Parents& par) {
  FiniteCheck finite;
  const int64_t P = static_cast<int64_t>(cur.size());
  if (opt_.observe)
    for (const PatchRec& r : cur) opt_.observe(level, r.in, r.parent < 0 ? -1 : par.index[r.parent]);
  pred_.patches_per_level[level] += P;
  const int64_t cout = net_.out_channels(level);
  const Shape out_shape = with_front({cout}, spatial_shape(sc_.out_patch_size[level], sc_.ndim));
  const bool keep = level < last_;
  LevelResult res;
  if (keep) res.outputs = Tensor::empty(with_front({P}, out_shape), DType::f32, dev_);
  const bool deferred = demand_.on && level == last_;  // its parents come on demand
  for (int64_t b0 = 0; b0 < P; b0 += opt_.batch_size) {
    const std::vector<PatchRec> batch(cur.begin() + b0, cur.begin() + std::min<int64_t>(P, b0 + opt_.batch_size));
    const int64_t B = static_cast<int64_t>(batch.size());
    if (deferred) demand_parents(chunk, batch);
    Tensor logits = forward_batch(level, batch, par, finite);
    if (deferred) release_parents(batch);
    if (keep) res.outputs.rows(b0, b0 + B).copy_from(logits);
    const bool stitched = level == last_ || opt_.level_mix;
    const bool lazy = keep && opt_.lazy_fraction < 1;
    if (lazy) {  // from the logits the children crop
      const AttentionFun fun =
          opt_.attention_fun.value_or(sc_.categorical ? AttentionFun::softmax : AttentionFun::sigmoid);
      std::vector<float> a = attention_of(logits, K_, sc_.categorical, fun, opt_.attention);
      res.attention.insert(res.attention.end(), a.begin(), a.end());
    }
    if (stitched) stitch(level, label_probabilities(net_.finalize(level, logits), K_, sc_), batch, b0 + B);
    progress_.report(chunk, opt_.num_chunks, level, b0 + B, P);
  }
  require_finite(finite, level);
  return res;
}

// One batch of a level through the network: image crops and parent crops in, logits [B, Cout, out size]
// on the device out (shape checked; NaN/inf: on the host checked at once, on a GPU at the level's end).
Tensor Inference::forward_batch(int level, const std::vector<PatchRec>& batch, const Parents& par, FiniteCheck& finite) {
  const int64_t B = static_cast<int64_t>(batch.size());
  const Shape out_shape = with_front({B, net_.out_channels(level)}, spatial_shape(sc_.out_patch_size[level], sc_.ndim));
  std::vector<Patch> inputs;
  for (const PatchRec& r : batch) inputs.push_back(r.in);
  Tensor img = net_.crop_image(level, input_, inputs);
  Tensor crop = level > 0 ? crop_parents(level, batch, par) : Tensor();
  Tensor logits = net_.forward(level, img, crop).to(dev_);
  if (logits.shape() != out_shape)
    throw std::invalid_argument("the network's level " + std::to_string(level) + " output has shape " +
                                shape_str(logits.shape()) + ", expected " + shape_str(out_shape));
  finite.add(logits);
  if (!logits.is_cuda()) require_finite(finite, level);
  return logits;
}

// Instead of evaluating `level` (the stitched level's parents), keeps its patches for demand_parents:
// returns them as the next level's parents (patches and augmentations, no outputs).
Parents Inference::defer_level(int level, const std::vector<PatchRec>& cur, Parents&& par) {
  if (opt_.observe)
    for (const PatchRec& r : cur) opt_.observe(level, r.in, r.parent < 0 ? -1 : par.index[r.parent]);
  const size_t P = cur.size();
  demand_.level = level;
  demand_.patches = cur;
  demand_.up = std::move(par);
  demand_.out.assign(P, Tensor());
  demand_.uses.assign(P, 0);
  demand_.evaluated.assign((P + opt_.batch_size - 1) / opt_.batch_size, 0);
  Parents next;
  for (size_t k = 0; k < P; ++k) {
    next.patches.push_back(cur[k].in);
    next.L.push_back(cur[k].L);
    next.index.push_back(static_cast<int>(k));
  }
  return next;
}

// Evaluates the parents' batches that `batch` needs and that have not run yet, keeping each parent's output.
void Inference::demand_parents(int chunk, const std::vector<PatchRec>& batch) {
  const int level = demand_.level;
  const int64_t P = static_cast<int64_t>(demand_.patches.size()), bs = opt_.batch_size;
  for (const PatchRec& r : batch) {
    const int64_t j = r.parent / bs;
    if (demand_.evaluated[j]) continue;
    demand_.evaluated[j] = 1;
    const int64_t b0 = j * bs, b1 = std::min(P, b0 + bs);
    const std::vector<PatchRec> pb(demand_.patches.begin() + b0, demand_.patches.begin() + b1);
    FiniteCheck finite;
    const Tensor logits = forward_batch(level, pb, demand_.up, finite);
    require_finite(finite, level);
    for (int64_t k = b0; k < b1; ++k) {
      Tensor o = logits.rows(k - b0, k - b0 + 1);
      demand_.out[k] = Tensor::empty(o.shape(), DType::f32, dev_);
      demand_.out[k].copy_from(o);
      demand_.bytes += o.numel() * static_cast<int64_t>(sizeof(float));
    }
    pred_.parents_peak_bytes = std::max(pred_.parents_peak_bytes, demand_.bytes);
    pred_.patches_per_level[level] += b1 - b0;
    progress_.report(chunk, opt_.num_chunks, level, b1, P);
  }
}

// After a batch of children: frees the outputs of the parents whose last child it held.
void Inference::release_parents(const std::vector<PatchRec>& batch) {
  for (const PatchRec& r : batch)
    if (--demand_.uses[r.parent] == 0) {
      demand_.bytes -= demand_.out[r.parent].numel() * static_cast<int64_t>(sizeof(float));
      demand_.out[r.parent] = Tensor();
    }
}

// Lazy evaluation: the top fraction of the level's patches by attention (all when the fraction is 1).
Parents Inference::keep_top(LevelResult&& res, const std::vector<PatchRec>& cur) const {
  Parents par;
  const int64_t P = static_cast<int64_t>(cur.size());
  if (opt_.lazy_fraction < 1) par.index = top_fraction(res.attention, opt_.lazy_fraction);
  else {
    par.index.resize(P);
    std::iota(par.index.begin(), par.index.end(), 0);
  }
  const int64_t Q = static_cast<int64_t>(par.index.size());
  if (Q == P) par.out = std::move(res.outputs);
  else {
    Shape s = res.outputs.shape();
    s[0] = Q;
    par.out = Tensor::empty(s, DType::f32, dev_);
    for (int64_t q = 0; q < Q; ++q) par.out.rows(q, q + 1).copy_from(res.outputs.rows(par.index[q], par.index[q] + 1));
  }
  for (int k : par.index) {
    par.patches.push_back(cur[k].in);
    par.L.push_back(cur[k].L);
  }
  return par;
}

// The next level's patches: the children of every kept parent (a tiling for tree, branch_factor
// uniform draws for random).
std::vector<PatchRec> Inference::children(int level, const Parents& par) {
  std::vector<PatchRec> next;
  std::uniform_real_distribution<double> U(0.0, 1.0);
  auto child = [&](int64_t q, const Eigen::Vector3d& c) {
    Eigen::Matrix3d L = net_.independent_augmentation() ? aug(level + 1) : par.L[q];
    const Patch parent_out = train::out_patch(sc_, level, par.patches[q]);
    return PatchRec{train::child_patch(sc_, frame_, level + 1, parent_out, c, L), static_cast<int>(q), L};
  };
  for (int64_t q = 0; q < static_cast<int64_t>(par.patches.size()); ++q) {
    if (opt_.generate_type == GenerateType::tree) {
      for (const Eigen::Vector3d& c :
           tree_children(frame_.out_extent[level], frame_.out_extent[level + 1], sc_.ndim, opt_.tree_jitter, rng_))
        next.push_back(child(q, c));
    } else {
      for (int j = 0; j < opt_.branch_factor; ++j) {
        Eigen::Vector3d c(U(rng_), U(rng_), sc_.ndim == 2 ? 0.5 : U(rng_));
        next.push_back(child(q, c));
      }
    }
  }
  return next;
}

// --level mix, on the host: fine where the selected level has weight >= 1, else blended (t = min(1, W))
// with the finest coarser level that has weight there, each coarser level resampled linearly onto the
// fine grid.
std::vector<float> Inference::normalized_mix() {
  const float alpha = static_cast<float>(opt_.sparse_suppression);
  Accum& F = accs_[last_];
  const int64_t n = F.grid.numel(), K = K_;
  Tensor facc, fweight;
  F.bricks->to_dense(facc, fweight);
  std::vector<float> y = stitch_normalize(facc, fweight, alpha).to_vector();
  std::vector<float> t = fweight.to_vector();
  for (float& v : t) v = std::min(1.f, v);
  for (int l = last_ - 1; l >= 0; --l) {
    Accum& C = accs_[l];
    const int64_t nc = C.grid.numel();
    Tensor cacc, cweight;
    C.bricks->to_dense(cacc, cweight);
    std::vector<float> yc = stitch_normalize(cacc, cweight, alpha).to_vector();
    const std::vector<float> wc = cweight.to_vector();
    yc.resize(static_cast<size_t>(K * nc + nc));
    for (int64_t v = 0; v < nc; ++v) {
      const float tc = std::min(1.f, wc[v]);
      yc[K * nc + v] = tc;
      for (int64_t c = 0; c < K; ++c) yc[c * nc + v] *= tc;  // weight folded in, divided out below
    }
    std::vector<float> r = resample_linear(yc, C.grid, static_cast<int>(K + 1), F.grid, sc_.ndim);
    for (int64_t v = 0; v < n; ++v) {
      const float tf = t[v], tc = r[K * n + v];
      if (tf >= 1.f || tc <= 0.f) continue;
      for (int64_t c = 0; c < K; ++c) y[c * n + v] = tf * y[c * n + v] + (1 - tf) * (r[c * n + v] / tc);
      t[v] = tf + (1 - tf) * std::min(1.f, tc);
    }
    C.bricks.reset();
  }
  return y;
}

// Finishes the bricks still open (every brick when an earlier chunk or --level mix kept them, the
// untouched ones as zeros); when the output grid differs from the stitch grid, the resampler has
// handed each output brick on as soon as its source bricks were there.
void Inference::finish() {
  Accum& F = accs_[last_];
  for (const Accum& a : accs_)
    if (a.bricks) {
      pred_.stitch_peak_bytes += a.bricks->peak_bytes();
      pred_.bricks_total += a.bricks->num_bricks();
    }
  if (opt_.level_mix) {
    for (const Accum& a : accs_)
      if (a.bricks) pred_.bricks_allocated += a.bricks->allocated_bricks();
    std::vector<float> y = normalized_mix();
    stitch_sink_->put(whole_box(F.grid), y.data());
  } else {
    F.bricks->finish_all(static_cast<float>(opt_.sparse_suppression), *stitch_sink_);
    pred_.bricks_allocated += F.bricks->allocated_bricks();
  }
  const Patch stitched = F.grid;
  accs_.clear();
  if (resample_) pred_.stitch_peak_bytes += resample_->peak_bytes();
  pred_.grid = output_grid(stitched);
}

Prediction Inference::run() {
  NoGradGuard no_grad;
  demand_.on = last_ > 0 && opt_.lazy_fraction >= 1 && !opt_.level_mix;
  for (int chunk = 0; chunk < opt_.num_chunks; ++chunk) {
    std::vector<PatchRec> cur = level0_patches();
    Parents par;
    for (int level = 0;; ++level) {
      if (level == last_) plan_finishing(chunk, cur);
      if (demand_.on && level == last_ - 1) {  // evaluated as its children need it
        par = defer_level(level, cur, std::move(par));
        cur = children(level, par);
        for (const PatchRec& r : cur) ++demand_.uses[r.parent];
        continue;
      }
      LevelResult res = evaluate_level(chunk, level, cur, par);
      if (level == last_) break;
      par = keep_top(std::move(res), cur);
      if (level == last_ - 1)
        pred_.parents_peak_bytes = std::max(pred_.parents_peak_bytes, par.out.numel() * static_cast<int64_t>(sizeof(float)));
      cur = children(level, par);
    }
  }
  finish();
  pred_.seconds = progress_.seconds();
  return std::move(pred_);
}

}  // namespace

Prediction infer(LevelNetwork& net, const InferInput& input, const InferOptions& opt, BrickSink& sink) {
  return Inference(net, input, opt, sink).run();
}

Prediction infer(LevelNetwork& net, const InferInput& input, const InferOptions& opt) {
  DenseSink sink;
  Prediction p = infer(net, input, opt, sink);
  p.prob = std::move(sink.prob);
  return p;
}

}  // namespace pw::apply
