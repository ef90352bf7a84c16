// `patchwork info` and `patchwork convert` through the real binary: JSON keys and values, exit codes
// (0 ok, 1 bad input with one line naming the file, 2 bad usage), --help, no output on failure.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "common/test_util.h"
#include "io/nifti.h"

namespace {

namespace fs = std::filesystem;

std::string pw_cmd(const std::string& args) { return pw::test::patchwork_bin() + " " + args; }

fs::path corpus(const std::string& name) { return pw::test::test_data(fs::path("nifti-corpus") / name); }

// stdout only (stderr dropped), for JSON parsing.
int run_stdout(const std::string& cmd, std::string* out) { return pw::test::run_command(cmd + " 2>/dev/null", out); }

}  // namespace

TEST_CASE("patchwork info --json: keys and values") {
  std::string out;
  REQUIRE(run_stdout(pw_cmd("info --json " + corpus("n2_ext_xml.nii").string()), &out) == 0);
  const auto j = nlohmann::json::parse(out);
  CHECK(j["nifti_version"] == 2);
  CHECK(j["dims"] == nlohmann::json({10, 9, 7}));
  CHECK(j["datatype"] == 2);  // values from the sidecar n2_ext_xml.nii.expected.json
  CHECK(j["bitpix"] == 8);
  CHECK(j["pixdim"].size() == 3);
  CHECK(j["vox_offset"] == 896);
  REQUIRE(j["extensions"].size() == 1);
  CHECK(j["extensions"][0]["code"] == 6);
  CHECK(j["extensions"][0]["size"] == 352);
  for (const char* key : {"scl_slope", "scl_inter", "qform_code", "sform_code", "affine", "descrip", "intent_code"})
    CHECK_MESSAGE(j.contains(key), key);
  CHECK(j["affine"].size() == 4);

  // Scaled, 4D, sform vs qform: values against the volume read through the API.
  REQUIRE(run_stdout(pw_cmd("info --json " + corpus("xf_both_differ.nii").string()), &out) == 0);
  const auto k = nlohmann::json::parse(out);
  const pw::Volume v = pw::read_nifti(corpus("xf_both_differ.nii"));
  const Eigen::Matrix4d a = v.sform_affine();  // the sform wins
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) CHECK(k["affine"][r][c].get<double>() == a(r, c));
  REQUIRE(run_stdout(pw_cmd("info --json " + corpus("shp_4d_3ch_labels.nii").string()), &out) == 0);
  CHECK(nlohmann::json::parse(out)["dims"] == nlohmann::json({12, 10, 8, 3}));
  REQUIRE(run_stdout(pw_cmd("info --json " + corpus("scl_int16_slope0.5_inter-10.nii").string()), &out) == 0);
  CHECK(nlohmann::json::parse(out)["scl_slope"] == 0.5);
  // Text form too.
  REQUIRE(pw::test::run_command(pw_cmd("info " + corpus("ext_two_be.nii").string()), &out) == 0);
  CHECK(out.find("big endian") != std::string::npos);
  CHECK(out.find("code 6 (352 bytes), code 4 (224 bytes)") != std::string::npos);
}

TEST_CASE("patchwork info/convert: exit codes and --help") {
  std::string out;
  CHECK(pw::test::run_command(pw_cmd("info --help"), &out) == 0);
  CHECK(out.find("--json") != std::string::npos);
  CHECK(pw::test::run_command(pw_cmd("convert --help"), &out) == 0);
  CHECK(out.find("--dtype") != std::string::npos);
  CHECK(pw::test::run_command(pw_cmd("info"), &out) == 2);
  CHECK(pw::test::run_command(pw_cmd("info --bogus x.nii"), &out) == 2);
  const fs::path dir = pw::test::temp_dir("cli_io");
  CHECK(pw::test::run_command(pw_cmd("convert " + corpus("dt_int16_le.nii").string() + " " + (dir / "o.nii").string() +
                                     " --dtype int12"),
                              &out) == 2);
  CHECK(pw::test::run_command(pw_cmd("convert " + corpus("dt_int16_le.nii").string() + " " + (dir / "o.txt").string()),
                              &out) == 2);
  CHECK(pw::test::run_command(pw_cmd("info " + (dir / "nope.nii").string()), &out) == 1);
  CHECK(out.find("nope.nii") != std::string::npos);
  // Every broken corpus file: exit 1, one line naming the file.
  int n = 0;
  for (const auto& e : fs::directory_iterator(pw::test::test_data("nifti-corpus"))) {
    const std::string name = e.path().filename().string();
    if (name.rfind("bad_", 0) != 0 || name.find(".json") != std::string::npos) continue;
    INFO(name);
    // `info` reads only the header: a .nii.gz whose stream breaks after vox_offset (corrupt, truncated, bad
    // CRC) passes it, and only reading the data (info --stats, convert) finds the error.
    const bool data_only = name == "bad_gz_corrupt.nii.gz" || name == "bad_gz_crc.nii.gz" ||
                           name == "bad_gz_truncated.nii.gz";
    CHECK(pw::test::run_command(pw_cmd("info " + e.path().string()), &out) == (data_only ? 0 : 1));
    CHECK(pw::test::run_command(pw_cmd("info --stats " + e.path().string()), &out) == 1);
    CHECK(out.find(name.substr(0, name.find('.'))) != std::string::npos);
    CHECK(out.find('\n') == out.size() - 1);  // one line
    CHECK(pw::test::run_command(pw_cmd("convert " + e.path().string() + " " + (dir / "bad.nii").string()), &out) == 1);
    ++n;
  }
  CHECK(n == 20);
  CHECK(!fs::exists(dir / "bad.nii"));
}

TEST_CASE("patchwork convert: dtypes, scaling, no output when values do not fit") {
  const fs::path dir = pw::test::temp_dir("cli_convert");
  std::string out;
  // Scaled int16 -> default float32 with the scaled values and the same affine.
  const fs::path in = corpus("scl_int16_slope0.5_inter-10.nii");
  REQUIRE(pw::test::run_command(pw_cmd("convert " + in.string() + " " + (dir / "f.nii.gz").string()), &out) == 0);
  const pw::Volume src = pw::read_nifti(in);
  const pw::Volume f = pw::read_nifti(dir / "f.nii.gz");
  CHECK(f.datatype == pw::nifti_dt::float32);
  CHECK(f.to_double() == src.to_double());  // x.0 / x.5 values: exact in float32
  CHECK(f.affine() == src.affine());
  // Same file as float64 and as int32 (values rounded: the .5s go away from zero).
  REQUIRE(pw::test::run_command(pw_cmd("convert " + in.string() + " " + (dir / "d.nii").string() + " --dtype float64"),
                                &out) == 0);
  CHECK(pw::read_nifti(dir / "d.nii").to_double() == src.to_double());
  REQUIRE(pw::test::run_command(pw_cmd("convert " + in.string() + " " + (dir / "i.nii").string() + " --dtype int32"),
                                &out) == 0);
  const std::vector<double> ref = src.to_double(), got = pw::read_nifti(dir / "i.nii").to_double();
  for (size_t i = 0; i < ref.size(); ++i) CHECK(got[i] == std::round(ref[i]));
  // int16 values into uint8: out of range -> exit 1, nothing written, no temporary left.
  CHECK(pw::test::run_command(
            pw_cmd("convert " + corpus("dt_int16_le.nii").string() + " " + (dir / "u8.nii").string() + " --dtype uint8"),
            &out) == 1);
  CHECK(out.find("does not fit uint8") != std::string::npos);
  CHECK(!fs::exists(dir / "u8.nii"));
  size_t files = 0;
  for (auto it = fs::directory_iterator(dir); it != fs::directory_iterator(); ++it) ++files;
  CHECK(files == 3);
  // uint64 beyond 2^63 is copied exactly by the default (own) dtype.
  REQUIRE(pw::test::run_command(pw_cmd("convert " + corpus("dt_uint64_be.nii").string() + " " +
                                       (dir / "u64.nii").string()),
                                &out) == 0);
  CHECK(pw::read_nifti(dir / "u64.nii").data == pw::read_nifti(corpus("dt_uint64_be.nii")).data);
}
