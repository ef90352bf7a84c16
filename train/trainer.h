// The training loop (paper: "Training", API list C): num_its outer iterations, each drawing a
// patch set (num_patches chains per image; drawn in a background thread while the previous set
// trains when `parallel`), then `epochs` passes over it in batches of batch_size with the loss of
// every level (intermediate_loss) or of the last. Hard mining keeps the hardest chains for the next
// round (at most hard_mining_maxage rounds). Every validation_every iterations (and at the end) the
// validation cases are segmented through a Predictor (the application path) and scored with Dice per
// label; the thresholds that maximise the validation Dice go into the model file. Checkpoints are
// written atomically beside the model (<out>.ckpt) and --resume continues from them. A JSONL log
// (<out>.log.jsonl) records losses, Dice and timing. A diverged training (a NaN or infinite loss of a
// level, gradient or weight, or network output in validation) stops at once with one pw::InputError
// "training diverged at iteration N: ..." naming the level or the tensor: the model file is not
// written, and the checkpoint stays the last one written before. The loop itself: train/training_run.cpp.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "train/config.h"
#include "train/model.h"
#include "train/sampler.h"

namespace pw::train {

// The loss of one level: logits = the first label_channels() channels of X; target as drawn
// (categorical i32 class map, else f32 channels); don't-care voxels (-1 / NaN) give no loss.
Var level_loss(const Var& X, const Tensor& target, LossKind kind, const Scheme& scheme);

// Candidate sampling (scheme.candidate_sampling {dim m, candidates n}, loss "candidate"): the slots
// [B, n+1, ...] of a class map target [B, ...] with C = K+1 classes: slot 0 = the true class (-1 stays
// -1: no loss), slots 1..n = classes other than the true one, drawn uniformly with replacement from
// the C-1 others by `rng` (so the true class is never drawn, no accidental hits to remove), with
// neg_offset = log((C-1)/n) for the sampled logits: exp(z + offset) = exp(z)/(n Q) with Q = 1/(C-1),
// so the sum over the slots estimates the full softmax sum without bias. When n >= C-1 the slots
// hold every other class once and neg_offset = 0: the exact cross entropy.
Tensor draw_candidates(const Tensor& target, int classes, int n, std::mt19937_64& rng, float& neg_offset);
// The candidate-sampling cross entropy of a level: its first m channels against the model's class
// embedding, the candidates drawn by draw_candidates (engine op candidate_cross_entropy).
Var candidate_loss(const Var& X, const Tensor& target, const Model& model, std::mt19937_64& rng);

// Per-chain scores of a batch's final output (for hard mining): loss (mean per-voxel loss),
// f1 (Dice of the thresholded output, mean over labels present in either) and label presence
// (for "balance"). X: [B, C, ...] logits; target as in level_loss.
struct ChainScores {
  std::vector<float> loss, f1;
  std::vector<std::vector<uint8_t>> present;  // [B][K]: label k occurs in the chain's target
};
ChainScores chain_scores(const Tensor& X, const Tensor& target, const Scheme& scheme);

// Hard mining: the indices (ascending) of the chains kept for the next round: the
// floor(fraction * n) hardest with age < maxage: highest loss ("loss"), lowest f1 ("f1"), or the
// rarest labels ("balance": sum over the present labels of 1 / (fraction of chains having it)).
std::vector<int64_t> hard_mining_select(const ChainScores& s, const std::vector<int>& age, double fraction,
                                        int maxage, HardOrder order);

// A validation subject's probabilities on its own voxel grid, handed over box by box so that no
// volume of labels x voxels is ever held: `prob` is f32 [K, box] (per label; categorical: classes
// 1..K, background dropped; x fastest) for the voxels lo .. lo+size-1 (array order z, y, x; 2-D: z = 0,
// size 1). Every voxel arrives exactly once. A Predictor computes them through the application path
// (apply::validation_predictor) and calls `out` for each box.
using ProbBox = std::function<void(const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& size,
                                   const float* prob)>;
using Predictor = std::function<void(Model& model, Subject& subject, const ProbBox& out)>;

// Dice counts per label of one subject for G threshold vectors at once (one threshold per label each),
// accumulated box by box. Categorical: a voxel gets the most probable label if its probability reaches
// that label's threshold, else background. Don't-care voxels (-1 / NaN labels) are skipped.
class DiceTally {
 public:
  DiceTally(const Subject& subject, std::vector<std::vector<double>> thresholds);
  void add(const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& size, const float* prob);
  // Dice per label of threshold vector g (NaN when the label is absent from both).
  std::vector<double> dice(int g) const;

 private:
  void add_class_voxel(int64_t v, const float* p, int64_t stride);    // p: voxel v's label 0 probability
  void add_channel_voxel(int64_t v, const float* p, int64_t stride);  // (label k at p[k * stride])
  const Subject& s_;
  std::vector<std::vector<double>> t_;
  int K_ = 0;
  std::vector<std::vector<double>> inter_, np_, nt_;  // [G][K]
};

// Dice per label of probabilities [K, ...] thresholded at t (one per label) against the subject's
// labels: a DiceTally over the whole volume as one box.
std::vector<double> dice_per_label(const Tensor& prob, const Subject& subject, const std::vector<double>& t);

struct TrainOptions {
  std::filesystem::path out = "model.safetensors";
  Device device = Device::cpu;
  bool resume = false;
  bool progress_tty = false;  // a rewriting progress line (else plain lines)
  bool quiet = false;         // no progress output at all (tests)
  int log_every = 1;          // plain-line progress every N iterations
  // Called after each iteration with its line of the JSONL log (as written to <out>.log.jsonl: it, loss per
  // level, val_dice when validated, ...); returning false ends the training after that iteration, which then
  // finishes as when time_limit_s runs out (final validation, thresholds, model file). The Python package's
  // train(callback=...) goes through this.
  std::function<bool(const std::string& log_line)> on_iteration;
};

struct TrainResult {
  int iterations = 0;
  double seconds = 0;
  std::vector<double> last_loss;        // per level, mean over the last iteration
  std::vector<double> validation_dice;  // per label, final validation (empty without validation)
  std::vector<double> thresholds;       // chosen per label
};

class Trainer {
 public:
  // Subjects are given (tests) or loaded from cfg.dataset (run_from_dataset).
  Trainer(TrainConfig cfg, TrainOptions opt);
  void set_predictor(Predictor p) { predictor_ = std::move(p); }
  // Loads the dataset of the config (train/validation split) and runs.
  TrainResult run_from_dataset();
  TrainResult run(std::vector<Subject>& train, std::vector<Subject>& validation);
  // The model (after run).
  Model& model() { return *model_; }

 private:
  TrainConfig cfg_;
  TrainOptions opt_;
  Predictor predictor_;
  std::unique_ptr<Model> model_;
};

}  // namespace pw::train
