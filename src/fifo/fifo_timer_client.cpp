#include "shmtimer/fifo_timer_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "shmtimer/error.hpp"
#include "shmtimer/fifo_protocol.hpp"
#include "self_identity.hpp"

namespace shmtimer {

namespace {

// A write to a pipe whose reader is gone raises SIGPIPE, which would kill the caller.
// Block it around the write, then swallow one that became pending, and report EPIPE.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_{}, old_{};
  bool was_pending_ = false;
};

[[noreturn]] void throw_no_server(const std::filesystem::path& path, int err) {
  throw Error(ErrorCode::kNoServer,
              "could not send the timer request because no FileTimerServer reads " + path.string() + " (" +
                  std::strerror(err) + ")",
              err);
}

}  // namespace

FifoTimerClient::FifoTimerClient(std::filesystem::path fifo_path, int signal, FifoClientOptions options)
    : path_(std::move(fifo_path)), signal_(signal), options_(options) {
  if (signal > SIGRTMAX)
    throw Error(ErrorCode::kInvalidArgument, "signal " + std::to_string(signal) + " is above SIGRTMAX");
  if (options_.open_attempts < 1) options_.open_attempts = 1;
}

FifoTimerClient::~FifoTimerClient() {
  if (fd_ >= 0) ::close(fd_);
}

void FifoTimerClient::acquire(std::string_view scope_id, Deadline deadline) {
  acquire_epoch(scope_id, epoch_seconds_from_deadline(deadline));
}

void FifoTimerClient::acquire_epoch(std::string_view scope_id, double expiration_time) {
  send(fifo::format_acquire(current_pid(), scope_id, expiration_time, signal_));
}

void FifoTimerClient::release(std::string_view scope_id) { send(fifo::format_release(current_pid(), scope_id)); }

int FifoTimerClient::open_fifo() {
  int err = 0;
  for (int attempt = 0; attempt < options_.open_attempts; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(options_.open_retry_interval);
    // O_NONBLOCK: fails at once with ENXIO when no reader has the FIFO open.
    const int fd = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) return fd;
    err = errno;
    if (err != ENXIO && err != ENOENT && err != EINTR) break;  // not a transient absence
  }
  throw_no_server(path_, err);
}

void FifoTimerClient::write_all(int fd, const std::string& line) {
  // One write: a line of at most PIPE_BUF bytes is written whole or not at all.
  const auto deadline = std::chrono::steady_clock::now() + options_.write_timeout;
  SigpipeGuard guard;
  for (;;) {
    const ssize_t n = ::write(fd, line.data(), line.size());
    if (n == static_cast<ssize_t>(line.size())) return;
    if (n >= 0) throw Error(ErrorCode::kIo, "short write to " + path_.string());
    if (errno == EINTR) continue;
    if (errno == EPIPE) throw_no_server(path_, EPIPE);
    if (errno != EAGAIN) throw_errno("cannot write to " + path_.string());
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      throw Error(ErrorCode::kIo, "the FIFO " + path_.string() + " stayed full for " +
                                      std::to_string(options_.write_timeout.count()) +
                                      " ms; the server is not reading");
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
}

void FifoTimerClient::send(const std::string& line) {
  if (line.size() - 1 > fifo::kMaxLineBytes)  // as the reference: the JSON without its newline
    throw Error(ErrorCode::kInvalidArgument, "timer request of " + std::to_string(line.size() - 1) +
                                                 " bytes is larger than PIPE_BUF (" +
                                                 std::to_string(fifo::kMaxLineBytes) + ")");
  if (!options_.keep_open) {
    const int fd = open_fifo();
    try {
      write_all(fd, line);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
    return;
  }
  if (fd_ < 0) fd_ = open_fifo();
  try {
    write_all(fd_, line);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kNoServer) throw;
    ::close(fd_);  // the server restarted: the old FIFO is gone, open the new one once
    fd_ = -1;
    fd_ = open_fifo();
    write_all(fd_, line);
  }
}

}  // namespace shmtimer
