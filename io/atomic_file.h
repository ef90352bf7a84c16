// Atomic file output: write to a temporary file in the target's folder, then rename it over the target.
// Until commit() succeeds the target is untouched; if the writer throws, the destructor removes the
// temporary file, so a failed write leaves nothing behind.
//
// Signals: SIGINT, SIGTERM and SIGHUP kill a process without running destructors, so every live temporary
// is also listed in a fixed-size, lock-free registry (paths as char arrays). On the first AtomicFile a
// handler is installed for each of these signals whose disposition is still the default (an ignored
// signal, or one the program handles itself, is left alone); it only unlink()s the process's listed
// temporaries, then re-raises the signal with the default action (exit status 128 + signal in a shell).
// A process killed with SIGKILL (or by a crash) still leaves its ".<name>.tmp-<pid>-<n>": the next
// AtomicFile for the same target removes every such file whose <pid> is not a running process
// (kill(pid, 0) fails with ESRCH); temporaries of live processes are never touched.
//
//   pw::AtomicFile out("model.safetensors");
//   std::fwrite(bytes, 1, n, out.file());   // or write to out.temp_path() with any stream, then close it
//   out.commit();                           // flush, fsync, close, rename
#pragma once
#include <cstdio>
#include <filesystem>
#include <vector>

namespace pw {

// Checks, before any long work, that `output` can be written and replaces none of `inputs`:
//   - it is one of the inputs (same file after resolving links, or the same path): pw::UsageError
//     ("<output>: the output would replace the input <input>");
//   - its folder does not exist or is not writable, or it is an existing folder: pw::InputError.
void check_output(const std::filesystem::path& output, const std::vector<std::filesystem::path>& inputs);

class AtomicFile {
 public:
  // Creates "<folder>/.<name>.tmp-<pid>-<n>" next to `target` (first removing stale ones of dead processes,
  // see above). Throws pw::InputError if it cannot.
  explicit AtomicFile(const std::filesystem::path& target);
  ~AtomicFile();  // removes the temporary file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::FILE* file() { return file_; }  // open for binary writing ("wb")
  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& target() const { return target_; }

  // Writes n bytes; throws pw::InputError("<target>: write failed: <reason>").
  void write(const void* data, size_t n);
  // Flushes, fsyncs and closes the file, then renames it to the target. Throws pw::InputError.
  void commit();

 private:
  std::filesystem::path target_, temp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
  int slot_ = -1;  // in the signal registry; -1 when not listed (path too long, registry full)
};

}  // namespace pw
