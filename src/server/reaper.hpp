// One watchdog round over the table: find expired timers, signal their owners with the
// reference's rules, clear what was reaped, and free slots of processes that are gone.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "shmtimer/server_stats.hpp"
#include "process_maps.hpp"
#include "process_liveness.hpp"
#include "shmtimer/timer_server.hpp"
#include "process_control.hpp"
#include "incident_recorder.hpp"
#include "process_labels.hpp"
#include "server_events.hpp"
#include "slot_ops.hpp"

namespace shmtimer {

// The reference's rule for a process's expired timers: its signal is the one of the
// earliest timer with a signal > 0 (the first of equals, in the order given); nullptr when
// none has one.
const detail::SlotSnapshot* signalling_timer(const std::vector<detail::SlotSnapshot>& timers);

class Reaper {
 public:
  Reaper(Table& table, const ServerOptions& options, ProcessControl& processes, ServerStats& stats);

  RoundResult round(std::uint64_t now_ns);
  // Sets the occupancy bit of every non-Free slot: after a server died between clearing
  // a bit and re-checking its slot, a bit may be missing (see slot_ops.cpp).
  void rebuild_occupancy();
  // The signal of the last kill since the previous call (0: none), for the PyTorch 2.x
  // option of signalling the server's own process after a reap.
  int take_self_signal() { return std::exchange(self_signal_, 0); }

 private:
  // A process as the table knows it: pid plus identity, so two processes that had the
  // same pid are two keys.
  using ProcessKey = std::pair<pid_t, std::uint64_t>;
  enum class Cleanup { kDisarm, kFree };
  // An armed timer as the scan saw it: cleanup clears exactly this word, so a timer the
  // owner armed after the scan always stands.
  struct SeenTimer {
    std::uint64_t index;
    ProcessKey process;
    std::uint64_t armed;
  };
  // A process whose signal failed: it is tried again at next_try_ns, with the delay
  // doubling up to a cap, so a kill the kernel keeps refusing costs neither CPU nor logs.
  struct Backoff {
    std::uint64_t next_try_ns = 0;
    std::uint64_t delay_ns = 0;
    std::uint64_t failures = 0;
  };

  // `sweeping`: also judges every occupied slot's owner, for free_gone_owners().
  void scan(std::uint64_t now_ns, std::map<ProcessKey, std::vector<detail::SlotSnapshot>>& expired, RoundResult& result,
            bool sweeping);
  void consider_due(std::uint64_t index, std::uint64_t now_ns,
                    std::map<ProcessKey, std::vector<detail::SlotSnapshot>>& expired);
  // A process's expired timers as the signal phase left them, for the report phase.
  struct Reap {
    const ProcessKey* process = nullptr;
    std::vector<detail::SlotSnapshot>* timers = nullptr;  // sorted by deadline
    const detail::SlotSnapshot* killing = nullptr;        // signalling_timer(); null: not signalled
    int signal = 0;
    std::optional<Refusal> refused;        // refused before send()
    std::optional<SignalOutcome> outcome;  // send()'s answer, when it was asked
    int error = 0;                         // with outcome kUnknown, kFailed, kUnverifiable
    std::uint64_t sent_ns = 0;             // with kSent: when the signal was queued
  };
  // Applies the reference's rule to one process's expired timers and sends the signal.
  Reap signal_process(const ProcessKey& process, std::vector<detail::SlotSnapshot>& timers, std::uint64_t now_ns);
  // Says what signal_process() did; returns the cleanup to do, or nothing when the kill
  // failed and will be retried after a back-off.
  std::optional<Cleanup> report_reap(const Reap& reap, std::uint64_t now_ns, RoundResult& result);
  void note_failed_kill(const ProcessKey& process, int signal, int error, std::uint64_t now_ns);
  // A look at a process that could not tell: counted, and logged once per episode.
  void note_unknown(pid_t pid, int error, std::string_view doing);
  void end_unknown_episode_if_over();
  Backoff& back_off(const ProcessKey& process, std::uint64_t now_ns);
  std::uint64_t disarm_seen(const std::map<ProcessKey, Cleanup>& cleanups);
  std::uint64_t free_all_of(const std::map<ProcessKey, Cleanup>& processes);
  void note_if_owner_gone(const layout::Slot& slot, std::uint64_t index, std::uint64_t control);
  std::uint64_t free_gone_owners();
  void walk_for_lost_bits();
  // Asks processes_ to prepare those whose timers fall due soon (see prepare_approaching).
  bool prepare_approaching(std::uint64_t next_deadline_ns);
  // What send() is asked for a timer of `process` set through `origin` (untrusted: any
  // value but the table's asks for no mapping, as for the FIFO shim's timers).
  SignalRequest request_for(const ProcessKey& process, int signal, std::uint32_t origin) const;
  std::optional<Refusal> refusal_of(pid_t pid, int signal) const;
  void log_refusal(Refusal refusal, pid_t pid, int signal) const;  // and counts it
  bool refuse_target(pid_t pid, int signal) const;                 // refusal_of, logged and counted
  void emit(std::string_view name, const detail::SlotSnapshot& timer, std::uint64_t at_ns = 0,
            const ProcessLabels* labels = nullptr, const std::string& incident = {}) const;
  // Incidents (reaper_incidents.cpp). Whether `process`'s kill waits for its incident's
  // capture: starts the incident at its first expiry, true until the incident ends.
  bool held_for_incident(const ProcessKey& process, const std::vector<detail::SlotSnapshot>& timers,
                         std::uint64_t now_ns);
  void advance_incidents(std::uint64_t now_ns);
  // The ladder's soft step (reaper_ladder.cpp): sends it at the first look, then true
  // until the grace period ends; false when there is no soft step to take for `process`.
  bool held_for_grace(const ProcessKey& process, const std::vector<detail::SlotSnapshot>& timers, std::uint64_t now_ns);
  // The distinct owners of the table's Ready slots: an incident's peers.
  std::vector<ProcessKey> table_owners() const;
  bool may_capture(pid_t pid) const;
  detail::Labels report_labels(const ProcessKey& process) const;

  Table& table_;
  const ServerOptions& options_;
  ProcessControl& processes_;
  ServerStats& stats_;
  pid_t self_pid_;
  uid_t self_uid_;
  FileId table_file_;  // the table's device and inode, as a client's mapping of it shows
  std::uint64_t next_sweep_ns_ = 0;
  std::uint64_t walk_cursor_ = 0;
  int self_signal_ = 0;
  std::vector<SeenTimer> seen_;  // this round's armed timers; reused, so no allocation per round
  std::vector<Reap> reaps_;      // this round's, between its signal and report phases; reused
  // This round's armed timers due within prepare_horizon_ns_ whose process is not in
  // prepared_, and the processes prepared since the last sweep.
  struct Approaching {
    std::uint64_t deadline_ns;
    ProcessKey process;
    std::uint32_t origin;
  };
  std::uint64_t prepare_horizon_ns_;
  std::vector<Approaching> approaching_;
  std::set<ProcessKey> prepared_;
  detail::ProcessLabelReader labels_;  // of the approaching processes, for the events
  // The sweep's findings: slots whose owner is gone, with the control word to free from,
  // and whether each identity runs, asked once per sweep (reused, cleared per sweep).
  struct GoneSlot {
    std::uint64_t index;
    std::uint64_t control;
  };
  std::vector<GoneSlot> gone_;
  std::map<ProcessKey, Probe> running_memo_;
  std::map<ProcessKey, Backoff> backoff_;
  // Looks at processes that could not tell: in this round, and since the last round that
  // looked and had none (the episode, logged once at its start and once at its end).
  std::uint64_t looks_this_round_ = 0;
  std::uint64_t unknown_this_round_ = 0;
  std::uint64_t unknown_in_episode_ = 0;
  // The one uid, besides root, that may write the table (its owner, when the mode lets no
  // one else write): see SignalRequest::sole_table_writer.
  std::optional<uid_t> sole_table_writer_;
  std::unique_ptr<detail::IncidentRecorder> incidents_;  // null: incidents off
  std::map<ProcessKey, std::uint64_t> graced_;           // sent the soft signal: when its grace ends
};

}  // namespace shmtimer
