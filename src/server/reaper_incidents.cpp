// The reaper's side of incident reports (src/incident): an expiry starts an incident
// whose kills wait until its captures end or its bound passes; the rounds in between
// poll the captures and never wait for them.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <set>
#include <string>

#include <sys/stat.h>

#include "reaper.hpp"
#include "shmtimer/printable.hpp"

namespace shmtimer {

using detail::SlotSnapshot;

// A report holds what a process's memory says: a server captures only the processes it
// could signal (its own uid's, unless any_uid), as a slot's pid is anyone's to write.
bool Reaper::may_capture(pid_t pid) const {
  if (options_.any_uid) return true;
  struct stat st{};
  const std::string proc = "/proc/" + std::to_string(pid);
  return ::stat(proc.c_str(), &st) == 0 && st.st_uid == self_uid_;
}

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
  std::erase_if(owners, [&](const ProcessKey& p) {
    return p.first <= 0 || (::kill(p.first, 0) != 0 && errno == ESRCH) || !may_capture(p.first);
  });
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
  if (!may_capture(process.first)) return false;  // signal_process refuses or kills it as before
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
