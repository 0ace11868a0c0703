// shmtimerd as a child process, for the tests that drive the daemon from outside.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

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
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = -1;
    for (int i = 0; i < 2000 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) read_some(5);
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

}  // namespace shmtimer::testing
