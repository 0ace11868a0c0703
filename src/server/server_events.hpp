// Events about timers, as the server and the FIFO shim report them through their
// callbacks (include/shmtimer/timer_event.hpp).
#pragma once

#include <exception>
#include <string_view>

#include "shmtimer/timer_event.hpp"
#include "slot_ops.hpp"

namespace shmtimer {

// The slot as the public event type (at_ns: when it happened, or 0).
TimerEvent event_of(const detail::SlotSnapshot& s, std::uint64_t at_ns = 0);

void log_event_callback_failure(std::string_view name, const std::exception& e) noexcept;

// Runs `report`, which calls an event callback. A std::exception from it is logged, never
// propagated: the action the event reports has been taken, and a log that fails must
// neither undo it nor leave it half done, nor stop the watchdog thread.
template <typename Report>
void report_event(std::string_view name, Report&& report) {
  try {
    report();
  } catch (const std::exception& e) {
    log_event_callback_failure(name, e);
  }
}

// Calls `callback`, when set, with the event `make_event()` builds (only when someone
// listens); a failure in either is report_event's.
template <typename MakeEvent>
void emit_event(const EventCallback& callback, std::string_view name, MakeEvent&& make_event) {
  if (callback)
    report_event(name, [&] {
      const TimerEvent event = make_event();
      callback(name, &event);
    });
}

// An event about the server itself ("watchdog started"), with no timer.
inline void emit_event(const EventCallback& callback, std::string_view name) {
  if (callback) report_event(name, [&] { callback(name, nullptr); });
}

}  // namespace shmtimer
