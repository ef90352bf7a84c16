#include "apply/apply_case.h"

#include "apply/model_network.h"
#include "apply/preview.h"
#include "apply/responses.h"
#include "io/error.h"
#include "io/nifti.h"

namespace pw::apply {

LabelInfo label_info(const train::ModelSpec& spec, const ApplyRequest& req) {
  LabelInfo info;
  const train::Scheme& sc = spec.scheme;
  info.categorical = sc.categorical;
  const int K = sc.num_labels;
  if (!sc.categorical_label.empty()) info.values = sc.categorical_label;
  else
    for (int k = 0; k < K; ++k) info.values.push_back(k + 1);
  if (static_cast<int>(spec.thresholds.size()) == K)
    for (double t : spec.thresholds) info.model_thresholds.push_back(static_cast<float>(t));
  info.ce_threshold = req.ce_threshold;
  info.names = req.label_names.empty() ? spec.label_names : req.label_names;
  if (!info.names.empty() && static_cast<int>(info.names.size()) != K)
    throw UsageError("--label-names: " + std::to_string(info.names.size()) + " names for a model with " +
                     std::to_string(K) + " labels");
  info.colors = req.label_colors.empty() ? spec.label_colors : req.label_colors;
  if (!info.colors.empty() && static_cast<int>(info.colors.size()) != K)
    throw UsageError("--label-colors: " + std::to_string(info.colors.size()) + " colours for a model with " +
                     std::to_string(K) + " labels");
  return info;
}

namespace {

// Hands every box to two sinks.
class TeeSink : public BrickSink {
 public:
  TeeSink(BrickSink& a, BrickSink& b) : a_(a), b_(b) {}
  void begin(const train::Patch& grid, int channels, bool categorical) override {
    a_.begin(grid, channels, categorical);
    b_.begin(grid, channels, categorical);
  }
  void put(const Box& box, const float* y) override {
    a_.put(box, y);
    b_.put(box, y);
  }

 private:
  BrickSink &a_, &b_;
};

// The preview's label map: atls with the model's thresholds and colour indices 1..K as values.
OutputBuilder preview_labels(const LabelInfo& info) {
  LabelInfo ordinal = info;
  ordinal.values.clear();
  ordinal.names.clear();
  return OutputBuilder(OutputType{OutKind::atls, {}}, ordinal);
}

}  // namespace

void write_preview(const InferInput& input, const train::Patch& grid, const Volume& labels,
                   const std::filesystem::path& png) {
  std::vector<int32_t> lab(grid.numel());
  for (int64_t i = 0; i < grid.numel(); ++i) lab[i] = static_cast<int32_t>(labels.raw_value(i));
  // Channel 0 of the image on the prediction's grid.
  const int64_t n = input.image.numel();
  std::vector<float> img(input.data.f32(), input.data.f32() + n);
  if (!(grid.s == input.image.s && grid.A.isApprox(input.image.A, 1e-9)))
    img = resample_linear(img, input.image, 1, grid, grid.s[2] == 1 ? 2 : 3);
  std::array<double, 3> sp;
  for (int a = 0; a < 3; ++a) sp[a] = grid.A.topLeftCorner<3, 3>().col(a).norm();
  write_png(png.string(), preview_montage(img.data(), lab.data(), grid.s, sp));
}

Prediction predict(train::Model& model, const InferInput& input, const ApplyRequest& req) {
  ModelNetwork net(model, req.augment);  // holds a reference to the input (and smoothing caches)
  return infer(net, input, req.infer);
}

Prediction apply_case(train::Model& model, const std::vector<std::filesystem::path>& inputs,
                      const std::filesystem::path& output, const ApplyRequest& req) {
  const train::ModelSpec& spec = model.spec();
  LabelInfo info = label_info(spec, req);
  const bool embedded = spec.scheme.candidate_sampling.enabled();
  if (embedded && req.out_type.kind != OutKind::atls && req.out_type.kind != OutKind::mask)
    throw UsageError("--out-type: a candidate_sampling model gives class labels only (atls or mask), not probabilities");
  InferInput in = load_input(model, inputs);
  OutputBuilder out(req.out_type, info), preview = preview_labels(info);
  TeeSink both(out, preview);
  BrickSink& sink = req.preview.empty() ? static_cast<BrickSink&>(out) : both;
  ClassifySink classify(sink, model, req.ce_threshold);  // candidate_sampling: features -> classes per brick
  Prediction pred;
  {
    ModelNetwork net(model, req.augment);  // holds a reference to the input (and smoothing caches)
    pred = infer(net, in, req.infer, embedded ? static_cast<BrickSink&>(classify) : sink);
  }
  if (req.preview.empty()) in.data = Tensor();  // the input is not needed any more: free it before writing
  write_nifti(out.take(), output);
  if (!req.preview.empty()) write_preview(in, pred.grid, preview.take(), req.preview);
  return pred;
}

}  // namespace pw::apply
