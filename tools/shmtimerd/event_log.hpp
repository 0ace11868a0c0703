// shmtimerd's events in its log. The reaping events ("timer expired", "kill worker
// process") go at info, the per-request ones ("set timer", "clear timer") at debug.
// Text format: one line, `key=value` after the event's name. JSON format: an object with
// one field per datum (event, pid, scope, signal, deadline, lateness_ms, slot, origin),
// plus the target's job (run_id, rank, local_rank) when its environment says so.
#pragma once

#include <sys/types.h>

#include <chrono>
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
};

// Reads the labels from /proc/<pid>/environ: empty when it is unreadable (another user's
// process, or one that is gone), names none of them, or when the pid no longer has
// `identity` (0: not checked) after the read. Values are cut to 256 bytes and escaped
// (printable()). May block: see JobLabelReader.
JobLabels read_job_labels(pid_t pid, std::uint64_t identity);

// Reads job labels on a thread of its own, so that the watchdog thread waits at most
// `wait` for them. Reading /proc/<pid>/environ takes the target's memory-map lock and may
// page its memory in, and the target is a process that hangs: the read can block for as
// long as it does. While one read is stuck, later requests get no labels, at once.
class JobLabelReader {
 public:
  JobLabelReader();
  ~JobLabelReader();  // leaves a stuck read behind, detached
  JobLabelReader(const JobLabelReader&) = delete;
  JobLabelReader& operator=(const JobLabelReader&) = delete;

  JobLabels read(pid_t pid, std::uint64_t identity, std::chrono::milliseconds wait);

 private:
  struct State;
  std::shared_ptr<State> state_;  // shared with the thread, which may outlive this object
};

class EventLog {
 public:
  // `json`: the sink of the JSON log format; null for text.
  explicit EventLog(std::shared_ptr<JsonLogSink> json) : json_(std::move(json)) {}
  // Never throws: a failing log line must not disturb a reap.
  void operator()(std::string_view name, const shmtimer::TimerEvent* event) noexcept;

 private:
  void log(std::string_view name, const shmtimer::TimerEvent& event);
  // The job of a timer's owner, read when its timer expires (before the kill: a killed
  // process's environment is gone) and kept for the kill that follows.
  JobLabels job_of(std::string_view name, const shmtimer::TimerEvent& event);

  std::shared_ptr<JsonLogSink> json_;
  std::mutex mutex_;  // the shim and the reaper log from the watchdog thread; tests call from any
  std::map<pid_t, JobLabels> jobs_;
  JobLabelReader reader_;
};

}  // namespace shmtimerd
