#include "apply/apply_case.h"

#include "apply/model_network.h"
#include "apply/preview.h"
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

void write_preview(const InferInput& input, const Prediction& pred, const LabelInfo& info,
                   const std::filesystem::path& png) {
  const int K = foreground_channels(pred);
  OutputType atls{OutKind::atls, {}};
  std::vector<float> th = resolve_thresholds(atls, info, K);
  LabelInfo ordinal = info;
  ordinal.values.clear();  // colour index 1..K
  std::vector<int32_t> lab = label_map(pred, ordinal, th, false);
  // Channel 0 of the image on the prediction's grid.
  const int64_t n = input.image.numel();
  std::vector<float> img(input.data.f32(), input.data.f32() + n);
  if (!(pred.grid.s == input.image.s && pred.grid.A.isApprox(input.image.A, 1e-9)))
    img = resample_linear(img, input.image, 1, pred.grid, pred.grid.s[2] == 1 ? 2 : 3);
  std::array<double, 3> sp;
  for (int a = 0; a < 3; ++a) sp[a] = pred.grid.A.topLeftCorner<3, 3>().col(a).norm();
  write_png(png.string(), preview_montage(img.data(), lab.data(), pred.grid.s, sp));
}

Prediction predict(train::Model& model, const InferInput& input, const ApplyRequest& req) {
  ModelNetwork net(model, req.augment);  // holds a reference to the input (and smoothing caches)
  return infer(net, input, req.infer);
}

Prediction apply_case(train::Model& model, const std::vector<std::filesystem::path>& inputs,
                      const std::filesystem::path& output, const ApplyRequest& req) {
  const train::ModelSpec& spec = model.spec();
  LabelInfo info = label_info(spec, req);
  InferInput in = load_input(model, inputs);
  Prediction pred = predict(model, in, req);
  if (req.preview.empty()) in.data = Tensor();  // the input is not needed any more: free it before the output
  {
    Volume v = make_output(pred, req.out_type, info);
    write_nifti(v, output);
  }
  if (!req.preview.empty()) write_preview(in, pred, info, req.preview);
  pred.prob = std::vector<float>();
  return pred;
}

}  // namespace pw::apply
