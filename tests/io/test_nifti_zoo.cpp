// tests/data/nifti-header-zoo: real files from SPM, FSL, AFNI and others. Each is read (its documented
// properties checked) or refused with "unsupported datatype" (complex64); each readable file survives
// convert (CLI) with the same values and affine, re-read here with this reader. The same outputs are also
// checked with nibabel by tests/io/nibabel_convert_check.py (ctest io_convert_nibabel).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "io/error.h"
#include "io/nifti.h"

namespace {

namespace fs = std::filesystem;

// Checked to exist (the files are in the repository: a missing folder fails the test, naming it).
fs::path zoo() { return pw::test::test_data("nifti-header-zoo/niivue-demos-images"); }

}  // namespace

TEST_CASE("header zoo: documented properties") {
  {
    const pw::Volume v = pw::read_nifti(zoo() / "ras.hdr");  // NIfTI-1 pair
    CHECK(v.shape() == std::vector<int64_t>{62, 41, 34});
    CHECK(v.datatype == pw::nifti_dt::uint8);
    CHECK(v.vox_offset == 0);
    CHECK(pw::read_nifti(zoo() / "ras.img").data == v.data);  // the .img finds its .hdr
  }
  {
    const pw::Volume v = pw::read_nifti(zoo() / "minimal.nii.gz");
    CHECK(v.big_endian_on_disk);
    CHECK(v.qform_code == 0);
    CHECK(v.sform_code == 0);
    CHECK(!v.is_scaled());  // scl_slope 0
    Eigen::Matrix4d m1 = Eigen::Matrix4d::Identity();
    for (int i = 0; i < 3; ++i) m1(i, i) = std::fabs(v.pixdim[i + 1]);
    CHECK(v.affine() == m1);  // method 1
  }
  {
    const pw::Volume v = pw::read_nifti(zoo() / "low_res.nii.gz");
    CHECK(v.shape() == std::vector<int64_t>{7, 5, 3});
    CHECK(v.qform_code == 0);
    CHECK(v.sform_code == 2);
    CHECK(v.affine() == v.sform_affine());
  }
  {
    const pw::Volume v = pw::read_nifti(zoo() / "AIL.nii.gz");
    CHECK(v.is_scaled());
    CHECK(std::fabs(v.scl_slope - 0.363) < 1e-3);
  }
  {
    const pw::Volume v = pw::read_nifti(zoo() / "shear.nii.gz");
    CHECK(v.shape() == std::vector<int64_t>{306, 422, 54});
    CHECK(v.datatype == pw::nifti_dt::uint8);
    CHECK(std::fabs(v.scl_inter + 1024) < 1e-3);
    // Sheared sform: the columns are not orthogonal.
    const Eigen::Matrix3d m = v.affine().topLeftCorner<3, 3>();
    double maxcos = 0;
    for (int a = 0; a < 3; ++a)
      for (int b = a + 1; b < 3; ++b)
        maxcos = std::max(maxcos, std::fabs(m.col(a).normalized().dot(m.col(b).normalized())));
    CHECK(maxcos > 0.3);
    // Written back from its affine: the shear stays in the sform, the qform is off.
    pw::Volume w = v;
    w.set_affine(v.affine(), 2);
    CHECK(w.qform_code == 0);
  }
  {
    const pw::Volume v = pw::read_nifti(zoo() / "ct_perfusion.nii.gz");
    CHECK(v.datatype == pw::nifti_dt::rgb24);
    CHECK(v.shape() == std::vector<int64_t>{256, 286, 15});
    CHECK(v.data.size() == size_t(256) * 286 * 15 * 3);
    CHECK_THROWS_AS(v.to_float(), pw::InputError);
  }
  {
    const pw::Volume v = pw::read_nifti(zoo() / "V1.nii.gz");
    CHECK(v.shape() == std::vector<int64_t>{84, 92, 56, 3});
    CHECK(v.datatype == pw::nifti_dt::float32);
    CHECK(v.intent_code == 2003);
  }
  try {
    pw::read_nifti(zoo() / "complex.nii.gz");
    FAIL("complex64 accepted");
  } catch (const pw::InputError& e) {
    CHECK(std::string(e.what()).find("unsupported datatype complex64") != std::string::npos);
  }
  {
    const pw::Volume v = pw::read_nifti(zoo() / "stats.nv_demo_mskd.nii.gz");
    CHECK(v.vox_offset == 4560);
    CHECK(!v.extensions.empty());
    CHECK(v.qform_code == 4);
    CHECK(v.sform_code == 4);
    CHECK(!v.is_scaled());
  }
  {
    const pw::Volume v = pw::read_nifti(zoo() / "spmMotor.nii.gz");
    CHECK(v.datatype == pw::nifti_dt::int16);
    CHECK(std::fabs(v.scl_slope - 0.000371) < 1e-6);
    CHECK(v.qform_code == 2);
    CHECK(v.sform_code == 2);
  }
  {
    const pw::Volume flair = pw::read_nifti(zoo() / "FLAIR.nii.gz");
    const pw::Volume lesion = pw::read_nifti(zoo() / "lesion.nii.gz");
    CHECK(flair.shape() == std::vector<int64_t>{124, 160, 140});
    CHECK(lesion.shape() == flair.shape());
    CHECK((flair.affine() - lesion.affine()).cwiseAbs().maxCoeff() < 1e-6);
    const std::vector<double> l = lesion.to_double();
    int64_t nonzero = 0;
    bool labels_ok = true;
    for (double x : l) {
      nonzero += x != 0;
      labels_ok = labels_ok && (x == 0 || x == 1 || x == 2 || x == 3);
    }
    CHECK(nonzero == 32481);
    CHECK(labels_ok);
  }
}

TEST_CASE("header zoo: convert of every readable file keeps values and affine") {
  const fs::path dir = pw::test::temp_dir("nifti_zoo");
  int converted = 0;
  for (const auto& e : fs::directory_iterator(zoo())) {
    const std::string name = e.path().filename().string();
    if (name.find(".img") != std::string::npos) continue;
    INFO(name);
    pw::Volume in;
    try {
      in = pw::read_nifti(e.path());
    } catch (const pw::InputError& err) {
      CHECK(std::string(err.what()).find("unsupported datatype") != std::string::npos);
      continue;
    }
    // Through the CLI with the default datatype (IN's own, float32 when scaled).
    const fs::path out = dir / (name + ".conv.nii.gz");
    std::string log;
    REQUIRE(pw::test::run_command(pw::test::patchwork_bin() + " convert '" + e.path().string() + "' '" +
                                      out.string() + "'",
                                  &log) == 0);
    const pw::Volume r = pw::read_nifti(out);
    CHECK(r.shape() == in.shape());
    CHECK(r.datatype == (in.is_scaled() ? pw::nifti_dt::float32 : in.datatype));
    CHECK((r.affine() - in.affine()).cwiseAbs().maxCoeff() < 1e-4 * (1 + in.affine().cwiseAbs().maxCoeff()));
    CHECK(r.sform_code > 0);
    if (in.datatype == pw::nifti_dt::rgb24) {
      CHECK(r.data == in.data);
    } else {
      const std::vector<double> a = in.to_double(), b = r.to_double();
      double worst = 0;
      for (size_t i = 0; i < a.size(); ++i)
        worst = std::max(worst, std::fabs(a[i] - b[i]) / std::max(1.0, std::fabs(a[i])));
      CHECK(worst <= (in.is_scaled() ? 1e-7 : 0.0));  // float32 rounding for scaled input, else exact
    }
    ++converted;
  }
  CHECK(converted == 11);  // 13 files: the .img of the pair is not counted, complex64 is refused
}
