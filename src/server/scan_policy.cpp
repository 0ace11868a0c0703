#include "shmtimer/scan_policy.hpp"

#include <algorithm>

namespace shmtimer {

IdleDecision decide_idle(const ScanPolicy& policy, std::uint64_t now_ns, std::uint64_t next_deadline_ns,
                         std::uint64_t spin_until_ns, std::uint64_t wake_late_ns, std::uint64_t retry_at_ns) noexcept {
  const auto spin_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, policy.spin.count()));
  const auto max_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(1, policy.max_interval.count()));
  const auto max_lead_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, policy.max_wake_lead.count()));
  if (spin_ns == static_cast<std::uint64_t>(std::chrono::nanoseconds::max().count())) return {true};
  if (now_ns < spin_until_ns) return {true};
  std::uint64_t wake = now_ns + max_ns;
  if (next_deadline_ns != 0 && next_deadline_ns < wake) wake = next_deadline_ns;
  const bool wake_is_deadline = wake != now_ns + max_ns;
  // Before a deadline: wake early by the spin and by how late sleeps have been ending,
  // then spin the rest of the way. A sleep at the maximum interval ends when it ends.
  const std::uint64_t lead = wake_is_deadline ? spin_ns + std::min(wake_late_ns, max_lead_ns) : spin_ns;
  if (wake <= now_ns + lead) return {true};
  const std::uint64_t sleep_ns = wake - now_ns - (wake_is_deadline ? lead : 0);
  if (retry_at_ns != 0 && retry_at_ns < now_ns + sleep_ns)
    return {false, retry_at_ns > now_ns ? retry_at_ns - now_ns : 0};
  return {false, sleep_ns};
}

}  // namespace shmtimer
