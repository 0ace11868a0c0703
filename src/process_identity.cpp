#include "shmtimer/process_identity.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

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

void refresh_self() noexcept {
  const pid_t pid = ::getpid();
  const auto stat = read_process_stat(pid);
  g_self_identity.start_time.store(stat ? stat->start_time : 0, std::memory_order_relaxed);
  g_self_identity.pid.store(pid, std::memory_order_release);  // publishes start_time
}

}  // namespace

pid_t learn_self_identity() noexcept {
  static const bool registered = (::pthread_atfork(nullptr, nullptr, refresh_self), true);
  (void)registered;
  refresh_self();
  return g_self_identity.pid.load(std::memory_order_relaxed);
}

}  // namespace shmtimer
