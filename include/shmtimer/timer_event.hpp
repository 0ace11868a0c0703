// What the server reports through its event callback (ServerOptions::log_event,
// FifoShim's log_event): the reference's events, about one timer each.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "shmtimer/table_layout.hpp"

namespace shmtimer {

// Who a timer's owner is, read from its /proc entry ahead of its deadline (the server
// reads it while it prepares the kill, never between its decision and the signal), so
// unset when it could not be read in time. Values are cut to 256 bytes and escaped
// (printable()). Test: ShmtimerdEvents.JsonEventsAreObjectsWithTheirOwnFieldsAndTheTargetsJob.
struct ProcessLabels {
  std::optional<std::string> run_id;      // TORCHELASTIC_RUN_ID
  std::optional<std::string> rank;        // RANK
  std::optional<std::string> local_rank;  // LOCAL_RANK
  std::optional<std::string> command;     // its command name (/proc/<pid>/comm)
};

// The data an event is about: one timer, as the table holds it.
struct TimerEvent {
  pid_t pid = 0;
  std::string scope;
  std::uint64_t deadline_ns = 0;  // CLOCK_MONOTONIC
  int signal = 0;
  std::uint64_t slot = 0;
  layout::Origin origin = layout::Origin::kTable;
  std::uint64_t identity = 0;  // the owner's identity as the slot records it; 0: unknown
  // When it happened, on the server's monotonic clock: the round's time for "timer
  // expired", the moment the signal was sent for "kill worker process"; 0 for the others.
  std::uint64_t at_ns = 0;
  ProcessLabels labels;            // for "timer expired" and "kill worker process"; empty for the others
  std::string incident;            // the incident report's directory, for those two ("" when none)
  double expiration_time() const;  // the deadline as wall-clock epoch seconds, as the reference reports it
};

// The reference's event names: "watchdog started", "watchdog stopped", "set timer",
// "clear timer", "timer expired", "kill worker process". `event` is null for the first two.
using EventCallback = std::function<void(std::string_view name, const TimerEvent* event)>;

}  // namespace shmtimer
