#include "shmtimer/process_identity.hpp"

#include "process_maps.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

namespace shmtimer {

std::optional<ProcessStat> read_process_stat(pid_t pid) noexcept {
  if (pid <= 0) return std::nullopt;
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  // The command name (field 2) is in parentheses and may itself hold spaces or ')', so
  // parse from the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return std::nullopt;
  p += 2;
  ProcessStat stat;
  stat.state = *p;
  // Fields 3..21 are skipped; field 22 is starttime.
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return std::nullopt;
    ++p;
  }
  std::uint64_t value = 0;
  if (*p < '0' || *p > '9') return std::nullopt;
  while (*p >= '0' && *p <= '9') value = value * 10 + static_cast<std::uint64_t>(*p++ - '0');
  stat.start_time = value;
  return stat;
}

namespace {

// The "Threads:" count of /proc/<pid>/status, which counts a zombie main thread until the
// whole group has exited: a process that is only a zombie shows 1. 0 when unreadable, and
// when `pid` is a thread id that is not its group's leader (/proc answers for hidden
// thread ids too, but they are not processes).
long thread_count(pid_t pid) noexcept {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(pid));
  FILE* file = std::fopen(path, "re");
  if (file == nullptr) return 0;
  char line[256];
  long threads = 0, tgid = 0;
  while (std::fgets(line, sizeof line, file) != nullptr && threads == 0)
    if (std::sscanf(line, "Tgid: %ld", &tgid) != 1) std::sscanf(line, "Threads: %ld", &threads);
  std::fclose(file);
  return tgid == pid ? threads : 0;
}

// Does the maps file at `path` (a process's or one of its threads') list `file`?
bool maps_list_file(const std::string& path, const FileId& file) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool listed = detail::maps_list(fd, file);
  ::close(fd);
  return listed;
}

void refresh_self() noexcept {
  const pid_t pid = ::getpid();
  const auto stat = read_process_stat(pid);
  const std::uint64_t start_time = stat ? stat->start_time : 0;
  const bool fits = stat && static_cast<std::uint64_t>(pid) < (std::uint64_t{1} << kCacheKeyPidBits) &&
                    start_time < (std::uint64_t{1} << (64 - kCacheKeyPidBits));
  g_self_identity.start_time.store(start_time, std::memory_order_relaxed);
  g_self_identity.cache_key.store(fits ? start_time << kCacheKeyPidBits | static_cast<std::uint64_t>(pid) : 0,
                                  std::memory_order_relaxed);
  g_self_identity.pid.store(pid, std::memory_order_release);  // publishes start_time and cache_key
}

}  // namespace

int open_pidfd(pid_t pid) noexcept { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

bool pidfd_exited(int pidfd) noexcept {
  pollfd p{pidfd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, 0);
  } while (rc < 0 && errno == EINTR);
  return rc > 0 && (p.revents & POLLIN) != 0;
}

std::optional<PinnedProcess> pin_process(pid_t pid) noexcept {
  if (pid <= 0) return std::nullopt;
  const int pidfd = open_pidfd(pid);
  // ESRCH: no such process. EINVAL: a thread id that is not a thread-group leader.
  if (pidfd < 0 && (errno == ESRCH || errno == EINVAL)) return std::nullopt;
  // Opened first, so that while the pidfd's process runs the pid is still its own, and
  // the start time read below is that process's.
  const auto stat = read_process_stat(pid);
  bool running = stat.has_value();
  if (running && pidfd >= 0) running = !pidfd_exited(pidfd);
  if (running && pidfd < 0) running = thread_count(pid) > (stat->state == 'Z' || stat->state == 'X' ? 1 : 0);
  if (!running) {
    if (pidfd >= 0) ::close(pidfd);
    return std::nullopt;
  }
  return PinnedProcess{pidfd, stat->start_time};
}

bool process_running(pid_t pid, std::optional<std::uint64_t> start_time) noexcept {
  const auto pinned = pin_process(pid);
  if (!pinned) return false;
  if (pinned->pidfd >= 0) ::close(pinned->pidfd);
  return !start_time || pinned->start_time == *start_time;
}

bool process_running_without_pidfd(pid_t pid, std::optional<std::uint64_t> start_time) noexcept {
  if (pid <= 0) return false;
  const auto stat = read_process_stat(pid);
  if (!stat || (start_time && stat->start_time != *start_time)) return false;
  // thread_count() is 0 for a thread id that is not its group's leader: never taken for a
  // process, so kill() is never aimed at a group through one of its threads.
  return thread_count(pid) > (stat->state == 'Z' || stat->state == 'X' ? 1 : 0);
}

std::uint32_t current_pid_namespace() noexcept {
  struct stat st {};
  // Proc namespace inodes are 32-bit numbers.
  return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<std::uint32_t>(st.st_ino) : 0;
}

bool process_maps_file(pid_t pid, const FileId& file) noexcept {
  const std::string dir = "/proc/" + std::to_string(pid);
  if (maps_list_file(dir + "/maps", file)) return true;
  DIR* tasks = ::opendir((dir + "/task").c_str());
  if (tasks == nullptr) return false;
  bool found = false;
  while (const dirent* entry = found ? nullptr : ::readdir(tasks))
    if (entry->d_name[0] != '.') found = maps_list_file(dir + "/task/" + entry->d_name + "/maps", file);
  ::closedir(tasks);
  return found;
}

pid_t learn_self_identity() noexcept {
  static const bool registered = (::pthread_atfork(nullptr, nullptr, refresh_self), true);
  (void)registered;
  refresh_self();
  return g_self_identity.pid.load(std::memory_order_relaxed);
}

}  // namespace shmtimer
