// Every file of tests/data/nifti-corpus: valid files match their .expected.json field by field (header,
// extensions, scaling, affines, raw-data sha256, stats, samples); broken files are refused with InputError.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "io/error.h"
#include "io/nifti.h"
#include "sha256.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

fs::path corpus_dir() { return pw::test::test_data("nifti-corpus"); }

std::vector<fs::path> sidecars() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(corpus_dir()))
    if (e.path().string().size() > 14 &&
        e.path().string().compare(e.path().string().size() - 14, 14, ".expected.json") == 0)
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

json load_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

// The sidecars write non-finite floats as strings.
double num(const json& j) {
  if (j.is_string()) {
    const std::string s = j.get<std::string>();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
  }
  return j.get<double>();
}

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

void check_matrix(const Eigen::Matrix4d& m, const json& rows, double tol, const std::string& what) {
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) {
      INFO(what << " [" << r << "][" << c << "]");
      CHECK(std::fabs(m(r, c) - num(rows[r][c])) <= tol);
    }
}

void check_rel(double got, double want, double rtol, const char* what) {
  INFO(what << ": got " << got << ", expected " << want);
  CHECK(std::fabs(got - want) <= rtol * std::max(1.0, std::fabs(want)));
}

void check_valid(const fs::path& file, const json& j) {
  const pw::Volume v = pw::read_nifti(file);
  const json& h = j["header"];
  CHECK(v.version == (j["header_size"].get<int>() == 540 ? 2 : 1));
  CHECK(v.big_endian_on_disk == (j["endianness"] == "big"));
  // Header fields as stored.
  CHECK(v.ndim == h["dim"][0].get<int>());
  CHECK(v.shape() == j["shape"].get<std::vector<int64_t>>());
  CHECK(v.datatype == h["datatype"].get<int>());
  CHECK(v.bitpix == h["bitpix"].get<int>());
  for (int i = 0; i < 8; ++i) CHECK(same(v.pixdim[i], num(h["pixdim"][i])));
  CHECK(v.vox_offset == j["vox_offset"].get<int64_t>());
  CHECK(same(v.scl_slope, num(h["scl_slope"])));
  CHECK(same(v.scl_inter, num(h["scl_inter"])));
  CHECK(v.qform_code == h["qform_code"].get<int>());
  CHECK(v.sform_code == h["sform_code"].get<int>());
  CHECK(same(v.quatern_b, num(h["quatern_b"])));
  CHECK(same(v.quatern_c, num(h["quatern_c"])));
  CHECK(same(v.quatern_d, num(h["quatern_d"])));
  CHECK(same(v.qoffset_x, num(h["qoffset_x"])));
  CHECK(same(v.qoffset_y, num(h["qoffset_y"])));
  CHECK(same(v.qoffset_z, num(h["qoffset_z"])));
  const char* rows[3] = {"srow_x", "srow_y", "srow_z"};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) CHECK(same(v.srow[r][c], num(h[rows[r]][c])));
  CHECK(v.intent_code == h["intent_code"].get<int>());
  CHECK(same(v.intent_p[0], num(h["intent_p1"])));
  CHECK(same(v.intent_p[1], num(h["intent_p2"])));
  CHECK(same(v.intent_p[2], num(h["intent_p3"])));
  CHECK(v.intent_name == h["intent_name"].get<std::string>());
  CHECK(v.descrip == h["descrip"].get<std::string>());
  CHECK(v.aux_file == h["aux_file"].get<std::string>());
  CHECK(v.xyzt_units == h["xyzt_units"].get<int>());
  CHECK(v.dim_info == h["dim_info"].get<int>());
  CHECK(v.slice_start == h["slice_start"].get<int64_t>());
  CHECK(v.slice_end == h["slice_end"].get<int64_t>());
  CHECK(v.slice_code == h["slice_code"].get<int>());
  CHECK(same(v.slice_duration, num(h["slice_duration"])));
  CHECK(same(v.toffset, num(h["toffset"])));
  CHECK(same(v.cal_min, num(h["cal_min"])));
  CHECK(same(v.cal_max, num(h["cal_max"])));
  // Extensions in order: code, on-disk size, payload digest (without trailing NULs).
  REQUIRE(v.extensions.size() == j["extensions"].size());
  for (size_t i = 0; i < v.extensions.size(); ++i) {
    const json& e = j["extensions"][i];
    CHECK(v.extensions[i].code == e["ecode"].get<int>());
    CHECK(v.extensions[i].disk_size() == e["esize"].get<int64_t>());
    CHECK(v.extensions[i].data.size() == e["content_bytes_with_padding"].get<size_t>());
    std::string payload(v.extensions[i].data.begin(), v.extensions[i].data.end());
    while (!payload.empty() && payload.back() == '\0') payload.pop_back();
    CHECK(pw::test::sha256_hex(payload) == e["content_sha256"].get<std::string>());
  }
  // Scaling and geometry.
  CHECK(v.is_scaled() == j["scaling"]["applied"].get<bool>());
  check_matrix(v.qform_affine(), j["qform_affine"], 1e-6, "qform");
  check_matrix(v.sform_affine(), j["sform_affine"], 1e-6, "sform");
  check_matrix(v.affine(), j["affine_sform_else_qform_else_pixdim"], 1e-6, "affine");
  // Data: exact raw bytes (host order is little endian here), stats and samples.
  const json& d = j["data"];
  CHECK(pw::test::sha256_hex(v.data.data(), v.data.size()) == d["raw_sha256_le"].get<std::string>());
  if (v.datatype == pw::nifti_dt::rgb24) {
    double sum = 0;
    for (uint8_t b : v.data) sum += b;
    CHECK(sum == num(d["stats"]["sum"]));
    for (const json& s : d["samples"]) {
      const int64_t o = s["linear_voxel_offset"].get<int64_t>();
      for (int c = 0; c < 3; ++c) CHECK(v.data[3 * o + c] == s["value_rgb"][c].get<int>());
    }
    CHECK_THROWS_AS(v.to_double(), pw::InputError);
    return;
  }
  const std::vector<double> values = v.to_double();
  for (int pass = 0; pass < 2; ++pass) {  // pass 0: scaled values, pass 1: raw values
    const json& st = d[pass == 0 ? "stats" : "raw_stats"];
    double sum = 0, sum_sq = 0, mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < values.size(); ++i) {
      const double x = pass == 0 ? values[i] : v.raw_value(static_cast<int64_t>(i));
      sum += x, sum_sq += x * x, mn = std::min(mn, x), mx = std::max(mx, x);
    }
    CHECK(static_cast<int64_t>(values.size()) == st["count"].get<int64_t>());
    check_rel(sum, num(st["sum"]), 1e-9, "sum");
    check_rel(sum_sq, num(st["sum_sq"]), 1e-9, "sum_sq");
    check_rel(sum / values.size(), num(st["mean"]), 1e-9, "mean");
    CHECK(mn == num(st["min"]));
    CHECK(mx == num(st["max"]));
  }
  for (const json& s : d["samples"]) {
    const int64_t o = s["linear_voxel_offset"].get<int64_t>();
    // Index -> file order offset (i fastest).
    int64_t lin = 0, stride = 1;
    for (size_t a = 0; a < s["index"].size(); ++a) lin += s["index"][a].get<int64_t>() * stride, stride *= v.dims[a];
    CHECK(lin == o);
    CHECK(v.raw_value(o) == num(s["raw"]));
    CHECK(v.value(o) == num(s["value"]));
    CHECK(values[o] == num(s["value"]));
  }
  // uint64 beyond int64: read as unsigned (corpus puts 2^63+4096 at voxel (0,1,0)).
  if (v.datatype == pw::nifti_dt::uint64) {
    uint64_t x;
    std::memcpy(&x, v.data.data() + 8 * v.dims[0], 8);
    CHECK(x == (uint64_t(1) << 63) + 4096);
  }
}

}  // namespace

TEST_CASE("sha256 helper matches the FIPS 180-2 test vector") {
  CHECK(pw::test::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(pw::test::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("nifti corpus: valid files match their sidecars, broken files are refused") {
  int valid = 0, broken = 0;
  for (const fs::path& sidecar : sidecars()) {
    const json j = load_json(sidecar);
    std::string name = sidecar.filename().string();
    name.resize(name.size() - 14);
    const fs::path file = corpus_dir() / name;
    INFO("file " << file);
    if (j["valid"].get<bool>()) {
      ++valid;
      check_valid(file, j);
    } else {
      ++broken;
      try {
        pw::read_nifti(file);
        FAIL("accepted a broken file: " << j["reason"].get<std::string>());
      } catch (const pw::InputError& e) {
        // One line naming the file (or its .img) and the reason.
        const std::string msg = e.what();
        CHECK(msg.find(name.substr(0, name.find('.'))) != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);
      }
    }
  }
  CHECK(valid == 57);
  CHECK(broken == 20);
}

TEST_CASE("nifti corpus: the in-memory reader gives the same volumes as the file reader") {
  int n = 0;
  for (const fs::path& sidecar : sidecars()) {
    std::string name = sidecar.filename().string();
    name.resize(name.size() - 14);
    const json j = load_json(sidecar);
    if (!j["valid"].get<bool>() || j["format"].get<std::string>().find("pair") != std::string::npos) continue;
    std::ifstream in(corpus_dir() / name, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(name);
    const pw::Volume a = pw::read_nifti(corpus_dir() / name);
    const pw::Volume b = pw::read_nifti_memory(bytes.data(), bytes.size(), name);
    CHECK(a.data == b.data);
    CHECK(a.affine() == b.affine());
    CHECK(a.extensions.size() == b.extensions.size());
    ++n;
  }
  CHECK(n > 40);
}

TEST_CASE("nifti corpus: every truncation of a valid file is refused, byte flips never crash") {
  uint64_t state = 12345;
  auto rnd = [&] { return state = state * 6364136223846793005ULL + 1442695040888963407ULL, state >> 33; };
  int refused = 0, flipped = 0;
  for (const fs::path& sidecar : sidecars()) {
    std::string name = sidecar.filename().string();
    name.resize(name.size() - 14);
    const json j = load_json(sidecar);
    if (!j["valid"].get<bool>() || j["format"].get<std::string>().find("pair") != std::string::npos) continue;
    std::ifstream in(corpus_dir() / name, std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(name);
    for (size_t len = 0; len < bytes.size(); len += 1 + bytes.size() / 23) {
      INFO("truncated to " << len << " bytes");
      CHECK_THROWS_AS(pw::read_nifti_memory(bytes.data(), len, name), pw::InputError);
      ++refused;
    }
    for (int t = 0; t < 20; ++t) {  // header-area and random-byte corruption: read or InputError, nothing else
      std::vector<uint8_t> bad = bytes;
      for (int k = 0; k < 4; ++k) {
        size_t pos = (t % 2 == 0) ? rnd() % std::min<size_t>(bad.size(), 560) : rnd() % bad.size();
        bad[pos] = static_cast<uint8_t>(rnd());
      }
      try {
        pw::read_nifti_memory(bad.data(), bad.size(), name);
      } catch (const pw::InputError&) {
      }
      ++flipped;
    }
  }
  CHECK(refused > 500);
  CHECK(flipped > 800);
}
