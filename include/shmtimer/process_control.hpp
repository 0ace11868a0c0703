// What the server asks of the operating system about processes, behind a small interface
// so tests can drive death and pid reuse without real processes when they want to.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "shmtimer/process_identity.hpp"

namespace shmtimer {

struct ProcessInfo {
  std::uint64_t start_time = 0;  // /proc/<pid>/stat field 22
  uid_t uid = 0;                 // owner of /proc/<pid> (the effective uid; root if not dumpable)
};

struct SignalRequest {
  pid_t pid = 0;
  std::uint64_t start_time = 0;  // the identity recorded with the timer
  int signal = 0;
  std::optional<uid_t> required_uid;  // when set, only a process of this uid
  // When set, only a process that has this file mapped: for a table timer, the table.
  // Only a process that mapped the table could have armed a timer in it, so whatever is
  // written in the table, a process that never opened it is never signalled.
  std::optional<FileId> required_mapping;
};

enum class SignalOutcome {
  kSent,              // delivered to the very process that was identified
  kNoProcess,         // no such process, or every thread of it has exited: counts as reaped
  kIdentityMismatch,  // the pid now belongs to another process: never signalled
  kNotPermitted,      // owned by a uid the server may not signal: never signalled
  kNotMapped,         // does not have the table mapped, so did not arm the timer: never signalled
  kFailed,            // the kernel refused; errno in `error`, retried with back-off
};

class ProcessControl {
 public:
  virtual ~ProcessControl() = default;
  // Does the process that started at `start_time` (any, when nullopt) still run under
  // `pid`? See process_running(): a process lives while any of its threads does.
  virtual bool running(pid_t pid, std::optional<std::uint64_t> start_time) = 0;
  // Signals `request.pid` only if it is still the process that started at `start_time`,
  // and only if it meets the request's uid and mapping conditions.
  virtual SignalOutcome send(const SignalRequest& request, int& error) = 0;
  // Hints, so that send() has little left to do when a deadline comes. The server calls
  // prepare() for each process with a timer due within two of its longest sleeps, once
  // between two calls of drop_unprepared(), which it makes once a sweep (1 s): what was
  // not prepared in between is let go. Neither may change what send() decides, only how
  // fast. Default: nothing.
  virtual void prepare(const SignalRequest& request) { (void)request; }
  virtual void drop_unprepared() {}
  // When the last send() that returned kSent made the system call that queued its signal
  // (monotonic_now_ns(); 0: not known). The call itself may return much later: the
  // kernel can run the woken target on the caller's CPU first, to die, and that is the
  // target's reaping, not the server's lateness.
  virtual std::uint64_t last_signal_ns() const { return 0; }
};

// The real one: /proc for identity, and a pidfd so that the identity check and the signal
// apply to one and the same process even if the pid is reused in between.
//
// A prepared process is held by a pidfd opened ahead of its deadline, its start time
// checked then, and, when the request names a file to be mapped, by its maps file opened
// then. At the deadline send() reads its uid again, asks the open maps file whether the
// file is still mapped (one query, where it was found while preparing), checks that the
// process still runs, and signals through the pidfd: four system calls on warm /proc
// entries, instead of a dozen or more, among them a process's first /proc lookups, the
// slow ones. It decides exactly as for a process not prepared: while the pidfd's process
// runs (checked last, as always) the pid is still its own, so the start time read while
// it was held stands; and an open maps file answers for the address space it was opened
// on, gone once the process exec()s.
class LinuxProcessControl final : public ProcessControl {
 public:
  // `max_prepared`: the most processes held at once, each by up to two descriptors.
  explicit LinuxProcessControl(std::size_t max_prepared = 64) : max_prepared_(max_prepared) {}
  ~LinuxProcessControl() override;
  LinuxProcessControl(const LinuxProcessControl&) = delete;
  LinuxProcessControl& operator=(const LinuxProcessControl&) = delete;

  bool running(pid_t pid, std::optional<std::uint64_t> start_time) override;
  // Start time and uid of `pid`; nullopt when there is no such process.
  std::optional<ProcessInfo> inspect(pid_t pid);
  SignalOutcome send(const SignalRequest& request, int& error) override;
  void prepare(const SignalRequest& request) override;
  void drop_unprepared() override;
  std::uint64_t last_signal_ns() const override { return last_signal_ns_.load(std::memory_order_relaxed); }
  std::size_t prepared() const;  // how many processes are held now

 private:
  struct Prepared {
    int pidfd;
    int maps_fd;           // its /proc/<pid>/maps, opened while pinned; -1 if no mapping was asked for
    std::uint64_t map_at;  // where the file was last seen mapped: where the query looks first
    bool wanted;           // prepared again since the last drop_unprepared()
  };
  // Does the process have `file` mapped? Through the prepared maps file if there is one.
  static bool maps_file(pid_t pid, const FileId& file, Prepared* prepared);
  static void close_prepared(const Prepared& p);
  // The checks and the signal, on the process `pidfd` pins (-1: none, before Linux 5.3).
  SignalOutcome check_and_signal(const SignalRequest& request, int pidfd, Prepared* prepared, int& error);

  std::size_t max_prepared_;
  // Relaxed: a timestamp read back by the thread that called send(); servers sharing this
  // object may read each other's, which only moves a lateness figure within their round.
  std::atomic<std::uint64_t> last_signal_ns_{0};
  mutable std::mutex mutex_;  // a ProcessControl may be shared by servers
  std::map<std::pair<pid_t, std::uint64_t>, Prepared> prepared_;  // by pid and start time
};

}  // namespace shmtimer
