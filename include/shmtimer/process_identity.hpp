// Who a process is: its pid plus the kernel's start time for it, so that a reused pid is
// never mistaken for the process that acquired a timer.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>

namespace shmtimer {

struct ProcessStat {
  char state = '?';             // field 3 of /proc/<pid>/stat: R, S, D, Z, T, ...
  std::uint64_t start_time = 0; // field 22: clock ticks after boot when the process started
  bool is_zombie() const { return state == 'Z' || state == 'X'; }
};

// Reads /proc/<pid>/stat. nullopt when there is no such process. Uses only open/read/close
// so it is safe to call in a forked child of a multithreaded parent.
std::optional<ProcessStat> read_process_stat(pid_t pid) noexcept;

// The calling process's pid and start time, learned once and refreshed in the child after
// fork() (pthread_atfork), so the hot path never makes a system call to learn them.
struct SelfIdentity {
  // Written at first use (racing first users store the same values) and in the
  // single-threaded child after fork: start_time first, then pid with release order.
  // A reader of start_time acquire-loads pid first, so it never sees pid without the
  // start time that goes with it (a slot claimed with start time 0 could never be reaped).
  std::atomic<pid_t> pid;
  std::atomic<std::uint64_t> start_time;
};
inline constinit SelfIdentity g_self_identity{};  // zero until first use
pid_t learn_self_identity() noexcept;            // fills it; returns the pid

inline pid_t current_pid() noexcept {
  // Relaxed: the pid alone is needed here, and it is written once per process.
  const pid_t pid = g_self_identity.pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : learn_self_identity();
}
inline std::uint64_t current_start_time() noexcept {
  if (g_self_identity.pid.load(std::memory_order_acquire) == 0) learn_self_identity();
  return g_self_identity.start_time.load(std::memory_order_relaxed);
}

}  // namespace shmtimer
