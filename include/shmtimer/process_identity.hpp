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

// The calling process's pid and start time, cached once and refreshed in the child after
// fork() (pthread_atfork), so the hot path never makes a system call to learn them.
struct SelfIdentity {
  std::atomic<pid_t> pid;                  // relaxed: written only before threads exist in this process
  std::atomic<std::uint64_t> start_time;   // (at startup, or in the single-threaded child after fork)
};
const SelfIdentity& self_identity() noexcept;

inline pid_t current_pid() noexcept { return self_identity().pid.load(std::memory_order_relaxed); }
inline std::uint64_t current_start_time() noexcept {
  return self_identity().start_time.load(std::memory_order_relaxed);
}

}  // namespace shmtimer
