// What the server asks of the operating system about processes, behind a small interface
// so tests can drive death and pid reuse without real processes when they want to.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "process_liveness.hpp"
#include "process_maps.hpp"

namespace shmtimer {

struct ProcessInfo {
  std::uint64_t identity = 0;  // of the kind asked for (process_liveness.hpp)
  uid_t uid = 0;               // effective uid
};

struct SignalRequest {
  pid_t pid = 0;
  std::uint64_t identity = 0;  // the identity recorded with the timer
  int signal = 0;
  std::optional<uid_t> required_uid;  // when set, only a process of this uid
  // When set, only a process that has this file mapped: for a table timer, the table.
  // Only a process that mapped the table could have armed a timer in it, so whatever is
  // written in the table, a process that never opened it is never signalled.
  std::optional<FileId> required_mapping;
  // When set, the one uid (besides root) that can write the table. A process of this uid
  // whose maps the server may not read (it is not dumpable) is signalled without the
  // mapping check: whoever could have armed its timer could signal it directly anyway.
  std::optional<uid_t> sole_table_writer;
};

enum class SignalOutcome {
  kSent,              // delivered to the very process that was identified
  kNoProcess,         // no such process, or every thread of it has exited: counts as reaped
  kIdentityMismatch,  // the pid now belongs to another process: never signalled
  kNotPermitted,      // owned by a uid the server may not signal: never signalled
  kNotMapped,         // does not have the table mapped, so did not arm the timer: never signalled
  kUnverifiable,      // its maps may not be read (not dumpable), and no rule vouches for it
  kUnknown,           // could not look (EMFILE, ENOMEM, ...): errno in `error`, retried with back-off
  kFailed,            // the kernel refused the signal: errno in `error`, retried with back-off
};

// A few descriptors held open on /dev/null, to be let go when an open fails with EMFILE
// or ENFILE and taken again after. Another thread of the process may take a descriptor so
// freed first; the reserve then helps the next try. Not thread-safe: one owner.
class DescriptorReserve {
 public:
  explicit DescriptorReserve(std::size_t size);
  ~DescriptorReserve();
  DescriptorReserve(const DescriptorReserve&) = delete;
  DescriptorReserve& operator=(const DescriptorReserve&) = delete;
  bool release();  // closes every held descriptor; false when none was held
  void refill();   // opens up to the size again (as many as the limit allows)
  std::size_t held() const { return fds_.size(); }

 private:
  std::size_t size_;
  std::vector<int> fds_;
};

// Was this look at a process cut short for want of descriptors (process- or system-wide)?
inline bool out_of_descriptors(int error) { return error == EMFILE || error == ENFILE; }

class ProcessControl {
 public:
  virtual ~ProcessControl() = default;
  // Does the process of `identity` (any, when nullopt) still run under `pid`? See
  // probe_process(): a process lives while any of its threads does, and only the kernel
  // saying so makes it gone; kUnknown is never taken for gone.
  virtual Probe running(pid_t pid, std::optional<std::uint64_t> identity) = 0;
  // Signals `request.pid` only if it is still the process of `request.identity`, and only
  // if it meets the request's uid and mapping conditions.
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
// A prepared process is held by a pidfd opened ahead of its deadline, its identity
// checked then, and, when the request names a file to be mapped, by its maps file opened
// then. At the deadline send() reads its uid again, asks the open maps file whether the
// file is still mapped (one query, where it was found while preparing), checks that the
// process still runs, and signals through the pidfd: four system calls on warm /proc
// entries, instead of a dozen or more, among them a process's first /proc lookups, the
// slow ones. It decides exactly as for a process not prepared: while the pidfd's process
// runs (checked last, as always) the pid is still its own, so the identity read while
// it was held stands; and an open maps file answers for the address space it was opened
// on, gone once the process exec()s.
class LinuxProcessControl final : public ProcessControl {
 public:
  // `max_prepared`: the most processes held at once, each by up to two descriptors; 0
  // (the default): a quarter of the open file limit (so half of it at most, between 64
  // and 65,536 processes), looked up again once a sweep, after a limit raised since.
  // `reserved_descriptors`: kept open on /dev/null and let go when a look at a process
  // fails for want of descriptors (EMFILE, ENFILE), so the kill path still works when the
  // rest of the process is at its limit (0: none).
  explicit LinuxProcessControl(std::size_t max_prepared = 0, std::size_t reserved_descriptors = 8);
  ~LinuxProcessControl() override;
  LinuxProcessControl(const LinuxProcessControl&) = delete;
  LinuxProcessControl& operator=(const LinuxProcessControl&) = delete;

  Probe running(pid_t pid, std::optional<std::uint64_t> identity) override;
  // Identity (of `expected`'s kind) and effective uid of `pid`, if it runs as `expected`.
  Probe inspect(pid_t pid, std::optional<std::uint64_t> expected, ProcessInfo& out);
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
  static Mapping maps_file(pid_t pid, const FileId& file, Prepared* prepared, int& error);
  static void close_prepared(const Prepared& p);
  SignalOutcome send_once(const SignalRequest& request, int& error);
  // The checks and the signal, on the process `pidfd` pins (-1: none, before Linux 5.3).
  SignalOutcome check_and_signal(const SignalRequest& request, int pidfd, Prepared* prepared, int& error);
  // The uid and mapping conditions; kSent when they hold.
  SignalOutcome check_conditions(const SignalRequest& request, uid_t uid, Prepared* prepared, int& error);

  std::size_t budget() const;  // max_prepared_, or what the open file limit allows now
  std::size_t max_prepared_;
  std::size_t budget_;  // budget(), as of the last drop_unprepared()
  DescriptorReserve reserve_;
  // Relaxed: a timestamp read back by the thread that called send(); servers sharing this
  // object may read each other's, which only moves a lateness figure within their round.
  std::atomic<std::uint64_t> last_signal_ns_{0};
  mutable std::mutex mutex_;                                      // a ProcessControl may be shared by servers
  std::map<std::pair<pid_t, std::uint64_t>, Prepared> prepared_;  // by pid and identity
};

}  // namespace shmtimer
