// The escalation ladder's soft step: the soft signal, then a grace period in which the
// expired process may end on its own; signal_process sends SIGKILL once it is over. The
// soft signal goes through the same checks as any kill (the process's identity, uid
// and mapping): it is a kill that may be survived, never a signal to anyone else.
#include <spdlog/spdlog.h>

#include <csignal>

#include "reaper.hpp"
#include "shmtimer/printable.hpp"

namespace shmtimer {

using detail::SlotSnapshot;

bool Reaper::held_for_grace(const ProcessKey& process, const std::vector<SlotSnapshot>& timers, std::uint64_t now_ns) {
  if (const auto graced = graced_.find(process); graced != graced_.end()) return now_ns < graced->second;
  if (options_.incidents.observe_only) return false;
  const SlotSnapshot* first_killing = signalling_timer(timers);
  if (first_killing == nullptr) return false;  // signal_process: not signalled
  const int soft =
      options_.ladder.soft_signal == KillLadder::kTimersOwnSignal ? first_killing->signal : options_.ladder.soft_signal;
  if (soft == SIGKILL || refuse_target(process.first, soft)) return false;  // nothing softer; or refused there too
  int error = 0;
  const SignalOutcome outcome =
      processes_.send(request_for(process, soft, static_cast<std::uint32_t>(first_killing->origin)), error);
  if (outcome != SignalOutcome::kSent) return false;  // signal_process meets the same answer, report_reap acts on it
  const auto grace_ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(options_.ladder.grace).count());
  graced_[process] = now_ns + grace_ns;
  spdlog::warn(
      "sent signal {} to pid {}: timer '{}' expired ({:.3f} ms after its deadline); SIGKILL in {} ms unless it ends",
      soft, process.first, printable(first_killing->scope),
      static_cast<double>(now_ns - first_killing->deadline_ns) / 1e6, options_.ladder.grace.count());
  return true;
}

}  // namespace shmtimer
