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

// Calls `callback`, when set, with the event `make_event()` builds. A std::exception from
// either is logged, never propagated: the action the event reports has been taken, and a
// log that fails must neither undo it nor leave it half done. The event is built only when
// someone listens.
template <typename MakeEvent>
void emit_event(const EventCallback& callback, std::string_view name, MakeEvent&& make_event) {
  if (!callback) return;
  try {
    const TimerEvent event = make_event();
    callback(name, &event);
  } catch (const std::exception& e) {
    log_event_callback_failure(name, e);
  }
}

}  // namespace shmtimer
