#include "apply/responses.h"

#include <algorithm>
#include <stdexcept>

#include "apply/outputs.h"
#include "engine/ops.h"

namespace pw::apply {

Tensor classify_responses(const Tensor& features, const train::Model& model, float min_prob) {
  const Var E = model.class_embedding(), b = model.class_bias();
  if (!E) throw std::invalid_argument("classify_responses: the model has no class embedding (candidate_sampling)");
  return max_response_class(features.to(model.device()), E->value, b->value, min_prob);
}

void classify_prediction(Prediction& pred, const train::Model& model, std::optional<float> ce_threshold) {
  const int64_t m = pred.channels, n = pred.grid.numel(), slab = int64_t{1} << 20;
  if (static_cast<int64_t>(pred.prob.size()) != m * n)
    throw std::invalid_argument("classify_prediction: expected " + std::to_string(m) + " feature channels");
  pred.classes.resize(static_cast<size_t>(n));
  std::vector<float> part;
  for (int64_t s0 = 0; s0 < n; s0 += slab) {
    const int64_t len = std::min(slab, n - s0);
    part.resize(static_cast<size_t>(m * len));
    for (int64_t j = 0; j < m; ++j)
      std::copy(pred.prob.begin() + j * n + s0, pred.prob.begin() + j * n + s0 + len, part.begin() + j * len);
    const Tensor cls = classify_responses(Tensor::from_vector({m, len}, part), model, ce_threshold.value_or(0.f)).cpu();
    std::copy(cls.i32(), cls.i32() + len, pred.classes.begin() + s0);
  }
  pred.prob = std::vector<float>();
  pred.channels = model.spec().scheme.num_labels + 1;
  pred.categorical = true;
}

void ClassifySink::begin(const train::Patch& grid, int channels, bool categorical) {
  const Var E = model_.class_embedding();
  if (!E) throw std::invalid_argument("ClassifySink: the model has no class embedding (candidate_sampling)");
  m_ = channels;
  classes_ = static_cast<int>(E->value.dim(0));  // K+1
  next_.begin(grid, classes_, true);
}

void ClassifySink::put(const Box& box, const float* y) {
  const int64_t n = box.numel();
  Tensor f = Tensor::empty({m_, n});
  std::copy(y, y + m_ * n, f.f32());
  const Tensor c = classify_responses(f, model_, min_prob_).cpu();
  one_hot_classes(c.i32(), n, classes_, onehot_);
  next_.put(box, onehot_.data());
}

}  // namespace pw::apply
