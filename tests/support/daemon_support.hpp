// shmtimerd as a child process, for the tests that drive the daemon from outside.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "test_support.hpp"

namespace shmtimer::testing {

// Replaces this (forked) process with shmtimerd on `table` (capacity 256) and `extra`.
[[noreturn]] inline void exec_daemon(const std::filesystem::path& table, const std::vector<std::string>& extra) {
  std::vector<std::string> args{SHMTIMERD_PATH, "--table", table.string(), "--capacity", "256"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  ::_exit(127);
}

inline pid_t spawn_daemon(const std::filesystem::path& table, const std::vector<std::string>& extra = {}) {
  const pid_t pid = ::fork();
  if (pid == 0) exec_daemon(table, extra);
  return pid;
}

inline bool wait_for_server(const std::filesystem::path& table) {
  for (int i = 0; i < 500; ++i) {
    try {
      if (TableReader::open(table).header().server_alive) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// A daemon whose stderr (its log) comes to the test through a pipe that the test reads
// only when it asks to: a test that stops reading makes the daemon's log writes block,
// which stalls its watchdog loop the way a stuck disk or journal would.
class LoggedDaemon {
 public:
  LoggedDaemon(const std::filesystem::path& table, const std::vector<std::string>& flags,
               const std::map<std::string, std::string>& env = {}, int pipe_bytes = 0) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    if (pipe_bytes > 0) ::fcntl(fds[0], F_SETPIPE_SZ, pipe_bytes);
    log_fd_ = fds[0];
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], STDERR_FILENO);
      for (const auto& [key, value] : env) ::setenv(key.c_str(), value.c_str(), 1);
      exec_daemon(table, flags);
    }
    ::close(fds[1]);
  }
  ~LoggedDaemon() {
    if (pid_ > 0) stop();
    ::close(log_fd_);
  }
  LoggedDaemon(const LoggedDaemon&) = delete;
  LoggedDaemon& operator=(const LoggedDaemon&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log() const { return log_; }

  // Reads the log until it holds `text` (true) or the daemon exits or `timeout` passes.
  bool read_until(const std::string& text, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (log_.find(text) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !read_some(static_cast<int>(left.count()))) return false;
    }
    return true;
  }
  // Reads whatever the daemon has written, without waiting.
  void drain() {
    while (read_some(0)) {
    }
  }
  // Waits for the daemon to exit by itself, reading its log; the status, or -1.
  int wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    int status = -1;
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > end) return -1;
      read_some(5);
    }
    drain();
    pid_ = -1;
    return status;
  }
  // SIGTERM, reading the log meanwhile so that a blocked writer can finish; the status.
  // SIGKILL after 20 s (a time, not a count of reads: a daemon with much log left to
  // write keeps every read short).
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = -1;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (::waitpid(pid_, &status, WNOHANG) == 0 && std::chrono::steady_clock::now() < give_up) read_some(5);
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    drain();
    pid_ = -1;
    return status;
  }

 private:
  bool read_some(int timeout_ms) {
    pollfd p{log_fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::read(log_fd_, buf, sizeof buf);
    if (n <= 0) return false;
    log_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int log_fd_ = -1;
  std::string log_;
};

// From a worker's deadline to its death, at most, for a daemon under attack or a hostile
// neighbour: a correctness bound (the kill happened, and not rounds late), not a figure.
inline const auto kKillBound = std::chrono::milliseconds(500) * (kSanitized ? 4 : 1);

// A worker that arms a 500 ms timer and hangs. A thread of the test waits for its death
// and notes when it came, so the attack can go on meanwhile.
class HungWorker {
 public:
  explicit HungWorker(const std::filesystem::path& table)
      : deadline_(SteadyClock::now() + std::chrono::milliseconds(500)) {
    pid_ = fork_child([&] {
      ShmTimerClient client(Table::open(table));  // require_server: the daemon serves it
      client.acquire("hung", deadline_);
      std::this_thread::sleep_for(std::chrono::seconds(60));
    });
    waiter_ = std::thread([this] {
      while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
      }
      died_at_ = SteadyClock::now();
      dead_.store(true, std::memory_order_release);  // status_ and died_at_ before it
    });
  }
  ~HungWorker() {
    ::kill(pid_, SIGKILL);
    if (waiter_.joinable()) waiter_.join();
  }
  // Killed with SIGKILL within kKillBound of its deadline.
  ::testing::AssertionResult killed_on_time() {
    const auto give_up = SteadyClock::now() + std::chrono::seconds(30);
    while (!dead_.load(std::memory_order_acquire) && SteadyClock::now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!dead_.load(std::memory_order_acquire)) return ::testing::AssertionFailure() << "never killed";
    waiter_.join();
    const auto late = died_at_ - deadline_;
    if (!killed_by(status_, SIGKILL)) return ::testing::AssertionFailure() << "status " << status_;
    if (late > kKillBound)
      return ::testing::AssertionFailure()
             << "killed " << std::chrono::duration_cast<std::chrono::milliseconds>(late).count()
             << " ms after its deadline";
    return ::testing::AssertionSuccess();
  }

 private:
  SteadyClock::time_point deadline_;
  pid_t pid_ = -1;
  int status_ = 0;
  SteadyClock::time_point died_at_{};
  std::atomic<bool> dead_{false};
  std::thread waiter_;
};

// Stops one thread of a daemon (its watchdog thread, "shmtimer-watch"), leaving the rest
// running: the loop stalls as it would in a hung system call, while the process still
// answers HTTP and signals. ptrace stops a single thread where SIGSTOP stops them all;
// the test is the daemon's parent, so the kernel lets it trace. Resumed by release().
class StoppedThread {
 public:
  StoppedThread(pid_t pid, const std::string& name) {
    std::error_code error;
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", error)) {
      std::ifstream comm(task.path() / "comm");
      std::string line;
      if (std::getline(comm, line) && line == name) tid_ = static_cast<pid_t>(std::stol(task.path().filename()));
    }
    if (tid_ <= 0) throw std::runtime_error("no thread named " + name + " in pid " + std::to_string(pid));
    // Not skipped when the kernel refuses (Yama's ptrace_scope 2 or 3): the test fails, naming why.
    if (::ptrace(PTRACE_SEIZE, tid_, nullptr, nullptr) != 0)
      throw std::runtime_error(std::string("ptrace(PTRACE_SEIZE): ") + std::strerror(errno));
    int status = 0;
    if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) != 0 || ::waitpid(tid_, &status, __WALL) != tid_) {
      const int cause = errno;
      ::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
      throw std::runtime_error(std::string("ptrace(PTRACE_INTERRUPT): ") + std::strerror(cause));
    }
  }
  ~StoppedThread() { release(); }
  StoppedThread(const StoppedThread&) = delete;
  StoppedThread& operator=(const StoppedThread&) = delete;
  void release() {
    if (tid_ > 0) ::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
    tid_ = -1;
  }

 private:
  pid_t tid_ = -1;
};

}  // namespace shmtimer::testing
