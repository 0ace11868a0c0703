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

SourceWatcher::SourceWatcher(std::vector<std::shared_ptr<RequestSource>> sources, ServerWakeup& wakeup)
    : wakeup_(wakeup), sources_(std::move(sources)), fds_(sources_.size(), -1) {
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
  fired_.store(true, std::memory_order_relaxed);  // so that the rearm below registers everything
  rearm();
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
  const bool fired = fired_.exchange(false, std::memory_order_acq_rel);
  for (std::size_t i = 0; i < sources_.size(); ++i) {
    const int fd = sources_[i]->poll_fd();
    epoll_event event{kOneShot, {.fd = fd}};
    if (fd == fds_[i]) {
      if (fired && fd >= 0 && ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event) != 0 && errno == ENOENT)
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event);
      continue;
    }
    // A closed descriptor has left the set by itself; a DEL of it just fails.
    if (fds_[i] >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fds_[i], nullptr);
    if (fd >= 0 && ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0 && errno == EEXIST)
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event);
    fds_[i] = fd;
  }
}

}  // namespace shmtimer::detail
