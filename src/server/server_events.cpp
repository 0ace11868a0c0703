#include "server_events.hpp"

#include <spdlog/spdlog.h>

#include "shmtimer/clock.hpp"
#include "shmtimer/printable.hpp"

namespace shmtimer {

double TimerEvent::expiration_time() const { return epoch_seconds_from_deadline(from_table_ns(deadline_ns)); }

TimerEvent event_of(const detail::SlotSnapshot& s, std::uint64_t at_ns) {
  return {s.pid, s.scope, s.deadline_ns, s.signal, s.index, s.origin, s.identity, at_ns, {}, {}};
}

void log_event_callback_failure(std::string_view name, const std::exception& e) noexcept {
  try {
    spdlog::error("event callback failed for '{}': {}", name, printable(e.what()));
  } catch (...) {  // a log that cannot be written is not worth a crash of the loop
  }
}

}  // namespace shmtimer
