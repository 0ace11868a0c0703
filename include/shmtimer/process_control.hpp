// What the server asks of the operating system about processes, behind a small interface
// so tests can drive death and pid reuse without real processes when they want to.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

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
};

// The real one: /proc for identity, and a pidfd so that the identity check and the signal
// apply to one and the same process even if the pid is reused in between.
class LinuxProcessControl final : public ProcessControl {
 public:
  bool running(pid_t pid, std::optional<std::uint64_t> start_time) override;
  // Start time and uid of `pid`; nullopt when there is no such process.
  std::optional<ProcessInfo> inspect(pid_t pid);
  SignalOutcome send(const SignalRequest& request, int& error) override;
};

}  // namespace shmtimer
