#include "apply/model_network.h"

#include <algorithm>
#include <cstring>

#include "apply/responses.h"
#include "io/error.h"
#include "io/nifti.h"

namespace pw::apply {

ModelNetwork::ModelNetwork(train::Model& model, std::optional<train::Augment> augment)
    : model_(model),
      augment_(augment ? *augment : model.spec().augment),
      crop_(model.spec().scheme, train::SamplerOptions{}) {}

Tensor ModelNetwork::crop_image(int level, const InferInput& input, const std::vector<train::Patch>& patches) {
  if (subject_key_ != input.data.raw() || !subject_) {
    subject_ = std::make_unique<train::Subject>();
    subject_->name = "input";
    subject_->image = input.image;
    subject_->data = input.data;  // shares the storage (already normalised)
    subject_key_ = input.data.raw();
  }
  const train::Scheme& sc = scheme();
  const auto& ps = sc.patch_size[level];
  const int64_t P = static_cast<int64_t>(patches.size());
  const int64_t C = crop_.input_channels(input.channels());
  Shape shape = sc.ndim == 3 ? Shape{P, C, ps[2], ps[1], ps[0]} : Shape{P, C, ps[1], ps[0]};
  Tensor out = Tensor::empty(shape, DType::f32, input.data.device());
  crop_.crop_inputs(*subject_, level, patches, out, 0);
  return out;
}

Tensor ModelNetwork::forward(int level, const Tensor& image_patches, const Tensor& parent_crops) {
  const Device d = model_.device();
  Tensor I = image_patches.to(d);
  Tensor C = parent_crops.defined() ? parent_crops.to(d) : Tensor();
  return model_.forward(level, I, C);
}

Eigen::Matrix3d ModelNetwork::augmentation(int /*level*/, std::mt19937_64& rng) const {
  if (!augment_.any()) return Eigen::Matrix3d::Identity();
  return train::draw_augmentation(augment_, scheme().ndim, rng).L();
}

// A 3-D model needs more than one slice. Checked from the header, before the data are read, and worded by
// the dims as stored: a one-slice volume (dim[0] = 3, e.g. 64x64x1) is not called "2-D".
static void check_input_dims(const train::Model& model, const NiftiHeader& h, const std::string& name) {
  if (model.spec().scheme.ndim != 3 || !(h.ndim < 3 || h.dims[2] == 1)) return;
  std::string dims;
  for (int i = 0; i < h.ndim; ++i) dims += (i ? "x" : "") + std::to_string(h.dims[i]);
  const std::string what = h.ndim < 3 ? "a " + std::to_string(h.ndim) + "-D image (" + dims + ")"
                                      : "a " + std::to_string(h.ndim) + "-D volume with one slice (" + dims + ")";
  throw InputError(name + ": the model is 3-D but the image is " + what +
                   "; a 3-D model needs a volume with more than one slice");
}

static void check_input_channels(const train::Model& model, const InferInput& in, const std::string& name) {
  if (in.channels() != model.spec().image_channels)
    throw InputError(name + ": the model expects " + std::to_string(model.spec().image_channels) +
                     " image channel(s), the input has " + std::to_string(in.channels()));
}

InferInput load_input(const train::Model& model, const std::vector<std::filesystem::path>& files) {
  InferInput in;
  if (!files.empty()) check_input_dims(model, read_nifti_header(files.front()), files.front().string());
  train::load_image_channels(files, model.spec().scheme, in.image, in.data);
  check_input_channels(model, in, files.front().string());
  return in;
}

InferInput input_from_volumes(const train::Model& model, std::vector<Volume>& volumes,
                              const std::vector<std::string>& names) {
  InferInput in;
  if (!volumes.empty()) check_input_dims(model, volumes.front(), names.front());
  train::image_channels(names, [&](size_t i) { return std::move(volumes[i]); }, model.spec().scheme, in.image,
                        in.data);
  check_input_channels(model, in, names.front());
  return in;
}

// Hands the foreground channels of each finished box on to a train::ProbBox.
class ProbBoxSink : public BrickSink {
 public:
  explicit ProbBoxSink(const train::ProbBox& out) : out_(out) {}
  void begin(const train::Patch&, int, bool categorical) override { off_ = categorical ? 1 : 0; }
  void put(const Box& box, const float* y) override { out_(box.lo, box.size, y + off_ * box.numel()); }

 private:
  const train::ProbBox& out_;
  int off_ = 0;
};

void predict_subject_boxes(train::Model& model, const train::Subject& subject, const InferOptions& opt,
                           const train::ProbBox& out) {
  ModelNetwork net(model, train::Augment{});
  InferInput in;
  in.image = subject.image;
  in.data = subject.data;
  InferOptions o = opt;
  o.scale_to_original = true;
  o.sampling_factor = 1;
  o.augment = false;
  ProbBoxSink sink(out);
  ClassifySink classify(sink, model, std::nullopt);  // candidate_sampling: features -> one-hot classes
  const bool embedded = model.spec().scheme.candidate_sampling.enabled();
  infer(net, in, o, embedded ? static_cast<BrickSink&>(classify) : sink);
}

train::Predictor validation_predictor(std::function<InferOptions(const train::ModelSpec&)> options) {
  return [options](train::Model& m, train::Subject& s, const train::ProbBox& out) {
    predict_subject_boxes(m, s, options ? options(m.spec()) : InferOptions{}, out);
  };
}

Tensor predict_subject(train::Model& model, const train::Subject& subject, const InferOptions& opt) {
  const train::Size3& s = subject.image.s;
  const int64_t K = model.spec().scheme.num_labels;
  Tensor out = Tensor::zeros({K, s[2], s[1], s[0]});
  predict_subject_boxes(model, subject, opt, [&](const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& size,
                                                 const float* p) { copy_box(Box{lo, size}, p, K, {s[2], s[1], s[0]}, out.f32()); });
  return out;
}

}  // namespace pw::apply
