// Time in shmtimer: deadlines are CLOCK_MONOTONIC (std::chrono::steady_clock on Linux);
// the PyTorch protocol speaks wall-clock epoch seconds, converted only at that boundary.
#pragma once

#include <chrono>
#include <cstdint>

namespace shmtimer {

using SteadyClock = std::chrono::steady_clock;
using Deadline = SteadyClock::time_point;
static_assert(SteadyClock::is_steady);

// Monotonic nanoseconds as stored in a slot; 0 is reserved for "disarmed", so a deadline
// at or before the clock's epoch is stored as 1 (already expired).
inline std::uint64_t to_table_ns(Deadline deadline) noexcept {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  return ns > 0 ? static_cast<std::uint64_t>(ns) : 1;
}
inline Deadline from_table_ns(std::uint64_t ns) noexcept {
  return Deadline(std::chrono::duration_cast<SteadyClock::duration>(std::chrono::nanoseconds(ns)));
}
inline std::uint64_t monotonic_now_ns() noexcept { return to_table_ns(SteadyClock::now()); }

// Wall-clock epoch seconds (the reference's expiration_time) to a monotonic deadline and
// back, through the current offset between the two clocks.
Deadline deadline_from_epoch_seconds(double epoch_seconds) noexcept;
double epoch_seconds_from_deadline(Deadline deadline) noexcept;

}  // namespace shmtimer
