#include "self_identity.hpp"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "process_liveness.hpp"

namespace shmtimer {

namespace {

void refresh_self() noexcept {
  const pid_t pid = ::getpid();
  std::uint64_t identity = 0;
  if (const int pidfd = open_pidfd(pid); pidfd >= 0) {
    identity = pidfs_identity_of(pidfd);
    ::close(pidfd);
  }
  if (ProcessStat stat; identity == 0 && read_process_stat(pid, stat).running()) identity = stat.start_time;
  // The identity's kind in the key's lowest bit above the pid, then its low 41 bits: a
  // pidfs inode or a start time in ticks (2^41 ticks are 700 years at 100 Hz).
  const std::uint64_t low =
      (identity & ((std::uint64_t{1} << (63 - kCacheKeyPidBits)) - 1)) << 1 | (is_pidfs_identity(identity) ? 1 : 0);
  const bool fits = identity != 0 && static_cast<std::uint64_t>(pid) < (std::uint64_t{1} << kCacheKeyPidBits);
  g_self_identity.identity.store(identity, std::memory_order_relaxed);
  g_self_identity.cache_key.store(fits ? low << kCacheKeyPidBits | static_cast<std::uint64_t>(pid) : 0,
                                  std::memory_order_relaxed);
  // Publishes identity and cache_key; stays 0 when the identity is not known, so the next
  // use tries again (and never finds a parent's identity after fork).
  g_self_identity.pid.store(identity != 0 ? pid : 0, std::memory_order_release);
}

}  // namespace

pid_t learn_self_identity() noexcept {
  static const bool registered = (::pthread_atfork(nullptr, nullptr, refresh_self), true);
  (void)registered;
  refresh_self();
  return ::getpid();
}

std::uint32_t current_pid_namespace() noexcept {
  struct stat st{};
  // Proc namespace inodes are 32-bit numbers.
  return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<std::uint32_t>(st.st_ino) : 0;
}

}  // namespace shmtimer
