#include "shmtimer/process_control.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <string>

#include "shmtimer/process_identity.hpp"

namespace shmtimer {

bool LinuxProcessControl::running(pid_t pid, std::optional<std::uint64_t> start_time) {
  return process_running(pid, start_time);
}

std::optional<ProcessInfo> LinuxProcessControl::inspect(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  struct stat st {};
  const std::string dir = "/proc/" + std::to_string(pid);
  if (::stat(dir.c_str(), &st) != 0) return std::nullopt;
  const auto stat = read_process_stat(pid);
  if (!stat) return std::nullopt;
  return ProcessInfo{stat->start_time, st.st_uid};
}

SignalOutcome LinuxProcessControl::send(const SignalRequest& request, int& error) {
  error = 0;
  const pid_t pid = request.pid;
  if (pid <= 0) return SignalOutcome::kNoProcess;
  // Pin the process first, then check who it is: if the check passes, the pidfd refers
  // to the process that was checked, so the signal cannot land on a successor.
  const int pidfd = open_pidfd(pid);
  if (pidfd < 0 && errno == ESRCH) return SignalOutcome::kNoProcess;
  if (pidfd < 0 && errno != ENOSYS) {  // EINVAL: a thread id, not a process; EMFILE; ...
    error = errno;
    return SignalOutcome::kFailed;
  }
  SignalOutcome outcome = SignalOutcome::kSent;
  const auto info = inspect(pid);
  if (!info || info->start_time != request.start_time) {
    outcome = info ? SignalOutcome::kIdentityMismatch : SignalOutcome::kNoProcess;
  } else if (request.required_uid && info->uid != *request.required_uid) {
    outcome = SignalOutcome::kNotPermitted;
  } else if (request.required_mapping && !process_maps_file(pid, *request.required_mapping)) {
    outcome = SignalOutcome::kNotMapped;
  }
  // Liveness last, after every read of /proc above, as process_running() decides it: the
  // reads described this very process only if it still runs now. A process whose main
  // thread exited while others run is alive, and is signalled; one that exited but is not
  // yet waited for is gone, whatever the reads said (its maps read empty, for one).
  if (outcome != SignalOutcome::kIdentityMismatch && outcome != SignalOutcome::kNoProcess &&
      !process_running(pid, request.start_time))
    outcome = SignalOutcome::kNoProcess;
  if (outcome == SignalOutcome::kSent) {
    // Without pidfd (kernels before 5.3) a plain kill right after the check is the best
    // available; the window is a few microseconds. process_running() has verified that
    // the pid is a thread-group leader, so kill() cannot reach a group through a thread id.
    const long rc = pidfd >= 0 ? ::syscall(SYS_pidfd_send_signal, pidfd, request.signal, nullptr, 0)
                               : ::kill(pid, request.signal);
    if (rc != 0) {
      error = errno;
      outcome = error == ESRCH ? SignalOutcome::kNoProcess : SignalOutcome::kFailed;
    }
  }
  if (pidfd >= 0) ::close(pidfd);
  return outcome;
}

}  // namespace shmtimer
