#include "apply/outputs.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <type_traits>

#include "apply/components.h"
#include "io/error.h"

namespace pw::apply {

OutputType parse_output_type(const std::string& s) {
  OutputType t;
  std::string head = s, tail;
  size_t colon = s.find(':');
  if (colon != std::string::npos) {
    head = s.substr(0, colon);
    tail = s.substr(colon + 1);
  }
  if (head == "float32") t.kind = OutKind::float32;
  else if (head == "uint8") t.kind = OutKind::uint8;
  else if (head == "int16") t.kind = OutKind::int16;
  else if (head == "mask") t.kind = OutKind::mask;
  else if (head == "atls") t.kind = OutKind::atls;
  else throw UsageError("--out-type '" + s + "': expected float32, uint8, int16, mask[:t1,..] or atls[:t1,..]");
  if (colon != std::string::npos) {
    if (t.kind != OutKind::mask && t.kind != OutKind::atls)
      throw UsageError("--out-type '" + s + "': only mask and atls take thresholds");
    std::stringstream ss(tail);
    std::string item;
    while (std::getline(ss, item, ',')) {
      try {
        size_t used = 0;
        float v = std::stof(item, &used);
        if (used != item.size() || !(v >= 0 && v <= 1)) throw std::invalid_argument("range");
        t.thresholds.push_back(v);
      } catch (const std::exception&) {
        throw UsageError("--out-type '" + s + "': threshold '" + item + "' is not a number in [0, 1]");
      }
    }
    if (t.thresholds.empty()) throw UsageError("--out-type '" + s + "': no thresholds after ':'");
  }
  return t;
}

int foreground_channels(const Prediction& p) { return p.categorical ? p.channels - 1 : p.channels; }

std::vector<float> resolve_thresholds(const OutputType& t, const LabelInfo& info, int K) {
  if (!t.thresholds.empty()) {
    if (t.thresholds.size() == 1) return std::vector<float>(K, t.thresholds[0]);
    if (static_cast<int>(t.thresholds.size()) != K)
      throw UsageError("--out-type: " + std::to_string(t.thresholds.size()) + " thresholds given for " +
                       std::to_string(K) + " labels");
    return t.thresholds;
  }
  if (static_cast<int>(info.model_thresholds.size()) == K) return info.model_thresholds;
  return std::vector<float>(K, 0.5f);
}

namespace {

// The label decision of one voxel whose channel c is y[c * stride]: 0 or the label value.
struct LabelDecision {
  int K = 0, off = 0;
  bool categorical = false, explicit_thresholds = false;
  std::vector<float> th;
  std::optional<float> ce_threshold;
  std::vector<int> values;  // empty: 1..K

  int operator()(const float* y, int64_t stride) const {
    int best = -1;
    float bp = -1;
    for (int k = 0; k < K; ++k) {
      float q = y[(k + off) * stride];
      // Non-categorical: only labels over their threshold compete.
      if (!categorical && q < th[k]) continue;
      if (q > bp) {
        bp = q;
        best = k;
      }
    }
    if (best < 0) return 0;
    if (categorical) {
      bool accept;
      if (explicit_thresholds) accept = bp >= th[best];
      else if (ce_threshold) accept = bp >= *ce_threshold;
      // Plain argmax over background and labels; a tie goes to the background, so a voxel no patch
      // covered (every probability 0) stays 0.
      else accept = bp > y[0];
      if (!accept) return 0;
    }
    return values.empty() ? best + 1 : values[best];
  }
};

LabelDecision label_decision(bool categorical, int K, const LabelInfo& info, const std::vector<float>& th,
                             bool explicit_thresholds) {
  LabelDecision d;
  d.K = K;
  d.off = categorical ? 1 : 0;
  d.categorical = categorical;
  d.explicit_thresholds = explicit_thresholds;
  d.th = th;
  d.ce_threshold = info.ce_threshold;
  d.values = info.values;
  return d;
}

// Calls f(global voxel index, local index) for every voxel of `box` on a grid of size s (x, y, z).
template <class F>
void for_box(const Box& box, const train::Size3& s, F&& f) {
  for (int64_t z = 0; z < box.size[0]; ++z)
    for (int64_t y = 0; y < box.size[1]; ++y) {
      const int64_t g0 = ((box.lo[0] + z) * s[1] + box.lo[1] + y) * s[0] + box.lo[2];
      const int64_t l0 = (z * box.size[1] + y) * box.size[2];
      for (int64_t x = 0; x < box.size[2]; ++x) f(g0 + x, l0 + x);
    }
}

}  // namespace

std::vector<int32_t> label_map(const Prediction& p, const LabelInfo& info, const std::vector<float>& th,
                               bool explicit_thresholds) {
  const LabelDecision decide = label_decision(p.categorical, foreground_channels(p), info, th, explicit_thresholds);
  const int64_t n = p.grid.numel();
  std::vector<int32_t> out(n);
  for (int64_t v = 0; v < n; ++v) out[v] = decide(p.prob.data() + v, n);
  return out;
}

static std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default: o += c;
    }
  }
  return o;
}

std::array<int, 3> parse_label_color(const std::string& s) {
  std::array<int, 3> rgb{};
  std::stringstream ss(s);
  std::string item;
  int n = 0;
  while (std::getline(ss, item, ':')) {
    size_t used = 0;
    int v = -1;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (n >= 3 || used != item.size() || item.empty() || v < 0 || v > 255) n = 4;
    if (n >= 3) break;
    rgb[n++] = v;
  }
  if (n != 3) throw UsageError("label colour '" + s + "': expected R:G:B with values 0..255");
  return rgb;
}

std::string label_table_xml(const std::vector<int>& values, const std::vector<std::string>& names,
                            const std::vector<std::array<int, 3>>& colors) {
  if (!names.empty() && names.size() != values.size())
    throw UsageError("--label-names: " + std::to_string(names.size()) + " names given for " +
                     std::to_string(values.size()) + " labels");
  if (!colors.empty() && colors.size() != values.size())
    throw UsageError("--label-colors: " + std::to_string(colors.size()) + " colours given for " +
                     std::to_string(values.size()) + " labels");
  std::ostringstream x;
  x.setf(std::ios::fixed);
  x.precision(3);
  x << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<CaretExtension Version=\"1.0\">\n"
    << "  <VolumeInformation Index=\"0\">\n"
    << "    <LabelTable>\n"
    << "      <Label Key=\"0\" Red=\"0.000\" Green=\"0.000\" Blue=\"0.000\" Alpha=\"0.000\">?\?\?</Label>\n";
  for (size_t k = 0; k < values.size(); ++k) {
    unsigned char c[3];
    label_colour(static_cast<int>(k) + 1, c);
    if (!colors.empty())
      for (int a = 0; a < 3; ++a) c[a] = static_cast<unsigned char>(colors[k][a]);
    std::string name = names.empty() ? "label " + std::to_string(values[k]) : names[k];
    x << "      <Label Key=\"" << values[k] << "\" Red=\"" << c[0] / 255.0 << "\" Green=\"" << c[1] / 255.0
      << "\" Blue=\"" << c[2] / 255.0 << "\" Alpha=\"1.000\">" << xml_escape(name) << "</Label>\n";
  }
  x << "    </LabelTable>\n"
    << "  </VolumeInformation>\n"
    << "</CaretExtension>\n";
  return x.str();
}

NiftiExtension label_extension(const std::vector<int>& values, const std::vector<std::string>& names,
                               const std::vector<std::array<int, 3>>& colors) {
  std::string xml = label_table_xml(values, names, colors);
  NiftiExtension e;
  e.code = kEcodeCaret;
  e.data.assign(xml.begin(), xml.end());
  // Pad with NULs so that 8 + payload is a multiple of 16 (the extension's size on disk).
  while ((8 + e.data.size()) % 16 != 0) e.data.push_back(0);
  return e;
}

OutputBuilder::OutputBuilder(const OutputType& t, const LabelInfo& info) : type_(t), info_(info) {}

void OutputBuilder::begin(const train::Patch& grid, int channels, bool categorical) {
  const OutputType& t = type_;
  const LabelInfo& info = info_;
  grid_ = grid;
  categorical_ = categorical;
  K_ = categorical ? channels - 1 : channels;
  n_ = grid.numel();
  if (K_ < 1) throw std::invalid_argument("make_output: the prediction has no label channels");
  if (!info.values.empty() && static_cast<int>(info.values.size()) != K_)
    throw std::invalid_argument("make_output: label values do not match the prediction's channels");
  std::vector<int64_t> dims = {grid.s[0], grid.s[1]};
  if (grid.s[2] > 1 || (K_ > 1 && t.kind != OutKind::atls)) dims.push_back(grid.s[2]);
  if (K_ > 1 && t.kind != OutKind::atls) dims.push_back(K_);
  values_ = info.values;
  if (values_.empty())
    for (int k = 0; k < K_; ++k) values_.push_back(k + 1);
  if (t.kind == OutKind::atls || t.kind == OutKind::mask) th_ = resolve_thresholds(t, info, K_);
  if (t.kind == OutKind::atls) {
    const int lo = std::min(0, *std::min_element(values_.begin(), values_.end()));
    const int hi = std::max(0, *std::max_element(values_.begin(), values_.end()));
    // The smallest integer type holding every label value, filled in place.
    const int dt = lo >= 0 && hi <= 255 ? nifti_dt::uint8 : lo >= -32768 && hi <= 32767 ? nifti_dt::int16 : nifti_dt::int32;
    vol_ = Volume::zeros(dims, dt, grid.A);
    vol_.intent_code = kIntentLabel;
  } else if (t.kind == OutKind::mask) {
    vol_ = Volume::zeros(dims, nifti_dt::uint8, grid.A);
  } else {
    // float32 is filled in place; uint8/int16 are scaled by the maximum over the whole volume, so
    // they are gathered as float32 and converted in take().
    vol_ = Volume::zeros(dims, nifti_dt::float32, grid.A);
  }
}

void OutputBuilder::put(const Box& box, const float* y) {
  const int off = categorical_ ? 1 : 0;
  const int64_t bn = box.numel();
  if (type_.kind == OutKind::atls) {
    const LabelDecision decide = label_decision(categorical_, K_, info_, th_, !type_.thresholds.empty());
    auto fill = [&](auto* out) {
      using T = std::remove_pointer_t<decltype(out)>;
      for_box(box, grid_.s, [&](int64_t g, int64_t l) { out[g] = static_cast<T>(decide(y + l, bn)); });
    };
    if (vol_.datatype == nifti_dt::uint8) fill(reinterpret_cast<uint8_t*>(vol_.data.data()));
    else if (vol_.datatype == nifti_dt::int16) fill(reinterpret_cast<int16_t*>(vol_.data.data()));
    else fill(reinterpret_cast<int32_t*>(vol_.data.data()));
  } else if (type_.kind == OutKind::mask) {
    uint8_t* b = vol_.data.data();
    for (int k = 0; k < K_; ++k)
      for_box(box, grid_.s, [&](int64_t g, int64_t l) { b[k * n_ + g] = y[(k + off) * bn + l] >= th_[k] ? 1 : 0; });
  } else {
    float* f = reinterpret_cast<float*>(vol_.data.data());
    for (int k = 0; k < K_; ++k)
      for_box(box, grid_.s, [&](int64_t g, int64_t l) { f[k * n_ + g] = y[(k + off) * bn + l]; });
  }
}

// --largest-component on the finished label map (atls) or masks: needs the whole volume, so it runs here.
void OutputBuilder::keep_largest(Volume& v) const {
  const std::array<int64_t, 3> dims = {grid_.s[0], grid_.s[1], grid_.s[2]};
  const int c = type_.largest_component;
  if (type_.kind == OutKind::mask) {
    for (int k = 0; k < K_; ++k) keep_largest_components(v.data.data() + k * n_, dims, c);
  } else if (type_.kind == OutKind::atls) {
    if (v.datatype == nifti_dt::uint8) keep_largest_components(reinterpret_cast<uint8_t*>(v.data.data()), dims, c);
    else if (v.datatype == nifti_dt::int16) keep_largest_components(reinterpret_cast<int16_t*>(v.data.data()), dims, c);
    else keep_largest_components(reinterpret_cast<int32_t*>(v.data.data()), dims, c);
  }
}

Volume OutputBuilder::take() {
  Volume v = std::move(vol_);
  if (type_.largest_component) keep_largest(v);
  if (type_.kind == OutKind::uint8 || type_.kind == OutKind::int16) {
    const float* src = reinterpret_cast<const float*>(v.data.data());
    const int64_t m = static_cast<int64_t>(K_) * n_;
    float mx = 0;
    for (int64_t i = 0; i < m; ++i) mx = std::max(mx, src[i]);
    const double full = type_.kind == OutKind::uint8 ? 255.0 : 32000.0;
    const double scale = mx > 0 ? full / mx : 1.0;
    std::vector<int64_t> dims = v.shape();
    Volume out;
    if (type_.kind == OutKind::uint8) {
      std::vector<uint8_t> b(m);
      for (int64_t i = 0; i < m; ++i) b[i] = static_cast<uint8_t>(std::lround(std::max(0.f, src[i]) * scale));
      out = Volume::from_values(dims, b.data(), grid_.A);
    } else {
      std::vector<int16_t> b(m);
      for (int64_t i = 0; i < m; ++i) b[i] = static_cast<int16_t>(std::lround(std::max(0.f, src[i]) * scale));
      out = Volume::from_values(dims, b.data(), grid_.A);
    }
    out.scl_slope = 1.0 / scale;
    out.scl_inter = 0;
    v = std::move(out);
  }
  v.xyzt_units = 2;  // mm
  v.descrip = "patchwork apply";
  if ((!info_.names.empty() || !info_.colors.empty()) && (type_.kind == OutKind::atls || type_.kind == OutKind::mask))
    v.extensions.push_back(label_extension(values_, info_.names, info_.colors));
  return v;
}

void one_hot_classes(const int32_t* classes, int64_t n, int channels, std::vector<float>& out) {
  out.assign(static_cast<size_t>(channels) * n, 0.f);
  for (int64_t v = 0; v < n; ++v) out[static_cast<size_t>(classes[v]) * n + v] = 1.f;
}

Volume make_output(const Prediction& p, const OutputType& t, const LabelInfo& info) {
  OutputBuilder b(t, info);
  b.begin(p.grid, p.channels, p.categorical);
  Box whole;
  whole.size = {p.grid.s[2], p.grid.s[1], p.grid.s[0]};
  if (p.classes.empty()) {
    b.put(whole, p.prob.data());
    return b.take();
  }
  // candidate_sampling, classes decided (apply/responses.h): one-hot class probabilities
  if (t.kind != OutKind::atls && t.kind != OutKind::mask)
    throw UsageError("--out-type: a candidate_sampling model gives class labels only (atls or mask), not probabilities");
  std::vector<float> onehot;
  one_hot_classes(p.classes.data(), p.grid.numel(), p.channels, onehot);
  b.put(whole, onehot.data());
  return b.take();
}

}  // namespace pw::apply
