#include "process_control.hpp"
#include "shmtimer/process_access_check.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <string>
#include <utility>

#include "process_maps.hpp"
#include "shmtimer/clock.hpp"
#include "process_liveness.hpp"

namespace shmtimer {

namespace {

SignalOutcome outcome_of(const Probe& probe, int& error) {
  switch (probe.presence) {
    case Presence::kRunning: return SignalOutcome::kSent;
    case Presence::kGone: return SignalOutcome::kNoProcess;
    case Presence::kReused: return SignalOutcome::kIdentityMismatch;
    case Presence::kUnknown: break;
  }
  error = probe.error;
  return SignalOutcome::kUnknown;
}

}  // namespace

DescriptorReserve::DescriptorReserve(std::size_t size) : size_(size) { refill(); }

DescriptorReserve::~DescriptorReserve() { release(); }

bool DescriptorReserve::release() {
  const bool held = !fds_.empty();
  for (const int fd : fds_) ::close(fd);
  fds_.clear();
  return held;
}

void DescriptorReserve::refill() {
  while (fds_.size() < size_) {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    fds_.push_back(fd);
  }
}

std::uint64_t raise_open_file_limit() noexcept {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur == RLIM_INFINITY ? ~std::uint64_t{0} : static_cast<std::uint64_t>(limit.rlim_cur);
}

LinuxProcessControl::LinuxProcessControl(std::size_t max_prepared, std::size_t reserved_descriptors)
    : max_prepared_(max_prepared), budget_(budget()), reserve_(reserved_descriptors) {}

std::size_t LinuxProcessControl::budget() const {
  if (max_prepared_ != 0) return max_prepared_;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 64;
  const std::uint64_t quarter = limit.rlim_cur == RLIM_INFINITY ? ~std::uint64_t{0} : limit.rlim_cur / 4;
  return static_cast<std::size_t>(std::clamp<std::uint64_t>(quarter, 64, 65536));
}

void LinuxProcessControl::close_prepared(const Prepared& p) {
  ::close(p.pidfd);
  if (p.maps_fd >= 0) ::close(p.maps_fd);
}

Probe LinuxProcessControl::running(pid_t pid, std::optional<std::uint64_t> identity) {
  Probe probe = probe_process(pid, identity);
  if (probe.unknown() && out_of_descriptors(probe.error)) {
    std::lock_guard lock(mutex_);
    if (reserve_.release()) probe = probe_process(pid, identity);
    reserve_.refill();
  }
  return probe;
}

Probe LinuxProcessControl::inspect(pid_t pid, std::optional<std::uint64_t> expected, ProcessInfo& out) {
  PinnedProcess pinned;
  Probe probe = pin_process(pid, expected, pinned);
  if (!probe.running()) return probe;
  uid_t uid = 0;
  probe = effective_uid(pid, uid);
  // Last: the uid was this process's only if it still runs (then the pid is still its own).
  if (probe.running() && pinned.pidfd >= 0 && pidfd_exited(pinned.pidfd)) probe = {Presence::kGone, 0};
  if (pinned.pidfd >= 0) ::close(pinned.pidfd);
  if (probe.running()) out = {pinned.identity, uid};
  return probe;
}

LinuxProcessControl::~LinuxProcessControl() {
  for (const auto& [key, p] : prepared_) close_prepared(p);
}

SignalOutcome LinuxProcessControl::send(const SignalRequest& request, int& error) {
  error = 0;
  if (request.pid <= 0) return SignalOutcome::kNoProcess;
  std::lock_guard lock(mutex_);
  SignalOutcome outcome = send_once(request, error);
  // Out of descriptors: the reserve is let go for one more try, and taken again after.
  if (outcome == SignalOutcome::kUnknown && out_of_descriptors(error) && reserve_.release())
    outcome = send_once(request, error);
  reserve_.refill();
  return outcome;
}

SignalOutcome LinuxProcessControl::send_once(const SignalRequest& request, int& error) {
  error = 0;
  if (const auto it = prepared_.find({request.pid, request.identity}); it != prepared_.end())
    return check_and_signal(request, it->second.pidfd, &it->second, error);
  // Pin the process first, and check who it is while pinned: if the check passes, the
  // pidfd refers to the process that was checked, so the signal cannot land on a successor.
  PinnedProcess pinned;
  const Probe probe = pin_process(request.pid, request.identity, pinned);
  if (!probe.running()) return outcome_of(probe, error);
  const SignalOutcome outcome = check_and_signal(request, pinned.pidfd, nullptr, error);
  if (pinned.pidfd >= 0) ::close(pinned.pidfd);
  return outcome;
}

SignalOutcome LinuxProcessControl::check_conditions(const SignalRequest& request, uid_t uid, Prepared* prepared,
                                                    int& error) {
  if (request.required_uid && uid != *request.required_uid) return SignalOutcome::kNotPermitted;
  if (!request.required_mapping) return SignalOutcome::kSent;
  switch (maps_file(request.pid, *request.required_mapping, prepared, error)) {
    case Mapping::kMapped: return SignalOutcome::kSent;
    case Mapping::kNotMapped: return SignalOutcome::kNotMapped;
    case Mapping::kUnknown: break;
  }
  // The maps may not be read: a process that is not dumpable, to a server without
  // CAP_SYS_PTRACE. Signalled when only its own uid could have written the timer.
  if (error == EACCES || error == EPERM)
    return request.sole_table_writer && uid == *request.sole_table_writer ? SignalOutcome::kSent
                                                                          : SignalOutcome::kUnverifiable;
  return SignalOutcome::kUnknown;
}

SignalOutcome LinuxProcessControl::check_and_signal(const SignalRequest& request, int pidfd, Prepared* prepared,
                                                    int& error) {
  const pid_t pid = request.pid;
  uid_t uid = 0;
  SignalOutcome outcome = outcome_of(effective_uid(pid, uid), error);
  if (outcome == SignalOutcome::kSent) outcome = check_conditions(request, uid, prepared, error);
  // Liveness last, after every read of /proc above: the reads described the pinned
  // process only if it still runs now (then the pid is still its own). A process whose
  // main thread exited while others run is alive, and is signalled; one that exited but
  // is not yet waited for is gone, whatever the reads said (its maps read empty, for one).
  if (outcome != SignalOutcome::kIdentityMismatch && outcome != SignalOutcome::kNoProcess) {
    const Probe alive = pidfd >= 0 ? Probe{pidfd_exited(pidfd) ? Presence::kGone : Presence::kRunning, 0}
                                   : probe_without_pidfd(pid, request.identity);
    if (alive.gone()) outcome = SignalOutcome::kNoProcess;
  }
  if (outcome == SignalOutcome::kSent) {
    // Without pidfd (kernels before 5.3) a plain kill right after the check is the best
    // available; the window is a few microseconds. probe_without_pidfd() has verified
    // that the pid is a thread-group leader, so kill() cannot reach a group through a
    // thread id.
    last_signal_ns_.store(monotonic_now_ns(), std::memory_order_relaxed);
    const long rc =
        pidfd >= 0 ? ::syscall(SYS_pidfd_send_signal, pidfd, request.signal, nullptr, 0) : ::kill(pid, request.signal);
    if (rc != 0) {
      error = errno;
      outcome = error == ESRCH ? SignalOutcome::kNoProcess : SignalOutcome::kFailed;
    }
  }
  return outcome;
}

Mapping LinuxProcessControl::maps_file(pid_t pid, const FileId& file, Prepared* prepared, int& error) {
  // Not listed by the prepared maps file: the process may have exec()ed since, or its
  // main thread exited, so the answer is sought afresh, as for a process not prepared.
  if (prepared && prepared->maps_fd >= 0 &&
      detail::search_open_maps(prepared->maps_fd, file, error, &prepared->map_at) == Mapping::kMapped)
    return Mapping::kMapped;
  return process_has_mapped(pid, file, error);
}

void LinuxProcessControl::prepare(const SignalRequest& request) {
  std::lock_guard lock(mutex_);
  const auto found = prepared_.find({request.pid, request.identity});
  if (found != prepared_.end()) {
    found->second.wanted = true;
    return;
  }
  if (prepared_.size() >= budget_) return;
  PinnedProcess pinned;
  // Not running as recorded (gone, reused, or not known now): send() will decide.
  if (!pin_process(request.pid, request.identity, pinned).running()) return;
  if (pinned.pidfd < 0) return;  // nothing to hold it by (before Linux 5.3)
  Prepared p{pinned.pidfd, -1, 0, true};
  if (request.required_mapping) {
    p.maps_fd = ::open(("/proc/" + std::to_string(request.pid) + "/maps").c_str(), O_RDONLY | O_CLOEXEC);
    // Opened after the pin: if the process is gone by now, the file may be a newcomer's.
    if (p.maps_fd >= 0 && pidfd_exited(p.pidfd)) {
      close_prepared(p);
      return;
    }
    // Only to learn where to look at the deadline: the answer is sought again then.
    int error = 0;
    if (p.maps_fd >= 0) (void)detail::search_open_maps(p.maps_fd, *request.required_mapping, error, &p.map_at);
  }
  uid_t uid = 0;
  (void)effective_uid(request.pid, uid);  // brings /proc/<pid> into the dentry cache for send()
  prepared_.emplace(std::pair{request.pid, request.identity}, p);
}

void LinuxProcessControl::drop_unprepared() {
  std::lock_guard lock(mutex_);
  budget_ = budget();
  for (auto it = prepared_.begin(); it != prepared_.end();) {
    if (it->second.wanted) {
      (it++)->second.wanted = false;
      continue;
    }
    close_prepared(it->second);
    it = prepared_.erase(it);
  }
}

std::size_t LinuxProcessControl::prepared() const {
  std::lock_guard lock(mutex_);
  return prepared_.size();
}

}  // namespace shmtimer
