// The job labels of a timer's owner (ProcessLabels: torchelastic's run id and ranks from
// its environment, and its command name), read on a thread of their own while the server
// prepares a kill, so that they are at hand when the timer expires: the watchdog thread
// never waits for them. Reading /proc/<pid>/environ takes the target's memory-map lock
// and may page its memory in, and the target is a process that hangs: the read can block
// for as long as it does. A killed process's environment is gone, so labels not read by
// the time of the kill are not read at all.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "shmtimer/timer_event.hpp"

namespace shmtimer::detail {

// Reads them now: empty fields for what is unreadable (another user's process, one that
// is gone) or unset, and all of them empty when the pid no longer has `identity` (0: not
// checked) after the read.
ProcessLabels read_process_labels(pid_t pid, std::uint64_t identity);

class ProcessLabelReader {
 public:
  ProcessLabelReader();
  ~ProcessLabelReader();  // leaves a stuck read behind, detached
  ProcessLabelReader(const ProcessLabelReader&) = delete;
  ProcessLabelReader& operator=(const ProcessLabelReader&) = delete;

  // Queues a read of the process's labels, unless one is queued or done already, or the
  // queue is full (a read is stuck). Never waits for a read.
  void request(pid_t pid, std::uint64_t identity);
  // The labels, if their read is done; never waits for one.
  std::optional<ProcessLabels> find(pid_t pid, std::uint64_t identity) const;
  // Forgets the processes not requested since the last call (the server calls it once a
  // sweep, as it lets go of the processes it prepared).
  void forget_unrequested();

 private:
  void start_thread();  // with state_->mutex held
  struct State;
  std::shared_ptr<State> state_;  // shared with the thread, which may outlive this object
};

}  // namespace shmtimer::detail
