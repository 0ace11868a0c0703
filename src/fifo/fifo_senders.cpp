#include "fifo_senders.hpp"

#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "process_liveness.hpp"

namespace shmtimer::detail {

namespace {

// Each known process costs a descriptor; beyond this many the cache starts afresh (a host
// rarely runs more workers, and RLIMIT_NOFILE is often 1024).
constexpr std::size_t kMaxKnown = 512;

}  // namespace

FifoSenders::FifoSenders(bool any_uid) : any_uid_(any_uid), epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {}

FifoSenders::~FifoSenders() {
  forget_all();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

FifoSenders::Verdict FifoSenders::judge(pid_t pid) {
  if (pid <= 1) return {0, FifoRefusal::kNotAWorker};
  if (const auto known = known_.find(pid); known != known_.end()) return known->second.verdict;
  ++from_proc_;
  PinnedProcess pinned;
  if (const Probe probe = pin_process(pid, std::nullopt, pinned); !probe.running())
    return probe.gone() ? Verdict{0, FifoRefusal::kNoProcess} : Verdict{0, std::nullopt, probe.error};
  Verdict verdict{pinned.identity, std::nullopt};
  if (!any_uid_) {
    uid_t uid = 0;
    const Probe probe = effective_uid(pid, uid);
    if (probe.running() && uid != ::getuid()) verdict.refusal = FifoRefusal::kOtherUser;
    if (probe.gone()) verdict.refusal = FifoRefusal::kNoProcess;
    if (probe.unknown()) verdict = {0, std::nullopt, probe.error};
  }
  // The uid was read while the pidfd held the process; if it has exited since, the pid
  // may name another process already, so that answer is not kept.
  if (pinned.pidfd < 0 || epoll_fd_ < 0 || verdict.unknown_error != 0 || pidfd_exited(pinned.pidfd)) {
    if (pinned.pidfd >= 0) ::close(pinned.pidfd);
    return verdict;
  }
  if (known_.size() >= kMaxKnown) forget_all();
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = static_cast<std::uint32_t>(pid);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, pinned.pidfd, &event) != 0) {
    ::close(pinned.pidfd);
    return verdict;
  }
  known_.emplace(pid, Known{pinned.pidfd, verdict});
  return verdict;
}

void FifoSenders::forget_exited() {
  if (known_.empty()) return;
  epoll_event events[64];
  int n = 0;
  while ((n = ::epoll_wait(epoll_fd_, events, 64, 0)) > 0) {
    for (int i = 0; i < n; ++i) forget(static_cast<pid_t>(events[i].data.u64));
    if (n < 64) break;
  }
}

void FifoSenders::forget(pid_t pid) {
  const auto known = known_.find(pid);
  if (known == known_.end()) return;
  ::close(known->second.pidfd);  // also takes it out of the epoll set
  known_.erase(known);
}

void FifoSenders::forget_all() {
  for (const auto& [pid, known] : known_) ::close(known.pidfd);
  known_.clear();
}

}  // namespace shmtimer::detail
