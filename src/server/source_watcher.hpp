// Wakes the sleeping server when a request source (the FIFO shim) becomes readable. The
// server sleeps on a futex in the table, which no file descriptor can wake, so this
// thread waits on the descriptors for it.
#pragma once

#include <atomic>
#include <thread>
#include <vector>

#include "server_wakeup.hpp"
#include "shmtimer/timer_server.hpp"

namespace shmtimer::detail {

class SourceWatcher {
 public:
  // Watches the poll_fd() of each source (readable when it has requests) until destroyed.
  SourceWatcher(std::vector<std::shared_ptr<RequestSource>> sources, ServerWakeup& wakeup);
  ~SourceWatcher();
  SourceWatcher(const SourceWatcher&) = delete;
  SourceWatcher& operator=(const SourceWatcher&) = delete;

  // The server calls this after each drain of its sources. Descriptors are watched one
  // shot at a time (so a source the server has not drained yet does not spin this
  // thread); a shot that fired is re-armed here, and fires again at once if the source
  // still has data. A source whose descriptor changed (the FIFO shim makes its FIFO again
  // when someone removed it) is watched on the new one from here on.
  void rearm() noexcept;

 private:
  void run();

  ServerWakeup& wakeup_;
  std::vector<std::shared_ptr<RequestSource>> sources_;
  std::vector<int> fds_;  // what is registered for each source (-1: none); the server thread's
  int epoll_fd_ = -1;
  int stop_fd_ = -1;
  // Set (release) by this thread when a shot fired, before it wakes the server; taken
  // (acq_rel exchange) by the server after a drain. A shot that fires after the take sets
  // it again, and wakes the server again.
  std::atomic<bool> fired_{false};
  std::thread thread_;
};

}  // namespace shmtimer::detail
