#include "shmtimer/clock.hpp"

#include <time.h>

#include <cmath>

namespace shmtimer {

namespace {

// Seconds to add to a monotonic reading to get the wall clock, sampled now.
double sample_wall_minus_monotonic() noexcept {
  const auto wall = std::chrono::system_clock::now().time_since_epoch();
  const auto mono = SteadyClock::now().time_since_epoch();
  return std::chrono::duration<double>(wall).count() - std::chrono::duration<double>(mono).count();
}

// The same, sampled at most every 10 ms per thread: the two clock reads cost more than
// the rest of an acquire (a FIFO request or a Python acquire converts on every call). A
// step of the wall clock is seen within 10 ms; CLOCK_MONOTONIC_COARSE, which tells when
// to sample again, is a plain vDSO read without the TSC.
double wall_minus_monotonic_seconds() noexcept {
  constexpr std::int64_t kResampleNs = 10'000'000;
  struct Cached {
    std::int64_t sampled_coarse_ns;  // 0: never
    double offset_s;
  };
  __attribute__((tls_model("initial-exec"))) static thread_local Cached cached;  // 16 bytes, zeroed
  timespec coarse{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &coarse);
  const std::int64_t now_ns = std::int64_t{coarse.tv_sec} * 1'000'000'000 + coarse.tv_nsec;
  if (cached.sampled_coarse_ns == 0 || now_ns - cached.sampled_coarse_ns >= kResampleNs) {
    cached = {now_ns, sample_wall_minus_monotonic()};
  }
  return cached.offset_s;
}

}  // namespace

Deadline deadline_from_epoch_seconds(double epoch_seconds) noexcept {
  double mono_seconds = epoch_seconds - wall_minus_monotonic_seconds();
  if (!(mono_seconds > 0)) mono_seconds = 0;  // also catches NaN
  constexpr double kMaxSeconds = 9.0e9;       // ~285 years: keeps the ns count in range
  if (mono_seconds > kMaxSeconds) mono_seconds = kMaxSeconds;
  return Deadline(std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(mono_seconds)));
}

double epoch_seconds_from_deadline(Deadline deadline) noexcept {
  return std::chrono::duration<double>(deadline.time_since_epoch()).count() + wall_minus_monotonic_seconds();
}

}  // namespace shmtimer
