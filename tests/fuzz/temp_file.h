// The one temporary file of a fuzz process: the config and model parsers take a path, so each input
// is written to $TMPDIR/pw_fuzz_<kind>_<pid><ext> (or /tmp), removed when the process exits.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace pw_fuzz {

struct TempFile {
  std::filesystem::path path;
  TempFile(const std::string& kind, const std::string& ext) {
    path = std::filesystem::temp_directory_path() /
           ("pw_fuzz_" + kind + "_" + std::to_string(static_cast<long>(getpid())) + ext);
  }
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

}  // namespace pw_fuzz
