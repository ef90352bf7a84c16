// Output types of `patchwork apply` (paper list D, out_typ): probabilities as float32, uint8 or
// int16 (uint8/int16 scaled so that the maximum maps to 255 / 32000; the inverse is stored in
// scl_slope), thresholded masks `mask[:t1,t2,..]`, and label maps `atls[:t1,..]` in the original
// label values (0 = background). Label names go into a NIfTI extension as the XML label table of
// HCP Workbench (ecode 30 = NIFTI_ECODE_CARET: <CaretExtension> ... <LabelTable><Label Key=..
// Red=.. Green=.. Blue=.. Alpha=..>name</Label>).
#pragma once
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "apply/bricks.h"
#include "apply/infer.h"
#include "io/nifti.h"
#include "io/png.h"

namespace pw::apply {

enum class OutKind { float32, uint8, int16, mask, atls };

struct OutputType {
  OutKind kind = OutKind::float32;
  std::vector<float> thresholds;  // mask/atls: given after ':' (empty: the model's, else 0.5)
  int largest_component = 0;      // mask/atls: 6 or 26 keeps per label its largest component (apply/components.h)
};
// "float32" | "uint8" | "int16" | "mask[:t1,t2,..]" | "atls[:t1,..]"; throws pw::UsageError.
OutputType parse_output_type(const std::string& s);

// What the output needs to know about the labels.
struct LabelInfo {
  bool categorical = false;            // channel 0 of the prediction is the background
  std::vector<int> values;             // original label value of each foreground channel (size K)
  std::vector<float> model_thresholds; // chosen on validation (size K, or empty)
  std::optional<float> ce_threshold;   // categorical: minimal probability for a non-background decision
  std::vector<std::string> names;      // label names (size K, or empty)
  std::vector<std::array<int, 3>> colors;  // label colours R, G, B in 0..255 (size K, or empty: io/png.h's)
};

// "R:G:B" with each value in 0..255; throws pw::UsageError naming the text.
std::array<int, 3> parse_label_color(const std::string& s);

// Foreground channel count of a prediction.
int foreground_channels(const Prediction& p);

// The thresholds used for mask/atls: explicit ones (one value = for every label), else the
// model's, else 0.5. Throws pw::UsageError when the count does not match the labels.
std::vector<float> resolve_thresholds(const OutputType& t, const LabelInfo& info, int K);

// The label index map (values = info.values, 0 = background) of a prediction.
std::vector<int32_t> label_map(const Prediction& p, const LabelInfo& info, const std::vector<float>& thresholds,
                               bool explicit_thresholds);

// The output volume of type t on the sink's grid (dims x,y[,z][,K]; affine of the grid), built box by
// box from the normalised prediction (a BrickSink; channels as Prediction::channels). Labels and masks are
// decided per box: the class volumes are never all in float at once. float32 probabilities fill
// the output in place; uint8/int16 ones are held as float32 until take() (their scale is the maximum
// over the whole volume).
class OutputBuilder : public BrickSink {
 public:
  OutputBuilder(const OutputType& t, const LabelInfo& info);
  void begin(const train::Patch& grid, int channels, bool categorical) override;
  void put(const Box& box, const float* y) override;
  Volume take();  // once, after every voxel of the grid arrived

 private:
  void keep_largest(Volume& v) const;  // --largest-component (atls, mask)

  train::Patch grid_;
  OutputType type_;
  LabelInfo info_;
  bool categorical_ = false;
  int K_ = 0;
  int64_t n_ = 0;
  std::vector<int> values_;
  std::vector<float> th_;
  Volume vol_;
};

// Decided classes (0..channels-1 per voxel, candidate_sampling models) as one-hot class probabilities
// [channels, n] into `out`: an OutputBuilder's atls/mask decision on them gives those classes.
void one_hot_classes(const int32_t* classes, int64_t n, int channels, std::vector<float>& out);

// The output volume of a whole prediction (an OutputBuilder fed with one box).
Volume make_output(const Prediction& p, const OutputType& t, const LabelInfo& info);

// The Workbench XML label table and the extension holding it (background Key 0 included). Names default to
// "label V", colours to io/png.h's label_colour.
std::string label_table_xml(const std::vector<int>& values, const std::vector<std::string>& names,
                            const std::vector<std::array<int, 3>>& colors = {});
NiftiExtension label_extension(const std::vector<int>& values, const std::vector<std::string>& names,
                               const std::vector<std::array<int, 3>>& colors = {});
constexpr int kEcodeCaret = 30;
constexpr int kIntentLabel = 1002;  // NIFTI_INTENT_LABEL

using pw::label_colour;  // io/png.h

}  // namespace pw::apply
