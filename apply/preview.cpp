#include "apply/preview.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "apply/outputs.h"

namespace pw::apply {

namespace {

struct Panel {
  int w = 0, h = 0;
  std::vector<uint8_t> rgb;
};

// One slice through the volume: u along axis `au`, v along axis `av`, the third axis fixed at `at`.
Panel slice_panel(const float* img, const int32_t* lab, std::array<int64_t, 3> d, std::array<double, 3> sp, int au,
                  int av, int64_t at, float lo, float hi, double pixel_mm) {
  Panel p;
  p.w = std::max(1, static_cast<int>(std::lround(d[au] * sp[au] / pixel_mm)));
  p.h = std::max(1, static_cast<int>(std::lround(d[av] * sp[av] / pixel_mm)));
  p.rgb.assign(static_cast<size_t>(p.w) * p.h * 3, 0);
  const int aw = 3 - au - av;
  for (int y = 0; y < p.h; ++y)
    for (int x = 0; x < p.w; ++x) {
      int64_t c[3];
      c[au] = std::min<int64_t>(d[au] - 1, static_cast<int64_t>((x + 0.5) * pixel_mm / sp[au]));
      // v grows upwards (superior / anterior at the top)
      c[av] = std::min<int64_t>(d[av] - 1, static_cast<int64_t>((p.h - 1 - y + 0.5) * pixel_mm / sp[av]));
      c[aw] = at;
      const int64_t i = c[0] + d[0] * (c[1] + d[1] * c[2]);
      float g = hi > lo ? (img[i] - lo) / (hi - lo) : 0.f;
      g = std::clamp(g, 0.f, 1.f) * 255.f;
      float r = g, gg = g, b = g;
      if (lab && lab[i] > 0) {
        unsigned char col[3];
        label_colour(lab[i], col);
        r = 0.45f * g + 0.55f * col[0];
        gg = 0.45f * g + 0.55f * col[1];
        b = 0.45f * g + 0.55f * col[2];
      }
      uint8_t* px = &p.rgb[(static_cast<size_t>(y) * p.w + x) * 3];
      px[0] = static_cast<uint8_t>(r);
      px[1] = static_cast<uint8_t>(gg);
      px[2] = static_cast<uint8_t>(b);
    }
  return p;
}

}  // namespace

RgbImage preview_montage(const float* image, const int32_t* lab, std::array<int64_t, 3> d,
                         std::array<double, 3> sp) {
  const int64_t n = d[0] * d[1] * d[2];
  // Grey window: 1st and 99th percentile of a subsample.
  std::vector<float> sample;
  const int64_t step = std::max<int64_t>(1, n / 200000);
  for (int64_t i = 0; i < n; i += step)
    if (std::isfinite(image[i])) sample.push_back(image[i]);
  float lo = 0, hi = 1;
  if (!sample.empty()) {
    size_t a = sample.size() / 100, b = sample.size() - 1 - sample.size() / 100;
    std::nth_element(sample.begin(), sample.begin() + a, sample.end());
    lo = sample[a];
    std::nth_element(sample.begin(), sample.begin() + b, sample.end());
    hi = sample[b];
  }
  // Centroid of the largest structure (the colour index with the most voxels).
  std::array<int64_t, 3> c = {d[0] / 2, d[1] / 2, d[2] / 2};
  if (lab) {
    std::map<int32_t, int64_t> count;
    for (int64_t i = 0; i < n; ++i)
      if (lab[i] > 0) ++count[lab[i]];
    if (!count.empty()) {
      int32_t best = std::max_element(count.begin(), count.end(), [](auto& x, auto& y) { return x.second < y.second; })
                         ->first;
      double s[3] = {0, 0, 0};
      for (int64_t z = 0; z < d[2]; ++z)
        for (int64_t y = 0; y < d[1]; ++y)
          for (int64_t x = 0; x < d[0]; ++x)
            if (lab[x + d[0] * (y + d[1] * z)] == best) {
              s[0] += x;
              s[1] += y;
              s[2] += z;
            }
      for (int a = 0; a < 3; ++a) c[a] = static_cast<int64_t>(std::lround(s[a] / count[best]));
    }
  }
  std::vector<Panel> panels;
  double pixel = std::min({sp[0], sp[1], d[2] > 1 ? sp[2] : sp[0]});
  double total_mm = d[0] * sp[0] + (d[2] > 1 ? d[0] * sp[0] + d[1] * sp[1] : 0);
  pixel = std::max(pixel, total_mm / 900.0);  // at most ~900 pixels wide
  pixel = std::min(pixel, total_mm / 600.0);  // at least ~600 pixels wide
  panels.push_back(slice_panel(image, lab, d, sp, 0, 1, c[2], lo, hi, pixel));      // axial: x right, y up
  if (d[2] > 1) {
    panels.push_back(slice_panel(image, lab, d, sp, 0, 2, c[1], lo, hi, pixel));    // coronal: x, z up
    panels.push_back(slice_panel(image, lab, d, sp, 1, 2, c[0], lo, hi, pixel));    // sagittal: y, z up
  }
  const int gap = 4;
  int W = 0, H = 0;
  for (auto& p : panels) {
    W += p.w + gap;
    H = std::max(H, p.h);
  }
  RgbImage out(W - gap, H, 0, 0, 0);
  int x0 = 0;
  for (auto& p : panels) {
    for (int y = 0; y < p.h; ++y)
      for (int x = 0; x < p.w; ++x) {
        const uint8_t* px = &p.rgb[(static_cast<size_t>(y) * p.w + x) * 3];
        out.set(x0 + x, y, px[0], px[1], px[2]);
      }
    x0 += p.w + gap;
  }
  return out;
}

}  // namespace pw::apply
