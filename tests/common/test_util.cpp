#include "common/test_util.h"

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace pw::test {

namespace {

bool is_data_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p / "nifti-corpus", ec) && fs::is_directory(p / "op-fixtures", ec);
}

// tests/data in `start` or in a folder above it; empty when there is none.
fs::path find_upwards(const fs::path& start) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(start, ec);
  if (ec || p.empty()) return {};
  for (;; p = p.parent_path()) {
    if (is_data_dir(p / "tests" / "data")) return p / "tests" / "data";
    if (p == p.root_path() || p.parent_path() == p) return {};
  }
}

}  // namespace

fs::path test_data_dir() {
  static const fs::path dir = [] {
    if (const char* s = std::getenv("PW_TEST_DATA_DIR"); s && *s) return fs::path(s);
    const fs::path configured(PW_TEST_DATA_DIR);
    if (is_data_dir(configured)) return configured;
    std::error_code ec;
    if (fs::path p = find_upwards(fs::current_path(ec)); !p.empty()) return p;
    if (fs::path p = find_upwards(fs::read_symlink("/proc/self/exe", ec).parent_path()); !p.empty()) return p;
    return configured;  // missing: every test_data() call fails naming it
  }();
  return dir;
}

fs::path test_data(const fs::path& rel) {
  const fs::path p = test_data_dir() / rel;
  // FAIL (not REQUIRE): stops the test when the file is missing, without adding to the assertion counts.
  if (!fs::exists(p))
    FAIL("test data missing: " << p.string() << " (tests/data/ of the repository; PW_TEST_DATA_DIR overrides)");
  return p;
}

Npy load_npy(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + file.string());
  char magic[6];
  in.read(magic, 6);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(file.string() + ": not a .npy file");
  unsigned char ver[2];
  in.read(reinterpret_cast<char*>(ver), 2);
  uint32_t hlen = 0;
  if (ver[0] == 1) {
    unsigned char b[2];
    in.read(reinterpret_cast<char*>(b), 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t(b[3]) << 24);
  }
  std::string header(hlen, '\0');
  in.read(header.data(), hlen);
  auto field = [&](const std::string& key) {
    auto p = header.find("'" + key + "'");
    if (p == std::string::npos) throw std::runtime_error(file.string() + ": no " + key);
    return header.substr(header.find(':', p) + 1);
  };
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  if (field("fortran_order").find("True") < field("fortran_order").find(',')) throw std::runtime_error("fortran order");
  std::string sh = field("shape");
  sh = sh.substr(sh.find('(') + 1, sh.find(')') - sh.find('(') - 1);
  Npy a;
  std::stringstream ss(sh);
  std::string tok;
  while (std::getline(ss, tok, ','))
    if (tok.find_first_not_of(" ") != std::string::npos) a.shape.push_back(std::stoll(tok));
  int64_t n = 1;
  for (auto d : a.shape) n *= d;
  a.data.resize(n);
  if (descr == "<f8") {
    in.read(reinterpret_cast<char*>(a.data.data()), n * 8);
  } else if (descr == "<f4") {
    std::vector<float> v(n);
    in.read(reinterpret_cast<char*>(v.data()), n * 4);
    for (int64_t i = 0; i < n; ++i) a.data[i] = v[i];
  } else if (descr == "<i8") {
    std::vector<int64_t> v(n);
    in.read(reinterpret_cast<char*>(v.data()), n * 8);
    for (int64_t i = 0; i < n; ++i) a.data[i] = double(v[i]);
  } else if (descr == "<i4") {
    std::vector<int32_t> v(n);
    in.read(reinterpret_cast<char*>(v.data()), n * 4);
    for (int64_t i = 0; i < n; ++i) a.data[i] = v[i];
  } else {
    throw std::runtime_error(file.string() + ": unsupported dtype " + descr);
  }
  if (!in) throw std::runtime_error(file.string() + ": truncated");
  return a;
}

Tensor Npy::to_f32() const {
  Tensor t = Tensor::empty(shape, DType::f32);
  for (size_t i = 0; i < data.size(); ++i) t.f32()[i] = static_cast<float>(data[i]);
  return t;
}

Tensor Npy::to_i32() const {
  Tensor t = Tensor::empty(shape, DType::i32);
  for (size_t i = 0; i < data.size(); ++i) t.i32()[i] = static_cast<int32_t>(data[i]);
  return t;
}

std::string check_close(const std::vector<float>& actual, const std::vector<double>& ref, double rtol,
                        double atol_frac) {
  if (actual.size() != ref.size())
    return "size mismatch: " + std::to_string(actual.size()) + " vs " + std::to_string(ref.size());
  double maxr = 0;
  for (double r : ref) maxr = std::max(maxr, std::fabs(r));
  double worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double err = std::fabs(double(actual[i]) - ref[i]);
    double tol = rtol * std::fabs(ref[i]) + atol_frac * maxr;
    if (!(err <= tol) && (err - tol > worst || !std::isfinite(err))) {
      worst = std::isfinite(err) ? err - tol : 1e300;
      wi = i;
    }
  }
  if (worst == 0) return "";
  std::ostringstream o;
  o << "element " << wi << ": got " << actual[wi] << ", expected " << ref[wi] << " (max|ref| " << maxr << ")";
  return o.str();
}

fs::path temp_dir(const std::string& tag) {
  static std::mt19937_64 rng(std::random_device{}());
  fs::path p = fs::temp_directory_path() / ("pw_test_" + tag + "_" + std::to_string(rng() % 100000000));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string patchwork_bin() {
  if (const char* s = std::getenv("PATCHWORK_BIN")) return s;
  return std::string(PW_BINARY_DIR) + "/cli/patchwork";
}

double proc_status_bytes(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) * 1024.0;
  return -1;
}

double reset_peak_rss(std::string& why) {
  {
    std::ofstream reset("/proc/self/clear_refs");
    reset << "5";  // the peak RSS := the current RSS
    if (!reset) {
      why = "/proc/self/clear_refs not writable";
      return -1;
    }
  }
  const double now = proc_status_bytes("VmRSS");
  if (now < 0 || proc_status_bytes("VmHWM") > now + 4096 * 64) {
    why = "the peak RSS could not be reset";
    return -1;
  }
  return now;
}

int run_command(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  std::string out;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  if (output) *output = out;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace pw::test
