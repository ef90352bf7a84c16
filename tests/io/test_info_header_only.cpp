// `patchwork info` reads the header and extensions only (io/nifti.h read_nifti_header): a 2 MB .nii.gz of
// zeros that decodes to 2 GiB is described in milliseconds and a few MiB, under an address-space limit far
// below the decoded size. read_nifti_header / read_nifti_streaming agree with read_nifti on every corpus
// file; `info --stats` streams the data (constant memory) and checks them as read_nifti does.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "io/error.h"
#include "io/nifti.h"
#include "io/nifti_header.h"

// Under the sanitizers (terabytes of shadow address space) no address-space limit, and only the peak
// RSS above `patchwork --version`'s counts. A CUDA build's CPU commands load no CUDA library
// (engine/cuda_backend.h), so the limit applies there too.
#if defined(__SANITIZE_ADDRESS__)
#define PW_TEST_NO_AS_LIMIT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
#define PW_TEST_NO_AS_LIMIT 1
#endif
#endif

namespace {

namespace fs = std::filesystem;

// Deflates `total` bytes, produced by `next(buf, n)` in pieces, into one gzip member.
template <class Next>
std::vector<uint8_t> gzip_member(uint64_t total, Next next) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  std::vector<uint8_t> in(size_t(1) << 20), out, buf(size_t(1) << 18);
  uint64_t done = 0;
  int ret = Z_OK;
  while (ret != Z_STREAM_END) {
    if (zs.avail_in == 0 && done < total) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(in.size(), total - done));
      next(in.data(), n);
      zs.next_in = in.data();
      zs.avail_in = static_cast<uInt>(n);
      done += n;
    }
    zs.next_out = buf.data();
    zs.avail_out = static_cast<uInt>(buf.size());
    ret = deflate(&zs, done == total ? Z_FINISH : Z_NO_FLUSH);
    REQUIRE(ret != Z_STREAM_ERROR);
    out.insert(out.end(), buf.data(), buf.data() + (buf.size() - zs.avail_out));
  }
  deflateEnd(&zs);
  return out;
}

// A legal .nii.gz of uint32 zeros of `dims`, one extension (code 6, 40 bytes), built without holding the
// decoded image: a gzip member with the header and extension, then `members` copies of one member of
// zeros (a multi-member gzip stream, RFC 1952 2.2, as `cat a.gz b.gz` makes). Returns the file's size.
uint64_t write_zeros_nii_gz(const fs::path& file, const std::vector<int64_t>& dims, int members) {
  pw::NiftiHeader h;
  h.ndim = static_cast<int>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) h.dims[i] = dims[i];
  h.datatype = pw::nifti_dt::uint32;
  h.bitpix = 32;
  h.descrip = "zeros, header-only test";
  const uint64_t bytes = static_cast<uint64_t>(h.num_voxels()) * 4;
  REQUIRE(bytes % members == 0);
  const int64_t vox_offset = 348 + 4 + 48;
  std::vector<uint8_t> head = pw::nifti_detail::encode_header(h, 1, vox_offset);
  const uint8_t extender[4] = {1, 0, 0, 0};
  head.insert(head.end(), extender, extender + 4);
  const int32_t esize = 48, ecode = 6;
  head.insert(head.end(), reinterpret_cast<const uint8_t*>(&esize), reinterpret_cast<const uint8_t*>(&esize) + 4);
  head.insert(head.end(), reinterpret_cast<const uint8_t*>(&ecode), reinterpret_cast<const uint8_t*>(&ecode) + 4);
  std::string text = "header-only";
  text.resize(40, '\0');
  head.insert(head.end(), text.begin(), text.end());
  REQUIRE(head.size() == static_cast<size_t>(vox_offset));

  const std::vector<uint8_t> first = gzip_member(head.size(), [&](uint8_t* b, size_t n) {
    std::copy(head.begin(), head.begin() + static_cast<std::ptrdiff_t>(n), b);
  });
  const std::vector<uint8_t> zeros =
      gzip_member(bytes / members, [](uint8_t* b, size_t n) { std::fill(b, b + n, uint8_t{0}); });
  std::ofstream f(file, std::ios::binary);
  f.write(reinterpret_cast<const char*>(first.data()), static_cast<std::streamsize>(first.size()));
  for (int i = 0; i < members; ++i)
    f.write(reinterpret_cast<const char*>(zeros.data()), static_cast<std::streamsize>(zeros.size()));
  REQUIRE(f.good());
  return first.size() + zeros.size() * static_cast<uint64_t>(members);
}

struct Measured {
  int status = -1;   // exit status, or -1 when killed by a signal
  long maxrss_kib = 0;
  double seconds = 0;
  std::string output;  // stdout and stderr
};

// Runs patchwork with `args` in a child limited to `as_limit` bytes of address space (0: no limit) and
// measures its peak resident memory (wait4's ru_maxrss). The child's peak inherited from this process is
// reset first (/proc/self/clear_refs "5"), so the figure is patchwork's own (at least this process's
// resident size at the fork, reported in `parent_rss_kib`).
Measured run_patchwork(const std::vector<std::string>& args, const fs::path& out_file, uint64_t as_limit) {
  Measured m;
  const std::string bin = pw::test::patchwork_bin();
  std::vector<std::string> all{bin};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) ::_exit(126);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    const int c = ::open("/proc/self/clear_refs", O_WRONLY);
    if (c >= 0) {
      if (::write(c, "5", 1) != 1) ::_exit(125);
      ::close(c);
    }
#ifndef PW_TEST_NO_AS_LIMIT
    if (as_limit) {
      const rlimit rl{as_limit, as_limit};
      ::setrlimit(RLIMIT_AS, &rl);
    }
#else
    (void)as_limit;
#endif
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  rusage ru{};
  REQUIRE(::wait4(pid, &status, 0, &ru) == pid);
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  m.maxrss_kib = ru.ru_maxrss;
  std::ifstream in(out_file);
  std::stringstream ss;
  ss << in.rdbuf();
  m.output = ss.str();
  return m;
}

long self_rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

fs::path corpus(const std::string& name) { return pw::test::test_data(fs::path("nifti-corpus") / name); }

// Every NIfTI file of the corpus and the header zoo (a pair by its .hdr only).
std::vector<fs::path> corpus_files() {
  std::vector<fs::path> out;
  for (const char* folder : {"nifti-corpus", "nifti-header-zoo"})
    for (const auto& e : fs::recursive_directory_iterator(pw::test::test_data(folder))) {
      const std::string n = e.path().filename().string();
      auto ends = [&](const std::string& s) { return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
      if (e.is_regular_file() && (ends(".nii") || ends(".nii.gz") || ends(".hdr") || ends(".hdr.gz")))
        out.push_back(e.path());
    }
  std::sort(out.begin(), out.end());
  return out;
}

bool gz_data_error(const fs::path& p) {
  const std::string n = p.filename().string();
  return n == "bad_gz_corrupt.nii.gz" || n == "bad_gz_crc.nii.gz" || n == "bad_gz_truncated.nii.gz";
}

// The address space allowed to `info` (decoded image: 2 GiB; not applied in CUDA or sanitizer builds).
constexpr uint64_t kAsLimit = uint64_t(256) << 20;
// `info` may use at most this much more than `patchwork --version` (the program itself and its libraries).
constexpr long kMaxExtraRssKib = 64 * 1024;

long baseline_rss_kib(const fs::path& dir) {
  static long base = 0;
  if (!base) base = run_patchwork({"--version"}, dir / "version.out", 0).maxrss_kib;
  return base;
}

}  // namespace

TEST_CASE("the multi-member zeros .nii.gz of these tests is read by read_nifti") {
  const fs::path dir = pw::test::temp_dir("info_zeros_small");
  const fs::path file = dir / "z.nii.gz";
  write_zeros_nii_gz(file, {64, 64, 64}, 4);
  const pw::Volume v = pw::read_nifti(file);
  CHECK(v.shape() == std::vector<int64_t>{64, 64, 64});
  CHECK(v.datatype == pw::nifti_dt::uint32);
  CHECK(v.vox_offset == 400);
  REQUIRE(v.extensions.size() == 1);
  CHECK(v.extensions[0].code == 6);
  CHECK(v.extensions[0].disk_size() == 48);
  REQUIRE(v.data.size() == size_t(1) << 20);
  CHECK(std::all_of(v.data.begin(), v.data.end(), [](uint8_t b) { return b == 0; }));
  const pw::NiftiHeader h = pw::read_nifti_header(file);
  CHECK(h.descrip == "zeros, header-only test");
  CHECK(h.extensions[0].data == v.extensions[0].data);
}

TEST_CASE("patchwork info on a 2 MB .nii.gz that decodes to 2 GiB: header only, little memory, fast") {
  const fs::path dir = pw::test::temp_dir("info_zeros_big");
  const fs::path file = dir / "zeros_2GiB.nii.gz";
  const uint64_t size = write_zeros_nii_gz(file, {1024, 1024, 512}, 32);  // 2 GiB of uint32 zeros
  MESSAGE("file " << size << " bytes, decoded " << (uint64_t(2) << 30) << " bytes + header; test process RSS "
                  << self_rss_kib() << " KiB");
  CHECK(size < (uint64_t(4) << 20));

  const Measured m = run_patchwork({"info", "--json", file.string()}, dir / "info.out", kAsLimit);
  MESSAGE("patchwork info: peak RSS " << m.maxrss_kib << " KiB, " << m.seconds << " s");
  REQUIRE_MESSAGE(m.status == 0, m.output);
  CHECK(m.maxrss_kib < baseline_rss_kib(dir) + kMaxExtraRssKib);
  CHECK(m.seconds < 3.0);  // was about 6-9 s (and 2 GiB) when info read the whole image
  const auto j = nlohmann::json::parse(m.output);
  CHECK(j["dims"] == nlohmann::json({1024, 1024, 512}));
  CHECK(j["datatype_name"] == "uint32");
  CHECK(j["vox_offset"] == 400);
  CHECK(j["descrip"] == "zeros, header-only test");
  REQUIRE(j["extensions"].size() == 1);
  CHECK(j["extensions"][0]["code"] == 6);
  CHECK(j["extensions"][0]["size"] == 48);
  CHECK(!j.contains("stats"));

  const Measured t = run_patchwork({"info", file.string()}, dir / "info.txt", kAsLimit);
  REQUIRE_MESSAGE(t.status == 0, t.output);
  CHECK(t.output.find("dims          1024 x 1024 x 512") != std::string::npos);
  CHECK(t.maxrss_kib < baseline_rss_kib(dir) + kMaxExtraRssKib);

#ifndef PW_TEST_NO_AS_LIMIT
  // Control: a command that reads the whole image cannot under the same limit.
  const Measured c = run_patchwork({"convert", file.string(), (dir / "c.nii").string()}, dir / "convert.out", kAsLimit);
  CHECK(c.status == 1);
  CHECK(c.output.find("cannot allocate") != std::string::npos);
#endif
}

TEST_CASE("patchwork info --stats streams the data: constant memory, values and errors as read_nifti") {
  const fs::path dir = pw::test::temp_dir("info_stats");
  // 256 MiB decoded, under a 256 MiB address-space limit.
  const fs::path file = dir / "zeros_256MiB.nii.gz";
  write_zeros_nii_gz(file, {512, 512, 256}, 4);
  const Measured m = run_patchwork({"info", "--json", "--stats", file.string()}, dir / "stats.out", kAsLimit);
  MESSAGE("patchwork info --stats (256 MiB decoded): peak RSS " << m.maxrss_kib << " KiB, " << m.seconds << " s");
  REQUIRE_MESSAGE(m.status == 0, m.output);
  CHECK(m.maxrss_kib < baseline_rss_kib(dir) + kMaxExtraRssKib);
  const auto j = nlohmann::json::parse(m.output);
  CHECK(j["stats"]["voxels"] == 512 * 512 * 256);
  CHECK(j["stats"]["nonfinite"] == 0);
  CHECK(j["stats"]["min"] == 0.0);
  CHECK(j["stats"]["max"] == 0.0);
  CHECK(j["stats"]["mean"] == 0.0);

  // Scaled, big-endian, 64-bit, NaN slope (= unscaled), 4D: against the values read_nifti gives.
  for (const char* name : {"scl_int16_slope0.5_inter-10.nii", "scl_int16_be_slope-0.25_inter7.5.nii", "dt_float64_be.nii",
                           "dt_int64_le.nii", "scl_slopenan_inter3.nii", "scl_slope0_inter5.nii", "shp_4d_3ch_labels.nii",
                           "n1_gz_int16_be.nii.gz", "n1_pair_float64_be.hdr", "dt_uint8_le.nii"}) {
    INFO(name);
    std::string out;
    REQUIRE(pw::test::run_command(pw::test::patchwork_bin() + " info --json --stats " + corpus(name).string() + " 2>/dev/null",
                                  &out) == 0);
    const auto s = nlohmann::json::parse(out)["stats"];
    const std::vector<double> ref = pw::read_nifti(corpus(name)).to_double();
    double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
    uint64_t finite = 0;
    for (double x : ref)
      if (std::isfinite(x)) lo = std::min(lo, x), hi = std::max(hi, x), sum += x, ++finite;
    CHECK(s["voxels"] == ref.size());
    CHECK(s["nonfinite"] == ref.size() - finite);
    REQUIRE(finite > 0);
    CHECK(s["min"].get<double>() == lo);
    CHECK(s["max"].get<double>() == hi);
    CHECK(s["mean"].get<double>() == doctest::Approx(sum / finite).epsilon(1e-12));
  }
  std::string out;
  CHECK(pw::test::run_command(pw::test::patchwork_bin() + " info --stats " + corpus("dt_float32_le.nii").string(), &out) == 0);
  CHECK(out.find("stats         min ") != std::string::npos);
  CHECK(pw::test::run_command(pw::test::patchwork_bin() + " info --stats " + corpus("dt_rgb24.nii").string(), &out) == 1);
  CHECK(out.find("no scalar values") != std::string::npos);
  CHECK(pw::test::run_command(pw::test::patchwork_bin() + " info " + corpus("dt_rgb24.nii").string(), &out) == 0);
}

TEST_CASE("read_nifti_header and read_nifti_streaming agree with read_nifti on every corpus file") {
  int valid = 0, invalid = 0;
  for (const fs::path& p : corpus_files()) {
    INFO(p.string());
    pw::Volume v;
    std::string error;
    try {
      v = pw::read_nifti(p);
    } catch (const pw::InputError& e) {
      error = e.what();
    }
    if (!error.empty()) {
      ++invalid;
      // The same error from the streaming reader; from the header reader too, except for gzip data errors.
      CHECK_THROWS_WITH_AS(pw::read_nifti_streaming(p, [](const pw::NiftiHeader&, const uint8_t*, size_t) {}),
                           error.c_str(), pw::InputError);
      if (gz_data_error(p))
        CHECK_NOTHROW(pw::read_nifti_header(p));
      else
        CHECK_THROWS_WITH_AS(pw::read_nifti_header(p), error.c_str(), pw::InputError);
      continue;
    }
    ++valid;
    const pw::NiftiHeader h = pw::read_nifti_header(p);
    const pw::NiftiHeader& r = v;
    // Every field: the encoded headers are equal, then what encoding does not hold.
    CHECK(pw::nifti_detail::encode_header(h, 2, h.vox_offset) == pw::nifti_detail::encode_header(r, 2, r.vox_offset));
    CHECK(h.version == r.version);
    CHECK(h.vox_offset == r.vox_offset);
    CHECK(h.bitpix == r.bitpix);
    CHECK(h.big_endian_on_disk == r.big_endian_on_disk);
    CHECK(h.shape() == r.shape());
    REQUIRE(h.extensions.size() == r.extensions.size());
    for (size_t i = 0; i < h.extensions.size(); ++i) {
      CHECK(h.extensions[i].code == r.extensions[i].code);
      CHECK(h.extensions[i].data == r.extensions[i].data);
    }
    std::vector<uint8_t> streamed;
    size_t calls = 0;
    const pw::NiftiHeader s = pw::read_nifti_streaming(p, [&](const pw::NiftiHeader& hh, const uint8_t* d, size_t n) {
      CHECK(hh.datatype == r.datatype);
      CHECK(n % static_cast<size_t>(pw::nifti_datatype_size(r.datatype)) == 0);
      streamed.insert(streamed.end(), d, d + n);
      ++calls;
    });
    CHECK(streamed == v.data);
    CHECK(calls >= 1);
    CHECK(pw::nifti_detail::encode_header(s, 2, s.vox_offset) == pw::nifti_detail::encode_header(r, 2, r.vox_offset));
  }
  MESSAGE(valid << " valid and " << invalid << " invalid files compared");
  CHECK(valid > 50);
  CHECK(invalid >= 20);  // the 20 bad_* files of the corpus, and unsupported datatypes of the zoo
}
