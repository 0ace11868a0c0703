// How the watchdog thread waits between rounds: spin while something is imminent, sleep
// otherwise. A pure function of the round's outcome, so tests check it without sleeping.
#pragma once

#include <chrono>
#include <cstdint>

namespace shmtimer {

struct ScanPolicy {
  // How long to keep rescanning without sleeping: after a round that found expired
  // timers (a burst often brings more), and as the lead before a known deadline (sleep
  // until deadline - spin, then spin, which beats the kernel's wake-up jitter).
  std::chrono::nanoseconds spin{std::chrono::microseconds(50)};
  // The longest sleep. A timer armed while the server sleeps is first seen when it wakes:
  // a timeout longer than this is seen before it falls due and reaped within the spin
  // precision; a shorter one may be reaped up to (max_interval - timeout) late. 100 ms
  // is torchrun's own max_interval, and keeps an idle server near 10 wake-ups a second.
  std::chrono::nanoseconds max_interval{std::chrono::milliseconds(100)};

  static ScanPolicy pure_spin() { return {std::chrono::nanoseconds::max(), std::chrono::milliseconds(100)}; }
};

struct IdleDecision {
  bool spin;                   // rescan at once
  std::uint64_t sleep_ns = 0;  // otherwise sleep this long (then rescan)
};

// `next_deadline_ns` is the nearest armed deadline seen (0: none); `spin_until_ns` is the
// end of the post-burst spin window (0: none).
IdleDecision decide_idle(const ScanPolicy& policy, std::uint64_t now_ns, std::uint64_t next_deadline_ns,
                         std::uint64_t spin_until_ns) noexcept;

}  // namespace shmtimer
