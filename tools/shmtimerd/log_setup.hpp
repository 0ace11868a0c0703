// shmtimerd's logs, written by a thread of their own (spdlog's asynchronous loggers): the
// watchdog thread formats a line and queues it, and never waits on where it goes. A sink
// that stops draining (a full pipe to a stuck journald, a terminal on hold, a full disk)
// then costs lines, never a kill: when the queue is full the oldest lines are dropped,
// and counted (shmtimer_log_lines_dropped_total). Test:
// ShmtimerdLog.ASinkThatNeverDrainsNeitherDelaysNorStopsAKill.
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace shmtimerd {

struct Loggers {
  // The JSON format's event lines, whose payload is an object of their own fields
  // (JsonLogSink); null in the text format, where events are lines of the default logger.
  std::shared_ptr<spdlog::logger> json_events;
};

// Makes the default logger ("text" or "json" lines on stderr, at `level`) asynchronous.
Loggers setup_logging(const std::string& format, const std::string& level);

// Lines dropped because the queue was full (the sink did not drain); 0 before setup.
std::uint64_t log_lines_dropped();

// Gives the log thread up to `limit` to write every line queued before the call (a flush
// queued behind them marks the end). False if it did not: a sink that does not drain.
bool drain_logs(std::chrono::milliseconds limit);

}  // namespace shmtimerd
