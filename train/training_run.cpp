// The training loop of train/trainer.h, one step per member function of TrainingRun:
//   prepare (check the subjects, build the model and the optimizer, resume), then per iteration
//   draw (the next patch set, in the background with `parallel`), train (epochs x batches),
//   validate (every validation_every), log and checkpoint; finally choose the thresholds and save.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>

#include "engine/device.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "io/atomic_file.h"
#include "io/error.h"
#include "kernels/parallel.h"
#include "train/distributed.h"
#include "train/trainer.h"

namespace pw::train {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  int h = static_cast<int>(s / 3600), m = static_cast<int>(s / 60) % 60, sec = static_cast<int>(s) % 60;
  if (h > 0) std::snprintf(buf, sizeof buf, "%dh%02dm", h, m);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", m, sec);
  return buf;
}

std::string rng_state(const std::mt19937_64& r) {
  std::ostringstream o;
  o << r;
  return o.str();
}
void set_rng_state(std::mt19937_64& r, const std::string& s) {
  std::istringstream i(s);
  i >> r;
}

// The one error of a diverged training (exit 1 in the CLI); `it` counts from 0, the message from 1
// like the log and the progress line.
InputError diverged(int it, const std::string& what) {
  return InputError("training diverged at iteration " + std::to_string(it + 1) + ": " + what +
                    " (lower the learning rate)");
}

// What one iteration's training leaves: the mean loss per level and the chains' scores (hard mining).
struct IterationStats {
  std::vector<double> level_loss;
  ChainScores scores;
};

class TrainingRun {
 public:
  TrainingRun(TrainConfig& cfg, const TrainOptions& opt, const Predictor& predictor, std::unique_ptr<Model>& model,
              std::vector<Subject>& train, std::vector<Subject>& validation);
  TrainResult run();

 private:
  using clock = std::chrono::steady_clock;
  double elapsed() const { return std::chrono::duration<double>(clock::now() - t0_).count(); }
  // preparation
  void check_subjects();
  void check_labels_present() const;
  void build_model();
  void build_optimizer();
  void resume();
  void restore_kept(const std::map<std::string, Tensor>& extra);
  void open_log();
  // one iteration
  PatchSet next_set(int it, double& wait_s);
  IterationStats train_on(int it, const PatchSet& set);
  Var batch_loss(int it, const PatchSet& batch, double share, std::vector<Var>& X, IterationStats& st);
  void update(int it, double share);
  void check_gradients(int it);
  void check_weights(int it) const;
  void reduce_stats(IterationStats& st, const std::vector<uint8_t>& mine);
  void keep_hard_chains(const PatchSet& set, const IterationStats& st);
  std::vector<double> validate(int it, bool choose_thresholds);
  std::string record(int it, int64_t patches, double wait_s, const IterationStats& st,
                     const std::vector<double>& dice);
  void progress(int done, const IterationStats& st, const std::vector<double>& dice) const;
  void save_checkpoint(int it);
  TrainResult finish(int it);
  void loop(int& it);

  TrainConfig& cfg_;
  const TrainOptions& opt_;
  const Predictor& predictor_;
  std::unique_ptr<Model>& model_;
  std::vector<Subject>& train_;
  std::vector<Subject>& validation_;
  Scheme& scheme_;
  const clock::time_point t0_ = clock::now();
  std::unique_ptr<CropGenerator> gen_;
  std::vector<Subject*> train_ptrs_;
  std::unique_ptr<Optimizer> optim_;
  std::vector<std::pair<std::string, Var>> named_params_;  // for the divergence checks' messages
  Adam* adam_ = nullptr;
  Sgd* sgd_ = nullptr;
  LrSchedule sched_;
  std::mt19937_64 rng_sample_, rng_train_;
  fs::path ckpt_, logf_;
  std::ofstream log_;
  int start_it_ = 0;
  PatchSet kept_;  // hard mining: chains kept for the next iteration
  std::future<PatchSet> next_;
  // The sampler state before drawing the set of the next iteration (with `parallel` that draw may
  // already be running): a resumed run redraws exactly that set.
  std::string pending_sample_state_;
  std::vector<double> thresholds_;
  std::vector<double> last_loss_;
  Distributed& dist_ = Distributed::world();  // data-parallel ranks (train/distributed.h); one in a plain run
};

TrainingRun::TrainingRun(TrainConfig& cfg, const TrainOptions& opt, const Predictor& predictor,
                         std::unique_ptr<Model>& model, std::vector<Subject>& train, std::vector<Subject>& validation)
    : cfg_(cfg),
      opt_(opt),
      predictor_(predictor),
      model_(model),
      train_(train),
      validation_(validation),
      scheme_(cfg.scheme),
      rng_sample_(cfg.seed * 2654435761ULL + 17),
      rng_train_(cfg.seed * 40503ULL + 5),
      ckpt_(opt.out.string() + ".ckpt"),
      logf_(opt.out.string() + ".log.jsonl") {}

// The label count from the data when the config leaves it open; every subject consistent.
void TrainingRun::check_subjects() {
  if (train_.empty()) throw InputError("training: no training subjects");
  const Tensor& l0 = train_[0].labels;
  if (!l0.defined()) throw InputError(train_[0].name + ": no labels");
  if (scheme_.num_labels == 0) scheme_.num_labels = static_cast<int>(l0.dim(0));
  for (auto* set : {&train_, &validation_})
    for (const auto& s : *set) {
      if (s.data.dim(0) != train_[0].data.dim(0))
        throw InputError(s.name + ": " + std::to_string(s.data.dim(0)) + " image channels, expected " +
                         std::to_string(train_[0].data.dim(0)));
      if (!s.labels.defined() || (s.labels.dtype() == DType::f32 && s.labels.dim(0) != scheme_.num_labels))
        throw InputError(s.name + ": label volumes do not match num_labels " + std::to_string(scheme_.num_labels));
    }
  if (!cfg_.balance.label_weight.empty() && static_cast<int>(cfg_.balance.label_weight.size()) != scheme_.num_labels)
    throw InputError("balance.label_weight: expected " + std::to_string(scheme_.num_labels) + " entries");
  check_labels_present();
}

// A label that occurs in no training case trains a useless model: refused, naming it (the value of
// categorical_label, else the label volume's number); one found in fewer than 5% of the cases gets a
// warning. Only for subjects whose label volumes were counted when they were loaded.
void TrainingRun::check_labels_present() const {
  const int K = scheme_.num_labels;
  std::vector<int> cases(K, 0);
  for (const auto& s : train_) {
    if (static_cast<int>(s.label_volume.size()) != K) return;
    for (int k = 0; k < K; ++k) cases[k] += s.label_volume[k] > 0;
  }
  auto value = [&](int k) {
    return std::to_string(scheme_.categorical_label.empty() ? k + 1 : scheme_.categorical_label[k]);
  };
  const int n = static_cast<int>(train_.size());
  std::string absent;
  for (int k = 0; k < K; ++k) {
    if (cases[k] == 0) absent += (absent.empty() ? "" : ", ") + value(k);
    else if (cases[k] < 0.05 * n && !opt_.quiet)
      std::cerr << "warning: label " << value(k) << " occurs in only " << cases[k] << " of the " << n
                << " training cases\n";
  }
  if (!absent.empty())
    throw InputError("label " + absent + " occurs in none of the " + std::to_string(n) +
                     " training cases (check categorical_label and the label files)");
}

// The patch generator and the model (label names from an MSD dataset.json when present).
void TrainingRun::build_model() {
  SamplerOptions so;
  so.balance = cfg_.balance;
  so.augment = cfg_.augment;
  so.independent_augmentation = cfg_.independent_augmentation;
  so.tree = cfg_.tree;
  so.dontcare = cfg_.dontcare;
  gen_ = std::make_unique<CropGenerator>(scheme_, so);
  for (auto& s : train_) train_ptrs_.push_back(&s);
  gen_->set_autoweight(train_ptrs_);

  ModelSpec spec = ModelSpec::from_config(cfg_, static_cast<int>(train_[0].data.dim(0)));
  spec.in_channels = gen_->input_channels(spec.image_channels);
  if (cfg_.raw.contains("__label_table")) {
    const json& lt = cfg_.raw["__label_table"];
    for (int k = 0; k < scheme_.num_labels; ++k) {
      std::string key =
          scheme_.categorical_label.empty() ? std::to_string(k + 1) : std::to_string(scheme_.categorical_label[k]);
      spec.label_names.push_back(lt.contains(key) && lt[key].is_string() ? lt[key].get<std::string>() : key);
    }
    cfg_.raw.erase("__label_table");
  }
  model_ = std::make_unique<Model>(spec, cfg_.seed, opt_.device);
  thresholds_.assign(scheme_.num_labels, 0.5);
}

void TrainingRun::build_optimizer() {
  if (cfg_.optimizer == "sgd") {
    SgdOptions o;
    o.lr = static_cast<float>(cfg_.lr);
    o.momentum = static_cast<float>(cfg_.momentum);
    o.weight_decay = static_cast<float>(cfg_.weight_decay);
    auto s = std::make_unique<Sgd>(model_->parameters(), o);
    sgd_ = s.get();
    optim_ = std::move(s);
  } else {
    AdamOptions o;
    o.lr = static_cast<float>(cfg_.lr);
    o.weight_decay = static_cast<float>(cfg_.weight_decay);
    o.decoupled = cfg_.optimizer == "adamw";
    auto a = std::make_unique<Adam>(model_->parameters(), o);
    adam_ = a.get();
    optim_ = std::move(a);
  }
  named_params_ = model_->named_parameters();
  sched_.kind = LrSchedule::parse_kind(cfg_.schedule);
  sched_.base = static_cast<float>(cfg_.lr);
  sched_.step_size = cfg_.step_size;
  sched_.gamma = static_cast<float>(cfg_.gamma);
  sched_.total = cfg_.num_its;
}

// --resume: weights, optimizer state, random states and hard-mined chains from <out>.ckpt.
void TrainingRun::resume() {
  if (!opt_.resume) return;
  if (!fs::exists(ckpt_)) {
    if (!opt_.quiet) std::cerr << "no checkpoint " << ckpt_.string() << ": starting from scratch\n";
    return;
  }
  std::map<std::string, Tensor> extra;
  std::map<std::string, std::string> meta;
  Model loaded = Model::load(ckpt_, opt_.device, &extra, &meta);
  model_->load_state(loaded.state());
  try {
    start_it_ = std::stoi(meta.at("iteration"));
    set_rng_state(rng_sample_, meta.at("rng_sample"));
    set_rng_state(rng_train_, meta.at("rng_train"));
    (void)std::stoll(meta.at("adam_steps"));
  } catch (const std::exception&) {
    throw InputError(ckpt_.string() + ": not a training checkpoint (iteration or random states missing)");
  }
  if (start_it_ > cfg_.num_its)
    throw InputError(ckpt_.string() + ": the checkpoint is at iteration " + std::to_string(start_it_) +
                     ", beyond num_its " + std::to_string(cfg_.num_its));
  const size_t np = model_->parameters().size();
  if (adam_) {
    for (size_t i = 0; i < np; ++i) {
      auto m = extra.find("opt.m." + std::to_string(i)), v = extra.find("opt.v." + std::to_string(i));
      if (m != extra.end() && v != extra.end()) {
        adam_->exp_avg(i) = m->second.to(opt_.device);
        adam_->exp_avg_sq(i) = v->second.to(opt_.device);
      }
    }
    adam_->set_steps(std::stoll(meta.at("adam_steps")));
  }
  if (sgd_ && cfg_.momentum != 0)
    for (size_t i = 0; i < np; ++i) {
      auto b = extra.find("opt.momentum." + std::to_string(i));
      if (b != extra.end()) sgd_->restore_momentum(i, b->second);
    }
  restore_kept(extra);
  if (meta.count("ranks") && meta.at("ranks") != std::to_string(dist_.size()) && !opt_.quiet)
    std::cerr << "warning: the checkpoint was written by " << meta.at("ranks") << " ranks, this run has "
              << dist_.size() << ": the global batch (batch_size x ranks) changes\n";
  if (!opt_.quiet) std::cerr << "resuming from " << ckpt_.string() << " at iteration " << start_it_ << "\n";
}

void TrainingRun::restore_kept(const std::map<std::string, Tensor>& extra) {
  if (!extra.count("kept.age")) return;
  const Tensor& age = extra.at("kept.age");
  for (int64_t i = 0; i < age.numel(); ++i) {
    kept_.age.push_back(age.i32()[i]);
    kept_.subject.push_back(extra.at("kept.subject").i32()[i]);
  }
  kept_.levels.resize(scheme_.depth);
  for (int k = 0; k < scheme_.depth; ++k) {
    const std::string p = "kept.level" + std::to_string(k) + ".";
    kept_.levels[k].input = extra.at(p + "input");
    if (extra.count(p + "mats")) kept_.levels[k].parent_mats = extra.at(p + "mats");
    kept_.levels[k].target = extra.at(p + "target");
  }
}

// A resumed run continues the log from the checkpoint's iteration: the run may have logged iterations
// past the checkpoint before it stopped, and those are run (and logged) again now. So the log is first cut
// back: each iteration line replaces any earlier line of the same or a later iteration (which also repairs
// a log that already holds a resumed stretch twice), lines after the checkpoint's iteration, "final" records
// (that run did not end there after all) and unreadable lines (a write cut short) are dropped. The result
// replaces the log through a temporary file and a rename; then the run appends to it. Each iteration
// appears once.
void TrainingRun::open_log() {
  if (!dist_.root()) return;  // rank 0 alone writes the log
  if (start_it_ > 0 && fs::exists(logf_)) {
    std::vector<std::pair<int64_t, std::string>> kept;
    {
      std::ifstream in(logf_);
      if (!in) throw InputError(logf_.string() + ": cannot read the training log");
      std::string line;
      while (std::getline(in, line)) {
        const json j = json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object() || j.contains("final") || !j.contains("it") ||
            !j["it"].is_number_integer())
          continue;
        const int64_t it = j["it"].get<int64_t>();
        if (it > start_it_) continue;
        while (!kept.empty() && kept.back().first >= it) kept.pop_back();
        kept.emplace_back(it, line);
      }
    }
    AtomicFile out(logf_);
    for (const auto& k : kept) {
      out.write(k.second.data(), k.second.size());
      out.write("\n", 1);
    }
    out.commit();
  }
  log_.open(logf_, start_it_ > 0 ? std::ios::app : std::ios::trunc);
  if (!log_) throw InputError(logf_.string() + ": cannot write the training log");
}

void TrainingRun::save_checkpoint(int it) {
  dist_.check_model_same(*model_);
  if (!dist_.root()) return;  // rank 0 alone writes checkpoints
  std::map<std::string, Tensor> extra;
  std::map<std::string, std::string> meta;
  const size_t np = model_->parameters().size();
  if (adam_)
    for (size_t i = 0; i < np; ++i) {
      if (adam_->exp_avg(i).defined()) extra["opt.m." + std::to_string(i)] = adam_->exp_avg(i).cpu();
      if (adam_->exp_avg_sq(i).defined()) extra["opt.v." + std::to_string(i)] = adam_->exp_avg_sq(i).cpu();
    }
  if (sgd_)
    for (size_t i = 0; i < np; ++i)
      if (sgd_->momentum_started(i)) extra["opt.momentum." + std::to_string(i)] = sgd_->momentum_buffer(i).cpu();
  if (kept_.size() > 0) {  // the hard-mined chains carried into the next iteration
    Tensor age = Tensor::empty({kept_.size()}, DType::i32), subj = Tensor::empty({kept_.size()}, DType::i32);
    for (int64_t i = 0; i < kept_.size(); ++i) age.i32()[i] = kept_.age[i], subj.i32()[i] = kept_.subject[i];
    extra["kept.age"] = age;
    extra["kept.subject"] = subj;
    for (size_t k = 0; k < kept_.levels.size(); ++k) {
      const std::string p = "kept.level" + std::to_string(k) + ".";
      extra[p + "input"] = kept_.levels[k].input;
      if (kept_.levels[k].parent_mats.defined()) extra[p + "mats"] = kept_.levels[k].parent_mats;
      extra[p + "target"] = kept_.levels[k].target;
    }
  }
  meta["iteration"] = std::to_string(it);
  meta["rng_sample"] = pending_sample_state_;
  meta["rng_train"] = rng_state(rng_train_);
  meta["adam_steps"] = std::to_string(adam_ ? adam_->steps() : 0);
  meta["ranks"] = std::to_string(dist_.size());
  model_->save(ckpt_, extra, meta);
}

// Dice per label on the validation cases through the predictor (the application path); with
// `choose_thresholds` also the per-label threshold of {0.3 .. 0.7} that maximises it. The application
// path refuses NaN or infinite network outputs (pw::InputError, its only one once the subjects are
// loaded): after iteration `it` (from 0) that is a diverged training.
std::vector<double> TrainingRun::validate(int it, bool choose_thresholds) {
  if (validation_.empty() || !predictor_) return {};
  dist_.broadcast_model(*model_);  // data-parallel: rank 0's buffers (batch-norm statistics) on every rank
  NoGradGuard ng;
  model_->set_training(false);
  static const double grid[] = {0.3, 0.4, 0.5, 0.6, 0.7};
  const int G = choose_thresholds ? 5 : 1, K = scheme_.num_labels;
  std::vector<std::vector<double>> sum(G, std::vector<double>(K, 0));
  std::vector<std::vector<int>> cnt(G, std::vector<int>(K, 0));
  for (size_t i = static_cast<size_t>(dist_.rank()); i < validation_.size(); i += dist_.size()) {
    Subject& s = validation_[i];  // the cases split round-robin across the ranks, their sums added below
    std::vector<std::vector<double>> t;
    for (int g = 0; g < G; ++g) t.push_back(choose_thresholds ? std::vector<double>(K, grid[g]) : thresholds_);
    DiceTally tally(s, t);
    try {
      predictor_(*model_, s, [&](const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& size,
                                 const float* prob) { tally.add(lo, size, prob); });
    } catch (const InputError& e) {
      throw diverged(it, "validation case " + s.name + ": " + e.what());
    }
    for (int g = 0; g < G; ++g) {
      auto d = tally.dice(g);
      for (int k = 0; k < K; ++k)
        if (std::isfinite(d[k])) sum[g][k] += d[k], cnt[g][k] += 1;
    }
  }
  model_->set_training(true);
  if (dist_.size() > 1) {
    std::vector<double> flat;
    for (int g = 0; g < G; ++g)
      for (int k = 0; k < K; ++k) flat.insert(flat.end(), {sum[g][k], static_cast<double>(cnt[g][k])});
    dist_.sum(flat);
    for (int g = 0; g < G; ++g)
      for (int k = 0; k < K; ++k) {
        sum[g][k] = flat[2 * (g * K + k)];
        cnt[g][k] = static_cast<int>(flat[2 * (g * K + k) + 1]);
      }
  }
  std::vector<double> best(K, std::numeric_limits<double>::quiet_NaN());
  for (int k = 0; k < K; ++k)
    for (int g = 0; g < G; ++g) {
      if (!cnt[g][k]) continue;
      double m = sum[g][k] / cnt[g][k];
      if (!std::isfinite(best[k]) || m > best[k]) {
        best[k] = m;
        if (choose_thresholds) thresholds_[k] = grid[g];
      }
    }
  return best;
}

// The patch set of this iteration: the set drawn in the background (or drawn now), plus the chains
// kept by hard mining. Starts the next draw at once.
PatchSet TrainingRun::next_set(int it, double& wait_s) {
  auto draw = [this]() { return gen_->sample(train_ptrs_, cfg_.num_patches, rng_sample_); };
  const auto ti = clock::now();
  PatchSet fresh = cfg_.parallel ? next_.get() : draw();
  wait_s = std::chrono::duration<double>(clock::now() - ti).count();
  pending_sample_state_ = rng_state(rng_sample_);
  if (cfg_.parallel && it + 1 < cfg_.num_its) next_ = std::async(std::launch::async, draw);
  return concat_sets(fresh, kept_);
}

// Divergence: every gradient finite before the optimizer step (one FiniteCheck: a scan on the host,
// one download on a GPU), else the error names the first parameter with a NaN or infinite gradient.
void TrainingRun::check_gradients(int it) {
  FiniteCheck every;
  for (const auto& np : named_params_) every.add(np.second->grad);
  if (every.ok()) return;
  for (const auto& np : named_params_)
    if (!all_finite(np.second->grad))
      throw diverged(it, "the gradient of " + np.first + " holds NaN or infinite values");
  throw diverged(it, "a gradient holds NaN or infinite values");
}

// One optimizer step on the gradients averaged over the ranks (`share`: this rank's part of the global
// batch's rows; 1 in a single process), checked for divergence first.
void TrainingRun::update(int it, double share) {
  dist_.average_gradients(model_->parameters(), share);
  check_gradients(it);
  optim_->step();
  optim_->zero_grad();
}

// Divergence: the weights after an iteration's updates (before validation and checkpoints).
void TrainingRun::check_weights(int it) const {
  const std::string bad = model_->non_finite_weight();
  if (!bad.empty()) throw diverged(it, "weight " + bad + " holds NaN or infinite values after the update");
}

// The forward pass of a batch through every level (X: the levels' outputs) and the sum of the levels'
// losses, each added to st.level_loss weighted by share (the batch's part of the global batch). Diverged at
// the first NaN or infinite loss.
Var TrainingRun::batch_loss(int it, const PatchSet& batch, double share, std::vector<Var>& X, IterationStats& st) {
  const int depth = scheme_.depth;
  std::vector<Var> inputs;
  std::vector<Tensor> mats;
  for (int k = 0; k < depth; ++k) {
    inputs.push_back(constant(batch.levels[k].input.to(opt_.device)));
    mats.push_back(batch.levels[k].parent_mats);
  }
  X = model_->forward_chain(inputs, mats);
  Var loss;
  for (int k = 0; k < depth; ++k) {
    if (!cfg_.intermediate_loss && k < depth - 1) continue;
    Var lk = cfg_.loss[k] == LossKind::candidate ? candidate_loss(X[k], batch.levels[k].target, *model_, rng_train_)
                                                 : level_loss(X[k], batch.levels[k].target, cfg_.loss[k], scheme_);
    const float lv = lk->value.cpu().f32()[0];
    if (!std::isfinite(lv))
      throw diverged(it, "level " + std::to_string(k) + " loss is " + (std::isnan(lv) ? "NaN" : "infinite"));
    st.level_loss[k] += lv * share;
    loss = loss ? add(loss, lk) : lk;
  }
  return loss;
}

// `epochs` passes over the set in shuffled batches: forward through every level, the levels'
// losses, backward, optimizer step. Scores the chains for hard mining in the last epoch. Stops at the
// first NaN or infinite loss or gradient (diverged), before the optimizer step.
IterationStats TrainingRun::train_on(int it, const PatchSet& set) {
  const int depth = scheme_.depth;
  const int64_t P = set.size();
  IterationStats st;
  st.level_loss.assign(depth, 0);
  st.scores.loss.assign(P, 0);
  st.scores.f1.assign(P, 1);
  st.scores.present.assign(P, std::vector<uint8_t>(scheme_.num_labels, 0));
  int64_t batches = 0;
  // Data-parallel (train/distributed.h): a step's global batch is batch_size x ranks rows of the shuffled
  // set; this rank trains on its batch_size of them (maybe none in the last, short one).
  const int64_t global = cfg_.batch_size * dist_.size(), first = cfg_.batch_size * dist_.rank();
  std::vector<uint8_t> mine(P, 0);  // the rows this rank scored (hard mining)
  for (int ep = 0; ep < cfg_.epochs; ++ep) {
    std::vector<int64_t> order(P);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng_train_);
    for (int64_t b0 = 0; b0 < P; b0 += global) {
      const int64_t rows = std::min<int64_t>(P - b0, global);
      std::vector<int64_t> idx(order.begin() + b0 + std::min(rows, first),
                               order.begin() + b0 + std::min(rows, first + cfg_.batch_size));
      const double share = static_cast<double>(idx.size()) / static_cast<double>(rows);
      if (idx.empty()) {  // nothing here this step: zero gradients into the average
        update(it, share);
        ++batches;
        continue;
      }
      PatchSet batch = take_rows(set, idx);
      std::vector<Var> X;
      Var loss = batch_loss(it, batch, share, X, st);
      backward(loss);
      update(it, share);
      ++batches;
      if (ep == cfg_.epochs - 1 && cfg_.hard_mining > 0) {
        ChainScores cs = chain_scores(X[depth - 1]->value, batch.levels[depth - 1].target, scheme_);
        for (size_t i = 0; i < idx.size(); ++i) {
          st.scores.loss[idx[i]] = cs.loss[i];
          st.scores.f1[idx[i]] = cs.f1[i];
          st.scores.present[idx[i]] = cs.present[i];
          mine[idx[i]] = 1;
        }
      }
    }
  }
  reduce_stats(st, mine);
  for (auto& v : st.level_loss) v /= static_cast<double>(std::max<int64_t>(1, batches));
  return st;
}

// Data-parallel: the global batches' losses (each rank's weighted by its share of the rows) and the chains'
// scores (each row scored by one rank) added over the ranks, so that every rank keeps the same hard chains.
void TrainingRun::reduce_stats(IterationStats& st, const std::vector<uint8_t>& mine) {
  if (dist_.size() == 1) return;
  dist_.sum(st.level_loss);
  if (cfg_.hard_mining <= 0) return;
  const size_t P = mine.size(), K = static_cast<size_t>(scheme_.num_labels);
  std::vector<double> v(P * (2 + K), 0.0);
  for (size_t i = 0; i < P; ++i) {
    if (!mine[i]) continue;
    v[i * (2 + K)] = st.scores.loss[i];
    v[i * (2 + K) + 1] = st.scores.f1[i];
    for (size_t k = 0; k < K; ++k) v[i * (2 + K) + 2 + k] = st.scores.present[i][k];
  }
  dist_.sum(v);
  for (size_t i = 0; i < P; ++i) {
    st.scores.loss[i] = static_cast<float>(v[i * (2 + K)]);
    st.scores.f1[i] = static_cast<float>(v[i * (2 + K) + 1]);
    for (size_t k = 0; k < K; ++k) st.scores.present[i][k] = v[i * (2 + K) + 2 + k] > 0;
  }
}

void TrainingRun::keep_hard_chains(const PatchSet& set, const IterationStats& st) {
  if (cfg_.hard_mining <= 0) return;
  std::vector<int64_t> keep =
      hard_mining_select(st.scores, set.age, cfg_.hard_mining, cfg_.hard_mining_maxage, cfg_.hard_mining_order);
  kept_ = take_rows(set, keep);
  for (auto& a : kept_.age) a += 1;
}

// The iteration's line in the JSONL log (written by rank 0; returned for TrainOptions::on_iteration).
std::string TrainingRun::record(int it, int64_t patches, double wait_s, const IterationStats& st,
                                const std::vector<double>& dice) {
  json rec = {{"it", it + 1}, {"time_s", elapsed()},     {"lr", optim_->lr()},
              {"patches", patches}, {"loss", st.level_loss}, {"wait_s", wait_s}};
  if (!dice.empty()) rec["val_dice"] = dice;
  const std::string line = rec.dump();
  if (!dist_.root()) return line;
  log_ << line << "\n";
  log_.flush();
  return line;
}

// The progress line on stderr (a rewritten line on a terminal, else plain lines every log_every). When
// the time limit, not num_its, ends the run, it counts time: "it 11  ...  0m35s of 2m00s, 1m25s left".
void TrainingRun::progress(int done, const IterationStats& st, const std::vector<double>& dice) const {
  if (opt_.quiet || !dist_.root()) return;
  const double t = elapsed(), rate = t / std::max(1, done - start_it_);
  const double by_its = rate * (cfg_.num_its - done);
  const bool by_time = cfg_.time_limit_s > 0 && cfg_.time_limit_s - t < by_its;
  const double tot = std::accumulate(st.level_loss.begin(), st.level_loss.end(), 0.0);
  char line[256];
  if (by_time)
    std::snprintf(line, sizeof line, "it %d  loss %.4f  %.2f s/it  %s of %s, %s left", done, tot, rate,
                  fmt_duration(t).c_str(), fmt_duration(cfg_.time_limit_s).c_str(),
                  fmt_duration(std::max(0.0, cfg_.time_limit_s - t)).c_str());
  else
    std::snprintf(line, sizeof line, "it %d/%d  loss %.4f  %.2f s/it  ETA %s", done, cfg_.num_its, tot, rate,
                  fmt_duration(by_its).c_str());
  std::string extra;
  if (!dice.empty()) {
    std::ostringstream o;
    o.precision(3);
    o << "  val dice";
    for (double d : dice) o << " " << d;
    extra = o.str();
  }
  const bool last = done == cfg_.num_its;
  if (opt_.progress_tty) std::cerr << "\r" << line << extra << "\033[K" << std::flush;
  else if (done % std::max(1, opt_.log_every) == 0 || last || !extra.empty()) std::cerr << line << extra << "\n";
}

// The final validation chooses the thresholds; everything goes into the model file.
TrainResult TrainingRun::finish(int it) {
  if (cfg_.parallel && next_.valid()) next_.wait();
  if (opt_.progress_tty && !opt_.quiet) std::cerr << "\n";
  TrainResult res;
  res.iterations = it;
  res.last_loss = last_loss_;
  res.validation_dice = validate(it - 1, true);
  res.thresholds = thresholds_;
  res.seconds = elapsed();
  ModelSpec& ms = model_->spec();
  ms.thresholds = thresholds_;
  ms.training = {{"iterations", it}, {"seconds", res.seconds}, {"train_cases", train_.size()},
                 {"validation_cases", validation_.size()}, {"last_loss", res.last_loss},
                 {"config", cfg_.raw}};
  if (!res.validation_dice.empty()) ms.training["validation_dice"] = res.validation_dice;
  if (dist_.root()) model_->save(opt_.out);
  save_checkpoint(it);
  json fin = {{"final", true}, {"it", it}, {"time_s", res.seconds}, {"thresholds", thresholds_}};
  if (!res.validation_dice.empty()) fin["val_dice"] = res.validation_dice;
  if (dist_.root()) log_ << fin.dump() << "\n";
  return res;
}

TrainResult TrainingRun::run() {
  cpu_cache_release();  // the loading's temporaries (up to PW_CPU_CACHE_MB) are not the training's sizes
  check_subjects();
  build_model();
  build_optimizer();
  resume();
  dist_.check_same(start_it_, "--resume: the ranks found checkpoints of different iterations");
  dist_.broadcast_model(*model_);  // rank 0's weights everywhere (they are equal already: the same seed)
  if (dist_.size() > 1) {
    const std::string how = dist_.choose_gradient_reduction(opt_.device);
    if (!opt_.quiet) std::cerr << "data-parallel over " << dist_.size() << " ranks, gradients: " << how << "\n";
  }
  open_log();
  pending_sample_state_ = rng_state(rng_sample_);
  if (cfg_.parallel)
    next_ = std::async(std::launch::async, [this]() { return gen_->sample(train_ptrs_, cfg_.num_patches, rng_sample_); });
  model_->set_training(true);
  int it = start_it_;
  try {
    loop(it);
  } catch (...) {  // end the rewritten progress line so that the error gets a line of its own
    if (opt_.progress_tty && !opt_.quiet && it > start_it_) std::cerr << "\n";
    throw;
  }
  TrainResult res = finish(it);
  dist_.end_gradient_reduction();
  return res;
}

// The iterations from `it` (left at the first one not run: num_its, or where time_limit_s stopped).
void TrainingRun::loop(int& it) {
  for (; it < cfg_.num_its; ++it) {
    // rank 0's clock, so that every rank stops after the same iteration and sets the same learning rate
    if (cfg_.time_limit_s > 0 && dist_.from_root(elapsed()) > cfg_.time_limit_s) break;
    double wait_s = 0;
    PatchSet set = next_set(it, wait_s);
    optim_->set_lr(cfg_.schedule_over_time ? sched_.at_fraction(dist_.from_root(elapsed()) / cfg_.time_limit_s)
                                           : sched_.at(it));
    IterationStats st = train_on(it, set);
    check_weights(it);
    last_loss_ = st.level_loss;
    keep_hard_chains(set, st);
    const int done = it + 1;
    const bool last = done == cfg_.num_its;
    std::vector<double> dice;
    if (cfg_.validation_every > 0 && done % cfg_.validation_every == 0 && !last) dice = validate(it, false);
    const std::string line = record(it, set.size(), wait_s, st, dice);
    const int ckpt_every = cfg_.validation_every > 0 ? cfg_.validation_every : 10;
    if (done % ckpt_every == 0 && !last) save_checkpoint(done);
    progress(done, st, dice);
    if (opt_.on_iteration && !opt_.on_iteration(line)) {
      it = done;
      break;
    }
  }
}

}  // namespace

TrainResult Trainer::run(std::vector<Subject>& train, std::vector<Subject>& validation) {
  if (train.empty()) throw InputError("training: no training subjects");
  if (cfg_.threads > 0) set_num_threads(cfg_.threads);
  return TrainingRun(cfg_, opt_, predictor_, model_, train, validation).run();
}

}  // namespace pw::train
