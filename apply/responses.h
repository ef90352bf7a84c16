// The finishing step of a candidate_sampling model (scheme.candidate_sampling): its network outputs
// m response features per voxel, stitched like probabilities; the class of a voxel is the one with
// the maximal response argmax_c <f, e_c> + b_c over the K+1 classes of the model's embedding
// (engine op max_response_class). A voxel no patch reached (all m features exactly 0) is background.
// Responses are linear in f, so stitching the features (a weighted mean) equals stitching the
// responses of every class; only the argmax needs all classes, one voxel at a time.
#pragma once
#include <optional>

#include "apply/bricks.h"
#include "apply/infer.h"
#include "engine/tensor.h"
#include "train/model.h"

namespace pw::apply {

// m-dim responses -> class label: features [m, ...] (any device) -> i32 [...] class indices 0..K on
// the model's device. min_prob > 0: the best class >= 1 only where its softmax probability over all
// classes reaches min_prob (apply's --ce-threshold), else 0. Usable per brick of a larger grid.
Tensor classify_responses(const Tensor& features, const train::Model& model, float min_prob = 0.f);

// A whole stitched prediction of a candidate_sampling model (pred.prob = m feature channels):
// pred.classes gets the class per voxel (computed in slabs of voxels, so the extra memory is small),
// pred.prob is freed, pred.channels becomes K+1 (categorical, channel 0 = background).
void classify_prediction(Prediction& pred, const train::Model& model, std::optional<float> ce_threshold = {});

// The finishing step per brick (apply_case's brick stitching): the m features of each box become the
// class of maximal response, handed on to `next` as one-hot class probabilities [K+1, box] (categorical,
// channel 0 = background), from which an OutputBuilder's atls/mask decision gives that same class.
class ClassifySink : public BrickSink {
 public:
  ClassifySink(BrickSink& next, const train::Model& model, std::optional<float> ce_threshold)
      : next_(next), model_(model), min_prob_(ce_threshold.value_or(0.f)) {}
  void begin(const train::Patch& grid, int channels, bool categorical) override;
  void put(const Box& box, const float* y) override;

 private:
  BrickSink& next_;
  const train::Model& model_;
  float min_prob_;
  int m_ = 0, classes_ = 0;
  std::vector<float> onehot_;
};

}  // namespace pw::apply
