// shmtimerd's events in its log. The reaping events ("timer expired", "kill worker
// process") go at info, the per-request ones ("set timer", "clear timer") at debug.
// Text format: one line, `key=value` after the event's name. JSON format: an object with
// one field per datum (event, pid, scope, signal, deadline, lateness_ms, slot, origin,
// table), plus the target's command and job (run_id, rank, local_rank) when the server
// read them ahead of the kill (shmtimer::ProcessLabels).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

#include "shmtimer/timer_event.hpp"

namespace shmtimerd {

class EventLog {
 public:
  // `json_events`: the JSON format's event logger (log_setup.hpp); null for text.
  // `table`: the table's path, which every event names.
  EventLog(std::shared_ptr<spdlog::logger> json_events, std::string table)
      : json_events_(std::move(json_events)), table_(std::move(table)) {}
  // Never throws: a failing log line must not disturb a reap. Only queues the line.
  void operator()(std::string_view name, const shmtimer::TimerEvent* event) noexcept;

 private:
  void log(std::string_view name, const shmtimer::TimerEvent& event);

  std::shared_ptr<spdlog::logger> json_events_;
  std::string table_;
};

}  // namespace shmtimerd
