// The watchdog: scans the table, signals workers whose timers expired with the
// reference's reaping rules, and never signals a process that did not own the timer.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "shmtimer/incident.hpp"
#include "shmtimer/scan_policy.hpp"
#include "shmtimer/server_stats.hpp"
#include "shmtimer/table.hpp"
#include "shmtimer/timer_event.hpp"

namespace shmtimer {

class ProcessControl;  // src/os/process_control.hpp: how the server looks at and signals processes

class MonotonicClock {
 public:
  virtual ~MonotonicClock() = default;
  virtual std::uint64_t now_ns() = 0;
};

struct RoundResult;

// The escalation ladder: after an expiry's capture (if any), an optional soft signal,
// a grace period for the process to end on its own (flush logs, write a checkpoint),
// then SIGKILL. Off by default: the timer's own signal, once, as the reference does.
struct KillLadder {
  static constexpr int kTimersOwnSignal = -1;
  // 0: no soft step. kTimersOwnSignal: the expired timer's own signal (when it is not
  // SIGKILL). Else the signal to send first (SIGTERM, say).
  int soft_signal = 0;
  std::chrono::milliseconds grace{5000};  // from the soft signal to SIGKILL
  bool enabled() const { return soft_signal != 0; }
};

struct ServerOptions {
  ScanPolicy policy;
  // 1..99: the watchdog thread runs SCHED_FIFO at this priority (with
  // SCHED_RESET_ON_FORK: nothing it starts inherits it), so that workers holding every CPU
  // neither delay its wake-up at a deadline nor preempt it while it signals a burst of
  // them (docs/server.md, "Priority"). Needs CAP_SYS_NICE or an RLIMIT_RTPRIO that allows
  // it; without, the thread runs at its normal priority, says so in a warning, and
  // ServerStats::realtime_priority stays 0. 0 (the default): not asked for. A policy
  // that spins for ever is refused with it (it would take a CPU from everything else).
  int realtime_priority = 0;
  // PyTorch 2.x: after killing a worker with signal > 0, send the same signal to this
  // process (so an agent hosting the server dies and the job restarts). Off by default.
  bool signal_self_after_reap = false;
  // Signal processes of any uid (a root server for several users). Off: only processes
  // of the server's own real uid are signalled (docs/security.md).
  bool any_uid = false;
  // How often slots of processes that exited (or whose pid was reused) are freed.
  std::chrono::nanoseconds dead_owner_sweep_interval{std::chrono::seconds(1)};
  // Called after the signal, never between the decision and it ("timer expired" too),
  // from the watchdog thread: what it does delays later kills of the same round.
  EventCallback log_event;  // may be empty
  // The watchdog's own line for each kill ("signalled pid ..."), at info; at debug when
  // false, for a log_event that already logs each kill (shmtimerd), so a kill is one line.
  bool log_kills = true;
  // Called by the watchdog thread after each of its rounds (not by run_once): the hook
  // for a liveness signal that must stop when the loop stalls (systemd's WATCHDOG=1).
  std::function<void(const RoundResult&)> after_round;  // may be empty
  // Called by the watchdog just before it signals its own process (signal_self_after_reap):
  // what a process that is about to be killed cannot do at exit, such as removing the
  // files it made. May be empty.
  std::function<void()> before_self_signal;
  // Called once, by the first round that finds the table's file deleted, resized or
  // replaced (Table::file_change(), looked at every dead_owner_sweep_interval and at once
  // after a fault the guard absorbed). New workers cannot reach this server any more: the
  // hook's job is to stop it, so that a supervisor starts a server on a fresh table
  // (shmtimerd exits 4). The watchdog itself goes on serving the mapping. Runs on the
  // watchdog thread inside a round: it may only hand off (set a flag, send a signal), never
  // call stop(), which would join the very thread. May be empty.
  std::function<void(FileChange)> on_table_file_change;
  // Incident reports: the stacks of a hung worker and of its peers, captured before the
  // kill; and observe-only mode (include/shmtimer/incident.hpp, docs/diagnosis.md). Off
  // by default.
  IncidentOptions incidents;
  KillLadder ladder;
  std::shared_ptr<MonotonicClock> clock;  // null: CLOCK_MONOTONIC
  // null: LinuxProcessControl, the kernel's answers. The interface is private (not
  // installed): a seam for the tests, which script what the kernel cannot be made to do.
  std::shared_ptr<ProcessControl> processes;
};

struct RoundResult {
  std::uint64_t expired = 0;           // expired timers looked at
  std::uint64_t signalled = 0;         // processes signalled
  std::uint64_t cleared = 0;           // timers cleared or slots freed
  std::uint64_t next_deadline_ns = 0;  // nearest armed, unexpired deadline (0: none)
  // When a kill that failed, or a look at a process that could not tell, is next tried
  // (0: none). A time to wake at, not a deadline: nothing spins before it.
  std::uint64_t retry_at_ns = 0;
};

class Reaper;
namespace detail {
class ServerWakeup;
class SourceWatcher;
}  // namespace detail

// Something besides the table that brings timer requests (the FIFO shim). The server
// drains every source at the start of each round, and wakes early when one is readable.
struct DrainResult {
  std::uint64_t requests = 0;  // requests applied
  bool more_pending = false;   // stopped at its budget: drain again without sleeping
};

class RequestSource {
 public:
  virtual ~RequestSource() = default;
  virtual int poll_fd() const = 0;  // readable when requests are pending
  virtual DrainResult drain() = 0;  // applies pending requests to the table; never blocks
};

class TimerServer {
 public:
  // Takes the table's server lock; throws Error(kServerRunning) when a live server holds
  // it. A dead server's lock is released by the kernel, so its table is taken over.
  explicit TimerServer(std::shared_ptr<Table> table, ServerOptions options = {});
  ~TimerServer();
  TimerServer(const TimerServer&) = delete;
  TimerServer& operator=(const TimerServer&) = delete;

  // Adds a source of requests (e.g. a FifoShim) drained at the start of every round.
  // Call before start().
  void add_source(std::shared_ptr<RequestSource> source);

  void start();  // runs the watchdog thread
  void stop();   // stops and joins it; idempotent
  // One round now: everything pending, then scan and reap. For tests and tools; safe
  // while the watchdog thread runs (torch's tests call run_once on a started server):
  // the two never run a round at the same time.
  RoundResult run_once();
  // One round at a given monotonic time (deterministic tests).
  RoundResult run_once_at(std::uint64_t now_ns);

  // Epoch seconds of the last completed round, or now if none has run yet.
  std::int64_t get_last_progress_time() const;
  const std::shared_ptr<Table>& table() const { return table_; }
  const ServerOptions& options() const { return options_; }
  // Why signals were refused, kill lateness, round durations: readable from any thread.
  const ServerStats& stats() const { return stats_; }

 private:
  void run_loop();
  void take_realtime_priority();  // as options_.realtime_priority asks, on the calling thread
  // One round. `fresh`: publish a new wake-up marker first (src/table/server_wakeup.hpp); a
  // rescan asked for by a client keeps the plan already published. `sources_pending`,
  // if given, is set when a source has more to read (a flood).
  RoundResult round(std::uint64_t now_ns, bool fresh, bool* sources_pending = nullptr);
  void write_heartbeat(std::uint64_t now_ns);
  // The words that tell clients whether a server holds the table: published at
  // construction and start(), withdrawn by stop() (and so by the destructor).
  void publish_presence();
  void withdraw_presence();
  void watch_table_file(std::uint64_t now_ns);
  bool drain_sources();  // true when a source has more pending

  std::shared_ptr<Table> table_;
  ServerOptions options_;
  ServerStats stats_;
  std::unique_ptr<Reaper> reaper_;
  std::unique_ptr<detail::ServerWakeup> wakeup_;
  std::unique_ptr<detail::SourceWatcher> watcher_;  // while the thread runs, if a source has a poll_fd
  int lock_fd_ = -1;
  std::atomic<std::int64_t> last_progress_epoch_s_{0};  // relaxed: a standalone value for readers
  std::vector<std::shared_ptr<RequestSource>> sources_;
  WakeLateness wake_lateness_;            // how late the watchdog's timed sleeps end; used by its thread only
  std::uint64_t next_file_check_ns_ = 0;  // watch_table_file's, under round_mutex_
  std::uint64_t faults_seen_ = 0;         // idem: table_fault_count() at the last check
  // stop(): set the flag (release), then wake the thread sleeping on the table's futex;
  // the thread reads the flag (acquire) after every wake-up.
  std::atomic<bool> stop_requested_{false};
  std::thread thread_;
  // Held for a whole round: a round's state (the reaper's sweep judgements, the sources'
  // buffers) belongs to one thread at a time. Uncontended but for run_once().
  std::mutex round_mutex_;
};

}  // namespace shmtimer
