// Helpers shared by the tests: a table file that removes itself, and child processes.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include "shmtimer/error.hpp"
#include "process_liveness.hpp"
#include "process_maps.hpp"
#include "shmtimer/table.hpp"

namespace shmtimer::testing {

// The code of the shmtimer::Error that `fn` throws, and its message: a test that means one
// error checks that one, never "some error". Throwing nothing is a test failure.
struct Thrown {
  std::optional<ErrorCode> code;
  std::string message;
};
template <class Fn>
Thrown thrown_by(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return {e.code(), e.what()};
  }
  ADD_FAILURE() << "no shmtimer::Error was thrown";
  return {};
}

// Liveness answers as the tests ask them: yes or no, where the library answers a Probe.
inline Probe answer(bool running) { return {running ? Presence::kRunning : Presence::kGone, 0}; }
inline bool is_running(pid_t pid, std::optional<std::uint64_t> identity) {
  return probe_process(pid, identity).running();
}
inline bool running_without_pidfd(pid_t pid, std::optional<std::uint64_t> identity) {
  return probe_without_pidfd(pid, identity).running();
}
// /proc/<pid>/stat, which the test expects to be readable.
inline ProcessStat stat_of(pid_t pid) {
  ProcessStat stat;
  EXPECT_TRUE(read_process_stat(pid, stat).running()) << "no /proc/" << pid << "/stat";
  return stat;
}
// The identity a process records for itself (the strongest its kernel offers).
inline std::uint64_t identity_of(pid_t pid) {
  PinnedProcess pinned;
  EXPECT_TRUE(pin_process(pid, std::nullopt, pinned).running()) << "pid " << pid << " does not run";
  if (pinned.pidfd >= 0) ::close(pinned.pidfd);
  return pinned.identity;
}
inline bool maps_file(pid_t pid, const FileId& file) {
  int error = 0;
  return process_has_mapped(pid, file, error) == Mapping::kMapped;
}

// Now as wall-clock epoch seconds, the FIFO protocol's expiration_time.
inline double epoch_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Writes `bytes` to the FIFO at `path` in one non-blocking write, as a FIFO client does.
inline void write_fifo(const std::filesystem::path& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

// A ThreadSanitizer or AddressSanitizer build (SHMTIMER_SANITIZE), where everything runs
// several times slower: the few tests that bound a time widen it there.
#ifdef SHMTIMER_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// A unique path under /dev/shm, removed when the test ends.
class TempPath {
 public:
  explicit TempPath(const std::string& stem = "shmtimer-test") {
    static std::mt19937_64 rng(std::random_device{}());
    path_ = std::filesystem::path("/dev/shm") /
            (stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(rng() % 1000000000) + ".table");
  }
  ~TempPath() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// ShmTimerClient's require_server = false, for a test that arms a table no server holds
// (yet): a worker forked before the test builds its server, a client-only test. Tests of
// the default itself, and every test against a real shmtimerd, keep require_server.
inline constexpr bool kArmWithoutServer = false;

struct TempTable {
  explicit TempTable(std::uint64_t capacity = 1024) {
    CreateOptions options;
    options.capacity = capacity;
    table = Table::create(file.path(), options);
  }
  TempPath file;
  std::shared_ptr<Table> table;
};

// A thread of this process that runs until destroyed, and its thread id: /proc answers for
// it as for a process, but it is not one.
class LiveThread {
 public:
  LiveThread()
      : thread_([this] {
          tid_ = static_cast<pid_t>(::gettid());
          while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }) {
    while (tid_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~LiveThread() {
    stop_ = true;
    thread_.join();
  }
  pid_t tid() const { return tid_; }

 private:
  std::atomic<pid_t> tid_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Runs fn in a child process, which exits 0 when fn returns, 1 when it throws.
inline pid_t fork_child(const std::function<void()>& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      fn();
    } catch (...) {
      ::_exit(1);
    }
    ::_exit(0);
  }
  return pid;
}

// A child forked now but held until go(): fork it before the parent starts a server
// thread when the child allocates much. After a fork from a multi-threaded parent the
// child's allocator can stay locked for good, if another thread held an allocator lock
// at the fork: glibc's malloc guards against that, but the ASan runtime of GCC 12 does
// not (a FIFO-flooding child hung in CI that way, after a few hundred requests).
class HeldChild {
 public:
  explicit HeldChild(const std::function<void()>& fn) {
    int go[2];
    if (::pipe(go) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork_child([&] {
      ::close(go[1]);
      char c;
      if (::read(go[0], &c, 1) != 1) ::_exit(3);  // the parent went away without go()
      fn();
    });
    ::close(go[0]);
    go_fd_ = go[1];
  }
  ~HeldChild() {
    if (go_fd_ >= 0) ::close(go_fd_);
  }
  HeldChild(const HeldChild&) = delete;
  HeldChild& operator=(const HeldChild&) = delete;
  void go() {
    if (::write(go_fd_, "g", 1) != 1) throw std::runtime_error("cannot release the held child");
    ::close(go_fd_);
    go_fd_ = -1;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int go_fd_ = -1;
};

// waitpid with a timeout; kills the child with SIGKILL if it has not ended by then.
inline int wait_child(pid_t pid, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return status;
}

inline bool killed_by(int status, int signal) {
  return status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == signal;
}
inline bool exited_ok(int status) { return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

}  // namespace shmtimer::testing
