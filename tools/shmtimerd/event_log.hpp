// shmtimerd's events in its log. The reaping events ("timer expired", "kill worker
// process") go at info, the per-request ones ("set timer", "clear timer") at debug.
// Text format: one line, `key=value` after the event's name. JSON format: an object with
// one field per datum (event, pid, scope, signal, deadline, lateness_ms, slot, origin),
// plus the target's job (run_id, rank, local_rank) when its environment says so.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "json_log_sink.hpp"
#include "shmtimer/timer_server.hpp"

namespace shmtimerd {

// The torchelastic job a worker belongs to, from its environment.
struct JobLabels {
  std::optional<std::string> run_id;      // TORCHELASTIC_RUN_ID
  std::optional<std::string> rank;        // RANK
  std::optional<std::string> local_rank;  // LOCAL_RANK
  bool empty() const { return !run_id && !rank && !local_rank; }
};

// Reads the labels from /proc/<pid>/environ; empty when it is unreadable (another user's
// process, or one that is gone) or names none of them. Values are escaped (printable()).
JobLabels read_job_labels(pid_t pid);

class EventLog {
 public:
  // `json`: the sink of the JSON log format; null for text.
  explicit EventLog(std::shared_ptr<JsonLogSink> json) : json_(std::move(json)) {}
  void operator()(std::string_view name, const shmtimer::TimerEvent* event);

 private:
  // The job of a timer's owner, read when its timer expires (before the kill: a killed
  // process's environment is gone) and kept for the kill that follows.
  JobLabels job_of(std::string_view name, pid_t pid);

  std::shared_ptr<JsonLogSink> json_;
  std::mutex mutex_;  // the shim and the reaper log from the watchdog thread; tests call from any
  std::map<pid_t, JobLabels> jobs_;
};

}  // namespace shmtimerd
