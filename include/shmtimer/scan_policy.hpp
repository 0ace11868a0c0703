// How the watchdog thread waits between rounds: spin while something is imminent, sleep
// otherwise. A pure function of the round's outcome, so tests check it without sleeping.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
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
  // The most the server wakes ahead of a known deadline on top of `spin`. It measures
  // how late its own timed sleeps end (WakeLateness: a VM's host waking the idle vCPU, a
  // loaded machine; up to a millisecond or more) and wakes that much earlier, spinning the
  // rest of the way. Only sleeps that end at a deadline pay for it. 0: `spin` alone.
  std::chrono::nanoseconds max_wake_lead{std::chrono::milliseconds(5)};

  static ScanPolicy pure_spin() { return {std::chrono::nanoseconds::max(), std::chrono::milliseconds(100)}; }
};

// How late the server's recent timed sleeps ended: the largest lateness among the last
// 128, so one slow wake-up raises the lead at once, and it falls back after 128 sleeps
// (about 13 s of idle rounds): on a VM the slow ones are rare, but they recur.
class WakeLateness {
 public:
  // Once per timed sleep; the maximum is kept, as every round of a spin asks for it.
  void observe(std::uint64_t late_ns) noexcept {
    recent_[next_++ % recent_.size()] = late_ns;
    max_ns_ = *std::max_element(recent_.begin(), recent_.end());
  }
  std::uint64_t recent_max_ns() const noexcept { return max_ns_; }

 private:
  std::array<std::uint64_t, 128> recent_{};
  std::size_t next_ = 0;
  std::uint64_t max_ns_ = 0;
};

struct IdleDecision {
  bool spin;                   // rescan at once
  std::uint64_t sleep_ns = 0;  // otherwise sleep this long (then rescan)
};

// `next_deadline_ns` is the nearest armed deadline seen (0: none); `spin_until_ns` is the
// end of the post-burst spin window (0: none); `wake_late_ns`, how late timed sleeps end
// here lately (WakeLateness), is added to the lead before a deadline, up to
// policy.max_wake_lead. `retry_at_ns` (0: none) is when a retry is due: slept until, never
// spun before, as a retry is no deadline.
IdleDecision decide_idle(const ScanPolicy& policy, std::uint64_t now_ns, std::uint64_t next_deadline_ns,
                         std::uint64_t spin_until_ns, std::uint64_t wake_late_ns = 0,
                         std::uint64_t retry_at_ns = 0) noexcept;

}  // namespace shmtimer
