// Who a process is, and whether it still runs, as the kernel answers: a pid plus an
// identity that never names two processes, so a reused pid is never mistaken for the
// process that acquired a timer; and an answer that can be "I could not look", which is
// never taken for "it is gone". The calling process's own identity is self_identity.hpp;
// what a process has mapped, process_maps.hpp.
#pragma once

#include <sys/types.h>

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

// pidfd_open(pid, 0); -1 with errno set when it fails (ENOSYS before Linux 5.3).
int open_pidfd(pid_t pid) noexcept;

}  // namespace shmtimer
