// The reaper's side of incident reports (src/incident): an expiry starts an incident
// whose kills wait until its captures end or its bound passes; the rounds in between
// poll the captures and never wait for them.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <set>

#include "reaper.hpp"
#include "shmtimer/printable.hpp"

namespace shmtimer {

using detail::SlotSnapshot;

std::vector<Reaper::ProcessKey> Reaper::table_owners() const {
  std::set<ProcessKey> owners;
  detail::for_each_occupied(table_, [&](std::uint64_t index) {
    const auto& slot = table_.slot(index);
    const std::uint64_t control = slot.control.load(std::memory_order_acquire);
    if (detail::state_of(control) != layout::SlotState::kReady) return;
    // Relaxed: a peer is only captured and labelled, never signalled, on this word's say.
    owners.insert({layout::Control::unpack(control).pid, slot.identity.load(std::memory_order_relaxed)});
  });
  // Slots of processes that are gone wait for the sweep: nothing to capture there. A pid
  // reused meanwhile is captured and shown as a peer, never signalled on this say.
  std::erase_if(owners,
                [](const ProcessKey& p) { return p.first <= 0 || (::kill(p.first, 0) != 0 && errno == ESRCH); });
  return {owners.begin(), owners.end()};
}

detail::Labels Reaper::report_labels(const ProcessKey& process) const {
  detail::Labels labels;
  const auto known = labels_.find(process.first, process.second);
  if (!known) return labels;
  if (known->run_id) labels.emplace_back("run_id", *known->run_id);
  if (known->rank) labels.emplace_back("rank", *known->rank);
  if (known->local_rank) labels.emplace_back("local_rank", *known->local_rank);
  if (known->command) labels.emplace_back("command", *known->command);
  return labels;
}

void Reaper::advance_incidents(std::uint64_t now_ns) {
  incidents_->advance(now_ns, [&](const ProcessKey& process) { return report_labels(process); });
}

bool Reaper::held_for_incident(const ProcessKey& process, const std::vector<SlotSnapshot>& timers,
                               std::uint64_t now_ns) {
  using Phase = detail::IncidentRecorder::Phase;
  const Phase phase = incidents_->phase_of(process);
  if (phase != Phase::kNone) return phase == Phase::kCapturing;
  const auto earliest =
      std::min_element(timers.begin(), timers.end(),
                       [](const SlotSnapshot& a, const SlotSnapshot& b) { return a.deadline_ns < b.deadline_ns; });
  const detail::ExpiredTimer timer{printable(earliest->scope), event_of(*earliest).expiration_time(),
                                   static_cast<double>(now_ns - earliest->deadline_ns) / 1e6, earliest->signal,
                                   earliest->index};
  std::vector<ProcessKey> peers = table_owners();
  // Their labels are read on the label reader's thread while the captures run.
  labels_.request(process.first, process.second);
  for (const auto& peer : peers) labels_.request(peer.first, peer.second);
  if (!incidents_->begin(process, timer, peers, now_ns)) return false;
  advance_incidents(now_ns);  // an incident without capture ends at once
  return incidents_->phase_of(process) == Phase::kCapturing;
}

}  // namespace shmtimer
