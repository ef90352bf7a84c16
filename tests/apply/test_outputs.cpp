// Output types: values, datatypes and scaling; the label-name extension (read back by our reader,
// and by nibabel when python3 has it).
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include "apply/outputs.h"
#include "common/test_util.h"
#include "io/error.h"

using namespace pw;
using namespace pw::apply;

namespace {

// A 4x3x2 grid with 2 label channels (non-categorical) or 3 (categorical, channel 0 background).
Prediction make_pred(bool categorical) {
  Prediction p;
  p.grid.A = Eigen::Matrix4d::Identity();
  p.grid.A(0, 0) = 0.8;
  p.grid.A(1, 1) = 0.9;
  p.grid.A(2, 2) = 2.5;
  p.grid.A(0, 3) = 10;
  p.grid.s = {4, 3, 2};
  p.categorical = categorical;
  p.channels = categorical ? 3 : 2;
  const int64_t n = 24;
  p.prob.assign(p.channels * n, 0.f);
  for (int64_t v = 0; v < n; ++v) {
    float a = 0.04f * v, b = 0.9f - 0.035f * v;  // a rises to 0.92, b falls to 0.095
    if (categorical) {
      float s = a + b + 0.3f;
      p.prob[v] = 0.3f / s;
      p.prob[n + v] = a / s;
      p.prob[2 * n + v] = b / s;
    } else {
      p.prob[v] = a;
      p.prob[n + v] = b;
    }
  }
  return p;
}

}  // namespace

TEST_CASE("outputs: parsing the output type") {
  CHECK(parse_output_type("float32").kind == OutKind::float32);
  OutputType m = parse_output_type("mask:0.4,0.6");
  CHECK(m.kind == OutKind::mask);
  CHECK(m.thresholds == std::vector<float>{0.4f, 0.6f});
  CHECK(parse_output_type("atls").thresholds.empty());
  CHECK_THROWS_AS(parse_output_type("int32"), UsageError);
  CHECK_THROWS_AS(parse_output_type("uint8:0.5"), UsageError);
  CHECK_THROWS_AS(parse_output_type("mask:abc"), UsageError);
  CHECK_THROWS_AS(parse_output_type("mask:1.5"), UsageError);
  LabelInfo info;
  info.model_thresholds = {0.3f, 0.7f};
  CHECK(resolve_thresholds(parse_output_type("mask"), info, 2) == std::vector<float>{0.3f, 0.7f});
  CHECK(resolve_thresholds(parse_output_type("mask:0.2"), info, 2) == std::vector<float>{0.2f, 0.2f});
  CHECK_THROWS_AS(resolve_thresholds(parse_output_type("mask:0.2,0.3,0.4"), info, 2), UsageError);
  CHECK(resolve_thresholds(parse_output_type("mask"), LabelInfo{}, 2) == std::vector<float>{0.5f, 0.5f});
}

TEST_CASE("outputs: float32, uint8 and int16 probabilities (scaled, inverse in scl_slope)") {
  Prediction p = make_pred(false);
  LabelInfo info;
  Volume f = make_output(p, parse_output_type("float32"), info);
  CHECK(f.datatype == nifti_dt::float32);
  CHECK(f.shape() == std::vector<int64_t>{4, 3, 2, 2});
  CHECK(f.affine().isApprox(p.grid.A));
  CHECK(f.value(5) == doctest::Approx(0.2));
  CHECK(f.value(24 + 5) == doctest::Approx(0.9 - 0.175));
  const double mx = 0.92;  // the maximum over both channels
  Volume u = make_output(p, parse_output_type("uint8"), info);
  CHECK(u.datatype == nifti_dt::uint8);
  CHECK(u.scl_slope == doctest::Approx(mx / 255));
  CHECK(u.raw_value(23) == 255);
  CHECK(u.value(5) == doctest::Approx(0.2).epsilon(0.01));
  Volume s = make_output(p, parse_output_type("int16"), info);
  CHECK(s.datatype == nifti_dt::int16);
  CHECK(s.scl_slope == doctest::Approx(mx / 32000));
  CHECK(s.raw_value(23) == 32000);
  CHECK(s.value(24 + 10) == doctest::Approx(0.9 - 0.35).epsilon(1e-4));
  // Categorical: the background channel is not written.
  Prediction c = make_pred(true);
  info.categorical = true;
  Volume cf = make_output(c, parse_output_type("float32"), info);
  CHECK(cf.shape() == std::vector<int64_t>{4, 3, 2, 2});
  CHECK(cf.value(0) == doctest::Approx(c.prob[24]));
}

TEST_CASE("outputs: mask and atls (original label values, thresholds, ce_threshold)") {
  Prediction p = make_pred(false);
  LabelInfo info;
  info.values = {4, 16};
  Volume m = make_output(p, parse_output_type("mask:0.5,0.3"), info);
  CHECK(m.datatype == nifti_dt::uint8);
  for (int v = 0; v < 24; ++v) {
    CHECK(m.raw_value(v) == (0.04f * v >= 0.5f ? 1 : 0));
    CHECK(m.raw_value(24 + v) == (0.9f - 0.035f * v >= 0.3f ? 1 : 0));
  }
  Volume a = make_output(p, parse_output_type("atls"), info);
  CHECK(a.datatype == nifti_dt::uint8);
  CHECK(a.intent_code == kIntentLabel);
  CHECK(a.shape() == std::vector<int64_t>{4, 3, 2});
  for (int v = 0; v < 24; ++v) {
    float pa = 0.04f * v, pb = 0.9f - 0.035f * v;
    int expect = 0;
    if (pa >= 0.5f && pa >= pb) expect = 4;
    else if (pb >= 0.5f) expect = 16;
    else if (pa >= 0.5f) expect = 4;
    CHECK(a.raw_value(v) == expect);
  }
  // Large label values need int16.
  info.values = {4, 1000};
  CHECK(make_output(p, parse_output_type("atls"), info).datatype == nifti_dt::int16);
  // Categorical: plain argmax, or a non-background label only above --ce-threshold.
  Prediction c = make_pred(true);
  LabelInfo ci;
  ci.categorical = true;
  ci.values = {4, 16};
  Volume ca = make_output(c, parse_output_type("atls"), ci);
  ci.ce_threshold = 0.6f;
  Volume ct = make_output(c, parse_output_type("atls"), ci);
  int changed = 0;
  for (int v = 0; v < 24; ++v) {
    float bg = c.prob[v], pa = c.prob[24 + v], pb = c.prob[48 + v];
    int arg = bg >= pa && bg >= pb ? 0 : (pa >= pb ? 4 : 16);
    CHECK(ca.raw_value(v) == arg);
    int thr = std::max(pa, pb) >= 0.6f ? (pa >= pb ? 4 : 16) : 0;
    CHECK(ct.raw_value(v) == thr);
    changed += arg != thr;
  }
  CHECK(changed > 0);
}

TEST_CASE("outputs: label names as the Workbench XML label table in a NIfTI extension") {
  Prediction p = make_pred(false);
  LabelInfo info;
  info.values = {4, 16};
  info.names = {"liver", "kidney & <adrenal>"};
  Volume a = make_output(p, parse_output_type("atls"), info);
  REQUIRE(a.extensions.size() == 1);
  CHECK(a.extensions[0].code == kEcodeCaret);
  auto dir = test::temp_dir("outputs");
  write_nifti(a, dir / "atls.nii.gz");
  Volume r = read_nifti(dir / "atls.nii.gz");
  REQUIRE(r.extensions.size() == 1);
  CHECK(r.extensions[0].code == 30);
  CHECK(r.extensions[0].disk_size() % 16 == 0);
  std::string xml(r.extensions[0].data.begin(), r.extensions[0].data.end());
  xml = xml.substr(0, xml.find('\0'));
  CHECK(xml == label_table_xml({4, 16}, info.names));
  CHECK(xml.find("<CaretExtension") != std::string::npos);
  CHECK(xml.find("<Label Key=\"4\" Red=\"0.902\" Green=\"0.098\" Blue=\"0.294\" Alpha=\"1.000\">liver</Label>") !=
        std::string::npos);
  CHECK(xml.find(">kidney &amp; &lt;adrenal&gt;</Label>") != std::string::npos);
  CHECK(r.intent_code == 1002);
  CHECK_THROWS_AS(label_table_xml({1, 2}, {"one"}), UsageError);
  // nibabel (when python3 has it) reads the extension as code 30 ("caret") with the same XML.
  std::string out;
  int rc = test::run_command("python3 -c \"import nibabel\"", &out);
  if (rc != 0) {
    MESSAGE("skipped the nibabel check: python3 has no nibabel (the extension was parsed back by our reader)");
    return;
  }
  std::string py = "python3 -c \"import nibabel as nb; e = nb.load('" + (dir / "atls.nii.gz").string() +
                   "').header.extensions[0]; print(e.get_code(), nb.nifti1.extension_codes.label[30]); import sys; "
                   "c = e.content if hasattr(e, 'content') else e.get_content(); c = c if isinstance(c, bytes) else c.encode(); "
                   "sys.stdout.write(c.rstrip(bytes(1)).decode())\"";
  REQUIRE(test::run_command(py, &out) == 0);
  CHECK(out.rfind("30 caret\n", 0) == 0);
  CHECK(out.find("kidney &amp; &lt;adrenal&gt;") != std::string::npos);
}

TEST_CASE("atls: a voxel no patch covered (every probability 0) stays background") {
  Prediction p = make_pred(true);
  std::fill(p.prob.begin(), p.prob.end(), 0.f);
  const int64_t n = p.grid.numel();
  p.prob[1 * n + 3] = 0.7f;  // label 1 wins at voxel 3
  p.prob[0 * n + 3] = 0.3f;
  LabelInfo info;
  info.categorical = true;
  std::vector<int32_t> m = label_map(p, info, {0.5f, 0.5f}, false);
  for (int64_t v = 0; v < n; ++v) CHECK(m[v] == (v == 3 ? 1 : 0));
}

TEST_CASE("outputs: label colours beside the names in the label table") {
  const std::string xml = label_table_xml({1, 2}, {"a", "b"}, {{{255, 0, 0}}, {{0, 128, 255}}});
  CHECK(xml.find("<Label Key=\"1\" Red=\"1.000\" Green=\"0.000\" Blue=\"0.000\" Alpha=\"1.000\">a</Label>") !=
        std::string::npos);
  CHECK(xml.find("<Label Key=\"2\" Red=\"0.000\" Green=\"0.502\" Blue=\"1.000\" Alpha=\"1.000\">b</Label>") !=
        std::string::npos);
  // colours without names: the default names
  CHECK(label_table_xml({7}, {}, {{{1, 2, 3}}}).find(">label 7</Label>") != std::string::npos);
  CHECK_THROWS_AS(label_table_xml({1, 2}, {}, {{{1, 2, 3}}}), UsageError);
  CHECK(parse_label_color("10:20:255") == std::array<int, 3>{10, 20, 255});
  for (const char* bad : {"10:20", "1:2:3:4", "1:2:256", "a:b:c", "1::2", "-1:0:0"})
    CHECK_THROWS_AS(parse_label_color(bad), UsageError);
}
