#include "shmtimer/scan_policy.hpp"

#include <algorithm>

namespace shmtimer {

IdleDecision decide_idle(const ScanPolicy& policy, std::uint64_t now_ns, std::uint64_t next_deadline_ns,
                         std::uint64_t spin_until_ns) noexcept {
  const auto spin_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, policy.spin.count()));
  const auto max_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(1, policy.max_interval.count()));
  if (spin_ns == static_cast<std::uint64_t>(std::chrono::nanoseconds::max().count())) return {true};
  if (now_ns < spin_until_ns) return {true};
  std::uint64_t wake = now_ns + max_ns;
  if (next_deadline_ns != 0 && next_deadline_ns < wake) wake = next_deadline_ns;
  // Within the spin lead of the wake-up time: spin the rest of the way.
  if (wake <= now_ns + spin_ns) return {true};
  const bool wake_is_deadline = wake != now_ns + max_ns;
  return {false, wake - now_ns - (wake_is_deadline ? spin_ns : 0)};
}

}  // namespace shmtimer
