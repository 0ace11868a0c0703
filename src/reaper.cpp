#include "reaper.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>

#include "shmtimer/clock.hpp"

namespace shmtimer {

using detail::SlotSnapshot;
using layout::SlotState;

namespace {

TimerEvent to_event(const SlotSnapshot& s) {
  return {s.pid, s.scope, s.deadline_ns, s.signal, s.index, s.origin};
}

void log_expired_debug(pid_t pid, const std::vector<SlotSnapshot>& timers, std::uint64_t now_ns) {
  if (!spdlog::should_log(spdlog::level::debug)) return;
  nlohmann::json info = nlohmann::json::array();
  for (const auto& t : timers)
    info.push_back({{"scope_id", t.scope},
                    {"expiration_time", to_event(t).expiration_time()},
                    {"overdue_ms", static_cast<double>(now_ns - t.deadline_ns) / 1e6},
                    {"signal", t.signal},
                    {"slot", t.index}});
  spdlog::debug("expired timers of pid {}: {}", pid, info.dump());
}

}  // namespace

Reaper::Reaper(const Table& table, const ServerOptions& options, ProcessControl& processes)
    : table_(table), options_(options), processes_(processes), self_pid_(::getpid()), self_uid_(::getuid()) {}

void Reaper::emit(std::string_view name, const SlotSnapshot& timer) const {
  if (!options_.log_event) return;
  const TimerEvent event = to_event(timer);
  options_.log_event(name, &event);
}

void Reaper::rebuild_occupancy() {
  for (std::uint64_t i = 0; i < table_.capacity(); ++i)
    if (detail::state_of(table_.slot(i).control.load(std::memory_order_acquire)) != SlotState::kFree)
      detail::set_occupancy(table_, i);
}

void Reaper::scan(std::uint64_t now_ns, std::map<ProcessKey, std::vector<SlotSnapshot>>& expired,
                  RoundResult& result) {
  SlotSnapshot snap;
  detail::for_each_occupied(table_, [&](std::uint64_t index) {
    // The fast path reads two words of the slot's first line: most occupied slots are
    // disarmed or not yet due, and need nothing more.
    const auto& slot = table_.slot(index);
    const std::uint64_t control = slot.control.load(std::memory_order_acquire);
    const SlotState state = detail::state_of(control);
    if (state == SlotState::kFree) {
      detail::clear_occupancy_if_free(table_, index);
      return;
    }
    if (state != SlotState::kReady) return;  // Claiming: the sweep handles dead claimants
    const std::uint64_t deadline = slot.deadline_ns.load(std::memory_order_acquire);
    if (deadline == layout::kDisarmed) return;
    if (deadline > now_ns) {
      if (result.next_deadline_ns == 0 || deadline < result.next_deadline_ns) result.next_deadline_ns = deadline;
      return;
    }
    // Due: take a consistent snapshot and check it before trusting any of it.
    if (detail::read_slot(table_, index, snap) != detail::ReadResult::kReady) return;  // changed: next round
    if (snap.corrupt || snap.pid <= 0) {
      spdlog::warn("slot {} holds garbage (pid {}, origin or scope length out of range); freeing it", index, snap.pid);
      detail::free_slot(table_, index, snap.control);
      return;
    }
    if (snap.deadline_ns == layout::kDisarmed || snap.deadline_ns > now_ns) return;
    if (!snap.deadline_verified()) {
      // Either the owner is re-arming this instant (then it is not hung, and the next
      // round sees a consistent pair) or something else wrote the slot: never a kill.
      spdlog::debug("slot {}: deadline of pid {} fails its check; not acting on it this round", index, snap.pid);
      return;
    }
    expired[{snap.pid, snap.start_time}].push_back(snap);
  });
}

bool Reaper::refuse_target(pid_t pid, int signal) const {
  if (pid <= 1) {
    spdlog::error("refusing to signal pid {}: not a worker process", pid);
    return true;
  }
  if (pid == self_pid_ && !options_.signal_self_after_reap) {
    spdlog::error("refusing to signal pid {}: it is the server itself", pid);
    return true;
  }
  if (signal > SIGRTMAX) {
    spdlog::error("refusing to send signal {} to pid {}: not in 1..{}", signal, pid, SIGRTMAX);
    return true;
  }
  return false;
}

std::optional<Reaper::Cleanup> Reaper::reap_process(const ProcessKey& process, std::vector<SlotSnapshot>& timers,
                                                    RoundResult& result) {
  const pid_t pid = process.first;
  std::stable_sort(timers.begin(), timers.end(),
                   [](const SlotSnapshot& a, const SlotSnapshot& b) { return a.deadline_ns < b.deadline_ns; });
  for (const auto& t : timers) emit("timer expired", t);
  result.expired += timers.size();
  const auto first_killing =
      std::find_if(timers.begin(), timers.end(), [](const SlotSnapshot& t) { return t.signal > 0; });
  if (first_killing == timers.end()) {
    spdlog::info("pid {} has {} expired timer(s), none with a signal > 0; not signalling it", pid, timers.size());
    return Cleanup::kDisarm;
  }
  const int signal = first_killing->signal;
  if (refuse_target(pid, signal)) return Cleanup::kDisarm;

  int error = 0;
  const std::optional<uid_t> required_uid = options_.any_uid ? std::nullopt : std::optional<uid_t>(self_uid_);
  switch (processes_.send(pid, process.second, signal, required_uid, error)) {
    case SignalOutcome::kSent:
      spdlog::info("signalled pid {} with signal {}: timer '{}' expired", pid, signal, first_killing->scope);
      emit("kill worker process", *first_killing);
      ++result.signalled;
      table_.header().reaps.fetch_add(1, std::memory_order_relaxed);  // statistics
      self_signal_ = signal;
      return Cleanup::kDisarm;
    case SignalOutcome::kNoProcess:
      spdlog::info("pid {} no longer exists; its expired timer '{}' counts as reaped", pid, first_killing->scope);
      return Cleanup::kFree;
    case SignalOutcome::kIdentityMismatch:
      spdlog::warn("pid {} was reused by another process since timer '{}' was set; not signalling it", pid,
                   first_killing->scope);
      return Cleanup::kFree;
    case SignalOutcome::kNotPermitted:
      spdlog::error("refusing to signal pid {}: it belongs to another user (this server signals uid {} only)", pid,
                    self_uid_);
      return Cleanup::kDisarm;
    case SignalOutcome::kFailed:
      spdlog::error("signalling pid {} with {} failed: {}; retrying next round", pid, signal, std::strerror(error));
      return std::nullopt;
  }
  return std::nullopt;
}

std::uint64_t Reaper::cleanup(const std::map<ProcessKey, Cleanup>& processes) {
  std::uint64_t cleared = 0;
  SlotSnapshot snap;
  detail::for_each_occupied(table_, [&](std::uint64_t index) {
    if (detail::read_slot(table_, index, snap) != detail::ReadResult::kReady) return;
    const auto it = processes.find({snap.pid, snap.start_time});
    if (it == processes.end()) return;
    if (it->second == Cleanup::kFree) {
      if (detail::free_slot(table_, index, snap.control) && snap.deadline_ns != layout::kDisarmed) {
        emit("clear timer", snap);
        ++cleared;
      }
      return;
    }
    if (snap.deadline_ns == layout::kDisarmed) return;
    // CAS from the deadline we saw: if the owner re-armed meanwhile, its new timer stands.
    // acq_rel: ordered after our reads of the slot, and visible to the owner's next load.
    std::uint64_t seen = snap.deadline_ns;
    if (table_.slot(index).deadline_ns.compare_exchange_strong(seen, layout::kDisarmed, std::memory_order_acq_rel,
                                                               std::memory_order_relaxed)) {
      emit("clear timer", snap);
      ++cleared;
    }
  });
  return cleared;
}

std::uint64_t Reaper::sweep_gone_owners() {
  std::map<pid_t, std::optional<ProcessInfo>> seen;
  std::uint64_t freed = 0;
  detail::for_each_occupied(table_, [&](std::uint64_t index) {
    const auto& slot = table_.slot(index);
    const std::uint64_t control = slot.control.load(std::memory_order_acquire);
    const auto c = layout::Control::unpack(control);
    if (c.state == SlotState::kFree) return;
    auto [it, inserted] = seen.try_emplace(c.pid);
    if (inserted) it->second = processes_.inspect(c.pid);
    const auto& info = it->second;
    // A Claiming slot's start_time may not be written yet, so only its pid is checked.
    const bool reused = c.state == SlotState::kReady && info &&
                        info->start_time != slot.start_time.load(std::memory_order_relaxed);
    if (!info || info->zombie || reused) freed += detail::free_slot(table_, index, control) ? 1 : 0;
  });
  if (freed > 0) spdlog::info("freed {} slot(s) of processes that no longer exist", freed);
  return freed;
}

RoundResult Reaper::round(std::uint64_t now_ns) {
  RoundResult result;
  std::map<ProcessKey, std::vector<SlotSnapshot>> expired;
  scan(now_ns, expired, result);
  std::map<ProcessKey, Cleanup> cleanups;
  for (auto& [process, timers] : expired) {
    log_expired_debug(process.first, timers, now_ns);
    if (auto how = reap_process(process, timers, result)) cleanups.emplace(process, *how);
  }
  if (!cleanups.empty()) result.cleared += cleanup(cleanups);
  if (now_ns >= next_sweep_ns_) {
    result.cleared += sweep_gone_owners();
    next_sweep_ns_ = now_ns + static_cast<std::uint64_t>(options_.dead_owner_sweep_interval.count());
  }
  return result;
}

}  // namespace shmtimer
