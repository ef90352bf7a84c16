// A small PNG writer (RGB, 8 bits per channel) on zlib, plus the RGB image type the preview
// montage and the training curve plot draw into.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pw {

// An RGB image, row-major, 3 bytes per pixel, (0,0) the top-left pixel.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // width*height*3

  RgbImage() = default;
  RgbImage(int w, int h, uint8_t r = 0, uint8_t g = 0, uint8_t b = 0);
  void set(int x, int y, uint8_t r, uint8_t g, uint8_t b);  // ignores pixels outside
  const uint8_t* at(int x, int y) const { return &rgb[(static_cast<size_t>(y) * width + x) * 3]; }
};

// The PNG file bytes: signature, IHDR (8-bit RGB), one zlib IDAT (every row filter 0), IEND.
std::vector<uint8_t> encode_png(const RgbImage& img);

// Writes the PNG atomically (temporary name + rename); throws pw::InputError naming the file.
void write_png(const std::string& path, const RgbImage& img);

// A fixed colour per label index (1-based; 0 = black): the label table's colours, the preview's overlay and
// the training curves' lines.
void label_colour(int index, unsigned char rgb[3]);

}  // namespace pw
