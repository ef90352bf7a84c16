// Peak memory of reading a .nii.gz: the data are inflated straight into the volume's buffer, so the reader
// needs at most 1.1x the decoded data. Measured in this process with Linux's peak-RSS counter (VmHWM),
// reset just before the read through /proc/self/clear_refs.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "io/error.h"
#include "io/nifti.h"

TEST_CASE("reading a 64 MiB .nii.gz peaks at <= 1.1x the decoded data") {
  const int64_t nx = 256, ny = 256, nz = 512;
  const auto dir = pw::test::temp_dir("nifti_mem");
  const std::string file = (dir / "big.nii.gz").string();
  double data_bytes;
  {
    std::vector<int16_t> values(nx * ny * nz);
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int16_t>((i * 2654435761u) >> 20);
    pw::write_nifti(pw::Volume::from_values({nx, ny, nz}, values.data()), file);
    data_bytes = static_cast<double>(values.size() * sizeof(int16_t));
  }
  std::string why;
  const double before = pw::test::reset_peak_rss(why);
  if (before < 0) {
    MESSAGE("skipped: " << why);
    return;
  }
  const pw::Volume v = pw::read_nifti(file);
  const double peak = pw::test::proc_status_bytes("VmHWM") - before;
  CHECK(v.data.size() == static_cast<size_t>(data_bytes));
  MESSAGE("reader peak " << peak / 1048576.0 << " MiB for " << data_bytes / 1048576.0 << " MiB of data");
  CHECK(peak >= data_bytes);  // the measurement sees the buffer itself
  CHECK(peak <= 1.1 * data_bytes);
}

TEST_CASE("a .nii.gz whose header claims 1 GiB but holds 1 MiB fails without using the memory") {
  // 1 MiB of incompressible data behind a header claiming 1024x1024x512 int16: the gzip could hold up to
  // ~1 GiB (deflate's 1032:1 limit), so only running out of data while inflating can refuse it.
  const auto dir = pw::test::temp_dir("nifti_mem_claim");
  std::vector<uint8_t> noise(1 << 20);
  uint64_t s = 88172645463325252ULL;
  for (auto& b : noise) b = static_cast<uint8_t>((s ^= s << 13, s ^= s >> 7, s ^= s << 17) >> 24);
  pw::Volume v = pw::Volume::from_values({1024, 1024}, noise.data());  // NIfTI-1 (dims <= 32767)
  const std::string plain = (dir / "claim.nii").string();
  pw::write_nifti(v, plain);
  {
    std::fstream f(plain, std::ios::in | std::ios::out | std::ios::binary);
    const int16_t dim[4] = {3, 1024, 1024, 512}, dt[2] = {4, 16};  // int16, bitpix 16
    f.seekp(40);
    f.write(reinterpret_cast<const char*>(dim), sizeof dim);
    f.seekp(70);
    f.write(reinterpret_cast<const char*>(dt), sizeof dt);
  }
  REQUIRE(pw::test::run_command("gzip -1 '" + plain + "'") == 0);
  std::string why;
  const double before = pw::test::reset_peak_rss(why);
  if (before < 0) {
    MESSAGE("skipped: " << why);
    return;
  }
  try {
    pw::read_nifti(plain + ".gz");
    FAIL("accepted a file with 1 MiB of a 1 GiB image");
  } catch (const pw::InputError& e) {
    CHECK(std::string(e.what()).find("truncated") != std::string::npos);
  }
  const double peak = pw::test::proc_status_bytes("VmHWM") - before;
  MESSAGE("peak " << peak / 1048576.0 << " MiB while refusing a 1 GiB claim");
  CHECK(peak < 16.0 * 1048576.0);
}
