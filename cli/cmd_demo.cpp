// `patchwork demo [--out DIR] [--seconds N]`: the no-data demonstration (apply/demo.h).
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/commands.h"
#include "apply/demo.h"

namespace pw::cli {

void add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo", "Generate synthetic 3D phantoms, train a depth-2 patchwork (~2 min on 2 cores), segment an unseen one");
  auto o = std::make_shared<apply::DemoOptions>();
  auto quick = std::make_shared<bool>(false);
  cmd->add_option("--out", o->out, "output folder")->capture_default_str();
  auto* seconds = cmd->add_option("--seconds", o->seconds, "training wall time in seconds")
                      ->capture_default_str()
                      ->check(positive());
  cmd->add_flag("--quick", *quick, "a 20-second training (a smoke test; lower Dice)")->excludes(seconds);
  cmd->add_option("--threads", o->threads, "CPU threads")->capture_default_str()->check(positive());
  cmd->add_option("--seed", o->seed, "random seed (phantoms, training, application)")->capture_default_str();
  cmd->add_flag("--quiet", o->quiet, "no progress lines");
  cmd->callback([o, quick]() {
    apply::DemoOptions d = *o;
    if (*quick) d.seconds = 20;
    std::printf("demo: %d training phantoms + 1 validation in %s; training for %.0f s on %d thread(s)\n",
                d.train_cases, d.out.string().c_str(), d.seconds, d.threads);
    std::fflush(stdout);
    apply::DemoResult r = apply::run_demo(d);
    std::printf("demo: trained %d iterations in %.1f s; applied in %.1f s\n", r.iterations, r.train_seconds,
                r.apply_seconds);
    const char* names[] = {"organ", "nodule", "vessel"};
    for (size_t i = 0; i < r.metrics.size(); ++i)
      std::printf("demo: label %d (%s): Dice %.3f, HD95 %.2f mm, volume %.1f ml (truth %.1f ml)\n",
                  r.metrics[i].label, names[i], r.metrics[i].dice, r.metrics[i].hd95_mm, r.metrics[i].volume_pred_ml,
                  r.metrics[i].volume_ref_ml);
    std::printf("demo: mean Dice %.3f\n", r.mean_dice);
    std::printf("demo: wrote %s, %s, %s, %s, %s\n", r.image.string().c_str(), r.truth.string().c_str(),
                r.prediction.string().c_str(), r.preview.string().c_str(), r.model.string().c_str());
  });
}

}  // namespace pw::cli
