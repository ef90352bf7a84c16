#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <limits>
#include <numeric>
#include <sstream>

#include "engine/ops.h"
#include "engine/optim.h"
#include "io/error.h"
#include "kernels/parallel.h"

namespace pw::train {

using nlohmann::json;
namespace fs = std::filesystem;

// ---- losses -------------------------------------------------------------------------------------

// One-hot of classes 1..K of an i32 class map [B, ...] -> f32 [B, K, ...] and its mask (0 where -1).
static void onehot_fg(const Tensor& cls, int K, Tensor& onehot, Tensor& mask) {
  const int64_t B = cls.dim(0), n = cls.numel() / B;
  Shape sh = cls.shape();
  sh.insert(sh.begin() + 1, K);
  onehot = Tensor::zeros(sh);
  mask = Tensor::empty(sh);
  const int32_t* c = cls.i32();
  float* o = onehot.f32();
  float* m = mask.f32();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t v = 0; v < n; ++v) {
      int32_t t = c[b * n + v];
      for (int k = 0; k < K; ++k) {
        o[(b * K + k) * n + v] = t == k + 1 ? 1.f : 0.f;
        m[(b * K + k) * n + v] = t < 0 ? 0.f : 1.f;
      }
    }
}

Var level_loss(const Var& X, const Tensor& target, LossKind kind, const Scheme& scheme) {
  const int C = scheme.label_channels();
  Var logits = X->value.dim(1) == C ? X : slice(X, 0, C);
  const bool cat = scheme.categorical;
  Var total;
  auto add_term = [&](const Var& t) { total = total ? add(total, t) : t; };
  if (kind == LossKind::ce || kind == LossKind::ce_dice) {
    Tensor t = target.to(logits->value.device());
    add_term(cross_entropy(logits, t));
  }
  if (kind == LossKind::bce || kind == LossKind::bce_dice) {
    Tensor t = target.to(logits->value.device());
    add_term(bce_with_logits(logits, t));
  }
  if (kind == LossKind::dice || kind == LossKind::ce_dice || kind == LossKind::bce_dice) {
    Tensor onehot, mask;
    Var probs;
    if (cat) {
      onehot_fg(target.cpu(), scheme.num_labels, onehot, mask);
      probs = slice(softmax(logits), 1, C);
    } else {
      Tensor t = target.cpu();
      onehot = Tensor::empty(t.shape());
      mask = Tensor::empty(t.shape());
      for (int64_t i = 0; i < t.numel(); ++i) {
        bool dc = std::isnan(t.f32()[i]);
        onehot.f32()[i] = dc ? 0.f : t.f32()[i];
        mask.f32()[i] = dc ? 0.f : 1.f;
      }
      probs = sigmoid(logits);
    }
    Device d = logits->value.device();
    onehot = onehot.to(d);
    mask = mask.to(d);
    add_term(soft_dice(probs, onehot, false, 1.0f, &mask));
  }
  return total;
}

ChainScores chain_scores(const Tensor& Xt, const Tensor& target_t, const Scheme& scheme) {
  Tensor X = Xt.cpu(), target = target_t.cpu();
  const int64_t B = X.dim(0), CX = X.dim(1), n = X.numel() / (B * CX);
  const int K = scheme.num_labels;
  ChainScores s;
  s.loss.assign(B, 0.f);
  s.f1.assign(B, 1.f);
  s.present.assign(B, std::vector<uint8_t>(K, 0));
  const float* x = X.f32();
  for (int64_t b = 0; b < B; ++b) {
    double loss = 0;
    int64_t cnt = 0;
    std::vector<double> inter(K, 0), npred(K, 0), ntrue(K, 0);
    for (int64_t v = 0; v < n; ++v) {
      if (scheme.categorical) {
        int32_t t = target.i32()[b * n + v];
        if (t < 0) continue;
        double mx = -1e30;
        int arg = 0;
        for (int c = 0; c <= K; ++c) {
          double z = x[(b * CX + c) * n + v];
          if (z > mx) mx = z, arg = c;
        }
        double se = 0;
        for (int c = 0; c <= K; ++c) se += std::exp(x[(b * CX + c) * n + v] - mx);
        loss += mx + std::log(se) - x[(b * CX + t) * n + v];
        ++cnt;
        if (t > 0) ntrue[t - 1] += 1, s.present[b][t - 1] = 1;
        if (arg > 0) npred[arg - 1] += 1;
        if (t > 0 && arg == t) inter[t - 1] += 1;
      } else {
        for (int k = 0; k < K; ++k) {
          float t = target.f32()[(b * K + k) * n + v];
          if (std::isnan(t)) continue;
          double z = x[(b * CX + k) * n + v];
          loss += std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::abs(z)));
          ++cnt;
          bool tt = t > 0.5f, pp = z > 0;
          if (tt) ntrue[k] += 1, s.present[b][k] = 1;
          if (pp) npred[k] += 1;
          if (tt && pp) inter[k] += 1;
        }
      }
    }
    s.loss[b] = cnt ? static_cast<float>(loss / cnt) : 0.f;
    double f = 0;
    int m = 0;
    for (int k = 0; k < K; ++k)
      if (npred[k] + ntrue[k] > 0) {
        f += 2 * inter[k] / (npred[k] + ntrue[k]);
        ++m;
      }
    s.f1[b] = m ? static_cast<float>(f / m) : 1.f;
  }
  return s;
}

std::vector<int64_t> hard_mining_select(const ChainScores& s, const std::vector<int>& age, double fraction,
                                        int maxage, HardOrder order) {
  const int64_t n = static_cast<int64_t>(age.size());
  const int64_t keep = static_cast<int64_t>(std::floor(fraction * static_cast<double>(n)));
  if (keep <= 0) return {};
  std::vector<double> score(n);
  if (order == HardOrder::balance) {
    const size_t K = s.present.empty() ? 0 : s.present[0].size();
    std::vector<double> freq(K, 0);
    for (int64_t i = 0; i < n; ++i)
      for (size_t k = 0; k < K; ++k) freq[k] += s.present[i][k];
    for (int64_t i = 0; i < n; ++i) {
      double r = 0;
      for (size_t k = 0; k < K; ++k)
        if (s.present[i][k]) r += static_cast<double>(n) / freq[k];
      score[i] = r;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (order == HardOrder::loss) score[i] = s.loss[i];
    else if (order == HardOrder::f1) score[i] = -s.f1[i];
  }
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < n; ++i)
    if (age[i] < maxage) idx.push_back(i);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  if (static_cast<int64_t>(idx.size()) > keep) idx.resize(keep);
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<double> dice_per_label(const Tensor& prob_t, const Subject& subject, const std::vector<double>& t) {
  Tensor prob = prob_t.cpu();
  const int64_t n = subject.image.numel();
  const int K = static_cast<int>(prob.numel() / n);
  const bool cat = subject.labels.dtype() == DType::i32;
  if (static_cast<int>(t.size()) != K) throw std::invalid_argument("dice_per_label: one threshold per label");
  std::vector<double> inter(K, 0), np(K, 0), nt(K, 0);
  const float* p = prob.f32();
  for (int64_t v = 0; v < n; ++v) {
    if (cat) {  // the most probable label, if it reaches its threshold
      int32_t truth = subject.labels.i32()[v];
      if (truth < 0) continue;
      int best = 0;
      float bp = -1;
      for (int k = 0; k < K; ++k)
        if (p[k * n + v] > bp) bp = p[k * n + v], best = k;
      int pred = bp >= t[best] ? best + 1 : 0;
      if (truth > 0) nt[truth - 1] += 1;
      if (pred > 0) np[pred - 1] += 1;
      if (truth > 0 && pred == truth) inter[truth - 1] += 1;
    } else {
      for (int k = 0; k < K; ++k) {
        float tr = subject.labels.f32()[k * n + v];
        if (std::isnan(tr)) continue;
        bool tt = tr > 0.5f, pp = p[k * n + v] >= t[k];
        nt[k] += tt;
        np[k] += pp;
        inter[k] += tt && pp;
      }
    }
  }
  std::vector<double> d(K);
  for (int k = 0; k < K; ++k)
    d[k] = np[k] + nt[k] > 0 ? 2 * inter[k] / (np[k] + nt[k]) : std::numeric_limits<double>::quiet_NaN();
  return d;
}

// ---- the loop -------------------------------------------------------------------------------------

Trainer::Trainer(TrainConfig cfg, TrainOptions opt) : cfg_(std::move(cfg)), opt_(std::move(opt)) {}

TrainResult Trainer::run_from_dataset() {
  std::vector<DataPair> cases = list_cases(cfg_.dataset), tr, va;
  split_cases(cfg_.dataset, cases, tr, va);
  std::vector<Subject> train_s, val_s;
  if (!opt_.quiet) std::cerr << "loading " << tr.size() << " training and " << va.size() << " validation cases\n";
  std::vector<Subject> all(tr.size() + va.size());
  std::vector<std::string> errors(all.size());
  parallel_for(static_cast<int64_t>(all.size()), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const DataPair& p = i < static_cast<int64_t>(tr.size()) ? tr[i] : va[i - tr.size()];
      try {
        all[i] = load_subject(p, cfg_.scheme, cfg_.dontcare);
      } catch (const std::exception& ex) {
        errors[i] = ex.what();
      }
    }
  });
  for (const auto& e : errors)
    if (!e.empty()) throw InputError(e);
  for (size_t i = 0; i < all.size(); ++i) (i < tr.size() ? train_s : val_s).push_back(std::move(all[i]));
  // label names from an MSD dataset.json
  if (!cfg_.dataset.root.empty() && fs::exists(cfg_.dataset.root / "dataset.json")) {
    std::ifstream in(cfg_.dataset.root / "dataset.json");
    json d = json::parse(in, nullptr, false);
    if (d.is_object() && d.contains("labels") && d["labels"].is_object()) cfg_.raw["__label_table"] = d["labels"];
  }
  return run(train_s, val_s);
}

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

}  // namespace

TrainResult Trainer::run(std::vector<Subject>& train, std::vector<Subject>& validation) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(clock::now() - t0).count(); };
  if (train.empty()) throw InputError("training: no training subjects");
  if (cfg_.threads > 0) set_num_threads(cfg_.threads);

  // label count from the data when the config leaves it open
  Scheme& scheme = cfg_.scheme;
  const Tensor& l0 = train[0].labels;
  if (!l0.defined()) throw InputError(train[0].name + ": no labels");
  if (scheme.num_labels == 0) scheme.num_labels = static_cast<int>(l0.dim(0));
  for (auto* set : {&train, &validation})
    for (const auto& s : *set) {
      if (s.data.dim(0) != train[0].data.dim(0))
        throw InputError(s.name + ": " + std::to_string(s.data.dim(0)) + " image channels, expected " +
                         std::to_string(train[0].data.dim(0)));
      if (!s.labels.defined() || (s.labels.dtype() == DType::f32 && s.labels.dim(0) != scheme.num_labels))
        throw InputError(s.name + ": label volumes do not match num_labels " + std::to_string(scheme.num_labels));
    }
  if (!cfg_.balance.label_weight.empty() && static_cast<int>(cfg_.balance.label_weight.size()) != scheme.num_labels)
    throw InputError("balance.label_weight: expected " + std::to_string(scheme.num_labels) + " entries");

  SamplerOptions so;
  so.balance = cfg_.balance;
  so.augment = cfg_.augment;
  so.independent_augmentation = cfg_.independent_augmentation;
  so.tree = cfg_.tree;
  so.dontcare = cfg_.dontcare;
  CropGenerator gen(scheme, so);
  std::vector<Subject*> tptr;
  for (auto& s : train) tptr.push_back(&s);
  gen.set_autoweight(tptr);

  ModelSpec spec = ModelSpec::from_config(cfg_, static_cast<int>(train[0].data.dim(0)));
  spec.in_channels = gen.input_channels(spec.image_channels);
  if (cfg_.raw.contains("__label_table")) {
    const json& lt = cfg_.raw["__label_table"];
    for (int k = 0; k < scheme.num_labels; ++k) {
      std::string key = scheme.categorical_label.empty() ? std::to_string(k + 1) : std::to_string(scheme.categorical_label[k]);
      spec.label_names.push_back(lt.contains(key) && lt[key].is_string() ? lt[key].get<std::string>() : key);
    }
    cfg_.raw.erase("__label_table");
  }
  model_ = std::make_unique<Model>(spec, cfg_.seed, opt_.device);

  std::unique_ptr<Optimizer> optim;
  Adam* adam = nullptr;
  Sgd* sgd = nullptr;
  if (cfg_.optimizer == "sgd") {
    SgdOptions o;
    o.lr = static_cast<float>(cfg_.lr);
    o.momentum = static_cast<float>(cfg_.momentum);
    o.weight_decay = static_cast<float>(cfg_.weight_decay);
    auto s = std::make_unique<Sgd>(model_->parameters(), o);
    sgd = s.get();
    optim = std::move(s);
  } else {
    AdamOptions o;
    o.lr = static_cast<float>(cfg_.lr);
    o.weight_decay = static_cast<float>(cfg_.weight_decay);
    o.decoupled = cfg_.optimizer == "adamw";
    auto a = std::make_unique<Adam>(model_->parameters(), o);
    adam = a.get();
    optim = std::move(a);
  }
  LrSchedule sched;
  sched.kind = LrSchedule::parse_kind(cfg_.schedule);
  sched.base = static_cast<float>(cfg_.lr);
  sched.step_size = cfg_.step_size;
  sched.gamma = static_cast<float>(cfg_.gamma);
  sched.total = cfg_.num_its;

  std::mt19937_64 rng_sample(cfg_.seed * 2654435761ULL + 17), rng_train(cfg_.seed * 40503ULL + 5);
  const fs::path ckpt = fs::path(opt_.out.string() + ".ckpt");
  const fs::path logf = fs::path(opt_.out.string() + ".log.jsonl");
  int start_it = 0;
  std::map<std::string, Tensor> resume_extra;
  if (opt_.resume && fs::exists(ckpt)) {
    std::map<std::string, Tensor>& extra = resume_extra;
    std::map<std::string, std::string> meta;
    Model loaded = Model::load(ckpt, opt_.device, &extra, &meta);
    model_->load_state(loaded.state());
    try {
      start_it = std::stoi(meta.at("iteration"));
      set_rng_state(rng_sample, meta.at("rng_sample"));
      set_rng_state(rng_train, meta.at("rng_train"));
      (void)std::stoll(meta.at("adam_steps"));
    } catch (const std::exception&) {
      throw InputError(ckpt.string() + ": not a training checkpoint (iteration or random states missing)");
    }
    if (start_it > cfg_.num_its)
      throw InputError(ckpt.string() + ": the checkpoint is at iteration " + std::to_string(start_it) +
                       ", beyond num_its " + std::to_string(cfg_.num_its));
    if (adam) {
      for (size_t i = 0; i < model_->parameters().size(); ++i) {
        auto m = extra.find("opt.m." + std::to_string(i)), v = extra.find("opt.v." + std::to_string(i));
        if (m != extra.end() && v != extra.end()) {
          adam->exp_avg(i) = m->second.to(opt_.device);
          adam->exp_avg_sq(i) = v->second.to(opt_.device);
        }
      }
      adam->set_steps(std::stoll(meta.at("adam_steps")));
    }
    if (sgd && cfg_.momentum != 0)
      for (size_t i = 0; i < model_->parameters().size(); ++i) {
        auto b = extra.find("opt.momentum." + std::to_string(i));
        if (b != extra.end()) sgd->restore_momentum(i, b->second);
      }
    if (!opt_.quiet) std::cerr << "resuming from " << ckpt.string() << " at iteration " << start_it << "\n";
  } else if (opt_.resume && !opt_.quiet) {
    std::cerr << "no checkpoint " << ckpt.string() << ": starting from scratch\n";
  }
  std::ofstream log(logf, start_it > 0 ? std::ios::app : std::ios::trunc);
  PatchSet kept;  // hard mining: chains kept for the next iteration
  if (resume_extra.count("kept.age")) {
    const Tensor& age = resume_extra.at("kept.age");
    for (int64_t i = 0; i < age.numel(); ++i) {
      kept.age.push_back(age.i32()[i]);
      kept.subject.push_back(resume_extra.at("kept.subject").i32()[i]);
    }
    kept.levels.resize(scheme.depth);
    for (int k = 0; k < scheme.depth; ++k) {
      const std::string p = "kept.level" + std::to_string(k) + ".";
      kept.levels[k].input = resume_extra.at(p + "input");
      if (resume_extra.count(p + "mats")) kept.levels[k].parent_mats = resume_extra.at(p + "mats");
      kept.levels[k].target = resume_extra.at(p + "target");
    }
  }
  if (!log) throw InputError(logf.string() + ": cannot write the training log");

  // The sampler state before drawing the set of the next iteration (with `parallel` that draw may
  // already be running): a resumed run redraws exactly that set.
  std::string pending_sample_state = rng_state(rng_sample);
  auto save_checkpoint = [&](int it) {
    std::map<std::string, Tensor> extra;
    std::map<std::string, std::string> meta;
    if (adam)
      for (size_t i = 0; i < model_->parameters().size(); ++i) {
        if (adam->exp_avg(i).defined()) extra["opt.m." + std::to_string(i)] = adam->exp_avg(i).cpu();
        if (adam->exp_avg_sq(i).defined()) extra["opt.v." + std::to_string(i)] = adam->exp_avg_sq(i).cpu();
      }
    if (sgd)
      for (size_t i = 0; i < model_->parameters().size(); ++i)
        if (sgd->momentum_started(i)) extra["opt.momentum." + std::to_string(i)] = sgd->momentum_buffer(i).cpu();
    if (kept.size() > 0) {  // the hard-mined chains carried into the next iteration
      Tensor age = Tensor::empty({kept.size()}, DType::i32), subj = Tensor::empty({kept.size()}, DType::i32);
      for (int64_t i = 0; i < kept.size(); ++i) age.i32()[i] = kept.age[i], subj.i32()[i] = kept.subject[i];
      extra["kept.age"] = age;
      extra["kept.subject"] = subj;
      for (size_t k = 0; k < kept.levels.size(); ++k) {
        const std::string p = "kept.level" + std::to_string(k) + ".";
        extra[p + "input"] = kept.levels[k].input;
        if (kept.levels[k].parent_mats.defined()) extra[p + "mats"] = kept.levels[k].parent_mats;
        extra[p + "target"] = kept.levels[k].target;
      }
    }
    meta["iteration"] = std::to_string(it);
    meta["rng_sample"] = pending_sample_state;
    meta["rng_train"] = rng_state(rng_train);
    meta["adam_steps"] = std::to_string(adam ? adam->steps() : 0);
    model_->save(ckpt, extra, meta);
  };

  std::vector<double> thresholds(scheme.num_labels, 0.5);
  auto validate = [&](bool choose) -> std::vector<double> {
    if (validation.empty() || !predictor_) return {};
    NoGradGuard ng;
    model_->set_training(false);
    static const double grid[] = {0.3, 0.4, 0.5, 0.6, 0.7};
    const int G = choose ? 5 : 1;
    std::vector<std::vector<double>> sum(G, std::vector<double>(scheme.num_labels, 0));
    std::vector<std::vector<int>> cnt(G, std::vector<int>(scheme.num_labels, 0));
    for (auto& s : validation) {
      Tensor prob = predictor_(*model_, s);
      for (int g = 0; g < G; ++g) {
        std::vector<double> t = choose ? std::vector<double>(scheme.num_labels, grid[g]) : thresholds;
        auto d = dice_per_label(prob, s, t);
        for (int k = 0; k < scheme.num_labels; ++k)
          if (std::isfinite(d[k])) sum[g][k] += d[k], cnt[g][k] += 1;
      }
    }
    model_->set_training(true);
    std::vector<double> best(scheme.num_labels, std::numeric_limits<double>::quiet_NaN());
    for (int k = 0; k < scheme.num_labels; ++k)
      for (int g = 0; g < G; ++g) {
        if (!cnt[g][k]) continue;
        double m = sum[g][k] / cnt[g][k];
        if (!std::isfinite(best[k]) || m > best[k]) {
          best[k] = m;
          if (choose) thresholds[k] = grid[g];
        }
      }
    return best;
  };

  TrainResult res;
  const int depth = scheme.depth;
  const int per_subject = cfg_.num_patches;
  auto draw = [&]() { return gen.sample(tptr, per_subject, rng_sample); };
  std::future<PatchSet> next;
  if (cfg_.parallel) next = std::async(std::launch::async, draw);
  model_->set_training(true);
  int it = start_it;
  for (; it < cfg_.num_its; ++it) {
    if (cfg_.time_limit_s > 0 && elapsed() > cfg_.time_limit_s) break;
    const auto ti = clock::now();
    PatchSet fresh = cfg_.parallel ? next.get() : draw();
    const double t_wait = std::chrono::duration<double>(clock::now() - ti).count();
    pending_sample_state = rng_state(rng_sample);
    if (cfg_.parallel && it + 1 < cfg_.num_its) next = std::async(std::launch::async, draw);
    PatchSet set = concat_sets(fresh, kept);
    const int64_t P = set.size();
    optim->set_lr(sched.at(it));

    std::vector<double> level_loss_sum(depth, 0);
    int64_t batches = 0;
    ChainScores scores;
    scores.loss.assign(P, 0);
    scores.f1.assign(P, 1);
    scores.present.assign(P, std::vector<uint8_t>(scheme.num_labels, 0));
    for (int ep = 0; ep < cfg_.epochs; ++ep) {
      std::vector<int64_t> order(P);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng_train);
      for (int64_t b0 = 0; b0 < P; b0 += cfg_.batch_size) {
        std::vector<int64_t> idx(order.begin() + b0, order.begin() + std::min<int64_t>(P, b0 + cfg_.batch_size));
        PatchSet batch = take_rows(set, idx);
        std::vector<Var> inputs;
        std::vector<Tensor> mats;
        for (int k = 0; k < depth; ++k) {
          inputs.push_back(constant(batch.levels[k].input.to(opt_.device)));
          mats.push_back(batch.levels[k].parent_mats);
        }
        std::vector<Var> X = model_->forward_chain(inputs, mats);
        Var loss;
        for (int k = 0; k < depth; ++k) {
          if (!cfg_.intermediate_loss && k < depth - 1) continue;
          Var lk = level_loss(X[k], batch.levels[k].target, cfg_.loss[k], scheme);
          level_loss_sum[k] += lk->value.cpu().f32()[0];
          loss = loss ? add(loss, lk) : lk;
        }
        backward(loss);
        optim->step();
        optim->zero_grad();
        ++batches;
        if (ep == cfg_.epochs - 1 && cfg_.hard_mining > 0) {
          ChainScores cs = chain_scores(X[depth - 1]->value, batch.levels[depth - 1].target, scheme);
          for (size_t i = 0; i < idx.size(); ++i) {
            scores.loss[idx[i]] = cs.loss[i];
            scores.f1[idx[i]] = cs.f1[i];
            scores.present[idx[i]] = cs.present[i];
          }
        }
      }
    }
    for (auto& v : level_loss_sum) v /= static_cast<double>(std::max<int64_t>(1, batches));
    res.last_loss = level_loss_sum;
    if (cfg_.hard_mining > 0) {
      std::vector<int64_t> keep = hard_mining_select(scores, set.age, cfg_.hard_mining, cfg_.hard_mining_maxage,
                                                     cfg_.hard_mining_order);
      kept = take_rows(set, keep);
      for (auto& a : kept.age) a += 1;
    }
    const int done = it + 1;
    json rec = {{"it", done}, {"time_s", elapsed()}, {"lr", sched.at(it)}, {"patches", P},
                {"loss", level_loss_sum}, {"wait_s", t_wait}};
    std::vector<double> dice;
    const bool last = done == cfg_.num_its;
    if (cfg_.validation_every > 0 && done % cfg_.validation_every == 0 && !last) {
      dice = validate(false);
      if (!dice.empty()) rec["val_dice"] = dice;
    }
    log << rec.dump() << "\n";
    log.flush();
    const int ckpt_every = cfg_.validation_every > 0 ? cfg_.validation_every : 10;
    if (done % ckpt_every == 0 && !last) save_checkpoint(done);
    if (!opt_.quiet) {
      double rate = elapsed() / std::max(1, done - start_it);
      double eta = rate * (cfg_.num_its - done);
      if (cfg_.time_limit_s > 0) eta = std::max(0.0, std::min(eta, cfg_.time_limit_s - elapsed()));
      double tot = std::accumulate(level_loss_sum.begin(), level_loss_sum.end(), 0.0);
      char line[256];
      std::snprintf(line, sizeof line, "it %d/%d  loss %.4f  %.2f s/it  ETA %s", done, cfg_.num_its, tot, rate,
                    fmt_duration(eta).c_str());
      std::string extra;
      if (!dice.empty()) {
        std::ostringstream o;
        o.precision(3);
        o << "  val dice";
        for (double d : dice) o << " " << d;
        extra = o.str();
      }
      if (opt_.progress_tty) std::cerr << "\r" << line << extra << "\033[K" << std::flush;
      else if (done % std::max(1, opt_.log_every) == 0 || last || !extra.empty()) std::cerr << line << extra << "\n";
    }
  }
  if (cfg_.parallel && next.valid()) next.wait();
  if (opt_.progress_tty && !opt_.quiet) std::cerr << "\n";
  res.iterations = it;
  // final validation: choose the thresholds, then store everything in the model file
  res.validation_dice = validate(true);
  res.thresholds = thresholds;
  res.seconds = elapsed();
  ModelSpec& ms = model_->spec();
  ms.thresholds = thresholds;
  ms.training = {{"iterations", it}, {"seconds", res.seconds}, {"train_cases", train.size()},
                 {"validation_cases", validation.size()}, {"last_loss", res.last_loss},
                 {"config", cfg_.raw}};
  if (!res.validation_dice.empty()) ms.training["validation_dice"] = res.validation_dice;
  model_->save(opt_.out);
  save_checkpoint(it);
  json fin = {{"final", true}, {"it", it}, {"time_s", res.seconds}, {"thresholds", thresholds}};
  if (!res.validation_dice.empty()) fin["val_dice"] = res.validation_dice;
  log << fin.dump() << "\n";
  return res;
}

}  // namespace pw::train
