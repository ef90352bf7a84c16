#include "train/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "io/png.h"
#include "io/error.h"

namespace pw::train {

namespace {

// 3x5 glyphs, rows top to bottom, '1' = ink.
const std::map<char, const char*>& font() {
  static const std::map<char, const char*> f = {
      {'a', "010101111101101"}, {'b', "110101110101110"}, {'c', "011100100100011"}, {'d', "110101101101110"},
      {'e', "111100110100111"}, {'f', "111100110100100"}, {'g', "011100101101011"}, {'h', "101101111101101"},
      {'i', "111010010010111"}, {'j', "001001001101010"}, {'k', "101101110101101"}, {'l', "100100100100111"},
      {'m', "101111111101101"}, {'n', "110101101101101"}, {'o', "010101101101010"}, {'p', "110101110100100"},
      {'q', "010101101110011"}, {'r', "110101110101101"}, {'s', "011100010001110"}, {'t', "111010010010010"},
      {'u', "101101101101111"}, {'v', "101101101101010"}, {'w', "101101111111101"}, {'x', "101101010101101"},
      {'y', "101101010010010"}, {'z', "111001010100111"}, {'0', "111101101101111"}, {'1', "010110010010111"},
      {'2', "110001010100111"}, {'3', "110001010001110"}, {'4', "101101111001001"}, {'5', "111100110001110"},
      {'6', "011100111101111"}, {'7', "111001010010010"}, {'8', "111101111101111"}, {'9', "111101111001110"},
      {'.', "000000000000010"}, {'-', "000000111000000"}, {':', "000010000010000"}, {' ', "000000000000000"},
      {'+', "000010111010000"}, {'(', "010100100100010"}, {')', "010001001001010"}, {'_', "000000000000111"}};
  return f;
}

void line(RgbImage& img, int x0, int y0, int x1, int y1, const unsigned char c[3]) {
  int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1, err = dx + dy;
  for (;;) {
    img.set(x0, y0, c[0], c[1], c[2]);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

std::string fmt(double v) {
  char b[32];
  if (v != 0 && (std::abs(v) < 0.01 || std::abs(v) >= 10000)) std::snprintf(b, sizeof b, "%.1e", v);
  else std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

}  // namespace

void draw_text(RgbImage& img, int x, int y, const std::string& text, int scale, uint8_t r, uint8_t g, uint8_t b) {
  for (char ch : text) {
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    auto it = font().find(c);
    const char* glyph = it == font().end() ? "111101101101111" : it->second;
    for (int gy = 0; gy < 5; ++gy)
      for (int gx = 0; gx < 3; ++gx)
        if (glyph[gy * 3 + gx] == '1')
          for (int sy = 0; sy < scale; ++sy)
            for (int sx = 0; sx < scale; ++sx) img.set(x + gx * scale + sx, y + gy * scale + sy, r, g, b);
    x += 4 * scale;
  }
}

void draw_panel(RgbImage& img, int x0, int y0, int w, int h, const std::string& title, const std::vector<Series>& series,
                bool log_y, double y_min_fixed, double y_max_fixed) {
  const int left = 50, right = 10, top = 24, bottom = 24;
  const int px0 = x0 + left, px1 = x0 + w - right, py0 = y0 + top, py1 = y0 + h - bottom;
  draw_text(img, x0 + left, y0 + 6, title, 2, 0, 0, 0);
  double xmin = 1e300, xmax = -1e300, ymin = 1e300, ymax = -1e300;
  auto ty = [&](double v) { return log_y ? std::log10(std::max(v, 1e-12)) : v; };
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (log_y && s.y[i] <= 0)) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, ty(s.y[i]));
      ymax = std::max(ymax, ty(s.y[i]));
    }
  if (y_max_fixed > y_min_fixed) {
    ymin = y_min_fixed;
    ymax = y_max_fixed;
  }
  const unsigned char grey[3] = {200, 200, 200}, black[3] = {0, 0, 0};
  // Frame and grid.
  for (int k = 0; k <= 4; ++k) {
    int y = py0 + (py1 - py0) * k / 4;
    line(img, px0, y, px1, y, grey);
  }
  line(img, px0, py0, px0, py1, black);
  line(img, px0, py1, px1, py1, black);
  if (xmin > xmax) {
    draw_text(img, px0 + 10, (py0 + py1) / 2, "no data", 2, 120, 120, 120);
    return;
  }
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax - ymin < 1e-12) {
    ymax += 0.5;
    ymin -= 0.5;
  }
  auto X = [&](double v) { return px0 + static_cast<int>(std::lround((v - xmin) / (xmax - xmin) * (px1 - px0))); };
  auto Y = [&](double v) { return py1 - static_cast<int>(std::lround((v - ymin) / (ymax - ymin) * (py1 - py0))); };
  auto ylab = [&](double v) { return fmt(log_y ? std::pow(10.0, v) : v); };
  draw_text(img, x0 + 2, py0 - 2, ylab(ymax), 1, 0, 0, 0);
  draw_text(img, x0 + 2, py1 - 4, ylab(ymin), 1, 0, 0, 0);
  draw_text(img, px0, py1 + 6, fmt(xmin), 1, 0, 0, 0);
  std::string xm = fmt(xmax) + " it";
  draw_text(img, px1 - 4 * static_cast<int>(xm.size()), py1 + 6, xm, 1, 0, 0, 0);
  for (size_t s = 0; s < series.size(); ++s) {
    unsigned char c[3];
    label_colour(static_cast<int>(s) + 1, c);
    int lx = -1, ly = -1;
    for (size_t i = 0; i < series[s].x.size(); ++i) {
      double v = series[s].y[i];
      if (!std::isfinite(v) || (log_y && v <= 0)) continue;
      int x = X(series[s].x[i]), y = Y(ty(v));
      if (lx >= 0) line(img, lx, ly, x, y, c);
      else img.set(x, y, c[0], c[1], c[2]);
      if (series[s].x.size() < 30)
        for (int d = -1; d <= 1; ++d) {
          img.set(x + d, y, c[0], c[1], c[2]);
          img.set(x, y + d, c[0], c[1], c[2]);
        }
      lx = x;
      ly = y;
    }
    // Legend entry.
    int ly0 = py0 + 4 + 10 * static_cast<int>(s);
    for (int k = 0; k < 12; ++k) img.set(px1 - 90 + k, ly0 + 2, c[0], c[1], c[2]);
    draw_text(img, px1 - 74, ly0, series[s].name, 1, 0, 0, 0);
  }
}

void plot_training_log(const std::filesystem::path& jsonl, const std::filesystem::path& png) {
  std::ifstream f(jsonl);
  if (!f) throw InputError(jsonl.string() + ": cannot open the training log");
  std::vector<Series> loss, dice;
  std::string text;
  int lineno = 0;
  while (std::getline(f, text)) {
    ++lineno;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const std::exception&) {
      throw InputError(jsonl.string() + ": line " + std::to_string(lineno) + " is not JSON");
    }
    if (!j.is_object() || !j.contains("it") || !j["it"].is_number()) continue;
    const double it = j["it"].get<double>();
    // Levels are numbered from 0, labels from 1.
    auto add = [&](std::vector<Series>& dst, const nlohmann::json& arr, const char* prefix, int base) {
      if (!arr.is_array()) return;
      for (size_t k = 0; k < arr.size(); ++k) {
        if (dst.size() <= k) dst.push_back({prefix + std::to_string(k + base), {}, {}});
        if (!arr[k].is_number()) continue;
        dst[k].x.push_back(it);
        dst[k].y.push_back(arr[k].get<double>());
      }
    };
    if (j.contains("loss") && !j.contains("final")) add(loss, j["loss"], "level ", 0);
    if (j.contains("val_dice")) add(dice, j["val_dice"], "label ", 1);
  }
  if (loss.empty()) throw InputError(jsonl.string() + ": no iteration lines with \"it\" and \"loss\"");
  RgbImage img(900, 340, 255, 255, 255);
  draw_panel(img, 0, 0, 520, 340, "training loss", loss, true);
  draw_panel(img, 520, 0, 380, 340, "validation dice", dice, false, 0.0, 1.0);
  write_png(png.string(), img);
}

}  // namespace pw::train
