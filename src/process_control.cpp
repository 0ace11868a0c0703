#include "shmtimer/process_control.hpp"

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
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

SignalOutcome LinuxProcessControl::send(pid_t pid, std::uint64_t start_time, int signal,
                                        std::optional<uid_t> required_uid, int& error) {
  error = 0;
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
  // Liveness after the identity read, as process_running() decides it: a process whose
  // main thread exited while others run is alive, and is signalled.
  if (!info || !process_running(pid, info->start_time)) {
    outcome = SignalOutcome::kNoProcess;
  } else if (info->start_time != start_time) {
    outcome = SignalOutcome::kIdentityMismatch;
  } else if (required_uid && info->uid != *required_uid) {
    outcome = SignalOutcome::kNotPermitted;
  } else {
    // Without pidfd (kernels before 5.3) a plain kill right after the check is the best
    // available; the window is a few microseconds. process_running() has verified that
    // the pid is a thread-group leader, so kill() cannot reach a group through a thread id.
    const long rc = pidfd >= 0 ? ::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0) : ::kill(pid, signal);
    if (rc != 0) {
      error = errno;
      outcome = error == ESRCH ? SignalOutcome::kNoProcess : SignalOutcome::kFailed;
    }
  }
  if (pidfd >= 0) ::close(pidfd);
  return outcome;
}

}  // namespace shmtimer
