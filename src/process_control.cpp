#include "shmtimer/process_control.hpp"

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <string>

#include "shmtimer/process_identity.hpp"

namespace shmtimer {

std::optional<ProcessInfo> LinuxProcessControl::inspect(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  struct stat st {};
  const std::string dir = "/proc/" + std::to_string(pid);
  if (::stat(dir.c_str(), &st) != 0) return std::nullopt;
  const auto stat = read_process_stat(pid);
  if (!stat) return std::nullopt;
  return ProcessInfo{stat->start_time, st.st_uid, stat->is_zombie()};
}

SignalOutcome LinuxProcessControl::send(pid_t pid, std::uint64_t start_time, int signal,
                                        std::optional<uid_t> required_uid, int& error) {
  error = 0;
  if (pid <= 0) return SignalOutcome::kNoProcess;
  // Pin the process first, then check who it is: if the check passes, the pidfd refers
  // to the process that was checked, so the signal cannot land on a successor.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0 && errno == ESRCH) return SignalOutcome::kNoProcess;
  if (pidfd < 0 && errno != ENOSYS) {
    error = errno;
    return SignalOutcome::kFailed;
  }
  SignalOutcome outcome = SignalOutcome::kSent;
  const auto info = inspect(pid);
  if (!info || info->zombie) {
    outcome = SignalOutcome::kNoProcess;
  } else if (info->start_time != start_time) {
    outcome = SignalOutcome::kIdentityMismatch;
  } else if (required_uid && info->uid != *required_uid) {
    outcome = SignalOutcome::kNotPermitted;
  } else {
    // Without pidfd (kernels before 5.3) a plain kill right after the check is the best
    // available; the window is a few microseconds.
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
