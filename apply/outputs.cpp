#include "apply/outputs.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

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

// The label decision per voxel, written straight into the output type T.
template <class T>
static void label_map_into(const Prediction& p, const LabelInfo& info, const std::vector<float>& th,
                           bool explicit_thresholds, T* out) {
  const int K = foreground_channels(p);
  const int off = p.categorical ? 1 : 0;
  const int64_t n = p.grid.numel();
  for (int64_t v = 0; v < n; ++v) {
    out[v] = 0;
    int best = -1;
    float bp = -1;
    for (int k = 0; k < K; ++k) {
      float q = p.prob[(k + off) * n + v];
      // Non-categorical: only labels over their threshold compete.
      if (!p.categorical && q < th[k]) continue;
      if (q > bp) {
        bp = q;
        best = k;
      }
    }
    if (best < 0) continue;
    if (p.categorical) {
      bool accept;
      if (explicit_thresholds) accept = bp >= th[best];
      else if (info.ce_threshold) accept = bp >= *info.ce_threshold;
      // Plain argmax over background and labels; a tie goes to the background, so a voxel no patch
      // covered (every probability 0) stays 0.
      else accept = bp > p.prob[v];
      if (!accept) continue;
    }
    out[v] = static_cast<T>(info.values.empty() ? best + 1 : info.values[best]);
  }
}

std::vector<int32_t> label_map(const Prediction& p, const LabelInfo& info, const std::vector<float>& th,
                               bool explicit_thresholds) {
  std::vector<int32_t> out(p.grid.numel());
  label_map_into(p, info, th, explicit_thresholds, out.data());
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

Volume make_output(const Prediction& p, const OutputType& t, const LabelInfo& info) {
  const int K = foreground_channels(p);
  const int off = p.categorical ? 1 : 0;
  const int64_t n = p.grid.numel();
  if (K < 1) throw std::invalid_argument("make_output: the prediction has no label channels");
  if (!info.values.empty() && static_cast<int>(info.values.size()) != K)
    throw std::invalid_argument("make_output: label values do not match the prediction's channels");
  std::vector<int64_t> dims = {p.grid.s[0], p.grid.s[1]};
  if (p.grid.s[2] > 1 || (K > 1 && t.kind != OutKind::atls)) dims.push_back(p.grid.s[2]);
  if (K > 1 && t.kind != OutKind::atls) dims.push_back(K);
  std::vector<int> values = info.values;
  if (values.empty())
    for (int k = 0; k < K; ++k) values.push_back(k + 1);

  Volume v;
  if (t.kind == OutKind::atls) {
    std::vector<float> th = resolve_thresholds(t, info, K);
    const bool ex = !t.thresholds.empty();
    int lo = std::min(0, *std::min_element(values.begin(), values.end()));
    int hi = std::max(0, *std::max_element(values.begin(), values.end()));
    // The smallest integer type holding every label value, filled in place.
    const int dt = lo >= 0 && hi <= 255 ? nifti_dt::uint8 : lo >= -32768 && hi <= 32767 ? nifti_dt::int16 : nifti_dt::int32;
    v = Volume::zeros(dims, dt, p.grid.A);
    const std::array<int64_t, 3> grid = {p.grid.s[0], p.grid.s[1], p.grid.s[2]};
    auto fill = [&](auto* out) {
      label_map_into(p, info, th, ex, out);
      if (t.largest_component) keep_largest_components(out, grid, t.largest_component);
    };
    if (dt == nifti_dt::uint8) fill(reinterpret_cast<uint8_t*>(v.data.data()));
    else if (dt == nifti_dt::int16) fill(reinterpret_cast<int16_t*>(v.data.data()));
    else fill(reinterpret_cast<int32_t*>(v.data.data()));
    v.intent_code = kIntentLabel;
  } else if (t.kind == OutKind::mask) {
    std::vector<float> th = resolve_thresholds(t, info, K);
    std::vector<uint8_t> b(static_cast<size_t>(K) * n);
    for (int k = 0; k < K; ++k)
      for (int64_t i = 0; i < n; ++i) b[k * n + i] = p.prob[(k + off) * n + i] >= th[k] ? 1 : 0;
    if (t.largest_component)
      for (int k = 0; k < K; ++k)
        keep_largest_components(b.data() + k * n, {p.grid.s[0], p.grid.s[1], p.grid.s[2]}, t.largest_component);
    v = Volume::from_values(dims, b.data(), p.grid.A);
  } else {
    const float* src = p.prob.data() + off * n;
    const int64_t m = static_cast<int64_t>(K) * n;
    if (t.kind == OutKind::float32) {
      v = Volume::from_values(dims, src, p.grid.A);
    } else {
      float mx = 0;
      for (int64_t i = 0; i < m; ++i) mx = std::max(mx, src[i]);
      const double full = t.kind == OutKind::uint8 ? 255.0 : 32000.0;
      const double scale = mx > 0 ? full / mx : 1.0;
      if (t.kind == OutKind::uint8) {
        std::vector<uint8_t> b(m);
        for (int64_t i = 0; i < m; ++i) b[i] = static_cast<uint8_t>(std::lround(std::max(0.f, src[i]) * scale));
        v = Volume::from_values(dims, b.data(), p.grid.A);
      } else {
        std::vector<int16_t> b(m);
        for (int64_t i = 0; i < m; ++i) b[i] = static_cast<int16_t>(std::lround(std::max(0.f, src[i]) * scale));
        v = Volume::from_values(dims, b.data(), p.grid.A);
      }
      v.scl_slope = 1.0 / scale;
      v.scl_inter = 0;
    }
  }
  v.xyzt_units = 2;  // mm
  v.descrip = "patchwork apply";
  if ((!info.names.empty() || !info.colors.empty()) && (t.kind == OutKind::atls || t.kind == OutKind::mask))
    v.extensions.push_back(label_extension(values, info.names, info.colors));
  return v;
}

}  // namespace pw::apply
