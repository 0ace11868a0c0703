// Who a process is: its pid plus the kernel's start time for it, so that a reused pid is
// never mistaken for the process that acquired a timer.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>

namespace shmtimer {

struct ProcessStat {
  // Field 3 of /proc/<pid>/stat: R, S, D, Z, T, ... It is the main thread's state: a
  // process whose main thread called pthread_exit() shows Z while its other threads run.
  // So it says nothing about whether the process lives; process_running() does.
  char state = '?';
  std::uint64_t start_time = 0; // field 22: clock ticks after boot when the process started
};

// Reads /proc/<pid>/stat. nullopt when there is no such process. Uses only open/read/close
// so it is safe to call in a forked child of a multithreaded parent.
std::optional<ProcessStat> read_process_stat(pid_t pid) noexcept;

// Liveness as the kernel decides it: a process runs while any of its threads does. True
// when `pid` names a thread-group leader that started at `start_time` (any start time
// when nullopt) and has a thread that has not exited. False when there is no such
// process, when the pid now belongs to another process, when `pid` is a thread id that is
// not a process id, and when every thread has exited (a zombie not yet waited for).
// Decided through a pidfd (readable once the whole thread group has exited), and through
// the thread count in /proc/<pid>/status where pidfds are not available. Both answers
// are about one process: its identity is checked while the pidfd pins it.
bool process_running(pid_t pid, std::optional<std::uint64_t> start_time) noexcept;

// A running process held by a pidfd, with its start time read while held: as long as
// `pidfd` is open and not readable (pidfd_exited), `pid` names this process and no other.
// pidfd is -1 where none could be opened (ENOSYS before Linux 5.3, or EMFILE): then the
// answer was decided from /proc alone and holds only for the moment it was read.
struct PinnedProcess {
  int pidfd = -1;
  std::uint64_t start_time = 0;
};
// nullopt exactly when process_running(pid, nullopt) is false. The caller closes pidfd.
std::optional<PinnedProcess> pin_process(pid_t pid) noexcept;
// Has every thread of the pidfd's process exited? (Its pidfd is then readable.)
bool pidfd_exited(int pidfd) noexcept;
// The same from /proc alone (the start time, the main thread's state, and the thread count
// with the thread-group id), for kernels without pidfds (before 5.3).
bool process_running_without_pidfd(pid_t pid, std::optional<std::uint64_t> start_time) noexcept;

// The inode of this process's pid namespace (/proc/self/ns/pid), 0 if unknown. Pids are
// only meaningful within one namespace.
std::uint32_t current_pid_namespace() noexcept;

// A file, as the kernel names it: what /proc/<pid>/maps shows for a mapping of it.
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
};

// Does process `pid` have `file` mapped? Its threads share one address space, but once its
// main thread has exited /proc/<pid>/maps reads empty, so the other threads' are read.
bool process_maps_file(pid_t pid, const FileId& file) noexcept;

// pidfd_open(pid, 0); -1 with errno set when it fails (ENOSYS before Linux 5.3).
int open_pidfd(pid_t pid) noexcept;

// The calling process's pid and start time, learned once and refreshed in the child after
// fork() (pthread_atfork), so the hot path never makes a system call to learn them.
struct SelfIdentity {
  // Written at first use (racing first users store the same values) and in the
  // single-threaded child after fork: start_time and cache_key first, then pid with
  // release order. A reader of start_time acquire-loads pid first, so it never sees pid
  // without the start time that goes with it (a slot claimed with start time 0 could
  // never be reaped).
  std::atomic<pid_t> pid;
  std::atomic<std::uint64_t> start_time;
  // Both in one word, so the scope cache checks who it is with one compare:
  // start_time << kCacheKeyPidBits | pid (pids stay below 2^22, PID_MAX_LIMIT; 2^42
  // clock ticks of start time are 1.4 billion years at 100 Hz). 0 until learned, and if
  // they ever did not fit: the cache then never hits, and every call takes the slow path.
  std::atomic<std::uint64_t> cache_key;
};
inline constexpr unsigned kCacheKeyPidBits = 22;
inline constinit SelfIdentity g_self_identity{};  // zero until first use
pid_t learn_self_identity() noexcept;            // fills it; returns the pid

inline pid_t current_pid() noexcept {
  // Relaxed: the pid alone is needed here, and it is written once per process.
  const pid_t pid = g_self_identity.pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : learn_self_identity();
}
// Relaxed: read by the thread whose per-thread cache it keys; the child's refresh after
// fork runs on the very thread that goes on. 0 means "not known": never cache on it.
inline std::uint64_t current_cache_key() noexcept { return g_self_identity.cache_key.load(std::memory_order_relaxed); }
inline std::uint64_t current_start_time() noexcept {
  if (g_self_identity.pid.load(std::memory_order_acquire) == 0) learn_self_identity();
  return g_self_identity.start_time.load(std::memory_order_relaxed);
}

}  // namespace shmtimer
