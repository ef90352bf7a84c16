// The trained patchwork model (train/model.h) as the inference's LevelNetwork: image crops through
// train's CropGenerator (the same interpolation, pre-smoothing and patch normalisation as in
// training), forward without a graph on the model's device, test-time augmentation drawn from the
// training's augment settings (or from an explicit Augment).
#pragma once
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "apply/infer.h"
#include "train/model.h"
#include "train/sampler.h"
#include "train/trainer.h"

namespace pw::apply {

class ModelNetwork : public LevelNetwork {
 public:
  // `augment`: the test-time augmentation (unset: the model's training augmentation).
  explicit ModelNetwork(train::Model& model, std::optional<train::Augment> augment = std::nullopt);
  const train::Scheme& scheme() const override { return model_.spec().scheme; }
  int image_channels() const override { return model_.spec().image_channels; }
  int out_channels(int level) const override { return model_.spec().out_channels.at(level); }
  Device device() const override { return model_.device(); }
  Tensor crop_image(int level, const InferInput& input, const std::vector<train::Patch>& patches) override;
  Tensor forward(int level, const Tensor& image_patches, const Tensor& parent_crops) override;
  Tensor finalize(int level, const Tensor& logits) override { return model_.finalize(level, logits); }
  Eigen::Matrix3d augmentation(int level, std::mt19937_64& rng) const override;
  bool independent_augmentation() const override { return model_.spec().independent_augmentation; }

 private:
  train::Model& model_;
  train::Augment augment_;
  train::CropGenerator crop_;
  const void* subject_key_ = nullptr;  // the input whose Subject (smoothing caches) is held
  std::unique_ptr<train::Subject> subject_;
};

// Reads the image file(s) of one case for `model` (several files = several channels; normalised
// like training). Throws pw::InputError naming the file.
InferInput load_input(const train::Model& model, const std::vector<std::filesystem::path>& files);
// The same from volumes in memory (the Python package's arrays), consumed; names[i] names volume i in messages.
InferInput input_from_volumes(const train::Model& model, std::vector<Volume>& volumes,
                              const std::vector<std::string>& names);

// The probabilities of a training subject on its own grid (per label; categorical: classes 1..K, the
// background dropped; candidate_sampling models: one-hot of the decided classes), handed to `out` box
// by box as the brick stitching finishes them (train::ProbBox): no volume of labels x voxels is held.
// Uses `opt` (tree coverage by default) on the subject's grid, no test-time augmentation.
void predict_subject_boxes(train::Model& model, const train::Subject& subject, const InferOptions& opt,
                           const train::ProbBox& out);
// The trainer's validation Predictor (train::Predictor): predict_subject_boxes with options(model spec)
// (apply_case.h's model_lazy_options gives apply's defaults), or the full tree when `options` is empty.
train::Predictor validation_predictor(std::function<InferOptions(const train::ModelSpec&)> options = {});
// The same probabilities as one dense volume [K, z, y, x] (tests, tools).
Tensor predict_subject(train::Model& model, const train::Subject& subject, const InferOptions& opt = {});

}  // namespace pw::apply
