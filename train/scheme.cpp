#include "train/scheme.h"

#include <cmath>

#include "io/error.h"
#include "train/json_check.h"

namespace pw::train {

using nlohmann::json;

Eigen::Vector3d Patch::centre_world() const {
  Eigen::Vector4d v((s[0] - 1) * 0.5, (s[1] - 1) * 0.5, (s[2] - 1) * 0.5, 1.0);
  return (A * v).head<3>();
}

Eigen::Matrix4d resample_matrix(const Patch& src, const Patch& dst) { return src.A.inverse() * dst.A; }

void append_kernel_matrix(const Eigen::Matrix4d& M, int ndim, std::vector<float>& out) {
  // array axis r <-> xyz component ndim-1-r; the homogeneous row/column stays last
  auto ax = [&](int r) { return r == ndim ? 3 : ndim - 1 - r; };
  for (int r = 0; r <= ndim; ++r)
    for (int c = 0; c <= ndim; ++c) out.push_back(static_cast<float>(M(ax(r), ax(c))));
}

// ---- JSON ---------------------------------------------------------------------------------------

json Smoothing::to_json() const {
  switch (kind) {
    case Kind::none: return 0;
    case Kind::gaussian: return width;
    case Kind::box: return "boxcar";
    case Kind::max: return "max";
    case Kind::mixture: return "mixture";
    case Kind::min: break;  // not an option value
  }
  return 0;
}

Smoothing Smoothing::from_json(const json& j, const std::string& key) {
  Smoothing s;
  if (j.is_null()) return s;
  if (j.is_number()) {
    s.width = json_number(j, key);
    if (s.width < 0) throw InputError(key + ": must be >= 0, got " + j.dump());
    s.kind = s.width > 0 ? Kind::gaussian : Kind::none;
    return s;
  }
  std::string v = json_string(j, key);
  if (v == "boxcar") s.kind = Kind::box;
  else if (v == "max") s.kind = Kind::max;
  else if (v == "mixture") s.kind = Kind::mixture;
  else throw InputError(key + ": expected a number, \"boxcar\", \"max\" or \"mixture\", got \"" + v + "\"");
  return s;
}

static const char* interp_name(Interp i) { return i == Interp::nearest ? "NN" : "lin"; }
static Interp parse_interp(const json& j, const std::string& key) {
  std::string v = json_string(j, key);
  if (v == "NN" || v == "nn") return Interp::nearest;
  if (v == "lin") return Interp::linear;
  throw InputError(key + ": expected \"NN\" or \"lin\", got \"" + v + "\"");
}

static const char* normalize_name(Normalize n) {
  switch (n) {
    case Normalize::none: return nullptr;
    case Normalize::max: return "max";
    case Normalize::mean: return "mean";
    case Normalize::m0s1: return "m0s1";
    case Normalize::patch_m0s1: return "patch_m0s1";
  }
  return nullptr;
}

const std::vector<std::string>& Scheme::json_keys() {
  static const std::vector<std::string> keys = {
      "depth",          "ndim",           "scheme",          "system",     "snapper",
      "interp_type",    "scatter_type",   "smoothfac_data",  "smoothfac_label", "normalize_input",
      "categorical_label", "categorical", "num_labels", "candidate_sampling", "crop_fdim"};
  return keys;
}

static std::vector<Size3> parse_sizes(const json& j, const std::string& key, int ndim, int depth) {
  auto one = [&](const json& e) {
    if (!e.is_array() || static_cast<int>(e.size()) != ndim)
      throw InputError(key + ": expected " + std::to_string(ndim) + " integers per size, got " + e.dump());
    Size3 s{1, 1, 1};
    for (int a = 0; a < ndim; ++a) {
      s[a] = json_int(e[a], key);
      if (s[a] < 1 || s[a] > 4096) throw InputError(key + ": sizes must be in 1..4096, got " + e.dump());
    }
    return s;
  };
  if (!j.is_array() || j.empty()) throw InputError(key + ": expected a list of sizes, got " + j.dump());
  if (j[0].is_array()) {
    if (static_cast<int>(j.size()) != depth)
      throw InputError(key + ": expected one size per level (" + std::to_string(depth) + "), got " +
                       std::to_string(j.size()));
    std::vector<Size3> out;
    for (const auto& e : j) out.push_back(one(e));
    return out;
  }
  return std::vector<Size3>(depth, one(j));
}

// Each level's output is the central crop of its block output: out_patch_size <= patch_size with an
// even difference along every axis (a centred crop).
static void check_out_sizes(const Scheme& s) {
  for (int k = 0; k < s.depth; ++k)
    for (int a = 0; a < s.ndim; ++a) {
      const int64_t in = s.patch_size[k][a], out = s.out_patch_size[k][a];
      std::string where = "scheme.out_patch_size: level " + std::to_string(k) + " axis " + std::to_string(a) + " is " +
                          std::to_string(out) + " for patch_size " + std::to_string(in);
      if (out > in) throw InputError(where + "; the output can only be smaller than the input (a central crop)");
      if ((in - out) % 2 != 0)
        throw InputError(where + "; patch_size - out_patch_size must be even (a centred crop)");
    }
}

static json sizes_json(const std::vector<Size3>& v, int ndim) {
  json out = json::array();
  for (const auto& s : v) {
    json e = json::array();
    for (int a = 0; a < ndim; ++a) e.push_back(s[a]);
    out.push_back(e);
  }
  return out;
}

static Eigen::Vector3d parse_vec(const json& j, const std::string& key, int ndim, double fill) {
  auto v = json_numbers(j, key, ndim);
  Eigen::Vector3d out(fill, fill, fill);
  for (int a = 0; a < ndim; ++a) {
    if (!(v[a] > 0)) throw InputError(key + ": values must be > 0, got " + j.dump());
    out[a] = v[a];
  }
  return out;
}

static json vec_json(const Eigen::Vector3d& v, int ndim) {
  json out = json::array();
  for (int a = 0; a < ndim; ++a) out.push_back(v[a]);
  return out;
}

// {"dim": m, "candidates": n}: m in 1..32 feature channels, n in 1..63 sampled classes per voxel.
static Scheme::CandidateSampling parse_candidate_sampling(const json& c, const Scheme& s) {
  check_keys(c, {"dim", "candidates"}, "candidate_sampling");
  if (!c.contains("dim") || !c.contains("candidates"))
    throw InputError("candidate_sampling: needs 'dim' (embedding dimension) and 'candidates' (sampled classes per voxel)");
  Scheme::CandidateSampling cs;
  cs.dim = json_int(c["dim"], "candidate_sampling.dim");
  cs.candidates = json_int(c["candidates"], "candidate_sampling.candidates");
  if (cs.dim < 1 || cs.dim > 32) throw InputError("candidate_sampling.dim: must be in 1..32, got " + std::to_string(cs.dim));
  if (cs.candidates < 1 || cs.candidates > 63)
    throw InputError("candidate_sampling.candidates: must be in 1..63, got " + std::to_string(cs.candidates));
  if (!s.categorical) throw InputError("candidate_sampling: needs categorical: true (exclusive classes)");
  return cs;
}

// The "scheme" section: patch sizes, field of view and voxel size per level (s.ndim, s.depth known).
static void read_levels(const json& j, Scheme& s) {
  if (!j.contains("scheme")) throw InputError("config: missing 'scheme' (patch_size, fov_mm|fov_rel, destvox_mm|destvox_rel)");
  const json& sc = j["scheme"];
  check_keys(sc, {"patch_size", "out_patch_size", "fov_mm", "fov_rel", "destvox_mm", "destvox_rel"}, "scheme");
  if (!sc.contains("patch_size")) throw InputError("scheme: missing 'patch_size'");
  s.patch_size = parse_sizes(sc["patch_size"], "scheme.patch_size", s.ndim, s.depth);
  s.out_patch_size = sc.contains("out_patch_size")
                         ? parse_sizes(sc["out_patch_size"], "scheme.out_patch_size", s.ndim, s.depth)
                         : s.patch_size;
  check_out_sizes(s);
  if (sc.contains("fov_mm") == sc.contains("fov_rel"))
    throw InputError("scheme: give exactly one of 'fov_mm' and 'fov_rel'");
  s.fov_is_mm = sc.contains("fov_mm");
  s.fov = s.fov_is_mm ? parse_vec(sc["fov_mm"], "scheme.fov_mm", s.ndim, 1)
                      : parse_vec(sc["fov_rel"], "scheme.fov_rel", s.ndim, 1);
  if (sc.contains("destvox_mm") == sc.contains("destvox_rel"))
    throw InputError("scheme: give exactly one of 'destvox_mm' and 'destvox_rel'");
  s.destvox_is_mm = sc.contains("destvox_mm");
  s.destvox = s.destvox_is_mm ? parse_vec(sc["destvox_mm"], "scheme.destvox_mm", s.ndim, 1)
                              : parse_vec(sc["destvox_rel"], "scheme.destvox_rel", s.ndim, 1);
}

// How patches are placed and resampled: system, snapper, interpolation, smoothing, input normalisation.
static void read_sampling(const json& j, Scheme& s) {
  if (j.contains("system")) {
    std::string v = json_string(j["system"], "system");
    if (v == "world") s.system = System::world;
    else if (v == "matrix") s.system = System::matrix;
    else throw InputError("system: expected \"world\" or \"matrix\", got \"" + v + "\"");
  }
  if (j.contains("snapper") && !j["snapper"].is_null()) {
    s.snapper = json_ints(j["snapper"], "snapper");
    if (static_cast<int>(s.snapper.size()) != s.depth)
      throw InputError("snapper: expected " + std::to_string(s.depth) + " entries (one per level), got " +
                       std::to_string(s.snapper.size()));
    for (int v : s.snapper)
      if (v != 0 && v != 1) throw InputError("snapper: entries must be 0 or 1");
  } else {
    s.snapper.assign(s.depth, 1);
    s.snapper[0] = 0;
  }
  if (j.contains("interp_type")) s.interp_type = parse_interp(j["interp_type"], "interp_type");
  if (j.contains("scatter_type")) s.scatter_type = parse_interp(j["scatter_type"], "scatter_type");
  if (j.contains("smoothfac_data")) s.smoothfac_data = Smoothing::from_json(j["smoothfac_data"], "smoothfac_data");
  if (j.contains("smoothfac_label")) s.smoothfac_label = Smoothing::from_json(j["smoothfac_label"], "smoothfac_label");
  if (j.contains("normalize_input") && !j["normalize_input"].is_null()) {
    std::string v = json_string(j["normalize_input"], "normalize_input");
    if (v == "max") s.normalize_input = Normalize::max;
    else if (v == "mean") s.normalize_input = Normalize::mean;
    else if (v == "m0s1") s.normalize_input = Normalize::m0s1;
    else if (v == "patch_m0s1") s.normalize_input = Normalize::patch_m0s1;
    else throw InputError("normalize_input: expected \"max\", \"mean\", \"m0s1\" or \"patch_m0s1\", got \"" + v + "\"");
  }
}

// The labels: categorical_label, categorical, num_labels (checked against each other), crop_fdim and
// candidate_sampling.
static void read_labels(const json& j, Scheme& s) {
  if (j.contains("categorical_label") && !j["categorical_label"].is_null()) {
    s.categorical_label = json_ints(j["categorical_label"], "categorical_label");
    if (s.categorical_label.empty()) throw InputError("categorical_label: must not be empty");
  }
  if (j.contains("categorical")) s.categorical = json_bool(j["categorical"], "categorical");
  if (j.contains("num_labels")) s.num_labels = json_int(j["num_labels"], "num_labels");
  if (j.contains("crop_fdim") && !j["crop_fdim"].is_null()) {
    s.crop_fdim = json_ints(j["crop_fdim"], "crop_fdim");
    if (s.crop_fdim.empty()) throw InputError("crop_fdim: expected a list of channel indices, got []");
    for (int c : s.crop_fdim)
      if (c < 0) throw InputError("crop_fdim: channel indices start at 0, got " + std::to_string(c));
  }
  if (!s.categorical_label.empty()) {
    int k = static_cast<int>(s.categorical_label.size());
    if (s.num_labels != 0 && s.num_labels != k)
      throw InputError("num_labels: " + std::to_string(s.num_labels) + " differs from the " + std::to_string(k) +
                       " entries of categorical_label");
    s.num_labels = k;
  }
  if (s.num_labels < 0) throw InputError("num_labels: must be >= 1");
  if (s.categorical && s.categorical_label.empty())
    throw InputError("categorical: true needs categorical_label (the label values of the classes)");
  if (j.contains("candidate_sampling") && !j["candidate_sampling"].is_null())
    s.candidate_sampling = parse_candidate_sampling(j["candidate_sampling"], s);
}

Scheme Scheme::from_json(const json& j) {
  check_keys(j, json_keys(), "config");
  Scheme s;
  if (j.contains("depth")) s.depth = json_int(j["depth"], "depth");
  if (s.depth < 1 || s.depth > 16) throw InputError("depth: must be in 1..16, got " + std::to_string(s.depth));
  if (j.contains("ndim")) s.ndim = json_int(j["ndim"], "ndim");
  if (s.ndim != 2 && s.ndim != 3) throw InputError("ndim: must be 2 or 3, got " + std::to_string(s.ndim));
  read_levels(j, s);
  read_sampling(j, s);
  read_labels(j, s);
  return s;
}

json Scheme::to_json() const {
  json sc;
  sc["patch_size"] = sizes_json(patch_size, ndim);
  sc["out_patch_size"] = sizes_json(out_patch_size, ndim);
  sc[fov_is_mm ? "fov_mm" : "fov_rel"] = vec_json(fov, ndim);
  sc[destvox_is_mm ? "destvox_mm" : "destvox_rel"] = vec_json(destvox, ndim);
  json j;
  j["depth"] = depth;
  j["ndim"] = ndim;
  j["scheme"] = sc;
  j["system"] = system == System::world ? "world" : "matrix";
  j["snapper"] = snapper;
  j["interp_type"] = interp_name(interp_type);
  j["scatter_type"] = interp_name(scatter_type);
  j["smoothfac_data"] = smoothfac_data.to_json();
  j["smoothfac_label"] = smoothfac_label.to_json();
  const char* n = normalize_name(normalize_input);
  j["normalize_input"] = n ? json(n) : json(nullptr);
  j["categorical_label"] = categorical_label.empty() ? json(nullptr) : json(categorical_label);
  j["categorical"] = categorical;
  j["num_labels"] = num_labels;
  if (candidate_sampling.enabled())  // absent otherwise: model files without it stay as they were
    j["candidate_sampling"] = {{"dim", candidate_sampling.dim}, {"candidates", candidate_sampling.candidates}};
  if (!crop_fdim.empty()) j["crop_fdim"] = crop_fdim;
  return j;
}

// ---- geometry -----------------------------------------------------------------------------------

Frame make_frame(const Scheme& scheme, const Patch& image) {
  Frame f;
  Eigen::Matrix3d M = image.A.topLeftCorner<3, 3>();
  Eigen::Vector3d vs;
  Eigen::Matrix3d dir;
  for (int i = 0; i < 3; ++i) {
    vs[i] = M.col(i).norm();
    if (!(vs[i] > 0)) throw InputError("image affine: column " + std::to_string(i) + " is zero (singular affine)");
    dir.col(i) = M.col(i) / vs[i];
  }
  // map[a]: the image axis whose extent and voxel size patch axis a refers to.
  int map[3] = {0, 1, 2};
  if (scheme.system == System::matrix) {
    f.B = dir;
  } else if (scheme.ndim == 3) {
    f.B = Eigen::Matrix3d::Identity();
    bool used[3] = {false, false, false};
    for (int a = 0; a < 3; ++a) {  // greedy: the image axis most aligned with world axis a
      int best = -1;
      for (int i = 0; i < 3; ++i)
        if (!used[i] && (best < 0 || std::abs(dir(a, i)) > std::abs(dir(a, best)))) best = i;
      used[best] = true;
      map[a] = best;
    }
  } else {  // 2D world: in-plane axes snapped to the nearest world axes
    for (int a = 0; a < 2; ++a) {
      Eigen::Index r;
      dir.col(a).cwiseAbs().maxCoeff(&r);
      f.B.col(a) = Eigen::Vector3d::Unit(r) * (dir(r, a) < 0 ? -1.0 : 1.0);
    }
    f.B.col(2) = dir.col(2);
  }
  Eigen::Vector3d width, vox;
  for (int a = 0; a < 3; ++a) {
    width[a] = static_cast<double>(image.s[map[a]]) * vs[map[a]];
    vox[a] = vs[map[a]];
  }
  const int N = scheme.depth;
  Eigen::Vector3d e0 = scheme.fov_is_mm ? scheme.fov : Eigen::Vector3d(scheme.fov.cwiseProduct(width));
  Eigen::Vector3d dv = scheme.destvox_is_mm ? scheme.destvox : Eigen::Vector3d(scheme.destvox.cwiseProduct(vox));
  Eigen::Vector3d elast;
  for (int a = 0; a < 3; ++a) elast[a] = static_cast<double>(scheme.patch_size[N - 1][a]) * dv[a];
  if (scheme.ndim == 2) {  // the slice axis: one voxel of the image's thickness at every level
    e0[2] = vox[2];
    elast[2] = vox[2];
  }
  for (int k = 0; k < N; ++k) {
    Eigen::Vector3d e;
    if (N == 1) e = elast;
    else
      for (int a = 0; a < 3; ++a) e[a] = e0[a] * std::pow(elast[a] / e0[a], double(k) / (N - 1));
    f.extent.push_back(e);
    Eigen::Vector3d v;
    for (int a = 0; a < 3; ++a) v[a] = e[a] / static_cast<double>(scheme.patch_size[k][a]);
    f.voxel.push_back(v);
    Eigen::Vector3d eo;
    for (int a = 0; a < 3; ++a) eo[a] = v[a] * static_cast<double>(scheme.out_patch_size[k][a]);
    f.out_extent.push_back(eo);
  }
  return f;
}

static Patch place(const Eigen::Matrix3d& lin, const Size3& s, const Eigen::Vector3d& centre) {
  Patch p;
  p.s = s;
  p.A.setIdentity();
  p.A.topLeftCorner<3, 3>() = lin;
  Eigen::Vector3d mid((s[0] - 1) * 0.5, (s[1] - 1) * 0.5, (s[2] - 1) * 0.5);
  p.A.topRightCorner<3, 1>() = centre - lin * mid;
  return p;
}

Patch make_patch(const Scheme& scheme, const Frame& frame, int level, const Eigen::Vector3d& centre,
                 const Eigen::Matrix3d& L) {
  if (level < 0 || level >= scheme.depth) throw std::invalid_argument("make_patch: level out of range");
  Eigen::Matrix3d lin = frame.B * L * frame.voxel[level].asDiagonal();
  return place(lin, scheme.patch_size[level], centre);
}

void bounding_box(const Patch& ref, const Patch& p, Eigen::Vector3d& lo, Eigen::Vector3d& hi) {
  Eigen::Matrix4d M = resample_matrix(ref, p);
  lo.setConstant(1e300);
  hi.setConstant(-1e300);
  for (int c = 0; c < 8; ++c) {
    Eigen::Vector4d v((c & 1) ? p.s[0] - 0.5 : -0.5, (c & 2) ? p.s[1] - 0.5 : -0.5, (c & 4) ? p.s[2] - 0.5 : -0.5,
                      1.0);
    Eigen::Vector3d q = (M * v).head<3>();
    lo = lo.cwiseMin(q);
    hi = hi.cwiseMax(q);
  }
}

Patch child_patch(const Scheme& scheme, const Frame& frame, int level, const Patch& parent,
                  const Eigen::Vector3d& centre_rel, const Eigen::Matrix3d& L) {
  if (level < 1 || level >= scheme.depth) throw std::invalid_argument("child_patch: level must be in 1..depth-1");
  Eigen::Vector4d pv;
  for (int a = 0; a < 3; ++a) pv[a] = centre_rel[a] * static_cast<double>(parent.s[a]) - 0.5;
  if (scheme.ndim == 2) pv[2] = 0;
  pv[3] = 1;
  Eigen::Vector3d centre = (parent.A * pv).head<3>();
  Patch child = make_patch(scheme, frame, level, centre, L);
  if (scheme.snapper[level]) {
    Eigen::Vector3d lo, hi, shift = Eigen::Vector3d::Zero();
    bounding_box(parent, out_patch(scheme, level, child), lo, hi);  // = the input patch when out = in
    for (int a = 0; a < scheme.ndim; ++a) {
      double plo = -0.5, phi = static_cast<double>(parent.s[a]) - 0.5;
      if (hi[a] - lo[a] > phi - plo) shift[a] = 0.5 * (plo + phi) - 0.5 * (lo[a] + hi[a]);
      else if (lo[a] < plo) shift[a] = plo - lo[a];
      else if (hi[a] > phi) shift[a] = phi - hi[a];
    }
    child.A.topRightCorner<3, 1>() += parent.A.topLeftCorner<3, 3>() * shift;
  }
  return child;
}

Patch out_patch(const Scheme& scheme, int level, const Patch& in) {
  return place(in.A.topLeftCorner<3, 3>(), scheme.out_patch_size[level], in.centre_world());
}

}  // namespace pw::train
