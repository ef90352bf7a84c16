// Writing: read-write-read round trips (every datatype, .nii and .nii.gz, corpus files), geometry from an
// affine (quaternion, qfac, shear), NIfTI-2 for large dims, convert_datatype range checks, atomic writes.
#include <doctest/doctest.h>
#include <Eigen/Geometry>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "io/atomic_file.h"
#include "io/error.h"
#include "io/nifti.h"

namespace {

namespace fs = std::filesystem;

// An oblique, anisotropic, left-handed affine (det < 0) with an offset.
Eigen::Matrix4d oblique_affine() {
  Eigen::Matrix3d r = (Eigen::AngleAxisd(0.3, Eigen::Vector3d::UnitZ()) * Eigen::AngleAxisd(-0.5, Eigen::Vector3d::UnitY()) *
                       Eigen::AngleAxisd(0.2, Eigen::Vector3d::UnitX()))
                          .toRotationMatrix();
  Eigen::Matrix4d a = Eigen::Matrix4d::Identity();
  a.topLeftCorner<3, 3>() = r * Eigen::Vector3d(0.75, 1.25, -2.5).asDiagonal();
  a.col(3).head<3>() = Eigen::Vector3d(-90.5, 12.25, 40.0);
  return a;
}

// Values spanning the type: its minimum and maximum, zero, and a ramp.
template <class T>
std::vector<T> test_values(size_t n) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<T>(static_cast<double>(i % 97) * 1.5 - 20);
  v[1] = std::numeric_limits<T>::lowest();
  v[2] = std::numeric_limits<T>::max();
  v[3] = 0;
  return v;
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

size_t files_in(const fs::path& dir) {
  size_t n = 0;
  for (auto it = fs::directory_iterator(dir); it != fs::directory_iterator(); ++it) ++n;
  return n;
}

template <class T>
void roundtrip_type(const fs::path& dir) {
  const std::vector<int64_t> dims{7, 5, 3, 2};
  const std::vector<T> values = test_values<T>(7 * 5 * 3 * 2);
  pw::Volume v = pw::Volume::from_values(dims, values.data(), oblique_affine());
  v.descrip = "round trip";
  v.intent_code = 1007;
  v.intent_name = "vector";
  v.extensions.push_back({6, std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o', 0, 0, 0}});
  v.extensions.push_back({4, std::vector<uint8_t>(24, 7)});
  for (const char* ext : {".nii", ".nii.gz"}) {
    const fs::path file = dir / (pw::nifti_datatype_name(v.datatype) + ext);
    INFO(file);
    pw::write_nifti(v, file);
    const pw::Volume r = pw::read_nifti(file);
    CHECK(r.datatype == v.datatype);
    CHECK(r.shape() == dims);
    CHECK(r.data == v.data);  // exact, every byte
    CHECK(std::memcmp(r.data.data(), values.data(), r.data.size()) == 0);
    CHECK(r.descrip == "round trip");
    CHECK(r.intent_code == 1007);
    CHECK(r.intent_name == "vector");
    REQUIRE(r.extensions.size() == 2);
    CHECK(r.extensions[0].code == 6);
    CHECK(r.extensions[0].data.size() == 8);
    CHECK(r.extensions[0].data == v.extensions[0].data);
    CHECK(r.extensions[1].code == 4);
    CHECK(r.extensions[1].data == v.extensions[1].data);
    CHECK(r.vox_offset == 352 + 16 + 32);
    CHECK(r.qform_code == 1);
    CHECK(r.sform_code == 1);
    // NIfTI-1 stores the affine in float32.
    CHECK((r.affine() - oblique_affine()).cwiseAbs().maxCoeff() < 1e-5);
    CHECK((r.qform_affine() - oblique_affine()).cwiseAbs().maxCoeff() < 1e-5);
    CHECK(r.pixdim[0] == -1);  // left-handed: qfac -1
    CHECK(r.to_double() == v.to_double());
  }
}

}  // namespace

TEST_CASE("round trip: every datatype, .nii and .nii.gz, exact data and extensions") {
  const fs::path dir = pw::test::temp_dir("nifti_rt");
  roundtrip_type<uint8_t>(dir);
  roundtrip_type<int8_t>(dir);
  roundtrip_type<int16_t>(dir);
  roundtrip_type<uint16_t>(dir);
  roundtrip_type<int32_t>(dir);
  roundtrip_type<uint32_t>(dir);
  roundtrip_type<int64_t>(dir);
  roundtrip_type<uint64_t>(dir);
  roundtrip_type<float>(dir);
  roundtrip_type<double>(dir);
  CHECK(files_in(dir) == 20);  // no temporary files left
}

TEST_CASE("round trip: every valid corpus file, written back as .nii and .nii.gz") {
  const fs::path corpus = pw::test::test_data("nifti-corpus");
  const fs::path dir = pw::test::temp_dir("nifti_rt_corpus");
  int n = 0;
  for (const auto& e : fs::directory_iterator(corpus)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("bad_", 0) == 0 || name.find(".json") != std::string::npos || name.find(".img") != std::string::npos ||
        (name.find(".nii") == std::string::npos && name.find(".hdr") == std::string::npos))
      continue;
    INFO(name);
    const pw::Volume v = pw::read_nifti(e.path());
    for (const char* ext : {".nii", ".nii.gz"}) {
      const fs::path out = dir / (name + ext);
      pw::write_nifti(v, out);
      const pw::Volume r = pw::read_nifti(out);
      CHECK(r.version == 1);
      CHECK(r.shape() == v.shape());
      CHECK(r.datatype == v.datatype);
      CHECK(r.data == v.data);
      CHECK(r.qform_code == v.qform_code);
      CHECK(r.sform_code == v.sform_code);
      CHECK(r.intent_code == v.intent_code);
      CHECK(r.descrip == v.descrip);
      CHECK(r.xyzt_units == v.xyzt_units);
      REQUIRE(r.extensions.size() == v.extensions.size());
      for (size_t i = 0; i < r.extensions.size(); ++i) {
        CHECK(r.extensions[i].code == v.extensions[i].code);
        CHECK(r.extensions[i].data == v.extensions[i].data);
      }
      // NIfTI-1 fields are float32: exact for NIfTI-1 input, float32-rounded for NIfTI-2 input.
      const double tol = v.version == 1 ? 0 : 1e-6;
      CHECK((r.affine() - v.affine()).cwiseAbs().maxCoeff() <= tol * (1 + v.affine().cwiseAbs().maxCoeff()));
      if (v.is_scaled() || r.is_scaled()) {
        CHECK(r.is_scaled() == v.is_scaled());
        CHECK(static_cast<float>(r.scl_slope) == static_cast<float>(v.scl_slope));
        CHECK(static_cast<float>(r.scl_inter) == static_cast<float>(v.scl_inter));
      }
    }
    ++n;
  }
  CHECK(n == 57);
}

TEST_CASE("RGB24 round trip keeps the interleaved bytes") {
  pw::Volume v = pw::Volume::zeros({4, 3, 2}, pw::nifti_dt::rgb24);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = static_cast<uint8_t>(i * 7);
  const fs::path file = pw::test::temp_dir("nifti_rgb") / "rgb.nii.gz";
  pw::write_nifti(v, file);
  const pw::Volume r = pw::read_nifti(file);
  CHECK(r.datatype == pw::nifti_dt::rgb24);
  CHECK(r.bitpix == 24);
  CHECK(r.data == v.data);
}

TEST_CASE("a dimension above 32767 is written as NIfTI-2") {
  std::vector<uint8_t> values(40000 * 2);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<uint8_t>(i * 31);
  pw::Volume v = pw::Volume::from_values({40000, 2}, values.data());
  const fs::path dir = pw::test::temp_dir("nifti_n2");
  for (const char* name : {"big.nii", "big.nii.gz"}) {
    pw::write_nifti(v, dir / name);
    const pw::Volume r = pw::read_nifti(dir / name);
    CHECK(r.version == 2);
    CHECK(r.vox_offset == 544);
    CHECK(r.shape() == std::vector<int64_t>{40000, 2});
    CHECK(r.data == v.data);
  }
  const std::vector<uint8_t> bytes = read_bytes(dir / "big.nii");
  int32_t sizeof_hdr;
  std::memcpy(&sizeof_hdr, bytes.data(), 4);
  CHECK(sizeof_hdr == 540);
  CHECK(std::memcmp(bytes.data() + 4, "n+2\0\r\n\032\n", 8) == 0);
}

TEST_CASE("set_affine: quaternion as nifti_clib computes it, qfac, shear") {
  const fs::path corpus = pw::test::test_data("nifti-corpus");
  // The corpus's qform was written by nibabel from the same rotation: same quaternion back.
  for (const char* name : {"xf_oblique_aniso.nii", "xf_neg_qfac.nii", "xf_qform_only.nii"}) {
    INFO(name);
    const pw::Volume v = pw::read_nifti(corpus / name);
    pw::Volume w = v;
    w.set_affine(v.qform_affine(), 1);
    CHECK(std::fabs(w.quatern_b - v.quatern_b) < 1e-6);
    CHECK(std::fabs(w.quatern_c - v.quatern_c) < 1e-6);
    CHECK(std::fabs(w.quatern_d - v.quatern_d) < 1e-6);
    CHECK(w.pixdim[0] == (v.pixdim[0] < 0 ? -1 : 1));
    for (int i = 1; i <= 3; ++i) CHECK(std::fabs(w.pixdim[i] - v.pixdim[i]) < 1e-6);
    CHECK(w.qform_code == 1);
    CHECK((w.qform_affine() - v.qform_affine()).cwiseAbs().maxCoeff() < 1e-9);
  }
  // A 180-degree rotation about x (trace -1: the quaternion's a is 0, the other branch).
  pw::Volume v;
  Eigen::Matrix4d flip = Eigen::Matrix4d::Identity();
  flip(1, 1) = -2, flip(2, 2) = -3;
  v.set_affine(flip, 2);
  CHECK(std::fabs(v.quatern_b - 1) < 1e-12);
  CHECK((v.qform_affine() - flip).cwiseAbs().maxCoeff() < 1e-12);
  CHECK(v.pixdim[0] == 1);
  // Shear: sform kept, qform_code 0.
  Eigen::Matrix4d shear = Eigen::Matrix4d::Identity();
  shear(0, 1) = 0.3;
  v.set_affine(shear, 1);
  CHECK(v.sform_code == 1);
  CHECK(v.qform_code == 0);
  CHECK(v.affine() == shear);
}

TEST_CASE("convert_datatype: scaled values, rounding, exact 64-bit, range errors") {
  const std::vector<int16_t> raw{-4, -3, 0, 3, 32767};
  pw::Volume v = pw::Volume::from_values({5}, raw.data());
  v.scl_slope = 0.5;
  v.scl_inter = 10;
  const pw::Volume f = pw::convert_datatype(v, pw::nifti_dt::float32);
  CHECK(f.to_double() == std::vector<double>{8, 8.5, 10, 11.5, 16393.5});
  CHECK(!std::isnan(f.scl_slope));
  CHECK(f.value(4) == 16393.5);
  const pw::Volume i = pw::convert_datatype(v, pw::nifti_dt::int16);
  CHECK(i.to_double() == std::vector<double>{8, 9, 10, 12, 16394});  // halves away from zero
  CHECK_THROWS_AS(pw::convert_datatype(v, pw::nifti_dt::uint8), pw::InputError);  // 16393.5 > 255
  v.scl_inter = -10;
  CHECK_THROWS_AS(pw::convert_datatype(v, pw::nifti_dt::uint16), pw::InputError);  // -12 < 0
  // Unscaled 64-bit integers convert exactly (no double round trip).
  const std::vector<uint64_t> big{(uint64_t(1) << 63) + 4097, 5};
  const pw::Volume b = pw::Volume::from_values({2}, big.data());
  const pw::Volume b2 = pw::convert_datatype(b, pw::nifti_dt::uint64);
  CHECK(std::memcmp(b2.data.data(), big.data(), 16) == 0);
  CHECK_THROWS_AS(pw::convert_datatype(b, pw::nifti_dt::int64), pw::InputError);
  // NaN does not fit an integer type.
  const std::vector<float> nan{1.0f, std::numeric_limits<float>::quiet_NaN()};
  CHECK_THROWS_AS(pw::convert_datatype(pw::Volume::from_values({2}, nan.data()), pw::nifti_dt::int32), pw::InputError);
}

TEST_CASE("atomic writes leave nothing behind on failure") {
  const fs::path dir = pw::test::temp_dir("nifti_atomic");
  const std::vector<float> values(8, 1.0f);
  const pw::Volume v = pw::Volume::from_values({2, 2, 2}, values.data());
  // A folder that does not exist: error, nothing created.
  CHECK_THROWS_AS(pw::write_nifti(v, dir / "missing" / "x.nii"), pw::InputError);
  CHECK(!fs::exists(dir / "missing"));
  // A bad name is refused before anything is written.
  CHECK_THROWS_AS(pw::write_nifti(v, dir / "x.txt"), std::invalid_argument);
  // An inconsistent volume (data size != dims) is refused, nothing written.
  pw::Volume bad = v;
  bad.data.resize(5);
  CHECK_THROWS_AS(pw::write_nifti(bad, dir / "bad.nii"), std::invalid_argument);
  CHECK(files_in(dir) == 0);
  {
    // A writer that throws midway: the temporary file is removed, the target never appears.
    try {
      pw::AtomicFile out(dir / "partial.bin");
      out.write("abc", 3);
      CHECK(fs::exists(out.temp_path()));
      throw std::runtime_error("simulated failure");
    } catch (const std::runtime_error&) {
    }
    CHECK(files_in(dir) == 0);
  }
  // An existing file is replaced only on commit.
  {
    std::ofstream(dir / "keep.bin") << "old";
    pw::AtomicFile out(dir / "keep.bin");
    out.write("new!", 4);
    CHECK(read_bytes(dir / "keep.bin").size() == 3);
    out.commit();
  }
  CHECK(read_bytes(dir / "keep.bin").size() == 4);
  CHECK(files_in(dir) == 1);
}

TEST_CASE("pairs: .hdr with a gzipped .img, and the .img named on the command line") {
  const fs::path corpus = pw::test::test_data("nifti-corpus");
  const fs::path dir = pw::test::temp_dir("nifti_pair");
  fs::copy_file(corpus / "n1_pair_float64_be.hdr", dir / "p.hdr");
  fs::copy_file(corpus / "n1_pair_float64_be.img", dir / "p.img");
  const pw::Volume ref = pw::read_nifti(dir / "p.hdr");
  CHECK(pw::read_nifti(dir / "p.img").data == ref.data);
  REQUIRE(pw::test::run_command("gzip '" + (dir / "p.img").string() + "'") == 0);
  CHECK(!fs::exists(dir / "p.img"));
  CHECK(pw::read_nifti(dir / "p.hdr").data == ref.data);
  CHECK(pw::read_nifti(dir / "p.img.gz").data == ref.data);
  fs::remove(dir / "p.img.gz");
  CHECK_THROWS_AS(pw::read_nifti(dir / "p.hdr"), pw::InputError);
}

TEST_CASE("gzip: trailing data after the image is bounded, concatenated members are read") {
  // Two gzip members (as `cat a.gz b.gz` makes): the image continues into the second member.
  std::vector<float> values(1000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.25f * i;
  const pw::Volume v = pw::Volume::from_values({10, 10, 10}, values.data());
  const fs::path dir = pw::test::temp_dir("nifti_gz");
  pw::write_nifti(v, dir / "a.nii");
  const std::string a = (dir / "a.nii").string();
  REQUIRE(pw::test::run_command("head -c 2000 '" + a + "' | gzip -c > '" + a + ".gz' && tail -c +2001 '" + a +
                                "' | gzip -c >> '" + a + ".gz'") == 0);
  CHECK(pw::read_nifti(a + ".gz").data == v.data);
  // 70 MiB of zeros after the image: refused after 64 MiB instead of inflating without bound.
  REQUIRE(pw::test::run_command("(cat '" + a + "'; head -c 73400320 /dev/zero) | gzip -1 -c > '" + a + ".big.gz'") == 0);
  try {
    pw::read_nifti(a + ".big.gz");
    FAIL("accepted 70 MiB of trailing data");
  } catch (const pw::InputError& e) {
    CHECK(std::string(e.what()).find("after the image data") != std::string::npos);
  }
}
