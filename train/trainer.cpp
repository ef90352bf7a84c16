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
      const float* tv = t.f32();
      float *oh = onehot.f32(), *mk = mask.f32();
      for (int64_t i = 0, n = t.numel(); i < n; ++i) {
        const bool dc = std::isnan(tv[i]);
        oh[i] = dc ? 0.f : tv[i];
        mk[i] = dc ? 0.f : 1.f;
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

Tensor draw_candidates(const Tensor& target_t, int classes, int n, std::mt19937_64& rng, float& neg_offset) {
  const Tensor target = target_t.cpu();
  const int64_t B = target.dim(0), S = target.numel() / B, others = classes - 1;
  const bool all = n >= others;
  const int64_t T = 1 + (all ? others : n);
  Shape sh = target.shape();
  sh.insert(sh.begin() + 1, T);
  Tensor cand = Tensor::empty(sh, DType::i32);
  neg_offset = all ? 0.f : static_cast<float>(std::log(static_cast<double>(others) / n));
  const int32_t* t = target.i32();
  int32_t* c = cand.i32();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) {
      const int32_t truth = t[b * S + s];
      c[b * T * S + s] = truth;
      for (int64_t k = 1; k < T; ++k) {
        // every other class in turn, or a uniform draw from [0, C-1) shifted past the true class
        int64_t draw = all ? k - 1 : static_cast<int64_t>((static_cast<unsigned __int128>(rng()) * others) >> 64);
        if (truth >= 0 && draw >= truth) ++draw;
        c[(b * T + k) * S + s] = truth < 0 ? 0 : static_cast<int32_t>(draw);
      }
    }
  return cand;
}

Var candidate_loss(const Var& X, const Tensor& target, const Model& model, std::mt19937_64& rng) {
  const Scheme& sc = model.spec().scheme;
  const int m = sc.candidate_sampling.dim;
  Var f = X->value.dim(1) == m ? X : slice(X, 0, m);
  float offset = 0.f;
  Tensor cand = draw_candidates(target, sc.num_labels + 1, sc.candidate_sampling.candidates, rng, offset);
  return candidate_cross_entropy(f, model.class_embedding(), model.class_bias(), cand.to(X->value.device()), offset);
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

DiceTally::DiceTally(const Subject& subject, std::vector<std::vector<double>> thresholds)
    : s_(subject), t_(std::move(thresholds)) {
  K_ = t_.empty() ? 0 : static_cast<int>(t_[0].size());
  for (const auto& t : t_)
    if (static_cast<int>(t.size()) != K_) throw std::invalid_argument("DiceTally: one threshold per label");
  if (!s_.categorical_labels() && s_.labels.dim(0) != K_)
    throw std::invalid_argument("DiceTally: one threshold per label volume");
  const size_t G = t_.size();
  inter_.assign(G, std::vector<double>(K_, 0));
  np_ = nt_ = inter_;
}

void DiceTally::add(const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& size, const float* p) {
  const Size3& gs = s_.image.s;  // x, y, z
  const int64_t bn = size[0] * size[1] * size[2];
  const bool cat = s_.categorical_labels();
  int64_t i = 0;  // voxel index within the box
  for (int64_t z = 0; z < size[0]; ++z)
    for (int64_t y = 0; y < size[1]; ++y)
      for (int64_t x = 0; x < size[2]; ++x, ++i) {
        const int64_t v = ((lo[0] + z) * gs[1] + lo[1] + y) * gs[0] + lo[2] + x;
        if (cat) add_class_voxel(v, p + i, bn);
        else add_channel_voxel(v, p + i, bn);
      }
}

// Categorical: the most probable label of voxel v (probabilities p[k * stride]) if it reaches its threshold.
void DiceTally::add_class_voxel(int64_t v, const float* p, int64_t stride) {
  const int32_t truth = s_.label_class(v);
  if (truth < 0) return;
  int best = 0;
  float bp = -1;
  for (int k = 0; k < K_; ++k)
    if (p[k * stride] > bp) bp = p[k * stride], best = k;
  for (size_t g = 0; g < t_.size(); ++g) {
    const int pred = bp >= t_[g][best] ? best + 1 : 0;
    if (truth > 0) nt_[g][truth - 1] += 1;
    if (pred > 0) np_[g][pred - 1] += 1;
    if (truth > 0 && pred == truth) inter_[g][truth - 1] += 1;
  }
}

// One label volume per label: each thresholded on its own.
void DiceTally::add_channel_voxel(int64_t v, const float* p, int64_t stride) {
  const int64_t n = s_.image.numel();
  for (int k = 0; k < K_; ++k) {
    const float tr = s_.labels.f32()[k * n + v];
    if (std::isnan(tr)) continue;
    for (size_t g = 0; g < t_.size(); ++g) {
      const bool tt = tr > 0.5f, pp = p[k * stride] >= t_[g][k];
      nt_[g][k] += tt;
      np_[g][k] += pp;
      inter_[g][k] += tt && pp;
    }
  }
}

std::vector<double> DiceTally::dice(int g) const {
  std::vector<double> d(K_);
  for (int k = 0; k < K_; ++k)
    d[k] = np_[g][k] + nt_[g][k] > 0 ? 2 * inter_[g][k] / (np_[g][k] + nt_[g][k])
                                     : std::numeric_limits<double>::quiet_NaN();
  return d;
}

std::vector<double> dice_per_label(const Tensor& prob_t, const Subject& subject, const std::vector<double>& t) {
  Tensor prob = prob_t.cpu();
  const Size3& s = subject.image.s;
  if (prob.numel() != static_cast<int64_t>(t.size()) * subject.image.numel())
    throw std::invalid_argument("dice_per_label: one threshold per label and probability channel");
  DiceTally tally(subject, {t});
  tally.add({0, 0, 0}, {s[2], s[1], s[0]}, prob.f32());
  return tally.dice(0);
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

}  // namespace pw::train
