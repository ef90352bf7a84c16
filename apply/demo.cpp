#include "apply/demo.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apply/apply_case.h"
#include "apply/model_network.h"
#include "train/phantom.h"
#include "io/nifti.h"
#include "kernels/parallel.h"
#include "train/config.h"
#include "train/sampler.h"
#include "train/trainer.h"

namespace pw::apply {

namespace fs = std::filesystem;

std::string demo_config_json(double seconds, int threads, uint64_t seed) {
  nlohmann::json j = {
      {"depth", 2},
      {"ndim", 3},
      {"scheme", {{"patch_size", {16, 16, 16}}, {"fov_rel", 0.8}, {"destvox_rel", 1}}},
      {"categorical_label", {1, 2, 3}},
      {"categorical", false},
      {"network", {{"features", {8, 16}}}},
      {"intermediate_out", 2},
      {"intermediate_loss", true},
      {"num_its", 100000},
      {"num_patches", 8},
      {"epochs", 2},
      {"batch_size", 8},
      {"balance", {{"ratio", 0.5}}},
      {"optimizer", {{"type", "adam"}, {"lr", 3e-3}}},
      {"time_limit_s", seconds},
      {"threads", threads},
      {"seed", seed}};
  return j.dump(2);
}

train::Subject phantom_subject(const std::string& name, const Phantom& p, const train::Scheme& sc) {
  train::Patch img;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) img.A(r, c) = p.affine[r * 4 + c];
  img.s = p.dims;
  Tensor data = Tensor::from_vector({p.channels, p.dims[2], p.dims[1], p.dims[0]}, p.image);
  std::vector<float> lab(p.labels.begin(), p.labels.end());
  Tensor labels = Tensor::from_vector({1, p.dims[2], p.dims[1], p.dims[0]}, lab);
  return train::make_subject(name, img, data, labels, sc, false);
}

DemoResult run_demo(const DemoOptions& opt) {
  DemoResult r;
  fs::create_directories(opt.out / "train");
  set_num_threads(opt.threads);
  train::TrainConfig cfg = train::TrainConfig::from_json(nlohmann::json::parse(demo_config_json(opt.seconds, opt.threads, opt.seed)));
  PhantomOptions po;
  std::vector<train::Subject> tr, va;
  for (int i = 0; i < opt.train_cases + 1; ++i) {
    po.seed = opt.seed * 1000 + i;
    Phantom p = make_phantom(po);
    std::string name = "phantom_" + std::to_string(i);
    write_phantom(p, (opt.out / "train" / (name + ".nii.gz")).string(),
                  (opt.out / "train" / (name + "_label.nii.gz")).string());
    (i < opt.train_cases ? tr : va).push_back(phantom_subject(name, p, cfg.scheme));
  }
  train::TrainOptions to;
  r.model = opt.out / "model.safetensors";
  to.out = r.model;
  to.quiet = opt.quiet;
  to.progress_tty = isatty(2) != 0;  // one line updated in place on a terminal
  to.log_every = 10;                 // else a plain line every 10 iterations
  train::Trainer trainer(cfg, to);
  trainer.set_predictor(validation_predictor());
  train::TrainResult res = trainer.run(tr, va);
  r.iterations = res.iterations;
  r.train_seconds = res.seconds;

  // The unseen phantom.
  po.seed = opt.seed * 1000 + 999;
  Phantom test = make_phantom(po);
  r.image = opt.out / "test_image.nii.gz";
  r.truth = opt.out / "test_truth.nii.gz";
  r.prediction = opt.out / "test_prediction.nii.gz";
  r.preview = opt.out / "test_preview.png";
  write_phantom(test, r.image.string(), r.truth.string());
  ApplyRequest req;
  req.out_type = OutputType{OutKind::atls, {}};
  req.label_names = {"organ", "nodule", "vessel"};
  req.preview = r.preview;
  req.infer.progress = !opt.quiet;
  Prediction pred = apply_case(trainer.model(), {r.image}, r.prediction, req);
  r.apply_seconds = pred.seconds;

  Volume pv = read_nifti(r.prediction);
  std::vector<double> pd = pv.to_double();
  std::vector<int32_t> pl(pd.begin(), pd.end());
  std::array<double, 3> h;
  for (int a = 0; a < 3; ++a) h[a] = test.affine[a * 4 + a];
  r.metrics = evaluate_labels(pl.data(), test.labels.data(), test.dims, h, {1, 2, 3});
  for (auto& m : r.metrics) r.mean_dice += m.dice / r.metrics.size();
  return r;
}

}  // namespace pw::apply
