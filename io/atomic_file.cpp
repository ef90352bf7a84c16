#include "io/atomic_file.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "io/error.h"

namespace pw {

namespace fs = std::filesystem;

namespace {

// The same file: equivalent when both exist (links, hard links), else equal weakly canonical paths.
bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

}  // namespace

void check_output(const fs::path& output, const std::vector<fs::path>& inputs) {
  for (const fs::path& in : inputs)
    if (same_file(output, in))
      throw UsageError(output.string() + ": the output would replace the input " + in.string());
  std::error_code ec;
  if (fs::is_directory(output, ec)) throw InputError(output.string() + ": is a folder, not an output file");
  const fs::path folder = output.parent_path().empty() ? fs::path(".") : output.parent_path();
  if (!fs::is_directory(folder, ec)) throw InputError(output.string() + ": the folder " + folder.string() + " does not exist");
  if (::access(folder.c_str(), W_OK | X_OK) != 0)
    throw InputError(output.string() + ": cannot write in " + folder.string() + ": " + std::strerror(errno));
}

AtomicFile::AtomicFile(const fs::path& target) : target_(target) {
  static std::atomic<unsigned> counter{0};
  fs::path folder = target.parent_path();
  std::string base = "." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-";
  // A few tries in case a stale temporary of the same name exists ("x" = fail if it exists).
  for (int attempt = 0; attempt < 100 && !file_; ++attempt) {
    temp_ = folder / (base + std::to_string(counter++));
    file_ = std::fopen(temp_.c_str(), "wbx");
    if (!file_ && errno != EEXIST) break;
  }
  if (!file_)
    throw InputError(target.string() + ": cannot create a temporary file in " +
                     (folder.empty() ? std::string(".") : folder.string()) + ": " + std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (file_) std::fclose(file_);
  std::error_code ec;
  fs::remove(temp_, ec);
}

void AtomicFile::write(const void* data, size_t n) {
  if (n == 0) return;
  if (!file_ || std::fwrite(data, 1, n, file_) != n)
    throw InputError(target_.string() + ": write failed: " + std::strerror(errno));
}

void AtomicFile::commit() {
  if (!file_) throw InputError(target_.string() + ": write failed: file already closed");
  bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  int err = errno;
  ok = (std::fclose(file_) == 0) && ok;
  file_ = nullptr;
  if (!ok) throw InputError(target_.string() + ": write failed: " + std::strerror(err ? err : errno));
  std::error_code ec;
  fs::rename(temp_, target_, ec);
  if (ec) throw InputError(target_.string() + ": cannot rename the temporary file into place: " + ec.message());
  committed_ = true;
}

}  // namespace pw
