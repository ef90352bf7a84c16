// Messages about the world affine (issue 17, item 9): a non-finite sform is refused by the reader with one
// line naming the file, by every reading function and every command that reads it (info, convert, eval);
// a non-finite sform that is not in use (sform_code 0) and a non-finite qform field (read as 0, as
// nifti_clib does) leave the file readable.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "io/error.h"
#include "io/nifti.h"

using namespace pw;
namespace fs = std::filesystem;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

// A small label-like volume (values 0/1) whose srow[r][c] is `bad`, with the given sform_code.
fs::path write_bad_sform(const fs::path& file, int r, int c, double bad, int sform_code = 1) {
  std::vector<float> vals(8 * 8 * 4, 0.f);
  vals[100] = 1.f;
  Volume v = Volume::from_values<float>({8, 8, 4}, vals.data());
  v.srow[r][c] = bad;
  v.sform_code = sform_code;
  write_nifti(v, file);
  return file;
}

std::string read_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

int lines(const std::string& s) {
  int n = 0;
  for (char ch : s) n += ch == '\n';
  return n;
}

}  // namespace

TEST_CASE("messages: a NaN or infinite sform is refused by the reader, naming the file and the entry") {
  const fs::path dir = test::temp_dir("msg-sform");
  for (const char* ext : {".nii", ".nii.gz"}) {
    const fs::path f = write_bad_sform(dir / (std::string("nan_sform") + ext), 1, 2, kNaN);
    for (auto read : std::vector<std::function<void()>>{[&] { read_nifti(f); }, [&] { read_nifti_header(f); },
                                                        [&] {
                                                          read_nifti_streaming(
                                                              f, [](const NiftiHeader&, const uint8_t*, size_t) {});
                                                        }}) {
      const std::string m = read_error(read);
      INFO(m);
      CHECK(m.rfind(f.string() + ": ", 0) == 0);
      CHECK(m.find("the sform (sform_code 1) holds a non-finite value: srow_y[2] = nan") != std::string::npos);
      CHECK(m.find("singular") == std::string::npos);
    }
  }
  // infinity in the translation column of srow_z
  const fs::path inf = write_bad_sform(dir / "inf_sform.nii", 2, 3, -kInf, 2);
  const std::string m = read_error([&] { read_nifti(inf); });
  CHECK(m == inf.string() + ": the sform (sform_code 2) holds a non-finite value: srow_z[3] = -inf (fix the sform, "
                            "or set sform_code to 0 to use the qform)");
}

TEST_CASE("messages: an unused non-finite sform, and a non-finite qform field, leave the file readable") {
  const fs::path dir = test::temp_dir("msg-sform-unused");
  // sform_code 0: the sform is not the geometry; the qform (code 1) is used as before.
  const fs::path f = write_bad_sform(dir / "unused.nii", 0, 0, kNaN, 0);
  Volume v = read_nifti(f);
  CHECK(v.sform_code == 0);
  CHECK(std::isnan(v.srow[0][0]));  // the stored field as read
  CHECK(v.affine().allFinite());
  CHECK(v.affine().isApprox(Eigen::Matrix4d::Identity()));
  // A NaN quaternion / offset counts as 0 (nifti_clib's FIXED_FLOAT): the qform stays finite.
  Volume q = Volume::zeros({4, 4, 4}, nifti_dt::uint8);
  q.sform_code = 0;
  q.qform_code = 1;
  q.quatern_b = kNaN;
  q.qoffset_y = kNaN;
  q.qoffset_x = 5;
  write_nifti(q, dir / "nan_qform.nii");
  Volume r = read_nifti(dir / "nan_qform.nii");
  CHECK(r.affine().allFinite());
  CHECK(r.affine()(0, 3) == 5);
  CHECK(r.affine()(1, 3) == 0);
}

TEST_CASE("messages: info, convert and eval name the file with the non-finite sform (one line, exit 1)") {
  const fs::path dir = test::temp_dir("msg-sform-cli");
  const fs::path bad = write_bad_sform(dir / "bad.nii.gz", 0, 1, kNaN);
  std::vector<float> vals(8 * 8 * 4, 0.f);
  vals[100] = 1.f;
  write_nifti(Volume::from_values<float>({8, 8, 4}, vals.data()), dir / "good.nii.gz");
  const std::string bin = test::patchwork_bin() + " ";
  const std::string good = (dir / "good.nii.gz").string();
  for (const std::string& cmd :
       {bin + "info " + bad.string(), bin + "info --stats " + bad.string(),
        bin + "convert " + bad.string() + " " + (dir / "out.nii.gz").string(),
        bin + "convert --dtype uint8 " + bad.string() + " " + (dir / "out.nii").string(),
        bin + "eval --pred " + bad.string() + " --ref " + good, bin + "eval --pred " + good + " --ref " + bad.string()}) {
    std::string out;
    const int rc = test::run_command(cmd, &out);
    INFO(cmd);
    INFO(out);
    CHECK(rc == 1);
    CHECK(lines(out) == 1);
    CHECK(out.find("patchwork: " + bad.string() + ": the sform (sform_code 1) holds a non-finite value: srow_x[1] = nan") !=
          std::string::npos);
    CHECK(out.find("singular") == std::string::npos);
    CHECK(out.find("set_affine") == std::string::npos);
  }
  CHECK(!fs::exists(dir / "out.nii.gz"));
  CHECK(!fs::exists(dir / "out.nii"));
}
