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

#include "apply/train_command.h"
#include "cli/commands.h"
#include "train/distributed.h"

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
  apply::TrainRequest req;
  req.config_file = a.config;
  req.dataset = a.dataset;
  req.out = a.out;
  req.device = device_option(a.device);
  req.threads = a.threads;
  req.seed = a.seed;
  req.resume = a.resume;
  req.progress_tty = isatty(2) != 0;
  req.quiet = !world.root();  // rank 0 reports for all
  const apply::TrainOutcome o = apply::train_command(req);
  if (!world.root()) return;  // rank 0 wrote the model and the log
  const train::TrainResult& r = o.result;
  if (world.size() > 1)
    std::printf("data-parallel over %d ranks (global batch %d)\n", world.size(), o.batch_size * world.size());
  std::printf("trained %d iterations in %.1f s -> %s\n", r.iterations, r.seconds, a.out.c_str());
  if (!o.curves.empty()) std::printf("training curves -> %s\n", o.curves.string().c_str());
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
