#include "reaper.hpp"
#include "process_liveness.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>

#include "shmtimer/clock.hpp"
#include "shmtimer/printable.hpp"
#include "shmtimer/process_access_check.hpp"

namespace shmtimer {

using detail::SlotSnapshot;
using layout::SlotState;

namespace {

// Failed kills are retried after 10 ms, then 20, 40, ... up to 10 s.
constexpr std::uint64_t kFirstRetryNs = 10'000'000;
constexpr std::uint64_t kMaxRetryNs = 10'000'000'000;
// Slots re-checked for a lost occupancy bit per sweep (see walk_for_lost_bits).
constexpr std::uint64_t kWalkSlotsPerSweep = 8192;
// The most time a round spends preparing (see prepare_approaching): a burst's thousand
// processes take tens of milliseconds to prepare, done in slices with a scan between
// them, so that a timer armed meanwhile waits at most about this long to be seen.
constexpr std::uint64_t kPrepareSliceNs = 2'000'000;

void log_expired_debug(pid_t pid, const std::vector<SlotSnapshot>& timers, std::uint64_t now_ns) {
  if (!spdlog::should_log(spdlog::level::debug)) return;
  nlohmann::json info = nlohmann::json::array();
  for (const auto& t : timers)
    info.push_back({{"scope_id", printable(t.scope)},
                    {"expiration_time", event_of(t).expiration_time()},
                    {"overdue_ms", static_cast<double>(now_ns - t.deadline_ns) / 1e6},
                    {"signal", t.signal},
                    {"slot", t.index}});
  spdlog::debug("expired timers of pid {}: {}", pid,
                info.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

// " (rank 3, python3)": who a signalled process was, as far as its labels say.
std::string who(const ProcessLabels& labels) {
  std::string text;
  if (labels.rank) text += "rank " + *labels.rank;
  if (labels.command) text += (text.empty() ? "" : ", ") + *labels.command;
  return text.empty() ? text : " (" + text + ")";
}

bool is_power_of_two(std::uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

}  // namespace

const SlotSnapshot* signalling_timer(const std::vector<SlotSnapshot>& timers) {
  const SlotSnapshot* first = nullptr;
  for (const auto& t : timers)
    if (t.signal > 0 && (first == nullptr || t.deadline_ns < first->deadline_ns)) first = &t;
  return first;
}

Reaper::Reaper(Table& table, const ServerOptions& options, ProcessControl& processes, ServerStats& stats)
    : table_(table),
      options_(options),
      processes_(processes),
      stats_(stats),
      self_pid_(::getpid()),
      self_uid_(::getuid()),
      // Two of the longest sleeps: rounds come at most one apart, so a timer armed before
      // the horizon is prepared at least one longest sleep ahead of its deadline, and one
      // armed within it, in the round that first sees it.
      prepare_horizon_ns_(2 *
                          static_cast<std::uint64_t>(std::max<std::int64_t>(0, options.policy.max_interval.count()))) {
  struct stat st{};
  if (::fstat(table.fd(), &st) == 0) {
    table_file_ = {st.st_dev, st.st_ino};
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) == 0) sole_table_writer_ = st.st_uid;
  }
  if (options.incidents.enabled()) {
    const auto directory =
        options.incidents.directory.empty() ? private_directory() / "incidents" : options.incidents.directory;
    detail::open_incident_root(directory);  // a directory that cannot be used fails the start, not an incident
    IncidentOptions incidents = options.incidents;
    if (incidents.stacks_directory.empty()) incidents.stacks_directory = private_directory() / "stacks";
    incidents_ = std::make_unique<detail::IncidentRecorder>(incidents, directory);
  }
}

void Reaper::emit(std::string_view name, const SlotSnapshot& timer, std::uint64_t at_ns, const ProcessLabels* labels,
                  const std::string& incident) const {
  // A callback that throws must not leave a reap half done (a kill sent, its timer still
  // armed, so signalled again next round): emit_event catches.
  emit_event(options_.log_event, name, [&] {
    TimerEvent event = event_of(timer, at_ns);
    if (labels != nullptr) event.labels = *labels;
    event.incident = incident;
    return event;
  });
}

void Reaper::rebuild_occupancy() {
  for (std::uint64_t i = 0; i < table_.capacity(); ++i)
    if (detail::state_of(table_.slot(i).control.load(std::memory_order_acquire)) != SlotState::kFree)
      detail::set_occupancy(table_, i);
}

// Modelled in src/table/model/slot_protocol.pml (Server: scan, consider_due, the sweep's judgement).
void Reaper::scan(std::uint64_t now_ns, std::map<ProcessKey, std::vector<SlotSnapshot>>& expired, RoundResult& result,
                  bool sweeping) {
  seen_.clear();
  approaching_.clear();
  detail::for_each_occupied(table_, [&](std::uint64_t index) {
    // The fast path reads the slot's first line only: most occupied slots are disarmed or
    // not yet due, and need nothing more.
    const auto& slot = table_.slot(index);
    const std::uint64_t control = slot.control.load(std::memory_order_acquire);
    const SlotState state = detail::state_of(control);
    if (state == SlotState::kFree) {
      detail::clear_occupancy_if_free(table_, index);
      return;
    }
    // In the same pass, while the slot's line is in cache: an idle server's round is
    // mostly cache misses, and a separate sweep over 10,000 slots cost as much again.
    if (sweeping) note_if_owner_gone(slot, index, control);
    if (state != SlotState::kReady) return;  // Claiming: the sweep handles dead claimants
    // seq_cst, not just acquire: the early wake-up's Dekker pair with the client's arm
    // (src/table/server_wakeup.hpp). A plain load on x86-64 all the same.
    const std::uint64_t armed = slot.armed.load(std::memory_order_seq_cst);
    if (armed == layout::kDisarmed) return;
    // Relaxed: identity only groups the timer with its process here; cleanup acts on
    // the exact armed word, whose check names the owner.
    seen_.push_back(
        {index, {layout::Control::unpack(control).pid, slot.identity.load(std::memory_order_relaxed)}, armed});
    const std::uint64_t deadline = layout::ArmWord::deadline_ns(armed);
    if (deadline > now_ns) {
      if (result.next_deadline_ns == 0 || deadline < result.next_deadline_ns) result.next_deadline_ns = deadline;
      // Relaxed origin: it only shapes a hint; the kill takes the origin from its snapshot.
      if (deadline - now_ns <= prepare_horizon_ns_ && prepared_.count(seen_.back().process) == 0)
        approaching_.push_back({deadline, seen_.back().process, slot.origin.load(std::memory_order_relaxed)});
      return;
    }
    consider_due(index, now_ns, expired);
  });
}

// A due timer: take a consistent snapshot and check it before trusting any of it.
void Reaper::consider_due(std::uint64_t index, std::uint64_t now_ns,
                          std::map<ProcessKey, std::vector<SlotSnapshot>>& expired) {
  SlotSnapshot snap;
  if (detail::read_slot(table_, index, snap) != detail::ReadResult::kReady) return;  // changed: next round
  if (snap.corrupt || snap.pid <= 0) {
    spdlog::warn("slot {} holds garbage (pid {}, origin or scope length out of range); freeing it", index, snap.pid);
    detail::free_slot(table_, index, snap.control);
    return;
  }
  if (snap.armed == layout::kDisarmed || snap.deadline_ns > now_ns) return;
  if (!snap.deadline_verified()) {
    // Written under another identity than the slot's owner (a stale handle, stray
    // bytes): never a kill, and left for the owner's next arm to replace.
    spdlog::debug("slot {}: the timer of pid {} was not armed by its owner; not acting on it", index, snap.pid);
    return;
  }
  expired[{snap.pid, snap.identity}].push_back(std::move(snap));
}

SignalRequest Reaper::request_for(const ProcessKey& process, int signal, std::uint32_t origin) const {
  SignalRequest request{process.first, process.second, signal, std::nullopt, std::nullopt, std::nullopt};
  if (!options_.any_uid) request.required_uid = self_uid_;
  // A table client maps the table; the FIFO shim arms on behalf of processes that never do.
  if (origin == static_cast<std::uint32_t>(layout::Origin::kTable)) {
    request.required_mapping = table_file_;
    request.sole_table_writer = sole_table_writer_;
  }
  return request;
}

// Preparing a process reads /proc for it cold (about 150 us here, at times milliseconds),
// which would otherwise come between its deadline and its signal. So every process whose
// timer is seen due soon is prepared (as many as the ProcessControl's descriptor budget
// holds), nearest deadline first, never while a deadline is already due (the next round
// reaps it first), and for at most kPrepareSliceNs a round. Returns whether some are left
// for the next round.
bool Reaper::prepare_approaching(std::uint64_t next_deadline_ns) {
  // All of them: a read is only queued here, never waited for.
  for (const Approaching& a : approaching_) labels_.request(a.process.first, a.process.second);
  std::sort(approaching_.begin(), approaching_.end(),
            [](const Approaching& a, const Approaching& b) { return a.deadline_ns < b.deadline_ns; });
  const std::uint64_t stop_ns = std::min(next_deadline_ns, options_.clock->now_ns() + kPrepareSliceNs);
  for (const Approaching& a : approaching_) {
    if (options_.clock->now_ns() >= stop_ns) return true;
    if (prepared_.insert(a.process).second) processes_.prepare(request_for(a.process, 0, a.origin));
  }
  return false;
}

std::optional<Refusal> Reaper::refusal_of(pid_t pid, int signal) const {
  if (pid <= 1) return Refusal::kNotAWorker;
  if (pid == self_pid_ && !options_.signal_self_after_reap) return Refusal::kServerItself;
  if (signal > SIGRTMAX) return Refusal::kSignalOutOfRange;
  return std::nullopt;
}

void Reaper::log_refusal(Refusal refusal, pid_t pid, int signal) const {
  switch (refusal) {
    case Refusal::kNotAWorker: spdlog::error("refusing to signal pid {}: not a worker process", pid); break;
    case Refusal::kServerItself: spdlog::error("refusing to signal pid {}: it is the server itself", pid); break;
    case Refusal::kSignalOutOfRange:
      spdlog::error("refusing to send signal {} to pid {}: not in 1..{}", signal, pid, SIGRTMAX);
      break;
    default: break;  // the kill path's own refusals are logged where they are met
  }
  stats_.count(refusal);
}

bool Reaper::refuse_target(pid_t pid, int signal) const {
  const auto refusal = refusal_of(pid, signal);
  if (refusal) log_refusal(*refusal, pid, signal);
  return refusal.has_value();
}

Reaper::Backoff& Reaper::back_off(const ProcessKey& process, std::uint64_t now_ns) {
  Backoff& b = backoff_[process];
  b.delay_ns = b.delay_ns == 0 ? kFirstRetryNs : std::min(b.delay_ns * 2, kMaxRetryNs);
  b.next_try_ns = now_ns + b.delay_ns;
  ++b.failures;
  return b;
}

void Reaper::note_unknown(pid_t pid, int error, std::string_view doing) {
  detail::count_liveness_unknown(table_, error);
  ++unknown_this_round_;
  if (unknown_in_episode_++ == 0)
    spdlog::error(
        "could not tell whether pid {} {}: {}. Kept as alive (its timers and slots stay, and it is looked "
        "at again); further cases are counted in the table header's liveness_unknown until a round has "
        "none",
        pid, doing, std::strerror(error));
}

void Reaper::end_unknown_episode_if_over() {
  if (looks_this_round_ > 0 && unknown_this_round_ == 0 && unknown_in_episode_ > 0) {
    spdlog::warn("processes can be looked at again, after {} look(s) that could not tell", unknown_in_episode_);
    unknown_in_episode_ = 0;
  }
  looks_this_round_ = unknown_this_round_ = 0;
}

void Reaper::note_failed_kill(const ProcessKey& process, int signal, int error, std::uint64_t now_ns) {
  table_.header().failed_kills.fetch_add(1, std::memory_order_relaxed);  // statistics
  const Backoff& b = back_off(process, now_ns);
  // One line at the first failure, then at the 2nd, 4th, 8th, ...: a kill that keeps
  // failing logs a few lines an hour, not one per round.
  if (is_power_of_two(b.failures))
    spdlog::error("signalling pid {} with {} failed ({} time(s) so far): {}; retrying in {} ms", process.first, signal,
                  b.failures, std::strerror(error), b.delay_ns / 1'000'000);
}

// The signal phase: decides with the reference's rule and sends, and nothing else. What
// is said about it waits for report_reap(), after every signal of the round, so that a
// burst's last kill waits for no log line, event or label of the others.
Reaper::Reap Reaper::signal_process(const ProcessKey& process, std::vector<SlotSnapshot>& timers,
                                    std::uint64_t now_ns) {
  std::stable_sort(timers.begin(), timers.end(),
                   [](const SlotSnapshot& a, const SlotSnapshot& b) { return a.deadline_ns < b.deadline_ns; });
  Reap reap;
  reap.process = &process;
  reap.timers = &timers;
  reap.killing = signalling_timer(timers);
  if (reap.killing == nullptr || options_.incidents.observe_only) return reap;
  // The ladder's last step, after its soft signal and grace: SIGKILL.
  reap.signal = graced_.count(process) ? SIGKILL : reap.killing->signal;
  if ((reap.refused = refusal_of(process.first, reap.signal))) return reap;
  reap.outcome =
      processes_.send(request_for(process, reap.signal, static_cast<std::uint32_t>(reap.killing->origin)), reap.error);
  // When the signal was queued, if the ProcessControl knows it and it falls within this
  // round on the server's clock; else when send() returned.
  const std::uint64_t returned_ns = options_.clock->now_ns();
  const std::uint64_t issued_ns = processes_.last_signal_ns();
  reap.sent_ns = issued_ns >= now_ns && issued_ns <= returned_ns ? issued_ns : returned_ns;
  return reap;
}

// The report phase of one reap: logs, events, counters, and the cleanup to do (nothing
// when the kill failed and will be retried after a back-off).
std::optional<Reaper::Cleanup> Reaper::report_reap(const Reap& reap, std::uint64_t now_ns, RoundResult& result) {
  const ProcessKey& process = *reap.process;
  const std::vector<SlotSnapshot>& timers = *reap.timers;
  const pid_t pid = process.first;
  // Read while the process was prepared; never waited for.
  const ProcessLabels labels = labels_.find(pid, process.second).value_or(ProcessLabels{});
  const std::string incident = incidents_ ? incidents_->incident_of(process) : std::string();
  if (backoff_.count(process) == 0) {  // a retry reported its expiry already
    result.expired += timers.size();
    log_expired_debug(pid, timers, now_ns);
    for (const auto& t : timers) emit("timer expired", t, now_ns, &labels, incident);
  }
  if (reap.killing == nullptr) {
    spdlog::info("pid {} has {} expired timer(s), none with a signal > 0; not signalling it", pid, timers.size());
    return Cleanup::kDisarm;
  }
  const std::string scope = printable(reap.killing->scope);
  if (options_.incidents.observe_only) {
    spdlog::warn("observe-only: not signalling pid {}{} for timer '{}'; its expired timers are disarmed{}", pid,
                 who(labels), scope, incident.empty() ? "" : "; incident " + incident);
    return Cleanup::kDisarm;
  }
  if (reap.refused) {
    log_refusal(*reap.refused, pid, reap.signal);
    return Cleanup::kDisarm;
  }
  ++looks_this_round_;
  switch (*reap.outcome) {
    case SignalOutcome::kSent: {
      const std::uint64_t deadline = reap.killing->deadline_ns;
      const std::uint64_t lateness_ns = reap.sent_ns > deadline ? reap.sent_ns - deadline : 0;
      stats_.kill_lateness.observe_ns(lateness_ns);
      spdlog::log(options_.log_kills ? spdlog::level::info : spdlog::level::debug,
                  "signalled pid {}{} with signal {}: timer '{}' expired ({:.3f} ms after its deadline{})", pid,
                  who(labels), reap.signal, scope, static_cast<double>(lateness_ns) / 1e6,
                  incident.empty() ? std::string()
                                   : fmt::format(", {:.3f} ms of it capturing stacks; incident {}",
                                                 incidents_->capture_ms_of(process), incident));
      emit("kill worker process", *reap.killing, reap.sent_ns, &labels, incident);
      ++result.signalled;
      table_.header().reaps.fetch_add(1, std::memory_order_relaxed);  // statistics
      self_signal_ = reap.signal;
      return Cleanup::kDisarm;
    }
    case SignalOutcome::kNoProcess:
      spdlog::info("pid {} no longer exists; its expired timer '{}' counts as reaped", pid, scope);
      return Cleanup::kFree;
    case SignalOutcome::kIdentityMismatch:
      spdlog::warn("pid {} was reused by another process since timer '{}' was set; not signalling it", pid, scope);
      stats_.count(Refusal::kPidReused);
      return Cleanup::kFree;
    case SignalOutcome::kNotPermitted:
      spdlog::error("refusing to signal pid {}: it belongs to another user (this server signals uid {} only)", pid,
                    self_uid_);
      stats_.count(Refusal::kOtherUser);
      return Cleanup::kDisarm;
    case SignalOutcome::kNotMapped:
      spdlog::error("refusing to signal pid {}: it does not have the table mapped, so it did not arm timer '{}'", pid,
                    scope);
      stats_.count(Refusal::kNotMapped);
      return Cleanup::kDisarm;
    case SignalOutcome::kUnverifiable:
      spdlog::error(
          "refusing to signal pid {}: its memory map may not be read ({}: {}), so nothing shows it "
          "armed timer '{}', and the table may be written by other users than its own (docs/security.md)",
          pid, std::strerror(reap.error), why_maps_are_unreadable(pid), scope);
      stats_.count(Refusal::kUnverifiable);
      return Cleanup::kDisarm;
    case SignalOutcome::kUnknown:
      note_unknown(pid, reap.error, "may be signalled for timer '" + scope + "'");
      back_off(process, now_ns);
      return std::nullopt;
    case SignalOutcome::kFailed: note_failed_kill(process, reap.signal, reap.error, now_ns); return std::nullopt;
  }
  return std::nullopt;
}

// Clears every timer the scan saw armed whose process is to be disarmed, each only if it
// still holds the very word seen: a timer the owner re-armed since (a process that
// survived its signal) stands. One pass over the round's armed timers, however many
// processes a burst reaped. Returns how many were cleared.
std::uint64_t Reaper::disarm_seen(const std::map<ProcessKey, Cleanup>& cleanups) {
  if (cleanups.empty()) return 0;  // most rounds: no pass over an idle table's armed timers
  std::uint64_t cleared = 0;
  SlotSnapshot snap;
  for (const SeenTimer& seen : seen_) {
    const auto it = cleanups.find(seen.process);
    if (it == cleanups.end() || it->second != Cleanup::kDisarm) continue;
    const bool have_event = detail::read_slot(table_, seen.index, snap) == detail::ReadResult::kReady;
    if (!detail::disarm_if_unchanged(table_, seen.index, seen.armed)) continue;
    ++cleared;
    if (have_event) {
      snap.armed = seen.armed;
      snap.deadline_ns = layout::ArmWord::deadline_ns(seen.armed);
      emit("clear timer", snap);
    }
  }
  return cleared;
}

// Frees every slot of processes that are gone. Their identity (pid and identity) is
// gone for good, so this decision cannot go stale; each free is a CAS from the exact
// control word read, so a slot claimed again meanwhile is left alone.
std::uint64_t Reaper::free_all_of(const std::map<ProcessKey, Cleanup>& processes) {
  std::uint64_t cleared = 0;
  SlotSnapshot snap;
  detail::for_each_occupied(table_, [&](std::uint64_t index) {
    if (detail::read_slot(table_, index, snap) != detail::ReadResult::kReady) return;
    const auto it = processes.find({snap.pid, snap.identity});
    if (it == processes.end() || it->second != Cleanup::kFree) return;
    if (detail::free_slot(table_, index, snap.control) && snap.armed != layout::kDisarmed) {
      emit("clear timer", snap);
      ++cleared;
    }
  });
  return cleared;
}

// The sweep's judgement of one slot, made during the scan. Answers are memoized per
// identity (pid and identity) for one sweep: "exited" never goes stale for an identity,
// and a stale "running" only delays a free to the next sweep. Claiming slots are never
// memoized.
void Reaper::note_if_owner_gone(const layout::Slot& slot, std::uint64_t index, std::uint64_t control) {
  const auto look = [&](pid_t pid, std::optional<std::uint64_t> identity) {
    ++looks_this_round_;
    const Probe probe = processes_.running(pid, identity);
    if (probe.unknown()) note_unknown(pid, probe.error, "still runs");
    return probe;
  };
  const auto running = [&](pid_t pid, std::optional<std::uint64_t> identity) {
    if (!identity) return look(pid, std::nullopt);
    auto [it, inserted] = running_memo_.try_emplace({pid, *identity});
    if (inserted) it->second = look(pid, identity);
    return it->second;
  };
  if (const auto gone = detail::gone_owner_control(slot, control, running)) gone_.push_back({index, *gone});
}

// Frees the slots the sweep found orphaned, each by a CAS from the exact control word
// judged, so a slot claimed again meanwhile (or freed by this round's reaps) is left alone.
std::uint64_t Reaper::free_gone_owners() {
  std::uint64_t freed = 0;
  for (const GoneSlot& g : gone_) freed += detail::free_slot(table_, g.index, g.control) ? 1 : 0;
  if (freed > 0) spdlog::info("freed {} slot(s) of processes that no longer exist", freed);
  return freed;
}

// A claimant killed between its claiming CAS and setting its occupancy bit, just after this
// server cleared that bit, leaves a Claiming slot no bitmap walk visits. A few thousand
// slots per sweep are checked directly, so every such slot is found within
// capacity / kWalkSlotsPerSweep sweeps and then freed like any dead claimant's.
void Reaper::walk_for_lost_bits() {
  const std::uint64_t capacity = table_.capacity();
  for (std::uint64_t n = 0; n < std::min(capacity, kWalkSlotsPerSweep); ++n) {
    if (detail::state_of(table_.slot(walk_cursor_).control.load(std::memory_order_acquire)) != SlotState::kFree)
      detail::set_occupancy(table_, walk_cursor_);
    if (++walk_cursor_ == capacity) walk_cursor_ = 0;
  }
}

// Modelled in src/table/model/slot_protocol.pml (Server: one round).
RoundResult Reaper::round(std::uint64_t now_ns) {
  RoundResult result;
  std::map<ProcessKey, std::vector<SlotSnapshot>> expired;
  const bool sweeping = now_ns >= next_sweep_ns_;
  if (sweeping) {
    gone_.clear();  // what a failed round left
    running_memo_.clear();
    processes_.drop_unprepared();  // what was not prepared again since the last sweep
    labels_.forget_unrequested();
    prepared_.clear();
    walk_for_lost_bits();  // first, so this sweep already visits what it finds
  }
  scan(now_ns, expired, result, sweeping);
  if (incidents_) advance_incidents(now_ns);
  // Every signal first, then everything said about them.
  reaps_.clear();
  for (auto& [process, timers] : expired) {
    if (const auto b = backoff_.find(process); b != backoff_.end() && now_ns < b->second.next_try_ns) continue;
    if (incidents_ && held_for_incident(process, timers, now_ns)) continue;
    if (options_.ladder.enabled() && held_for_grace(process, timers, now_ns)) continue;
    reaps_.push_back(signal_process(process, timers, now_ns));
  }
  std::map<ProcessKey, Cleanup> cleanups;
  for (const Reap& reap : reaps_)
    if (const auto how = report_reap(reap, now_ns, result)) {
      cleanups.emplace(*reap.process, *how);
      backoff_.erase(*reap.process);
    }
  // A process that is no longer expired (it re-armed, or its slots were freed) owes no retry.
  std::erase_if(backoff_, [&](const auto& entry) { return expired.count(entry.first) == 0; });
  std::erase_if(graced_, [&](const auto& entry) { return expired.count(entry.first) == 0; });
  for (const auto& [process, until_ns] : graced_)
    if (until_ns > now_ns && (result.retry_at_ns == 0 || until_ns < result.retry_at_ns)) result.retry_at_ns = until_ns;
  if (incidents_) {
    incidents_->forget_except([&](const ProcessKey& process) { return expired.count(process) != 0; });
    stats_.incidents.store(incidents_->incidents(), std::memory_order_relaxed);
    stats_.capture_failures.store(incidents_->capture_failures(), std::memory_order_relaxed);
    if (const std::uint64_t look = incidents_->next_look_ns(now_ns); look != 0)
      result.retry_at_ns = result.retry_at_ns == 0 ? look : std::min(result.retry_at_ns, look);
  }
  result.cleared += disarm_seen(cleanups);
  if (std::any_of(cleanups.begin(), cleanups.end(), [](const auto& c) { return c.second == Cleanup::kFree; }))
    result.cleared += free_all_of(cleanups);
  if (sweeping) {
    result.cleared += free_gone_owners();
    next_sweep_ns_ = now_ns + static_cast<std::uint64_t>(options_.dead_owner_sweep_interval.count());
  }
  // Some left unprepared: the next round comes at once (its scan sees new arms first).
  if (!approaching_.empty() && prepare_approaching(result.next_deadline_ns)) result.retry_at_ns = now_ns;
  // Retries due after this round, for the idle policy (the scan sees them only when due).
  for (const auto& [process, b] : backoff_)
    if (b.next_try_ns > now_ns && (result.retry_at_ns == 0 || b.next_try_ns < result.retry_at_ns))
      result.retry_at_ns = b.next_try_ns;
  end_unknown_episode_if_over();
  return result;
}

}  // namespace shmtimer
