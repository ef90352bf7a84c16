// End to end: a patchwork trained inside the test on synthetic phantoms, then `patchwork apply`
// (the CLI) on an unseen phantom, scored by `patchwork eval`. 2D keeps it short.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "apply/demo.h"
#include "apply/model_network.h"
#include "train/phantom.h"
#include "common/test_util.h"
#include "io/nifti.h"
#include "kernels/parallel.h"
#include "train/trainer.h"

using namespace pw;
using nlohmann::json;

namespace {

// The tests' 2D phantoms: 64x64, two labels (organ, nodule).
PhantomOptions phantom_2d() {
  PhantomOptions po;
  po.dims = {64, 64, 1};
  po.spacing_mm = {1.2, 1.2, 3.0};
  po.num_labels = 2;
  return po;
}

// Trains a depth-2 2D patchwork (16^2 patches) on 6 phantoms (seeds phantom_seed .. +5); with `validate`
// the 7th phantom validates through the application path. Returns the model file in `dir`.
std::filesystem::path train_2d_model(const std::filesystem::path& dir, bool categorical, int seed,
                                     int phantom_seed, bool validate) {
  json j = {{"depth", 2},
            {"ndim", 2},
            {"scheme", {{"patch_size", {16, 16}}, {"fov_rel", 0.7}, {"destvox_rel", 1}}},
            {"categorical_label", {1, 2}},
            {"network", {{"features", {8, 16}}}},
            {"intermediate_out", 2},
            {"num_its", 60},
            {"num_patches", 12},
            {"epochs", 2},
            {"batch_size", 12},
            {"balance", {{"ratio", 0.5}}},
            {"optimizer", {{"type", "adam"}, {"lr", 5e-3}}},
            {"time_limit_s", 40},
            {"threads", 2},
            {"seed", seed}};
  if (categorical) j["categorical"] = true;
  train::TrainConfig cfg = train::TrainConfig::from_json(j);
  PhantomOptions po = phantom_2d();
  std::vector<train::Subject> tr, va;
  for (int i = 0; i < (validate ? 7 : 6); ++i) {
    po.seed = phantom_seed + i;
    (i < 6 ? tr : va).push_back(apply::phantom_subject("p" + std::to_string(i), make_phantom(po), cfg.scheme));
  }
  train::TrainOptions to;
  to.out = dir / "model.safetensors";
  to.quiet = true;
  train::Trainer trainer(cfg, to);
  if (validate)
    trainer.set_predictor(apply::validation_predictor());
  train::TrainResult res = trainer.run(tr, va);
  MESSAGE("trained " << res.iterations << " iterations in " << res.seconds << " s");
  return to.out;
}

}  // namespace

TEST_CASE("end to end: train on 2D phantoms, apply with the CLI, Dice >= 0.9") {
  const auto dir = test::temp_dir("e2e");
  const std::filesystem::path model = train_2d_model(dir, false, 3, 100, true);
  REQUIRE(std::filesystem::exists(model));

  PhantomOptions po = phantom_2d();
  po.seed = 999;
  Phantom test = make_phantom(po);
  write_phantom(test, (dir / "img.nii.gz").string(), (dir / "truth.nii.gz").string());
  const std::string bin = test::patchwork_bin();
  std::string out;
  int rc = test::run_command(bin + " apply --quiet --model " + model.string() + " --in " +
                                 (dir / "img.nii.gz").string() + " --out " + (dir / "pred.nii.gz").string() +
                                 " --window cos --label-names organ,nodule --preview " + (dir / "p.png").string(),
                             &out);
  INFO(out);
  REQUIRE(rc == 0);
  Volume pred = read_nifti(dir / "pred.nii.gz");
  CHECK(pred.shape() == std::vector<int64_t>{64, 64});
  CHECK(pred.affine().isApprox(read_nifti(dir / "img.nii.gz").affine()));
  CHECK(std::filesystem::file_size(dir / "p.png") > 100);
  rc = test::run_command(bin + " eval --json --pred " + (dir / "pred.nii.gz").string() + " --ref " +
                             (dir / "truth.nii.gz").string() + " --labels 1,2",
                         &out);
  REQUIRE(rc == 0);
  json e = json::parse(out);
  CHECK(e["resampled"] == false);
  const double organ = e["labels"][0]["dice"], nodule = e["labels"][1]["dice"];
  MESSAGE("Dice organ " << organ << ", nodule " << nodule);
  CHECK(organ >= 0.9);
  CHECK(nodule >= 0.8);

  // Lazy random application: fewer patches, output still on the image grid.
  rc = test::run_command(bin + " apply --model " + model.string() + " --in " + (dir / "img.nii.gz").string() +
                             " --out " + (dir / "lazy.nii.gz").string() +
                             " --generate-type random --num-patches 8 --branch-factor 2 --lazy-fraction 0.5"
                             " --num-chunks 4 --out-type float32",
                         &out);
  REQUIRE(rc == 0);
  CHECK(out.find("patches per level 32,32") != std::string::npos);
  CHECK(out.find("level 1") != std::string::npos);  // progress lines on stderr
  Volume lz = read_nifti(dir / "lazy.nii.gz");
  CHECK(lz.shape() == std::vector<int64_t>{64, 64, 1, 2});
  CHECK(lz.datatype == nifti_dt::float32);
}

TEST_CASE("cli: apply and eval refuse bad usage and bad input with one clear line") {
  const std::string bin = test::patchwork_bin();
  const auto dir = test::temp_dir("cli");
  std::string out;
  CHECK(test::run_command(bin + " apply --model nothere.safetensors --in x.nii --out y.nii", &out) == 1);
  CHECK(out.find("nothere.safetensors") != std::string::npos);
  CHECK(test::run_command(bin + " apply --model m --in x.nii --out y.nii --window square", &out) == 2);
  CHECK(out.find("--window") != std::string::npos);
  CHECK(test::run_command(bin + " apply --model m --in x.nii --out y.nii --out-type mask:2", &out) == 2);
  CHECK(test::run_command(bin + " apply --model m --out y.nii", &out) == 2);
  CHECK(test::run_command(bin + " eval --pred a.nii --ref b.nii", &out) == 1);
  CHECK(test::run_command(bin + " eval --pred a.nii", &out) == 2);
  // eval on two grids: the prediction is resampled (nearest) onto the reference.
  PhantomOptions po;
  po.dims = {20, 18, 16};
  Phantom p = make_phantom(po);
  write_phantom(p, (dir / "i.nii.gz").string(), (dir / "l.nii.gz").string());
  std::vector<uint8_t> lab(p.labels.begin(), p.labels.end());
  // The same labels on a grid shifted by whole voxels (padded by 2 along x): identical in world space.
  std::vector<uint8_t> big(24 * 18 * 16, 0);
  for (int z = 0; z < 16; ++z)
    for (int y = 0; y < 18; ++y)
      for (int x = 0; x < 20; ++x) big[(x + 2) + 24 * (y + 18 * z)] = lab[x + 20 * (y + 18 * z)];
  Eigen::Matrix4d A = Eigen::Matrix4d::Identity();
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) A(r, c) = p.affine[r * 4 + c];
  A(0, 3) -= 2 * A(0, 0);
  write_nifti(Volume::from_values({24, 18, 16}, big.data(), A), dir / "big.nii.gz");
  REQUIRE(test::run_command(bin + " eval --json --pred " + (dir / "big.nii.gz").string() + " --ref " +
                                (dir / "l.nii.gz").string(),
                            &out) == 0);
  json e = json::parse(out);
  CHECK(e["resampled"] == true);
  for (auto& l : e["labels"]) CHECK(l["dice"].get<double>() == 1.0);
}

TEST_CASE("end to end: a categorical (softmax) model, atls in the original label values, --ce-threshold") {
  const auto dir = test::temp_dir("e2e_cat");
  const std::filesystem::path model = train_2d_model(dir, true, 4, 200, false);
  PhantomOptions po = phantom_2d();
  po.seed = 998;
  Phantom test = make_phantom(po);
  write_phantom(test, (dir / "img.nii.gz").string(), (dir / "truth.nii.gz").string());
  const std::string bin = test::patchwork_bin();
  std::string out;
  int64_t plain_voxels = 0;
  for (std::string extra : {"", " --ce-threshold 0.9"}) {
    REQUIRE(test::run_command(bin + " apply --quiet --model " + model.string() + " --in " + (dir / "img.nii.gz").string() +
                                  " --out " + (dir / "pred.nii.gz").string() + extra,
                              &out) == 0);
    REQUIRE(test::run_command(bin + " eval --json --pred " + (dir / "pred.nii.gz").string() + " --ref " +
                                  (dir / "truth.nii.gz").string() + " --labels 1,2",
                              &out) == 0);
    json e = json::parse(out);
    const double organ = e["labels"][0]["dice"], nodule = e["labels"][1]["dice"];
    MESSAGE("categorical" << extra << ": Dice organ " << organ << ", nodule " << nodule);
    const int64_t voxels = e["labels"][0]["voxels_pred"].get<int64_t>() + e["labels"][1]["voxels_pred"].get<int64_t>();
    if (extra.empty()) {
      CHECK(organ >= 0.9);
      CHECK(nodule >= 0.8);
      plain_voxels = voxels;
    } else {  // a very high threshold labels fewer voxels than the plain argmax
      CHECK(voxels < plain_voxels);
      CHECK(voxels > 0);
    }
  }
}
