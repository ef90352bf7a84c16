// Training curves as a PNG: the JSONL log of `patchwork train` (one JSON object per line; lines
// with "it" and "loss": [per level] are iterations, lines with "val_dice": [per label] are
// validations) drawn as two panels: loss per level (log scale) and validation Dice per label.
// A tiny built-in 3x5 pixel font labels the axes and the legend (no font files needed).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "io/png.h"

namespace pw::train {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// Draws `series` into a panel of `img` at (x0, y0) of size w x h; log10 y axis when `log_y`.
void draw_panel(RgbImage& img, int x0, int y0, int w, int h, const std::string& title, const std::vector<Series>& series,
                bool log_y, double y_min_fixed = 0, double y_max_fixed = 0);

// Text in the built-in font (lowercase letters, digits, . - : space), `scale` pixels per font pixel.
void draw_text(RgbImage& img, int x, int y, const std::string& text, int scale, uint8_t r, uint8_t g, uint8_t b);

// Reads the JSONL log and writes the two-panel PNG (atomically). Throws pw::InputError naming
// the log when it cannot be read or has no iteration lines.
void plot_training_log(const std::filesystem::path& jsonl, const std::filesystem::path& png);

}  // namespace pw::train
