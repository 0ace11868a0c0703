// chaos_soak: workers (table and FIFO clients, several threads each) arm short timers,
// release them in time and live on past the released deadlines, while one thread of each
// worker eventually hangs inside a timer; meanwhile the soak SIGKILLs workers and the
// server at random points. Every death is judged against what the dead worker had logged:
// the summary must show no false kill (a release the server did not honour), no missed
// kill (a hang it did not reap), no FIFO request left unapplied, no stuck slot, and enough
// of both paths exercised to mean something.
//   chaos_soak --shmtimerd PATH [--duration-s 20] [--workers 6] [--seed N]
// Long mode (docs/reliability.md): --duration-s 600. Under a sanitizer everything runs
// several times slower, so the test registration widens --kill-bound-ms there.
#include <fmt/core.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "shmtimer/clock.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/fifo_timer_client.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "worker_log.hpp"

namespace {

using namespace std::chrono_literals;
using shmtimer::monotonic_now_ns;
using soak::ScopeRecord;
using soak::WorkerLog;

constexpr int kServerSignal = SIGUSR2;  // what workers are reaped with; chaos uses SIGKILL
constexpr std::uint64_t kMs = 1'000'000;
constexpr int kMaxWorkerLogs = 1 << 15;
// How long past a released deadline a worker must live for the release to count as
// honoured: the server sleeps until the next deadline, and never longer than 20 ms
// (--max-interval-ms below), so a timer left armed is reaped well within this.
constexpr std::uint64_t kSurvivalMarginNs = 50 * kMs;
// Below this many outlived releases per path (--min-outlived), or without a hang reaped on
// each path, the run proves nothing and fails.
constexpr std::uint64_t kDefaultMinSurvivedPerPath = 100;

struct Config {
  std::string shmtimerd;
  double duration_s = 20;
  int workers = 6;
  unsigned seed = 1;
  std::string table;
  std::string fifo;
  // Deadline to signal, plus any server downtime: the server promises --max-interval-ms
  // (20 ms, below) at worst; the rest is what a loaded 2-core machine's scheduling adds.
  std::uint64_t kill_bound_ns = 500 * kMs;
  std::uint64_t latency_p50_ns = 0;  // the hangs' median signal latency must not exceed this (0: not judged)
};

// ---- the worker side -------------------------------------------------------------

// A worker process's operations: every acquire and release goes through apply(), which
// logs the intent before and the outcome after.
class WorkerOps {
 public:
  WorkerOps(const Config& config, WorkerLog& log) : config_(config), log_(log), pid_(::getpid()) {
    if (fifo()) {
      shmtimer::FifoClientOptions options;
      options.open_attempts = 100;  // ride out a server restart
      options.open_retry_interval = 10ms;
      client_ = std::make_shared<shmtimer::FifoTimerClient>(config.fifo, kServerSignal, options);
      reader_.emplace(shmtimer::TableReader::open(config.table));
    } else {
      client_ = std::make_shared<shmtimer::ShmTimerClient>(shmtimer::Table::open(config.table), kServerSignal);
    }
  }

  bool fifo() const { return log_.uses_fifo.load() != 0; }
  WorkerLog& log() { return log_; }

  // Arms `scope` to expire at `deadline_ns`, or releases it (0).
  void apply(ScopeRecord& record, const std::string& scope, std::uint64_t deadline_ns) {
    const std::uint64_t held = record.done.load();
    // A new timer: an older late release excuses nothing any more. (A scope is armed again
    // only after the other watched scopes have had their turn, 150 ms at least, so no
    // signal for the old timer can still be on its way.)
    if (deadline_ns != 0) record.late_deadline_ns.store(0);
    record.intent.store(deadline_ns);
    record.done.store(fifo() ? apply_via_fifo(scope, deadline_ns) : apply_to_table(scope, deadline_ns));
    if (deadline_ns == 0 && held != 0 && monotonic_now_ns() >= held) record.late_deadline_ns.store(held);
    log_.ops.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  // Returns the deadline the table now holds for the scope (0: none).
  std::uint64_t apply_to_table(const std::string& scope, std::uint64_t deadline_ns) {
    if (deadline_ns != 0)
      client_->acquire(scope, shmtimer::from_table_ns(deadline_ns));
    else
      client_->release(scope);
    return deadline_ns;
  }

  // A FIFO request is confirmed in the table before the thread goes on, so each thread
  // has at most one request in flight and knows which. Only a server that dies before
  // applying it can lose it (the next server makes a new FIFO), and the soak restarts
  // every server it kills: so when the header names a server other than the one before
  // the send while the table still lacks the request's effect, the request may be lost,
  // and it is sent again at once. Sending an acquire or a release twice is harmless (same
  // deadline; nothing left to release), so a resend the new server did not need costs
  // nothing. Thus no request is ever lost for good, and the soak excuses none: a FIFO
  // hang is owed its kill exactly as a table hang is. A request that the same server
  // leaves unapplied for the kill bound is a failure (fifo_unapplied); the thread goes on.
  std::uint64_t apply_via_fifo(const std::string& scope, std::uint64_t deadline_ns) {
    for (;;) {
      const pid_t server = reader_->header().server_pid;  // before the send: a server after it may have lost it
      if (!send(scope, deadline_ns)) continue;
      const std::uint64_t sent = monotonic_now_ns();
      for (;;) {
        std::this_thread::sleep_for(500us);
        if (const auto held = applied(scope, deadline_ns)) {
          (deadline_ns != 0 ? log_.fifo_acquires : log_.fifo_releases).fetch_add(1);
          return *held;
        }
        if (reader_->header().server_pid != server) {
          log_.fifo_resent.fetch_add(1);
          break;
        }
        if (monotonic_now_ns() - sent > config_.kill_bound_ns) {
          log_.fifo_unapplied.fetch_add(1);
          return deadline_ns;
        }
      }
    }
  }

  // False when no server took it (nothing was written: the client was told); retried.
  bool send(const std::string& scope, std::uint64_t deadline_ns) {
    try {
      if (deadline_ns != 0)
        client_->acquire(scope, shmtimer::from_table_ns(deadline_ns));
      else
        client_->release(scope);
      return true;
    } catch (const shmtimer::Error&) {
      log_.fifo_refused.fetch_add(1);
      std::this_thread::sleep_for(10ms);
      return false;
    }
  }

  // The deadline the table holds once the request is applied, nullopt before. The shim
  // arms an acquired FIFO scope and frees a released one. Its deadline went through the
  // protocol's wall-clock seconds, so it may differ from the logged one by microseconds.
  std::optional<std::uint64_t> applied(const std::string& scope, std::uint64_t deadline_ns) const {
    std::optional<std::uint64_t> armed;
    for (const auto& row : reader_->rows())
      if (row.pid == pid_ && row.origin == shmtimer::layout::Origin::kFifo && row.scope == scope)
        armed = row.deadline_ns;
    if (deadline_ns != 0) return armed;
    return armed ? std::nullopt : std::optional<std::uint64_t>(0);
  }

  const Config& config_;
  WorkerLog& log_;
  pid_t pid_;
  std::shared_ptr<shmtimer::TimerClient> client_;
  std::optional<shmtimer::TableReader> reader_;  // FIFO workers: to see their requests applied
};

// One worker thread: cycles through its watched scopes (arm for 50-300 ms, release before
// the deadline, outlive it), with busy load in between on table workers.
class WorkerThread {
 public:
  WorkerThread(WorkerOps& ops, int thread, unsigned seed) : ops_(ops), thread_(thread), rng_(seed) {
    for (int s = 0; s < soak::kScopesPerThread; ++s)
      scopes_.push_back("t" + std::to_string(thread) + (s < soak::kWatchedScopes ? "-w" : "-b") + std::to_string(s));
  }

  [[noreturn]] void run() {
    for (int w = 0;; w = (w + 1) % soak::kWatchedScopes) watch(w);
  }

 private:
  ScopeRecord& record(int s) { return ops_.log().scopes[thread_][s]; }

  void watch(int w) {
    if (released_[w] != 0) {
      pass_time_until(released_[w] + kSurvivalMarginNs);
      ops_.log().survived.fetch_add(1);
      released_[w] = 0;
    }
    const std::uint64_t armed = monotonic_now_ns();
    const std::uint64_t span = (50 + rng_() % 250) * kMs;
    ops_.apply(record(w), scopes_[w], armed + span);
    // Half the releases come in the first third of the timer, half anywhere after it up to
    // the deadline itself: a server that signals early, by however little, then finds
    // timers still armed that it must not act on (each signal is judged as it arrives).
    const std::uint64_t third = span / 3;
    pass_time_until(armed + (rng_() % 2 == 0 ? rng_() % third : third + rng_() % (span - third)));
    const std::uint64_t held = record(w).done.load();  // the table's deadline (FIFO: via wall-clock seconds)
    ops_.apply(record(w), scopes_[w], 0);
    if (monotonic_now_ns() < held)
      released_[w] = held;  // released in time: the process must outlive it
    else
      ops_.log().late_releases.fetch_add(1);  // descheduled, or slowed by a restart: a kill was allowed
  }

  // Sleeps (FIFO workers) or hammers the busy scopes (table workers) until `until_ns`.
  void pass_time_until(std::uint64_t until_ns) {
    for (std::uint64_t now = monotonic_now_ns(); now < until_ns; now = monotonic_now_ns()) {
      if (!ops_.fifo() && until_ns - now > kMs) busy_burst();
      std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<std::uint64_t>(until_ns - now, kMs)));
    }
  }

  void busy_burst() {
    for (int op = 0; op < 50; ++op) {
      const int s = soak::kWatchedScopes + static_cast<int>(rng_() % soak::kBusyScopes);
      ops_.apply(record(s), scopes_[s], monotonic_now_ns() + (2000 + rng_() % 2000) * kMs);
      ops_.apply(record(s), scopes_[s], 0);
    }
  }

  WorkerOps& ops_;
  int thread_;
  std::mt19937 rng_;
  std::vector<std::string> scopes_;
  std::uint64_t released_[soak::kWatchedScopes] = {};  // deadline released in time, still to outlive
};

WorkerLog* g_signalled_log = nullptr;
std::uint64_t g_kill_bound_ns = 0;

// The server's signal: judge what the worker held at this moment, then die of the signal
// (SA_RESETHAND restores the default action; the raised signal is delivered once this
// handler returns), so that the soak still tells a server kill from a chaos kill.
void on_server_signal(int) {
  const std::uint64_t now = monotonic_now_ns();
  g_signalled_log->verdict.store(g_signalled_log->judge(now, g_kill_bound_ns));
  g_signalled_log->signalled_ns.store(now);
  ::raise(kServerSignal);
}

[[noreturn]] void worker_main(const Config& config, WorkerLog& log, unsigned seed) {
  g_signalled_log = &log;
  g_kill_bound_ns = config.kill_bound_ns;
  struct sigaction action{};
  action.sa_handler = on_server_signal;
  action.sa_flags = SA_RESETHAND;
  if (::sigaction(kServerSignal, &action, nullptr) != 0) ::_exit(4);
  std::mt19937 rng(seed);
  std::optional<WorkerOps> ops;
  try {
    ops.emplace(config, log);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "worker: %s\n", e.what());
    ::_exit(3);
  }
  for (int t = 0; t < soak::kThreadsPerWorker; ++t)
    std::thread([&ops, t, seed] { WorkerThread(*ops, t, seed * 31 + t).run(); }).detach();
  // After a while the main thread hangs inside a short timer while the others work on,
  // whatever state they are in: the server must kill us.
  std::this_thread::sleep_for(std::chrono::milliseconds(500 + rng() % 2500));
  log.hang_started_ns.store(monotonic_now_ns());
  ops->apply(log.hang, "hang", monotonic_now_ns() + (30 + rng() % 90) * kMs);
  for (;;) ::pause();
}

// ---- the soak side -----------------------------------------------------------------

enum Path { kTablePath = 0, kFifoPath = 1 };  // indexes the per-path counts

struct Outcome {
  std::uint64_t workers = 0, ops = 0, chaos_kills = 0, server_restarts = 0;
  std::uint64_t survived[2] = {}, late_releases = 0;
  std::uint64_t fifo_acquires = 0, fifo_releases = 0, fifo_refused = 0, fifo_resent = 0, fifo_unapplied = 0;
  std::uint64_t hangs_reaped[2] = {}, hangs_across_restart = 0, deserved_kills = 0;
  std::uint64_t false_kills = 0, missed_kills = 0, missed_across_restart = 0, late_kills = 0, unexpected_exits = 0;
  std::uint64_t stuck_slots = 0;
  std::uint64_t min_survived = kDefaultMinSurvivedPerPath;  // per path, for the run to count
  std::uint64_t latency_p50_ns = 0;
  std::vector<double> signal_latencies_ms, reap_latencies_ms;  // hangs: deadline to the handler, to waitpid

  void add(const WorkerLog& log) {
    ops += log.ops.load();
    survived[log.uses_fifo.load() ? kFifoPath : kTablePath] += log.survived.load();
    late_releases += log.late_releases.load();
    fifo_acquires += log.fifo_acquires.load();
    fifo_releases += log.fifo_releases.load();
    fifo_refused += log.fifo_refused.load();
    fifo_resent += log.fifo_resent.load();
    fifo_unapplied += log.fifo_unapplied.load();
  }
  bool exercised() const {
    return survived[kTablePath] >= min_survived && survived[kFifoPath] >= min_survived &&
           hangs_reaped[kTablePath] > 0 && hangs_reaped[kFifoPath] > 0;
  }
  bool latency_within_bound() const;
  bool passed() const {
    return false_kills == 0 && missed_kills == 0 && late_kills == 0 && unexpected_exits == 0 && fifo_unapplied == 0 &&
           stuck_slots == 0 && latency_within_bound() && exercised();
  }
};

class Soak {
 public:
  explicit Soak(Config config) : config_(std::move(config)), rng_(config_.seed) {
    logs_ = static_cast<WorkerLog*>(
        ::mmap(nullptr, sizeof(WorkerLog) * kMaxWorkerLogs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    if (logs_ == MAP_FAILED) throw std::runtime_error("mmap");
  }

  Outcome run() {
    start_server();
    for (int i = 0; i < config_.workers; ++i) spawn_worker();
    const auto end = monotonic_now_ns() + static_cast<std::uint64_t>(config_.duration_s * 1e9);
    std::uint64_t next_chaos_kill = monotonic_now_ns() + 300 * kMs;
    std::uint64_t next_server_kill = monotonic_now_ns() + (1000 + rng_() % 2000) * kMs;
    while (monotonic_now_ns() < end) {
      reap_deaths();
      check_missed_kills();
      const std::uint64_t now = monotonic_now_ns();
      if (now >= next_chaos_kill) {
        chaos_kill_a_worker();
        next_chaos_kill = now + (200 + rng_() % 600) * kMs;
      }
      if (server_pid_ > 0 && now >= next_server_kill) {
        ::kill(server_pid_, SIGKILL);
        ::waitpid(server_pid_, nullptr, 0);
        server_pid_ = 0;
        down_since_ = now;
        restart_at_ = now + (10 + rng_() % 150) * kMs;
      }
      if (server_pid_ == 0 && now >= restart_at_) {
        start_server();
        downtimes_.push_back({down_since_, monotonic_now_ns()});
        ++outcome_.server_restarts;
        next_server_kill = monotonic_now_ns() + (1000 + rng_() % 2500) * kMs;
      }
      std::this_thread::sleep_for(1ms);
    }
    finish();
    return outcome_;
  }

 private:
  struct Live {
    int log;
    bool chaos = false;  // we SIGKILLed it
  };

  void start_server() {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execl(config_.shmtimerd.c_str(), config_.shmtimerd.c_str(), "--table", config_.table.c_str(), "--fifo",
              config_.fifo.c_str(), "--capacity", "8192", "--max-interval-ms", "20", "--sweep-interval-ms", "200",
              "--log-level", "error", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    server_pid_ = pid;
    for (int i = 0; i < 3000; ++i) {
      try {
        if (shmtimer::TableReader::open(config_.table).header().server_pid == pid) return;
      } catch (const shmtimer::Error&) {
      }
      std::this_thread::sleep_for(1ms);
    }
    throw std::runtime_error("shmtimerd did not start");
  }

  void spawn_worker() {
    const int index = next_log_++ % kMaxWorkerLogs;
    WorkerLog& log = logs_[index];
    std::memset(static_cast<void*>(&log), 0, sizeof log);
    log.uses_fifo.store(index % 3 == 2 ? 1 : 0);  // a third of the workers speak the FIFO protocol
    const unsigned seed = static_cast<unsigned>(rng_());
    const pid_t pid = ::fork();
    if (pid == 0) worker_main(config_, log, seed);
    log.pid.store(pid);
    live_[pid] = {index};
    ++outcome_.workers;
  }

  void chaos_kill_a_worker() {
    if (live_.empty()) return;
    auto it = std::next(live_.begin(), static_cast<long>(rng_() % live_.size()));
    it->second.chaos = true;
    ::kill(it->first, SIGKILL);
  }

  // Server downtime that overlaps [from, to].
  std::uint64_t downtime_between(std::uint64_t from, std::uint64_t to) const {
    std::uint64_t total = 0;
    for (const auto& [down, up] : downtimes_)
      if (up > from && down < to) total += std::min(up, to) - std::max(down, from);
    if (server_pid_ == 0 && to > down_since_) total += to - std::max(down_since_, from);
    return total;
  }
  bool restarted_between(std::uint64_t from, std::uint64_t to) const {
    for (const auto& [down, up] : downtimes_)
      if (up > from && down < to) return true;
    return server_pid_ == 0 && to > down_since_;
  }

  void reap_deaths() {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      const std::uint64_t now = monotonic_now_ns();
      auto it = live_.find(pid);
      if (it == live_.end()) continue;
      const WorkerLog& log = logs_[it->second.log];
      outcome_.add(log);
      if (WIFSIGNALED(status) && WTERMSIG(status) == kServerSignal) {  // the server's (chaos kills are SIGKILL)
        judge_server_kill(pid, log, now);
      } else if (it->second.chaos) {
        ++outcome_.chaos_kills;
      } else {
        std::fprintf(stderr, "UNEXPECTED EXIT: worker %d ended by itself (status %d)\n", pid, status);
        ++outcome_.unexpected_exits;
      }
      live_.erase(it);
      if (!finishing_) spawn_worker();
    }
  }

  // A server kill is deserved only if the worker held a timer armed and expired when the
  // signal arrived (its handler judged that then): its hang, or a watched timer whose
  // release took effect too late (the thread was descheduled past the deadline; or, around
  // a server restart, a FIFO release died in the pipe and the next server reaped first, or
  // a FIFO acquire reached the next server after its deadline). A signal that found every
  // timer released in time or not yet due is a false kill, however early it came.
  void judge_server_kill(pid_t pid, const WorkerLog& log, std::uint64_t reaped_ns) {
    const bool fifo = log.uses_fifo.load() != 0;
    const std::uint64_t signalled = log.signalled_ns.load();
    switch (log.verdict.load()) {
      case soak::Verdict::kHangExpired: {
        ++outcome_.hangs_reaped[fifo ? kFifoPath : kTablePath];
        const std::uint64_t deadline = log.hang.done.load() != 0 ? log.hang.done.load() : log.hang.intent.load();
        outcome_.signal_latencies_ms.push_back(static_cast<double>(signalled - deadline) / 1e6);
        outcome_.reap_latencies_ms.push_back(static_cast<double>(reaped_ns - deadline) / 1e6);
        const std::uint64_t started = log.hang_started_ns.load();
        if (restarted_between(started, deadline)) ++outcome_.hangs_across_restart;
        if (signalled > deadline + config_.kill_bound_ns + downtime_between(started, signalled)) {
          ++outcome_.late_kills;
          std::fprintf(stderr, "LATE KILL: worker %d (%s) was signalled %.1f ms after its deadline\n", pid,
                       fifo ? "fifo" : "table", static_cast<double>(signalled - deadline) / 1e6);
        }
        return;
      }
      case soak::Verdict::kTimerExpired: ++outcome_.deserved_kills; return;
      case soak::Verdict::kNothingExpired:
      case soak::Verdict::kNotSignalled: break;
    }
    ++outcome_.false_kills;
    std::fprintf(stderr, "FALSE KILL: worker %d (%s) was signalled by the server while holding no expired timer\n", pid,
                 fifo ? "fifo" : "table");
  }

  // A hang is owed its kill within the bound of its deadline, plus any server downtime
  // since it started; a FIFO hang too (a request lost with a server is resent at once).
  void check_missed_kills() {
    const std::uint64_t now = monotonic_now_ns();
    for (auto& [pid, live] : live_) {
      const WorkerLog& log = logs_[live.log];
      const std::uint64_t deadline = log.hang.intent.load();
      if (deadline == 0 || live.chaos) continue;
      const std::uint64_t started = log.hang_started_ns.load();
      if (now <= deadline + config_.kill_bound_ns + downtime_between(started, now)) continue;
      ++outcome_.missed_kills;
      if (restarted_between(started, now)) ++outcome_.missed_across_restart;
      std::fprintf(stderr, "MISSED KILL: worker %d (%s) was not reaped %.0f ms after its deadline\n", pid,
                   log.uses_fifo.load() ? "fifo" : "table", static_cast<double>(now - deadline) / 1e6);
      live.chaos = true;  // end it ourselves
      ::kill(pid, SIGKILL);
    }
  }

  void finish() {
    finishing_ = true;
    for (auto& [pid, live] : live_) {
      live.chaos = true;
      ::kill(pid, SIGKILL);
    }
    while (!live_.empty()) {
      reap_deaths();
      std::this_thread::sleep_for(1ms);
    }
    if (server_pid_ == 0) start_server();
    // The server's sweep frees every slot of the dead workers, including any left mid-claim.
    for (int i = 0; i < 5000; ++i) {
      outcome_.stuck_slots = shmtimer::TableReader::open(config_.table).header().used_slots;
      if (outcome_.stuck_slots == 0) break;
      std::this_thread::sleep_for(1ms);
    }
    ::kill(server_pid_, SIGTERM);
    ::waitpid(server_pid_, nullptr, 0);
  }

  Config config_;
  std::mt19937 rng_;
  WorkerLog* logs_;
  int next_log_ = 0;
  std::map<pid_t, Live> live_;
  pid_t server_pid_ = 0;
  std::uint64_t down_since_ = 0, restart_at_ = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> downtimes_;
  bool finishing_ = false;
  Outcome outcome_;
};

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5))];
}

bool Outcome::latency_within_bound() const {
  return latency_p50_ns == 0 || percentile(signal_latencies_ms, 0.5) * 1e6 <= static_cast<double>(latency_p50_ns);
}

void print_summary(const Config& config, const Outcome& o) {
  fmt::print("chaos soak, {:.0f} s, seed {}\n", config.duration_s, config.seed);
  fmt::print("  operations            {} (acquire or release, logged before and after)\n", o.ops);
  fmt::print("  workers run           {} (a third on the FIFO protocol)\n", o.workers);
  fmt::print("  releases outlived     table {}, FIFO {} (released in time, alive {} ms past the deadline)\n",
             o.survived[kTablePath], o.survived[kFifoPath], kSurvivalMarginNs / kMs);
  fmt::print("  late releases         {} (took effect past the deadline: a kill was allowed)\n", o.late_releases);
  fmt::print("  FIFO requests         {} acquires, {} releases seen applied; {} refused, {} resent after a restart\n",
             o.fifo_acquires, o.fifo_releases, o.fifo_refused, o.fifo_resent);
  fmt::print("  hangs reaped          table {}, FIFO {} ({} hung across a server restart)\n",
             o.hangs_reaped[kTablePath], o.hangs_reaped[kFifoPath], o.hangs_across_restart);
  fmt::print("  deserved kills        {} (a watched timer expired before its release took effect)\n", o.deserved_kills);
  fmt::print("  chaos kills           {} workers SIGKILLed at random points\n", o.chaos_kills);
  fmt::print("  server restarts       {} (SIGKILLed at random points)\n", o.server_restarts);
  fmt::print(
      "  signal latency        p50 {:.2f} ms, p99 {:.2f} ms, max {:.2f} ms (a hang's deadline to its handler){}\n",
      percentile(o.signal_latencies_ms, 0.5), percentile(o.signal_latencies_ms, 0.99),
      percentile(o.signal_latencies_ms, 1.0),
      o.latency_p50_ns == 0 ? std::string()
                            : fmt::format("; p50 bound {:.1f} ms", static_cast<double>(o.latency_p50_ns) / 1e6));
  fmt::print("  reap latency          p50 {:.2f} ms, p99 {:.2f} ms, max {:.2f} ms (deadline to waitpid)\n",
             percentile(o.reap_latencies_ms, 0.5), percentile(o.reap_latencies_ms, 0.99),
             percentile(o.reap_latencies_ms, 1.0));
  fmt::print("  false kills           {}\n", o.false_kills);
  fmt::print("  missed kills          {} ({} across a server restart); bound {:.0f} ms past the deadline\n",
             o.missed_kills, o.missed_across_restart, static_cast<double>(config.kill_bound_ns) / 1e6);
  fmt::print("  late kills            {} (signalled, but past the bound)\n", o.late_kills);
  fmt::print("  FIFO unapplied        {} (a live server did not apply a request within the bound)\n", o.fifo_unapplied);
  fmt::print("  unexpected exits      {}\n", o.unexpected_exits);
  fmt::print("  stuck slots           {}\n", o.stuck_slots);
  if (!o.exercised())
    fmt::print("  NOT EXERCISED: need {} outlived releases and a reaped hang on each path\n", o.min_survived);
  fmt::print("soak: {} passed, {} failed\n", o.passed() ? 1 : 0, o.passed() ? 0 : 1);
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"chaos_soak: workers, a server and SIGKILL at random points; judges every death"};
  app.add_option("--shmtimerd", config.shmtimerd, "The daemon to run")->required();
  app.add_option("--duration-s", config.duration_s, "How long (600 for the long mode)")->capture_default_str();
  app.add_option("--workers", config.workers, "Worker processes kept running")->capture_default_str();
  app.add_option("--seed", config.seed, "Random seed")->capture_default_str();
  std::uint64_t min_survived = kDefaultMinSurvivedPerPath;
  app.add_option("--min-outlived", min_survived,
                 "Outlived releases needed on each path (table, FIFO) for the run to count")
      ->capture_default_str();
  double kill_bound_ms = 500;
  app.add_option("--kill-bound-ms", kill_bound_ms,
                 "How late after its deadline (plus server downtime) a kill may come before it counts as missed")
      ->capture_default_str();
  double latency_p50_ms = 0;
  app.add_option("--latency-p50-ms", latency_p50_ms,
                 "The hangs' median signal latency may not exceed this (0: not judged)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  config.kill_bound_ns = static_cast<std::uint64_t>(kill_bound_ms * 1e6);
  config.latency_p50_ns = static_cast<std::uint64_t>(latency_p50_ms * 1e6);
  spdlog::set_level(spdlog::level::off);
  // In its pid namespace the soak is always pid 1: a random part keeps two runs (two build
  // trees, two engineers) off each other's table and FIFO.
  const std::string name = fmt::format("/dev/shm/shmtimer-soak-{}-{:08x}", ::getpid(), std::random_device{}());
  config.table = name + ".table";
  config.fifo = name + ".fifo";
  ::signal(SIGPIPE, SIG_IGN);
  Outcome o;
  try {
    o = Soak(config).run();
    o.min_survived = min_survived;
    o.latency_p50_ns = config.latency_p50_ns;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chaos_soak: %s\n", e.what());
    return 2;
  }
  ::unlink(config.table.c_str());
  print_summary(config, o);
  return o.passed() ? 0 : 1;
}
