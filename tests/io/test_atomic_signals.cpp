// pw::AtomicFile and signals (io/atomic_file.h): SIGINT / SIGTERM before commit remove the temporary file
// (the process still dies of the signal), and stale temporaries of dead processes are removed by the next
// AtomicFile for the same target while those of live processes stay.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/test_util.h"
#include "io/atomic_file.h"
#include "io/nifti.h"

namespace {

namespace fs = std::filesystem;

// Names in `dir` starting with ".<name>.tmp-".
std::vector<std::string> temps_of(const fs::path& dir, const std::string& name) {
  std::vector<std::string> out;
  const std::string prefix = "." + name + ".tmp-";
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) out.push_back(n);
  }
  return out;
}

void touch(const fs::path& p) { std::ofstream(p) << "partial"; }

// A pid that surely runs no process now: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

// In a child: default dispositions (the test runner installs its own handlers, which AtomicFile leaves
// alone), an AtomicFile for `target` with 1 MiB written, then `sig` raised before commit().
// Exits 98 if the temporary was not there, 99 if the signal did not end the process.
// Exits 97 on an exception (never returns into the test runner).
[[noreturn]] void child_interrupted_write(const fs::path& target, int sig) {
  try {
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    std::signal(SIGHUP, SIG_DFL);
    pw::AtomicFile out(target);
    const std::vector<char> data(1 << 20, 'x');
    out.write(data.data(), data.size());
    std::fflush(out.file());
    if (!fs::exists(out.temp_path()) || fs::file_size(out.temp_path()) != data.size()) ::_exit(98);
    ::raise(sig);
  } catch (...) {
    ::_exit(97);
  }
  ::_exit(99);
}

}  // namespace

TEST_CASE("AtomicFile: SIGTERM or SIGINT before commit removes the temporary, the process dies of the signal") {
  const fs::path dir = pw::test::temp_dir("atomic_signal");
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    INFO("signal " << sig);
    const fs::path target = dir / ("out_" + std::to_string(sig) + ".bin");
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) child_interrupted_write(target, sig);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK_MESSAGE(!WIFEXITED(status), "child exit status " << WEXITSTATUS(status));
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == sig);  // re-raised with the default action: 128 + sig in a shell
    CHECK(temps_of(dir, target.filename().string()).empty());
    CHECK(!fs::exists(target));
  }
}

TEST_CASE("AtomicFile: an ignored signal stays ignored, and a forked child's handler spares its parent's temporaries") {
  const fs::path dir = pw::test::temp_dir("atomic_signal_ign");
  // SIGTERM ignored before the first AtomicFile: it stays ignored, the write goes on and commits.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    try {
      std::signal(SIGTERM, SIG_IGN);
      pw::AtomicFile out(dir / "ignored.bin");
      out.write("abc", 3);
      ::raise(SIGTERM);
      out.commit();
    } catch (...) {
      ::_exit(97);
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(fs::file_size(dir / "ignored.bin") == 3);
  CHECK(temps_of(dir, "ignored.bin").empty());

  // This process holds a live temporary; a forked child (which inherits the list) is killed while writing
  // its own: only the child's goes.
  pw::AtomicFile mine(dir / "parent.bin");
  mine.write("p", 1);
  pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) child_interrupted_write(dir / "child.bin", SIGTERM);
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGTERM);
  CHECK(temps_of(dir, "child.bin").empty());
  CHECK(fs::exists(mine.temp_path()));
  mine.commit();
  CHECK(fs::file_size(dir / "parent.bin") == 1);
}

TEST_CASE("AtomicFile: stale temporaries of dead processes are removed, those of live processes kept") {
  const fs::path dir = pw::test::temp_dir("atomic_stale");
  const std::string name = "model.bin";
  const pid_t dead = dead_pid();
  // A live process other than this one: a child that waits until told to go.
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  const pid_t live = ::fork();
  REQUIRE(live >= 0);
  if (live == 0) {
    ::close(pipefd[1]);
    char c;
    while (::read(pipefd[0], &c, 1) < 0) {
    }
    ::_exit(0);
  }
  ::close(pipefd[0]);

  const std::string stale = "." + name + ".tmp-" + std::to_string(dead) + "-0";
  const std::string stale2 = "." + name + ".tmp-" + std::to_string(dead) + "-17";
  const std::string own = "." + name + ".tmp-" + std::to_string(::getpid()) + "-999";
  const std::string other_live = "." + name + ".tmp-" + std::to_string(live) + "-3";
  const std::string other_target = ".other.bin.tmp-" + std::to_string(dead) + "-0";
  const std::string not_ours = "." + name + ".tmp-" + std::to_string(dead) + "-0.bak";
  const std::string no_pid = "." + name + ".tmp--0";
  for (const auto& n : {stale, stale2, own, other_live, other_target, not_ours, no_pid}) touch(dir / n);
  fs::create_directory(dir / ("." + name + ".tmp-" + std::to_string(dead) + "-5"));  // a folder: kept

  {
    pw::AtomicFile out(dir / name);
    out.write("new", 3);
    CHECK(!fs::exists(dir / stale));
    CHECK(!fs::exists(dir / stale2));
    out.commit();
  }
  CHECK(fs::file_size(dir / name) == 3);
  CHECK(fs::exists(dir / own));           // this (live) process's pid
  CHECK(fs::exists(dir / other_live));    // another live process
  CHECK(fs::exists(dir / other_target));  // another target's
  CHECK(fs::exists(dir / not_ours));      // not of the exact form
  CHECK(fs::exists(dir / no_pid));
  CHECK(fs::is_directory(dir / ("." + name + ".tmp-" + std::to_string(dead) + "-5")));

  // Once the other process has ended, its temporary is stale too.
  ::close(pipefd[1]);
  int status = 0;
  REQUIRE(::waitpid(live, &status, 0) == live);
  { pw::AtomicFile again(dir / name); }
  CHECK(!fs::exists(dir / other_live));
  CHECK(fs::exists(dir / own));
}

TEST_CASE("patchwork convert interrupted by SIGINT / SIGTERM while writing leaves no temporary") {
  const fs::path dir = pw::test::temp_dir("atomic_cli_signal");
  // 32 MiB of random float32: gzip output takes long enough to be caught while writing.
  const std::vector<float> values = pw::test::random_values(size_t(1) << 23, 17);
  const pw::Volume v = pw::Volume::from_values<float>({256, 256, 128}, values.data());
  const fs::path in = dir / "in.nii";
  pw::write_nifti(v, in);
  const std::string bin = pw::test::patchwork_bin();
  for (int sig : {SIGINT, SIGTERM}) {
    INFO("signal " << sig);
    const fs::path out = dir / ("out_" + std::to_string(sig) + ".nii.gz");
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      std::signal(SIGINT, SIG_DFL);  // as from a shell (the test runner's handlers would be reset by exec anyway)
      std::signal(SIGTERM, SIG_DFL);
      ::execl(bin.c_str(), bin.c_str(), "convert", in.c_str(), out.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Wait until the temporary exists (and has some data), then send the signal.
    const std::string temp_prefix = "." + out.filename().string() + ".tmp-" + std::to_string(pid) + "-";
    bool seen = false;
    int status = 0;
    bool exited = false;
    const auto t0 = std::chrono::steady_clock::now();
    while (!seen && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
      for (const auto& n : temps_of(dir, out.filename().string())) {
        std::error_code ec;
        if (n.rfind(temp_prefix, 0) == 0 && fs::file_size(dir / n, ec) > 0 && !ec) seen = true;
      }
      if (!seen) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
          exited = true;
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
    }
    REQUIRE_MESSAGE(!exited, "convert ended before its temporary file was seen");
    REQUIRE(seen);
    ::kill(pid, sig);
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == sig);
    CHECK(temps_of(dir, out.filename().string()).empty());
    CHECK(!fs::exists(out));
  }
}
