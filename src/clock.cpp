#include "shmtimer/clock.hpp"

#include <cmath>

namespace shmtimer {

namespace {
// Seconds to add to a monotonic reading to get the wall clock, sampled now.
double wall_minus_monotonic_seconds() noexcept {
  const auto wall = std::chrono::system_clock::now().time_since_epoch();
  const auto mono = SteadyClock::now().time_since_epoch();
  return std::chrono::duration<double>(wall).count() - std::chrono::duration<double>(mono).count();
}
}  // namespace

Deadline deadline_from_epoch_seconds(double epoch_seconds) noexcept {
  double mono_seconds = epoch_seconds - wall_minus_monotonic_seconds();
  if (!(mono_seconds > 0)) mono_seconds = 0;  // also catches NaN
  constexpr double kMaxSeconds = 9.0e9;        // ~285 years: keeps the ns count in range
  if (mono_seconds > kMaxSeconds) mono_seconds = kMaxSeconds;
  return Deadline(std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(mono_seconds)));
}

double epoch_seconds_from_deadline(Deadline deadline) noexcept {
  return std::chrono::duration<double>(deadline.time_since_epoch()).count() + wall_minus_monotonic_seconds();
}

}  // namespace shmtimer
