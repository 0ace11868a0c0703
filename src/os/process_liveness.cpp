#include "process_liveness.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace shmtimer {

namespace {

constexpr long kPidfsMagic = 0x50494446;  // PIDFS_MAGIC of <linux/magic.h> (6.9), which Debian 12's headers predate

void close_quietly(int fd) {
  if (fd >= 0) ::close(fd);
}

// The "Threads:" count of /proc/<pid>/status into `threads`, which counts a zombie main
// thread until the whole group has exited: a process that is only a zombie shows 1. 0
// when `pid` is a thread id that is not its group's leader (/proc answers for hidden
// thread ids too, but they are not processes).
Probe thread_count(pid_t pid, long& threads) noexcept {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(pid));
  FILE* file = std::fopen(path, "re");
  if (file == nullptr) return Probe::of_errno(errno);
  char line[256];
  long count = 0, tgid = 0;
  while (std::fgets(line, sizeof line, file) != nullptr && count == 0)
    if (std::sscanf(line, "Tgid: %ld", &tgid) != 1) std::sscanf(line, "Threads: %ld", &count);
  const bool failed = std::ferror(file) != 0;
  const int error = errno;
  std::fclose(file);
  if (failed) return Probe::of_errno(error);
  threads = tgid == pid ? count : 0;
  return {Presence::kRunning, 0};
}

// Do the start time's process still run, as /proc alone tells? (No pidfd to ask.)
Probe running_from_proc(pid_t pid, const ProcessStat& stat) noexcept {
  long threads = 0;
  if (const Probe probe = thread_count(pid, threads); !probe.running()) return probe;
  // 0 for a thread id that is not its group's leader: never taken for a process, so
  // kill() is never aimed at a group through one of its threads.
  return {threads > (stat.state == 'Z' || stat.state == 'X' ? 1 : 0) ? Presence::kRunning : Presence::kGone, 0};
}

}  // namespace

Probe Probe::of_errno(int error) {
  return {error == ESRCH || error == ENOENT ? Presence::kGone : Presence::kUnknown, error};
}

Probe read_process_stat(pid_t pid, ProcessStat& out) noexcept {
  if (pid <= 0) return {Presence::kGone, ESRCH};
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Probe::of_errno(errno);
  char buf[1024];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  const int error = errno;
  ::close(fd);
  if (n < 0) return Probe::of_errno(error);
  if (n == 0) return {Presence::kGone, ESRCH};  // the kernel ends the file of a task that is gone
  buf[n] = '\0';
  // The command name (field 2) is in parentheses and may itself hold spaces or ')', so
  // parse from the last ')'. Text that does not parse is no proof of death.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return {Presence::kUnknown, EPROTO};
  p += 2;
  ProcessStat stat;
  stat.state = *p;
  // Fields 3..21 are skipped; field 22 is starttime.
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return {Presence::kUnknown, EPROTO};
    ++p;
  }
  if (*p < '0' || *p > '9') return {Presence::kUnknown, EPROTO};
  std::uint64_t value = 0;
  while (*p >= '0' && *p <= '9') value = value * 10 + static_cast<std::uint64_t>(*p++ - '0');
  stat.start_time = value;
  out = stat;
  return {Presence::kRunning, 0};
}

int open_pidfd(pid_t pid) noexcept { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

bool pidfd_exited(int pidfd) noexcept {
  pollfd p{pidfd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, 0);
  } while (rc < 0 && errno == EINTR);
  return rc > 0 && (p.revents & POLLIN) != 0;
}

std::uint64_t pidfs_identity_of(int pidfd) noexcept {
  // Whether pidfds live on pidfs is the kernel's, the same for every pidfd: asked once.
  // Relaxed: racing first callers store the same answer.
  static std::atomic<int> on_pidfs{0};  // 0: not asked yet, 1: yes, -1: no
  if (on_pidfs.load(std::memory_order_relaxed) == 0) {
    struct statfs fs{};
    if (::fstatfs(pidfd, &fs) != 0) return 0;
    on_pidfs.store(fs.f_type == kPidfsMagic ? 1 : -1, std::memory_order_relaxed);
  }
  if (on_pidfs.load(std::memory_order_relaxed) < 0) {
    errno = ENODEV;
    return 0;
  }
  struct stat st{};
  if (::fstat(pidfd, &st) != 0) return 0;
  if (static_cast<std::uint64_t>(st.st_ino) >= kPidfsIdentity) {
    errno = EOVERFLOW;
    return 0;
  }
  return kPidfsIdentity | static_cast<std::uint64_t>(st.st_ino);
}

Probe pin_process(pid_t pid, std::optional<std::uint64_t> expected, PinnedProcess& out) noexcept {
  out = {};
  if (pid <= 0) return {Presence::kGone, ESRCH};
  const int pidfd = open_pidfd(pid);
  // ESRCH: no such process. EINVAL (before 6.9) or ENOENT: a thread id that is not a
  // thread-group leader, so not the process that was recorded, nor any process.
  if (pidfd < 0 && (errno == ESRCH || errno == EINVAL || errno == ENOENT)) return {Presence::kGone, errno};
  if (pidfd < 0 && errno != ENOSYS) return {Presence::kUnknown, errno};
  const auto fail = [&](Probe probe) {
    close_quietly(pidfd);
    return probe;
  };
  // The identity is read after the pidfd is opened, so that while the pidfd's process runs
  // (checked last) the pid is still its own and the identity is that process's.
  const bool by_start_time = expected && !is_pidfs_identity(*expected);
  std::uint64_t identity = pidfd >= 0 && !by_start_time ? pidfs_identity_of(pidfd) : 0;
  if (identity == 0 && pidfd >= 0 && !by_start_time && errno != ENODEV) return fail({Presence::kUnknown, errno});
  // A pidfs identity cannot be checked without a pidfd on pidfs (a sandbox that refuses
  // pidfd_open, say): unknown, never a match and never a death.
  if (identity == 0 && expected && is_pidfs_identity(*expected)) return fail({Presence::kUnknown, ENOSYS});
  ProcessStat stat;
  if (identity == 0) {
    if (const Probe probe = read_process_stat(pid, stat); !probe.running()) return fail(probe);
    identity = stat.start_time;
  }
  const Probe alive =
      pidfd >= 0 ? Probe{pidfd_exited(pidfd) ? Presence::kGone : Presence::kRunning, 0} : running_from_proc(pid, stat);
  if (!alive.running()) return fail(alive);
  if (expected && identity != *expected) return fail({Presence::kReused, 0});
  out = {pidfd, identity};
  return alive;
}

Probe probe_process(pid_t pid, std::optional<std::uint64_t> expected) noexcept {
  PinnedProcess pinned;
  const Probe probe = pin_process(pid, expected, pinned);
  close_quietly(pinned.pidfd);
  return probe;
}

Probe probe_without_pidfd(pid_t pid, std::optional<std::uint64_t> expected) noexcept {
  if (pid <= 0) return {Presence::kGone, ESRCH};
  if (expected && is_pidfs_identity(*expected)) return {Presence::kUnknown, ENOSYS};
  ProcessStat stat;
  if (const Probe probe = read_process_stat(pid, stat); !probe.running()) return probe;
  const Probe alive = running_from_proc(pid, stat);
  if (alive.running() && expected && stat.start_time != *expected) return {Presence::kReused, 0};
  return alive;
}

Probe effective_uid(pid_t pid, uid_t& uid) noexcept {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d", static_cast<int>(pid));
  struct stat st{};
  if (::stat(path, &st) != 0) return Probe::of_errno(errno);
  uid = st.st_uid;
  return {Presence::kRunning, 0};
}

}  // namespace shmtimer
