// Who a process is, and whether it still runs, as the kernel answers: a pid plus an
// identity that never names two processes, so a reused pid is never mistaken for the
// process that acquired a timer; and an answer that can be "I could not look", which is
// never taken for "it is gone".
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>

namespace shmtimer {

// ---- Process identity -----------------------------------------------------------------
//
// The identity word a slot records for its owner (docs/table-format.md):
//   bit 63 set:   the inode of the process's pidfd on pidfs (Linux 6.9+), which the kernel
//                 never gives to two processes while the machine is up;
//   bit 63 clear: its start time, /proc/<pid>/stat field 22, in clock ticks after boot
//                 (older kernels): two processes that get one pid within one tick share it.
// A process records the strongest its kernel offers; whoever checks it checks that kind.
// 0 is never an identity: "not known".
inline constexpr std::uint64_t kPidfsIdentity = std::uint64_t{1} << 63;
constexpr bool is_pidfs_identity(std::uint64_t identity) { return (identity & kPidfsIdentity) != 0; }

// ---- What a look at a process found ---------------------------------------------------
//
// Only the kernel saying so means a process is gone: ESRCH or ENOENT from /proc or
// pidfd_open, a pidfd that reports exit, or the pid now naming another identity. Any
// other failure (EMFILE, ENFILE, ENOMEM, EACCES, EPERM from a sandbox, ...) is kUnknown:
// the process is treated as alive (its slots kept, its kill retried), never as dead.
enum class Presence : std::uint8_t {
  kRunning,  // it runs, with the identity asked for (if any)
  kGone,     // no such process, or every thread of it has exited
  kReused,   // the pid runs, but as another process: the one asked about is gone
  kUnknown,  // could not look; `error` says why
};
struct Probe {
  Presence presence = Presence::kUnknown;
  int error = 0;  // the errno behind kUnknown
  bool running() const { return presence == Presence::kRunning; }
  bool gone() const { return presence == Presence::kGone || presence == Presence::kReused; }
  bool unknown() const { return presence == Presence::kUnknown; }
  static Probe of_errno(int error);  // kGone for ESRCH/ENOENT, else kUnknown with it
};

struct ProcessStat {
  // Field 3 of /proc/<pid>/stat: R, S, D, Z, T, ... It is the main thread's state: a
  // process whose main thread called pthread_exit() shows Z while its other threads run.
  // So it says nothing about whether the process lives; probe_process() does.
  char state = '?';
  std::uint64_t start_time = 0;  // field 22: clock ticks after boot when the process started
};

// Reads /proc/<pid>/stat into `out` (kRunning: read; the process may be a zombie). Uses
// only open/read/close, so it is safe in a forked child of a multithreaded parent.
Probe read_process_stat(pid_t pid, ProcessStat& out) noexcept;

// A running process held by a pidfd: while `pidfd` is open and not readable
// (pidfd_exited), `pid` names this process and no other. pidfd is -1 where none could be
// opened for want of pidfds (before Linux 5.3): the answer then holds only for the moment
// it was read. `identity` is the process's, of the kind asked for (see pin_process).
struct PinnedProcess {
  int pidfd = -1;
  std::uint64_t identity = 0;
};

// Liveness as the kernel decides it: a process runs while any of its threads does.
// kRunning when `pid` names a thread-group leader with a thread that has not exited and,
// when `expected` is given, that identity. kGone when there is no such process, when
// `pid` is a thread id that is not a process id, and when every thread has exited (a
// zombie not yet waited for); kReused when the pid names another identity. Decided
// through a pidfd (readable once the whole thread group has exited), and through the
// thread count in /proc/<pid>/status where pidfds are not available; the identity is
// read while the pidfd pins the process. On kRunning the caller owns out.pidfd, whose
// identity is of `expected`'s kind, or the strongest the kernel offers when nullopt.
Probe pin_process(pid_t pid, std::optional<std::uint64_t> expected, PinnedProcess& out) noexcept;
// The same, letting go of the pin at once.
Probe probe_process(pid_t pid, std::optional<std::uint64_t> expected) noexcept;
// Has every thread of the pidfd's process exited? (Its pidfd is then readable.) An error
// of poll() answers false: unknown is not dead.
bool pidfd_exited(int pidfd) noexcept;
// The pidfs identity of the process `pidfd` holds; 0 with errno set when the kernel has
// no pidfs (before 6.9: pidfds are anonymous inodes then) or fstat failed.
std::uint64_t pidfs_identity_of(int pidfd) noexcept;
// Is `pid` running as `expected` (any, when nullopt), from /proc alone: the start time,
// the main thread's state, and the thread count with the thread-group id. For kernels
// without pidfds (before 5.3), and for start-time identities only.
Probe probe_without_pidfd(pid_t pid, std::optional<std::uint64_t> expected) noexcept;

// The effective uid of `pid` into `uid` (kRunning: read): the owner of the directory
// /proc/<pid>. The kernel keeps that directory the effective uid's even for a process that
// is not dumpable, whose files in it belong to root (task_dump_owner(): "stat /proc/pid" is
// its own way to read it; the status file costs up to a millisecond cold). The test:
// NonDumpable.AWorkerWhoseMapsTheServerMayNotReadIsKilledWhenOnlyItsOwnUidCanWriteTheTable.
Probe effective_uid(pid_t pid, uid_t& uid) noexcept;

// The inode of this process's pid namespace (/proc/self/ns/pid), 0 if unknown. Pids are
// only meaningful within one namespace.
std::uint32_t current_pid_namespace() noexcept;

// pidfd_open(pid, 0); -1 with errno set when it fails (ENOSYS before Linux 5.3).
int open_pidfd(pid_t pid) noexcept;

// A file, as the kernel names it: what /proc/<pid>/maps shows for a mapping of it.
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
};

// Does process `pid` have `file` mapped? Its threads share one address space, but once its
// main thread has exited /proc/<pid>/maps reads empty, so the other threads' are read.
// kUnknown (errno in `error`) when its maps could not be read: EACCES for a process that
// is not dumpable (PR_SET_DUMPABLE 0, or one that changed credentials) and a server
// without CAP_SYS_PTRACE, EMFILE, ENOMEM, ...
enum class Mapping : std::uint8_t { kMapped, kNotMapped, kUnknown };
Mapping process_maps_file(pid_t pid, const FileId& file, int& error) noexcept;

// ---- The calling process's own identity ----------------------------------------------
//
// Learned once and again in the child after fork() (pthread_atfork), so the hot path never
// makes a system call to learn it.
struct SelfIdentity {
  // Written at first use (racing first users store the same values) and in the
  // single-threaded child after fork: identity and cache_key first, then pid with release
  // order. A reader of identity acquire-loads pid first, so it never sees pid without the
  // identity that goes with it. pid stays 0 while the identity could not be learned (no
  // descriptor left, say): every use tries again, and a client refuses to claim a slot.
  std::atomic<pid_t> pid;
  std::atomic<std::uint64_t> identity;
  // Both in one word, so the scope cache checks who it is with one compare: the low 41
  // bits of identity, its kind, and pid (pids stay below 2^22, PID_MAX_LIMIT). 0 if the
  // identity is not known: the cache then never hits, and every call takes the slow path.
  std::atomic<std::uint64_t> cache_key;
};
inline constexpr unsigned kCacheKeyPidBits = 22;
inline constinit SelfIdentity g_self_identity{};  // zero until first use
pid_t learn_self_identity() noexcept;            // fills it when it can; returns getpid()

inline pid_t current_pid() noexcept {
  // Relaxed: the pid alone is needed here, and it is written once per process.
  const pid_t pid = g_self_identity.pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : learn_self_identity();
}
// Relaxed: read by the thread whose per-thread cache it keys; the child's refresh after
// fork runs on the very thread that goes on. 0 means "not known": never cache on it.
inline std::uint64_t current_cache_key() noexcept { return g_self_identity.cache_key.load(std::memory_order_relaxed); }
// 0 when it could not be learned.
inline std::uint64_t current_identity() noexcept {
  if (g_self_identity.pid.load(std::memory_order_acquire) == 0) learn_self_identity();
  return g_self_identity.identity.load(std::memory_order_relaxed);
}

}  // namespace shmtimer
