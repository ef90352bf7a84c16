#include "apply/train_command.h"

#include <cstdio>

#include "apply/apply_case.h"
#include "apply/model_network.h"
#include "io/atomic_file.h"
#include "io/error.h"
#include "kernels/parallel.h"
#include "train/distributed.h"
#include "train/plot.h"

namespace pw::apply {

TrainOutcome train_command(const TrainRequest& req) {
  std::vector<std::filesystem::path> inputs;
  if (!req.config_file.empty()) inputs.push_back(req.config_file);
  check_output(req.out, inputs);  // before the data are loaded and hours of training start
  train::TrainConfig cfg = req.config_file.empty() ? train::TrainConfig::from_json_checked(req.config, {}, "config")
                                                   : train::TrainConfig::load(req.config_file);
  if (!req.dataset.empty()) {
    cfg.dataset.root = req.dataset;
    cfg.dataset.pairs.clear();
  }
  if (cfg.dataset.root.empty() && cfg.dataset.pairs.empty())
    throw UsageError("train: no dataset: give --dataset DIR or 'dataset' in the config");
  if (req.seed >= 0) cfg.seed = static_cast<uint64_t>(req.seed);
  if (req.threads > 0) cfg.threads = req.threads;
  if (cfg.threads > 0) set_num_threads(cfg.threads);
  train::TrainOptions opt;
  opt.out = req.out;
  opt.resume = req.resume;
  opt.device = req.device;
  opt.progress_tty = req.progress_tty;
  opt.quiet = req.quiet;
  opt.log_every = 1;
  opt.on_iteration = req.on_iteration;
  train::Trainer trainer(cfg, opt);
  trainer.set_predictor(validation_predictor(model_lazy_options));  // as apply by default: the model's lazyEval
  TrainOutcome o;
  o.batch_size = cfg.batch_size;
  o.result = trainer.run_from_dataset();
  if (!train::Distributed::world().root()) return o;  // rank 0 wrote the log
  // Training curves beside the model (the model is already saved: a plotting problem only warns).
  const std::filesystem::path curves = req.out.string() + ".curves.png";
  try {
    train::plot_training_log(req.out.string() + ".log.jsonl", curves);
    o.curves = curves;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "patchwork train: warning: no training curves (%s)\n", e.what());
  }
  return o;
}

}  // namespace pw::apply
