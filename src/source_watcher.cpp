#include "source_watcher.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "shmtimer/error.hpp"

namespace shmtimer::detail {

namespace {
constexpr std::uint32_t kOneShot = EPOLLIN | EPOLLONESHOT;
}

SourceWatcher::SourceWatcher(const std::vector<int>& fds, ServerWakeup& wakeup) : wakeup_(wakeup), fds_(fds) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || stop_fd_ < 0) {
    const int err = errno;
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (stop_fd_ >= 0) ::close(stop_fd_);
    throw Error(ErrorCode::kIo, "cannot set up the request source watcher", err);
  }
  epoll_event stop{EPOLLIN, {.fd = stop_fd_}};
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd_, &stop);
  for (const int fd : fds_) {
    epoll_event event{kOneShot, {.fd = fd}};
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event);
  }
  thread_ = std::thread([this] { run(); });
}

SourceWatcher::~SourceWatcher() {
  const std::uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof one);
  thread_.join();
  ::close(epoll_fd_);
  ::close(stop_fd_);
}

void SourceWatcher::run() {
  for (;;) {
    epoll_event events[8];
    const int n = ::epoll_wait(epoll_fd_, events, 8, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // only EBADF/EINVAL: a bug, and the server still wakes every interval
    bool source_ready = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == stop_fd_) return;
      source_ready = true;
    }
    if (source_ready) {
      fired_.store(true, std::memory_order_release);
      wakeup_.wake();
    }
  }
}

void SourceWatcher::rearm() noexcept {
  if (!fired_.exchange(false, std::memory_order_acq_rel)) return;
  for (const int fd : fds_) {
    epoll_event event{kOneShot, {.fd = fd}};
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event);
  }
}

}  // namespace shmtimer::detail
