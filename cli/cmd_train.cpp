// `patchwork train --config CFG [--dataset DIR] [--out MODEL] [--device cpu|cuda] [--threads N]
//  [--seed S] [--resume]`: trains a patchwork model (train/trainer.h); validation goes through the
// application path (apply::predict_subject). Writes <out>, <out>.ckpt, <out>.log.jsonl and the
// training curves <out>.curves.png (train/plot.h).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "apply/model_network.h"
#include "train/plot.h"
#include "io/atomic_file.h"
#include "io/error.h"
#include "kernels/parallel.h"
#include "train/distributed.h"
#include "train/trainer.h"

namespace pw::cli {

namespace {

struct TrainArgs {
  std::string config, dataset, out = "model.safetensors", device;
  int threads = 0;
  int64_t seed = -1;
  bool resume = false;
};

void run(const TrainArgs& a) {
  // Under mpirun: data-parallel ranks (train/distributed.h), set up before any GPU is touched.
  const train::Distributed& world = train::Distributed::world();
  check_output(a.out, {a.config});  // before the data are loaded and hours of training start
  train::TrainConfig cfg = train::TrainConfig::load(a.config);
  if (!a.dataset.empty()) {
    cfg.dataset.root = a.dataset;
    cfg.dataset.pairs.clear();
  }
  if (cfg.dataset.root.empty() && cfg.dataset.pairs.empty())
    throw UsageError("train: no dataset: give --dataset DIR or 'dataset' in the config");
  if (a.seed >= 0) cfg.seed = static_cast<uint64_t>(a.seed);
  if (a.threads > 0) cfg.threads = a.threads;
  if (cfg.threads > 0) set_num_threads(cfg.threads);
  train::TrainOptions opt;
  opt.out = a.out;
  opt.resume = a.resume;
  opt.device = device_option(a.device);
  opt.progress_tty = isatty(2) != 0;
  opt.quiet = !world.root();  // rank 0 reports for all
  opt.log_every = 1;
  train::Trainer trainer(cfg, opt);
  trainer.set_predictor([](train::Model& m, train::Subject& s) { return apply::predict_subject(m, s); });
  train::TrainResult r = trainer.run_from_dataset();
  if (!world.root()) return;  // rank 0 wrote the model and the log
  if (world.size() > 1) std::printf("data-parallel over %d ranks (global batch %d)\n", world.size(), cfg.batch_size * world.size());
  std::printf("trained %d iterations in %.1f s -> %s\n", r.iterations, r.seconds, a.out.c_str());
  // Training curves beside the model (the model is already saved: a plotting problem only warns).
  const std::string curves = a.out + ".curves.png";
  try {
    train::plot_training_log(a.out + ".log.jsonl", curves);
    std::printf("training curves -> %s\n", curves.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "patchwork train: warning: no training curves (%s)\n", e.what());
  }
  if (!r.validation_dice.empty()) {
    std::printf("validation Dice per label:");
    for (double d : r.validation_dice) std::printf(" %.4f", d);
    std::printf("  (thresholds");
    for (double t : r.thresholds) std::printf(" %.2f", t);
    std::printf(")\n");
  }
}

}  // namespace

void add_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train a patchwork model from a JSON config");
  cmd->add_option("--config", a->config, "Training config (JSON, the paper's option names)")->required();
  cmd->add_option("--dataset", a->dataset, "Dataset folder (MSD layout); overrides the config's dataset");
  cmd->add_option("--out", a->out, "Model file to write (.safetensors); also <out>.ckpt and <out>.log.jsonl")
      ->capture_default_str();
  cmd->add_option("--device", a->device, "cpu or cuda (default: cuda when available)");
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(non_negative());
  cmd->add_option("--seed", a->seed, "Random seed (overrides the config)");
  cmd->add_flag("--resume", a->resume, "Continue from <out>.ckpt");
  cmd->callback([a] { run(*a); });
}

}  // namespace pw::cli
