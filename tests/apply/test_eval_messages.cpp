// Messages of `eval` and `apply` (issue 17, item 9): eval refuses a prediction or reference with
// non-integer values (a probability map passed by mistake) naming the file and one value; a 3-D model
// given a one-slice volume says so in those words (not "2D"); apply names an image whose sform holds NaN.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "apply/demo.h"
#include "apply/infer.h"
#include "apply/model_network.h"
#include "common/test_util.h"
#include "io/nifti.h"
#include "train/phantom.h"
#include "train/trainer.h"

using namespace pw;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

int lines(const std::string& s) {
  int n = 0;
  for (char ch : s) n += ch == '\n';
  return n;
}

// A one-iteration 3-D model (depth 1, 8^3 patches): enough for apply to load it.
fs::path tiny_3d_model(const fs::path& dir) {
  json j = {{"depth", 1},
            {"ndim", 3},
            {"scheme", {{"patch_size", {8, 8, 8}}, {"fov_rel", 1.0}, {"destvox_rel", 1}}},
            {"network", {{"features", {4}}}},
            {"num_its", 1},
            {"num_patches", 2},
            {"batch_size", 2},
            {"seed", 1}};
  train::TrainConfig cfg = train::TrainConfig::from_json(j);
  PhantomOptions po;
  po.dims = {16, 16, 12};
  po.num_labels = 1;
  po.seed = 3;
  std::vector<train::Subject> tr, va;
  tr.push_back(apply::phantom_subject("p0", make_phantom(po), cfg.scheme));
  train::TrainOptions to;
  to.out = dir / "model3d.safetensors";
  to.quiet = true;
  train::Trainer(cfg, to).run(tr, va);
  return to.out;
}

}  // namespace

TEST_CASE("messages: eval refuses a non-integer prediction or reference, naming the file and one value") {
  const fs::path dir = test::temp_dir("msg-eval");
  std::vector<float> lab(6 * 5 * 4, 0.f), prob(6 * 5 * 4, 0.f);
  for (int i = 30; i < 60; ++i) lab[i] = 1.f, prob[i] = 1.f;
  prob[2 + 6 * (3 + 5 * 1)] = 0.73f;  // voxel (2,3,1)
  write_nifti(Volume::from_values<float>({6, 5, 4}, lab.data()), dir / "lab.nii.gz");
  write_nifti(Volume::from_values<float>({6, 5, 4}, prob.data()), dir / "prob.nii.gz");
  const std::string bin = test::patchwork_bin() + " eval ";
  const std::string labf = (dir / "lab.nii.gz").string(), probf = (dir / "prob.nii.gz").string();
  std::string out;
  for (const std::string& args : {"--pred " + probf + " --ref " + labf, "--pred " + labf + " --ref " + probf}) {
    INFO(args);
    CHECK(test::run_command(bin + args, &out) == 1);
    CHECK(out == "patchwork: " + probf +
                     ": holds non-integer values (e.g. 0.73 at voxel (2,3,1)): eval compares label maps; use apply "
                     "--out-type atls\n");
  }
  // Integer values stored as float, and as scaled integers, are label maps.
  CHECK(test::run_command(bin + "--pred " + labf + " --ref " + labf, &out) == 0);
  std::vector<uint8_t> raw(6 * 5 * 4, 0);
  for (int i = 30; i < 60; ++i) raw[i] = 4;
  Volume scaled = Volume::from_values<uint8_t>({6, 5, 4}, raw.data());
  scaled.scl_slope = 0.25;  // 4 * 0.25 = label 1
  write_nifti(scaled, dir / "scaled.nii");
  CHECK(test::run_command(bin + "--pred " + (dir / "scaled.nii").string() + " --ref " + labf, &out) == 0);
  INFO(out);
  CHECK(out.find("1.0000") != std::string::npos);  // Dice 1 for label 1
  // A slope that makes halves: refused (the first one in file order named).
  scaled.scl_slope = 0.125;
  write_nifti(scaled, dir / "halves.nii");
  CHECK(test::run_command(bin + "--pred " + (dir / "halves.nii").string() + " --ref " + labf, &out) == 1);
  CHECK(out.find((dir / "halves.nii").string() + ": holds non-integer values (e.g. 0.5 at voxel (0,0,1))") !=
        std::string::npos);
}

TEST_CASE("messages: a 3-D model given a one-slice volume says so (not \"2D\"); apply names a NaN sform") {
  const fs::path dir = test::temp_dir("msg-apply");
  const fs::path model = tiny_3d_model(dir);
  std::vector<float> vals(64 * 64, 1.f);
  write_nifti(Volume::from_values<float>({64, 64, 1}, vals.data()), dir / "slice3d.nii.gz");  // dim[0] = 3
  write_nifti(Volume::from_values<float>({64, 64}, vals.data()), dir / "image2d.nii.gz");     // dim[0] = 2
  const std::string bin = test::patchwork_bin() + " apply --quiet --model " + model.string() + " --out " +
                          (dir / "seg.nii.gz").string() + " --in ";
  std::string out;
  CHECK(test::run_command(bin + (dir / "slice3d.nii.gz").string(), &out) == 1);
  CHECK(out == "patchwork: " + (dir / "slice3d.nii.gz").string() +
                   ": the model is 3-D but the image is a 3-D volume with one slice (64x64x1); a 3-D model needs a "
                   "volume with more than one slice\n");
  CHECK(test::run_command(bin + (dir / "image2d.nii.gz").string(), &out) == 1);
  CHECK(out == "patchwork: " + (dir / "image2d.nii.gz").string() +
                   ": the model is 3-D but the image is a 2-D image (64x64); a 3-D model needs a volume with more "
                   "than one slice\n");
  CHECK(!fs::exists(dir / "seg.nii.gz"));

  // The inference's own check (for callers that bypass the file reader) counts slices too.
  train::Model m = train::Model::load(model);
  apply::ModelNetwork net(m, std::nullopt);
  apply::InferInput in;
  in.image.s = {64, 64, 1};
  in.data = Tensor::zeros({1, 1, 64, 64});
  CHECK_THROWS_WITH_AS(apply::infer(net, in, apply::InferOptions{}),
                       "the model is 3-D but the image has one slice (64x64x1)", std::invalid_argument);

  // A NaN in the sform: named by apply, not a "singular affine".
  std::vector<float> vol(16 * 16 * 12, 1.f);
  Volume bad = Volume::from_values<float>({16, 16, 12}, vol.data());
  bad.srow[2][2] = std::numeric_limits<double>::quiet_NaN();
  write_nifti(bad, dir / "nan_sform.nii.gz");
  CHECK(test::run_command(bin + (dir / "nan_sform.nii.gz").string(), &out) == 1);
  INFO(out);
  CHECK(lines(out) == 1);
  CHECK(out == "patchwork: " + (dir / "nan_sform.nii.gz").string() +
                   ": the sform (sform_code 1) holds a non-finite value: srow_z[2] = nan (fix the sform, or set "
                   "sform_code to 0 to use the qform)\n");
}
