#include "io/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <mutex>
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

// ---- Removal of the temporaries on SIGINT / SIGTERM / SIGHUP ----
// A fixed array of slots, each holding one live temporary's absolute path. A slot's state moves
// free -> filling (its owner copies the path) -> live -> free (unregistered), or live -> taken (by the
// handler, for good: the process is ending). The handler touches only live slots, whose path no thread
// writes, and it claims each with a compare-and-swap, so it never reads a path being rewritten; it calls
// nothing but unlink(), sigaction(), raise(), sigprocmask() and _exit() (all async-signal-safe).
constexpr int kCleanupSignals[] = {SIGINT, SIGTERM, SIGHUP};
constexpr int kFree = 0, kFilling = 1, kLive = 2, kTaken = 3;
constexpr size_t kSlots = 128;

struct TempSlot {
  std::atomic<int> state{kFree};
  pid_t pid = 0;  // the process that listed it: a forked child must not remove its parent's files
  char path[PATH_MAX];
};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs lock-free atomics");

TempSlot g_slots[kSlots];
std::atomic<int> g_terminating{0};  // set by the handler before it looks at the slots

void on_cleanup_signal(int sig) {
  g_terminating.store(1);
  const pid_t self = ::getpid();
  for (TempSlot& s : g_slots) {
    int live = kLive;
    if (s.state.compare_exchange_strong(live, kTaken) && s.pid == self) ::unlink(s.path);
  }
  // Then die of the signal as without the handler: default action, re-raised (it stays pending while the
  // handler runs, as the signal is blocked here), then unblocked.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  ::raise(sig);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
  ::_exit(128 + sig);
}

// Installs the handler for each cleanup signal whose disposition is the default. Checked on every
// AtomicFile (three sigaction() calls): a handler replaced meanwhile by SIG_DFL is put back.
void install_cleanup_handlers() {
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  for (int sig : kCleanupSignals) {
    struct sigaction cur {};
    if (::sigaction(sig, nullptr, &cur) != 0) continue;
    if ((cur.sa_flags & SA_SIGINFO) || cur.sa_handler != SIG_DFL) continue;  // ours, ignored, or the program's
    struct sigaction sa {};
    sa.sa_handler = on_cleanup_signal;
    sigemptyset(&sa.sa_mask);
    for (int s : kCleanupSignals) sigaddset(&sa.sa_mask, s);  // one cleanup at a time
    ::sigaction(sig, &sa, nullptr);
  }
}

// Lists `path` (made absolute, so that a later chdir does not matter); returns its slot, or -1 when the
// path is too long or every slot is taken (the file is then not removed on a signal).
int register_temp(const fs::path& path) {
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  const std::string p = ec ? path.string() : abs.string();
  if (p.size() >= PATH_MAX) return -1;
  for (size_t i = 0; i < kSlots; ++i) {
    int free = kFree;
    if (!g_slots[i].state.compare_exchange_strong(free, kFilling)) continue;
    std::memcpy(g_slots[i].path, p.c_str(), p.size() + 1);
    g_slots[i].pid = ::getpid();
    g_slots[i].state.store(kLive);
    return static_cast<int>(i);
  }
  return -1;
}

void unregister_temp(int slot) {
  if (slot < 0) return;
  int live = kLive;
  g_slots[slot].state.compare_exchange_strong(live, kFree);  // fails only when the handler took it
}

// Blocks the cleanup signals in this thread for its lifetime (one arriving meanwhile waits).
class SignalBlock {
 public:
  SignalBlock() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : kCleanupSignals) sigaddset(&set, s);
    ::pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~SignalBlock() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SignalBlock(const SignalBlock&) = delete;
  SignalBlock& operator=(const SignalBlock&) = delete;

 private:
  sigset_t old_;
};

// Removes "<folder>/.<name>.tmp-<pid>-<n>" files left by processes that no longer run (SIGKILL, crash).
// A <pid> that runs (kill(pid, 0) succeeds or fails with EPERM), this process's own pid, or a name not of
// exactly that form is left alone.
void remove_stale_temps(const fs::path& folder, const std::string& name) {
  const std::string dir = folder.empty() ? std::string(".") : folder.string();
  const std::string prefix = "." + name + ".tmp-";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  const pid_t self = ::getpid();
  while (const dirent* e = ::readdir(d)) {
    const char* n = e->d_name;
    if (std::strncmp(n, prefix.c_str(), prefix.size()) != 0) continue;
    const char* p = n + prefix.size();
    long long pid = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 10; ++p, ++digits) pid = pid * 10 + (*p - '0');
    if (digits == 0 || *p != '-' || pid <= 0 || pid > INT_MAX) continue;
    ++p;
    if (!(*p >= '0' && *p <= '9')) continue;
    while (*p >= '0' && *p <= '9') ++p;
    if (*p != '\0') continue;
    if (static_cast<pid_t>(pid) == self) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    ::unlinkat(::dirfd(d), n, 0);  // a folder of that name fails (EISDIR) and stays
  }
  ::closedir(d);
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
  install_cleanup_handlers();
  fs::path folder = target.parent_path();
  remove_stale_temps(folder, target.filename().string());
  std::string base = "." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-";
  // No cleanup signal in this thread between creating the file and listing it (one arriving waits).
  SignalBlock block;
  // A few tries in case a stale temporary of the same name exists ("x" = fail if it exists).
  for (int attempt = 0; attempt < 100 && !file_; ++attempt) {
    temp_ = folder / (base + std::to_string(counter++));
    file_ = std::fopen(temp_.c_str(), "wbx");
    if (!file_ && errno != EEXIST) break;
  }
  if (!file_)
    throw InputError(target.string() + ": cannot create a temporary file in " +
                     (folder.empty() ? std::string(".") : folder.string()) + ": " + std::strerror(errno));
  slot_ = register_temp(temp_);
  // A handler running in another thread may have scanned the slots before this one was listed.
  if (g_terminating.load()) ::unlink(temp_.c_str());
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (file_) std::fclose(file_);
  std::error_code ec;
  fs::remove(temp_, ec);
  unregister_temp(slot_);  // after the removal: a signal in between only unlinks a missing file
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
  unregister_temp(slot_);  // after the rename: a signal in between only unlinks a missing file
  slot_ = -1;
}

}  // namespace pw
