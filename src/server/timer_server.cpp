#include "shmtimer/timer_server.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <limits>

#include "process_control.hpp"
#include "reaper.hpp"
#include "server_events.hpp"
#include "server_wakeup.hpp"
#include "source_watcher.hpp"
#include "shmtimer/clock.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/printable.hpp"
#include "process_liveness.hpp"
#include "self_identity.hpp"
#include "thread_priority.hpp"
#include "shmtimer/table_fault_guard.hpp"

namespace shmtimer {

namespace {

class SteadyMonotonicClock final : public MonotonicClock {
 public:
  std::uint64_t now_ns() override { return monotonic_now_ns(); }
};

std::int64_t epoch_now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A forked child shares its parent's open file descriptions, and with them the flock:
// a worker forked by a process that hosts a server would keep the table locked after the
// server died. So every child closes the inherited lock descriptors at once. Slots hold
// fd + 1 (0 = empty); relaxed is enough, the child handler runs single-threaded.
constexpr int kMaxServersPerProcess = 64;
std::atomic<int> g_lock_fds[kMaxServersPerProcess];

void close_lock_fds_in_child() noexcept {
  for (auto& slot : g_lock_fds)
    if (const int fd_plus_one = slot.exchange(0, std::memory_order_relaxed); fd_plus_one > 0) ::close(fd_plus_one - 1);
}

void remember_lock_fd(int fd) {
  static const bool registered = (::pthread_atfork(nullptr, nullptr, close_lock_fds_in_child), true);
  (void)registered;
  for (auto& slot : g_lock_fds) {
    int empty = 0;
    if (slot.compare_exchange_strong(empty, fd + 1, std::memory_order_relaxed)) return;
  }
  spdlog::warn("more than {} servers in one process: a forked child may keep a table locked", kMaxServersPerProcess);
}

void forget_lock_fd(int fd) {
  for (auto& slot : g_lock_fds) {
    int expected = fd + 1;
    if (slot.compare_exchange_strong(expected, 0, std::memory_order_relaxed)) return;
  }
}

// The server lock is an flock on a descriptor of its own: the kernel drops it when the
// server dies, however it dies, so a dead server's table can be taken over at once.
int take_server_lock(const Table& table) {
  const int fd = ::open(table.path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) throw_errno("cannot open " + table.path().string() + " for the server lock");
  struct stat locked{}, mapped{};
  if (::fstat(fd, &locked) != 0 || ::fstat(table.fd(), &mapped) != 0 || locked.st_ino != mapped.st_ino ||
      locked.st_dev != mapped.st_dev) {
    ::close(fd);
    throw Error(ErrorCode::kUnsafeFile, "table " + table.path().string() + " was replaced after it was mapped");
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err != EWOULDBLOCK) throw Error(ErrorCode::kIo, "cannot lock " + table.path().string(), err);
    throw Error(ErrorCode::kServerRunning,
                "table " + table.path().string() + " is already served by a live server (pid " +
                    std::to_string(table.header().server_pid.load(std::memory_order_relaxed)) + ")");
  }
  remember_lock_fd(fd);
  return fd;
}

}  // namespace

TimerServer::TimerServer(std::shared_ptr<Table> table, ServerOptions options)
    : table_(std::move(table)), options_(std::move(options)) {
  if (!table_ || table_->read_only()) throw Error(ErrorCode::kInvalidArgument, "TimerServer needs a writable table");
  if (!options_.clock) options_.clock = std::make_shared<SteadyMonotonicClock>();
  if (!options_.processes) options_.processes = std::make_shared<LinuxProcessControl>();
  if (options_.realtime_priority != 0 && (options_.realtime_priority < 1 || options_.realtime_priority > 99))
    throw Error(ErrorCode::kInvalidArgument,
                "realtime_priority " + std::to_string(options_.realtime_priority) + " is not in 1..99 (0: off)");
  if (options_.realtime_priority != 0 && decide_idle(options_.policy, 0, 0, 0).spin)
    throw Error(ErrorCode::kInvalidArgument,
                "a watchdog at a realtime priority must sleep: its scan policy spins for ever, which would keep a "
                "CPU from every other process");
  lock_fd_ = take_server_lock(*table_);
  wakeup_ = std::make_unique<detail::ServerWakeup>(*table_);
  auto& header = table_->header();
  const pid_t previous = header.server_pid.load(std::memory_order_relaxed);
  header.server_starts.fetch_add(1, std::memory_order_relaxed);  // statistics
  if (previous != 0 && previous != ::getpid()) {
    spdlog::warn("taking over table {} from server pid {}, which is gone", table_->path().string(), previous);
    header.server_takeovers.fetch_add(1, std::memory_order_relaxed);  // statistics
  }
  reaper_ = std::make_unique<Reaper>(*table_, options_, *options_.processes, stats_);
  reaper_->rebuild_occupancy();
  // Relaxed: liveness words are read one at a time by tools; the flock is the real guard.
  header.server_identity.store(current_identity(), std::memory_order_relaxed);
  if (is_pidfs_identity(current_identity()))
    spdlog::info(
        "processes are identified by their pidfd inode (pidfs): a reused pid is never taken for its "
        "previous process");
  else
    spdlog::warn(
        "this kernel has no pidfs (Linux 6.9+): processes are identified by pid and start time, and a pid "
        "reused within one clock tick (10 ms) by a client of this table is taken for its previous process "
        "(docs/security.md)");
  header.server_pidns.store(current_pid_namespace(), std::memory_order_relaxed);
  const auto max_interval_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.policy.max_interval).count();
  header.server_max_interval_ms.store(static_cast<std::uint32_t>(std::clamp<std::int64_t>(
                                          max_interval_ms, 1, std::numeric_limits<std::uint32_t>::max())),
                                      std::memory_order_relaxed);
  publish_presence();
}

void TimerServer::publish_presence() {
  auto& header = table_->header();
  // A heartbeat now, published before the pid: a client that requires a server judges it
  // by the pid and the heartbeat's age, and must not find this server's pid without one
  // in the moments before its first round (test RequireServerCountsAServerLiveBeforeItsFirstRound).
  // Release, with the client's acquire load of the pid.
  header.heartbeat_mono_ns.store(options_.clock->now_ns(), std::memory_order_relaxed);
  header.server_pid.store(::getpid(), std::memory_order_release);
}

void TimerServer::withdraw_presence() {
  auto& header = table_->header();
  header.server_pid.store(0, std::memory_order_relaxed);
  // Zero: no server looks at the table, so no client asks for a wake-up, and a client
  // that requires a server refuses its next arm, even on its hot path
  // (ShmTimerClient::check_server). Release: a client that acquire-loads this zero also
  // sees the pid's zero, stored before it. The watchdog thread is stopped: no round
  // publishes a new plan after it.
  header.wake_at_ns.store(0, std::memory_order_release);
}

TimerServer::~TimerServer() {
  stop();
  forget_lock_fd(lock_fd_);
  ::close(lock_fd_);
}

void TimerServer::write_heartbeat(std::uint64_t now_ns) {
  auto& header = table_->header();
  header.heartbeat_mono_ns.store(now_ns, std::memory_order_relaxed);
  header.heartbeat_count.fetch_add(1, std::memory_order_relaxed);
}

void TimerServer::watch_table_file(std::uint64_t now_ns) {
  const std::uint64_t faults = table_fault_count();
  if (now_ns < next_file_check_ns_ && faults == faults_seen_) return;
  next_file_check_ns_ = now_ns + static_cast<std::uint64_t>(options_.dead_owner_sweep_interval.count());
  faults_seen_ = faults;
  if (stats_.table_file_change.load(std::memory_order_relaxed) != FileChange::kNone) return;  // told once
  const FileChange change = table_->file_change();
  if (change == FileChange::kNone) return;
  stats_.table_file_change.store(change, std::memory_order_relaxed);
  spdlog::error(
      "table {} was {}: no new worker can reach this server, and workers that arm in it are watched only "
      "while it runs",
      table_->path().string(), to_string(change));
  if (options_.on_table_file_change) options_.on_table_file_change(change);
}

void TimerServer::add_source(std::shared_ptr<RequestSource> source) { sources_.push_back(std::move(source)); }

bool TimerServer::drain_sources() {
  bool more = false;
  for (const auto& source : sources_) more = source->drain().more_pending || more;
  return more;
}

// While the watchdog thread runs, the wake-up handshake (marker, plan, sleep) is its own:
// a round run from another thread leaves it alone and only reads, reaps and sweeps.
RoundResult TimerServer::run_once_at(std::uint64_t now_ns) { return round(now_ns, !thread_.joinable()); }

RoundResult TimerServer::round(std::uint64_t now_ns, bool fresh, bool* sources_pending) {
  const std::lock_guard lock(round_mutex_);
  if (fresh) wakeup_->publish_marker(now_ns, static_cast<std::uint64_t>(options_.policy.max_interval.count()));
  write_heartbeat(now_ns);
  watch_table_file(now_ns);
  const bool pending = drain_sources();
  if (sources_pending != nullptr) *sources_pending = pending;
  if (watcher_) watcher_->rearm();
  const RoundResult result = reaper_->round(now_ns);
  last_progress_epoch_s_.store(epoch_now_s(), std::memory_order_relaxed);
  const std::uint64_t end_ns = options_.clock->now_ns();
  stats_.round_duration.observe_ns(end_ns > now_ns ? end_ns - now_ns : 0);
  stats_.last_round_end_ns.store(end_ns, std::memory_order_relaxed);
  if (const int signal = reaper_->take_self_signal(); signal > 0 && options_.signal_self_after_reap) {
    spdlog::warn("signalling the server's own process with {} after a reap (signal_self_after_reap)", signal);
    if (options_.before_self_signal) options_.before_self_signal();
    ::kill(::getpid(), signal);
  }
  return result;
}

RoundResult TimerServer::run_once() { return run_once_at(options_.clock->now_ns()); }

std::int64_t TimerServer::get_last_progress_time() const {
  const std::int64_t last = last_progress_epoch_s_.load(std::memory_order_relaxed);
  return last != 0 ? last : epoch_now_s();
}

void TimerServer::start() {
  if (thread_.joinable()) return;
  publish_presence();  // again, after a stop()
  stop_requested_.store(false, std::memory_order_relaxed);
  if (!sources_.empty()) watcher_ = std::make_unique<detail::SourceWatcher>(sources_, *wakeup_);
  thread_ = std::thread([this] { run_loop(); });
}

void TimerServer::stop() {
  stop_requested_.store(true, std::memory_order_release);
  wakeup_->wake();
  if (thread_.joinable()) thread_.join();
  watcher_.reset();
  withdraw_presence();
}

void TimerServer::take_realtime_priority() {
  if (options_.realtime_priority == 0) return;
  if (const std::string why = run_at_realtime_priority(options_.realtime_priority); !why.empty()) {
    spdlog::warn(
        "the watchdog thread could not take realtime priority {} ({}): it runs at a normal priority, and "
        "workers that hold every CPU can delay its kills (docs/server.md, \"Priority\")",
        options_.realtime_priority, why);
    return;
  }
  stats_.realtime_priority.store(options_.realtime_priority, std::memory_order_relaxed);
  spdlog::info("the watchdog thread runs SCHED_FIFO at priority {}", options_.realtime_priority);
}

void TimerServer::run_loop() {
  // The kernel may defer a timed wake-up by the thread's timer slack (50 us by default);
  // 1 us keeps a sleep until a deadline close to the deadline.
  ::prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
  // Named, so that top -H, a stack dump and the tests (StoppedThread) can tell it apart.
  ::pthread_setname_np(::pthread_self(), "shmtimer-watch");
  take_realtime_priority();
  emit_event(options_.log_event, "watchdog started");
  std::uint64_t spin_until_ns = 0;
  const auto spin_ns = static_cast<std::uint64_t>(options_.policy.spin.count());
  bool fresh = true;  // false: a client asked for a wake-up while the last round ran
  while (!stop_requested_.load(std::memory_order_acquire)) {
    RoundResult result;
    bool sources_pending = false;  // the round's own answer: run_once() may run rounds too
    std::uint64_t now_ns = options_.clock->now_ns();
    try {
      result = round(now_ns, fresh, &sources_pending);
      if (options_.after_round) options_.after_round(result);
    } catch (const std::exception& e) {
      // No byte in the table or the FIFO may stop the watchdog: log, wait a full interval
      // (so a persistent cause cannot spin), and go on.
      spdlog::error("watchdog round failed: {}; continuing", printable(e.what()));
      wakeup_->sleep_until(now_ns, now_ns + static_cast<std::uint64_t>(options_.policy.max_interval.count()));
      fresh = true;
      continue;
    }
    fresh = true;
    now_ns = options_.clock->now_ns();
    if (result.expired > 0) spin_until_ns = now_ns + spin_ns;
    if (sources_pending) continue;  // a flood: read on at once, reaping between chunks
    const IdleDecision idle = decide_idle(options_.policy, now_ns, result.next_deadline_ns, spin_until_ns,
                                          wake_lateness_.recent_max_ns(), result.retry_at_ns);
    if (idle.spin) continue;
    // Publish the plan; a wake-up asked for meanwhile may be for an arm this round's scan
    // had passed, so look again (keeping the plan) before sleeping.
    if (wakeup_->publish_plan(now_ns + idle.sleep_ns)) {
      fresh = false;
      continue;
    }
    const std::uint64_t planned_ns = wakeup_->sleep_until(now_ns, now_ns + idle.sleep_ns);
    // A wake-up after the planned time is the kernel's (or a VM host's) lateness, which
    // the lead before the next deadline makes up for; an earlier one was a wake-up call.
    if (const std::uint64_t woke_ns = options_.clock->now_ns(); woke_ns > planned_ns)
      wake_lateness_.observe(woke_ns - planned_ns);
  }
  stats_.realtime_priority.store(0, std::memory_order_relaxed);
  emit_event(options_.log_event, "watchdog stopped");
}

}  // namespace shmtimer
