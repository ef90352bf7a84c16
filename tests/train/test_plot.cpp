// The training-curve plot from a JSONL log.
#include <doctest/doctest.h>

#include <fstream>

#include "train/plot.h"
#include "common/test_util.h"
#include "io/error.h"

using namespace pw;

TEST_CASE("plot: loss and validation Dice curves from a JSONL log") {
  auto dir = test::temp_dir("plot");
  {
    std::ofstream f(dir / "log.jsonl");
    for (int it = 1; it <= 20; ++it)
      f << "{\"it\":" << it << ",\"loss\":[" << 1.0 / it << "," << 0.5 / it << "],\"time_s\":" << it << "}\n";
    f << "{\"it\":10,\"val_dice\":[0.5,0.7]}\n{\"final\":true,\"it\":20,\"val_dice\":[0.8,0.9],\"loss\":[9,9]}\n";
  }
  train::plot_training_log(dir / "log.jsonl", dir / "curve.png");
  std::ifstream png(dir / "curve.png", std::ios::binary);
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(png)), {});
  REQUIRE(b.size() > 33);
  CHECK(b[1] == 'P');
  CHECK(((b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19]) == 900);  // IHDR width
  // Panels drawn directly: the loss series' colours appear.
  RgbImage img(200, 120, 255, 255, 255);
  train::draw_panel(img, 0, 0, 200, 120, "t", {{"a", {0, 1, 2}, {1, 0.1, 0.01}}}, true);
  int red = 0;
  for (int i = 0; i < 200 * 120; ++i) red += img.rgb[i * 3] == 230 && img.rgb[i * 3 + 1] == 25;
  CHECK(red > 50);
  {
    std::ofstream f(dir / "empty.jsonl");
    f << "{\"x\":1}\n";
  }
  CHECK_THROWS_AS(train::plot_training_log(dir / "empty.jsonl", dir / "e.png"), InputError);
  CHECK_THROWS_AS(train::plot_training_log(dir / "missing.jsonl", dir / "e.png"), InputError);
}
