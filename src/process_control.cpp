#include "shmtimer/process_control.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <string>
#include <utility>

#include "process_maps.hpp"
#include "shmtimer/clock.hpp"
#include "shmtimer/process_identity.hpp"

namespace shmtimer {

namespace {

// The owner of /proc/<pid>: the process's effective uid (root if it is not dumpable).
std::optional<uid_t> proc_owner(pid_t pid) {
  struct stat st {};
  if (::stat(("/proc/" + std::to_string(pid)).c_str(), &st) != 0) return std::nullopt;
  return st.st_uid;
}

}  // namespace

void LinuxProcessControl::close_prepared(const Prepared& p) {
  ::close(p.pidfd);
  if (p.maps_fd >= 0) ::close(p.maps_fd);
}

bool LinuxProcessControl::running(pid_t pid, std::optional<std::uint64_t> start_time) {
  return process_running(pid, start_time);
}

std::optional<ProcessInfo> LinuxProcessControl::inspect(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  const auto uid = proc_owner(pid);
  if (!uid) return std::nullopt;
  const auto stat = read_process_stat(pid);
  if (!stat) return std::nullopt;
  return ProcessInfo{stat->start_time, *uid};
}

LinuxProcessControl::~LinuxProcessControl() {
  for (const auto& [key, p] : prepared_) close_prepared(p);
}

SignalOutcome LinuxProcessControl::send(const SignalRequest& request, int& error) {
  error = 0;
  const pid_t pid = request.pid;
  if (pid <= 0) return SignalOutcome::kNoProcess;
  std::lock_guard lock(mutex_);
  if (const auto it = prepared_.find({pid, request.start_time}); it != prepared_.end())
    return check_and_signal(request, it->second.pidfd, &it->second, error);
  // Pin the process first, then check who it is: if the check passes, the pidfd refers
  // to the process that was checked, so the signal cannot land on a successor.
  const int pidfd = open_pidfd(pid);
  if (pidfd < 0 && errno == ESRCH) return SignalOutcome::kNoProcess;
  if (pidfd < 0 && errno != ENOSYS) {  // EINVAL: a thread id, not a process; EMFILE; ...
    error = errno;
    return SignalOutcome::kFailed;
  }
  const SignalOutcome outcome = check_and_signal(request, pidfd, nullptr, error);
  if (pidfd >= 0) ::close(pidfd);
  return outcome;
}

SignalOutcome LinuxProcessControl::check_and_signal(const SignalRequest& request, int pidfd,
                                                    Prepared* prepared, int& error) {
  const pid_t pid = request.pid;
  SignalOutcome outcome = SignalOutcome::kSent;
  std::optional<uid_t> uid;
  if (prepared) {
    uid = proc_owner(pid);
    if (!uid) outcome = SignalOutcome::kNoProcess;
  } else if (const auto info = inspect(pid); !info || info->start_time != request.start_time) {
    outcome = info ? SignalOutcome::kIdentityMismatch : SignalOutcome::kNoProcess;
  } else {
    uid = info->uid;
  }
  if (outcome == SignalOutcome::kSent && request.required_uid && *uid != *request.required_uid) {
    outcome = SignalOutcome::kNotPermitted;
  } else if (outcome == SignalOutcome::kSent && request.required_mapping &&
             !maps_file(pid, *request.required_mapping, prepared)) {
    outcome = SignalOutcome::kNotMapped;
  }
  // Liveness last, after every read of /proc above: the reads described the pinned
  // process only if it still runs now (then the pid is still its own). A process whose
  // main thread exited while others run is alive, and is signalled; one that exited but
  // is not yet waited for is gone, whatever the reads said (its maps read empty, for one).
  if (outcome != SignalOutcome::kIdentityMismatch && outcome != SignalOutcome::kNoProcess &&
      (pidfd >= 0 ? pidfd_exited(pidfd) : !process_running_without_pidfd(pid, request.start_time)))
    outcome = SignalOutcome::kNoProcess;
  if (outcome == SignalOutcome::kSent) {
    // Without pidfd (kernels before 5.3) a plain kill right after the check is the best
    // available; the window is a few microseconds. process_running_without_pidfd() has
    // verified that the pid is a thread-group leader, so kill() cannot reach a group
    // through a thread id.
    last_signal_ns_.store(monotonic_now_ns(), std::memory_order_relaxed);
    const long rc = pidfd >= 0 ? ::syscall(SYS_pidfd_send_signal, pidfd, request.signal, nullptr, 0)
                               : ::kill(pid, request.signal);
    if (rc != 0) {
      error = errno;
      outcome = error == ESRCH ? SignalOutcome::kNoProcess : SignalOutcome::kFailed;
    }
  }
  return outcome;
}

bool LinuxProcessControl::maps_file(pid_t pid, const FileId& file, Prepared* prepared) {
  // Not listed by the prepared maps file: the process may have exec()ed since, or its
  // main thread exited, so the answer is sought afresh, as for a process not prepared.
  return (prepared && prepared->maps_fd >= 0 && detail::maps_list(prepared->maps_fd, file, &prepared->map_at)) ||
         process_maps_file(pid, file);
}

void LinuxProcessControl::prepare(const SignalRequest& request) {
  std::lock_guard lock(mutex_);
  const auto found = prepared_.find({request.pid, request.start_time});
  if (found != prepared_.end()) {
    found->second.wanted = true;
    return;
  }
  if (prepared_.size() >= max_prepared_) return;
  const auto pinned = pin_process(request.pid);  // nullopt for pid <= 0 and for a gone process
  if (!pinned) return;
  if (pinned->pidfd < 0) return;  // nothing to hold it by (before Linux 5.3)
  if (pinned->start_time != request.start_time) {
    ::close(pinned->pidfd);  // another process by now: send() will say so
    return;
  }
  Prepared p{pinned->pidfd, -1, 0, true};
  if (request.required_mapping) {
    p.maps_fd = ::open(("/proc/" + std::to_string(request.pid) + "/maps").c_str(), O_RDONLY | O_CLOEXEC);
    // Opened after the pin: if the process is gone by now, the file may be a newcomer's.
    if (p.maps_fd >= 0 && pidfd_exited(p.pidfd)) {
      close_prepared(p);
      return;
    }
    // Only to learn where to look at the deadline: the answer is sought again then.
    if (p.maps_fd >= 0) (void)detail::maps_list(p.maps_fd, *request.required_mapping, &p.map_at);
  }
  (void)proc_owner(request.pid);  // brings /proc/<pid> into the dentry cache for send()
  prepared_.emplace(std::pair{request.pid, request.start_time}, p);
}

void LinuxProcessControl::drop_unprepared() {
  std::lock_guard lock(mutex_);
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
