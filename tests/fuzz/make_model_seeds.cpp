// Writes the seed model files of the model-file fuzz target (tests/fuzz/model-seeds/) with the
// project's own code: tiny configs -> ModelSpec::from_config -> Model -> Model::save.
// Usage: make_model_seeds OUTDIR   (scripts/fuzz.sh runs it into the working corpus at fuzz time).
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/tensor.h"
#include "train/config.h"
#include "train/model.h"

using nlohmann::json;
using namespace pw::train;

static void write(const std::filesystem::path& file, const json& config, bool with_extra) {
  TrainConfig c = TrainConfig::from_json(config);
  Model m(ModelSpec::from_config(c, 1), 1);
  m.spec().thresholds.assign(c.scheme.num_labels, 0.5);
  std::map<std::string, pw::Tensor> extra;
  std::map<std::string, std::string> meta;
  if (with_extra) {
    pw::Tensor t = pw::Tensor::zeros({2}, pw::DType::f32);
    extra["opt.step"] = t;
    meta["checkpoint"] = "{\"iteration\": 3}";
  }
  m.save(file, extra, meta);
  std::printf("%s: %ju bytes\n", file.c_str(), static_cast<uintmax_t>(std::filesystem::file_size(file)));
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_model_seeds OUTDIR\n");
    return 2;
  }
  std::filesystem::path out = argv[1];
  std::filesystem::create_directories(out);
  // Depth 1, 2D, one U-Net level of 2 features.
  write(out / "d1_2d_f2.safetensors",
        {{"depth", 1}, {"ndim", 2},
         {"scheme", {{"patch_size", {8, 8}}, {"fov_rel", 1}, {"destvox_rel", 1}}},
         {"categorical_label", {1}}, {"categorical", true},
         {"network", {{"features", {2}}, {"convs_per_block", 1}}}},
        false);
  // Depth 2, 2D, two U-Net levels, intermediate outputs, "mult" inputs, a final block, checkpoint extras.
  write(out / "d2_2d_mult_final.safetensors",
        {{"depth", 2}, {"ndim", 2},
         {"scheme", {{"patch_size", {8, 8}}, {"fov_mm", 40}, {"destvox_mm", 2}}},
         {"categorical_label", {1, 2}}, {"categorical", false}, {"intermediate_out", 1},
         {"forward_type", "mult"}, {"final_block", {{"features", 2}, {"convs", 1}}},
         {"augment", {{"dphi", 0.1}, {"flip", {1, 0}}}},
         {"network", {{"features", {2, 2}}, {"convs_per_block", 1}, {"up", "nearest"}}}},
        true);
  // Depth 2, 3D, identical blocks, batch norm (running-statistics buffers), strided downsampling.
  write(out / "d2_3d_identical_bn.safetensors",
        {{"depth", 2}, {"ndim", 3},
         {"scheme", {{"patch_size", {4, 4, 4}}, {"fov_rel", 1}, {"destvox_rel", 1}}},
         {"categorical_label", {1}}, {"categorical", false}, {"identical_blocks", true},
         {"network", {{"features", {1, 1}}, {"convs_per_block", 1}, {"norm", "batch"}, {"down", "strided_conv"}}}},
        false);
  return 0;
}
