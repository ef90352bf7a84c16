// Peak memory of reading a .nii.gz: the data are inflated straight into the volume's buffer, so the reader
// needs at most 1.1x the decoded data. Measured in this process with Linux's peak-RSS counter (VmHWM),
// reset just before the read through /proc/self/clear_refs.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "io/nifti.h"

namespace {

// A "Vm...:" line of /proc/self/status in bytes, or -1.
double proc_status_bytes(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) * 1024.0;
  return -1;
}

}  // namespace

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
  {
    std::ofstream reset("/proc/self/clear_refs");
    reset << "5";  // reset the peak RSS to the current RSS
    if (!reset) {
      MESSAGE("skipped: /proc/self/clear_refs not writable");
      return;
    }
  }
  const double before = proc_status_bytes("VmRSS");
  if (before < 0 || proc_status_bytes("VmHWM") > before + 4096 * 64) {
    MESSAGE("skipped: the peak RSS could not be reset");
    return;
  }
  const pw::Volume v = pw::read_nifti(file);
  const double peak = proc_status_bytes("VmHWM") - before;
  CHECK(v.data.size() == static_cast<size_t>(data_bytes));
  MESSAGE("reader peak " << peak / 1048576.0 << " MiB for " << data_bytes / 1048576.0 << " MiB of data");
  CHECK(peak >= data_bytes);  // the measurement sees the buffer itself
  CHECK(peak <= 1.1 * data_bytes);
}
