// What the `patchwork train` CLI tests share: a tiny 2D config over img0..2 / lab0..2 (img2 validates)
// and the phantoms that fill those files.
#pragma once
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "train/phantom.h"

namespace pw::test {

inline void write_json(const std::filesystem::path& f, const nlohmann::json& j) { std::ofstream(f) << j.dump(2); }

inline nlohmann::json tiny_config() {
  return {{"depth", 2},
          {"ndim", 2},
          {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 0.9}, {"destvox_rel", 1}}},
          {"categorical_label", {1, 2}},
          {"categorical", true},
          {"normalize_input", "m0s1"},
          {"network", {{"features", {4, 8}}}},
          {"num_its", 3},
          {"num_patches", 4},
          {"batch_size", 4},
          {"validation_every", 2},
          {"dataset",
           {{"pairs",
             {{{"image", "img0.nii.gz"}, {"label", "lab0.nii.gz"}},
              {{"image", "img1.nii.gz"}, {"label", "lab1.nii.gz"}},
              {{"image", "img2.nii.gz"}, {"label", "lab2.nii.gz"}}}},
            {"validation", {"img2"}}}}};
}

// `count` 40x40 2D phantoms with `labels` labels as dir/img<i>.nii.gz and dir/lab<i>.nii.gz (seed seed0 + i).
inline void write_phantoms(const std::filesystem::path& dir, int count, int labels, uint64_t seed0) {
  for (int i = 0; i < count; ++i) {
    PhantomOptions o;
    o.dims = {40, 40, 1};
    o.num_labels = labels;
    o.seed = seed0 + i;
    write_phantom(make_phantom(o), (dir / ("img" + std::to_string(i) + ".nii.gz")).string(),
                  (dir / ("lab" + std::to_string(i) + ".nii.gz")).string());
  }
}

}  // namespace pw::test
