// Bursts and end-to-end kills (issue 28). In a collective hang every rank of a host hangs
// together, so the watchdog's real workload is a burst: many timers falling due in the
// same millisecond. Every row here is measured from the deadline to what a user sees
// (the signal sent, and the worker's parent reaping it in waitpid), side by side with its
// floor in the same run: the same processes killed by a plain loop of kill() at the
// deadline, from a thread that sleeps until it exactly as the server's does.
//
//   BM_Burst:          N hung processes, one shared deadline; the server, or the floor.
//   BM_BurstMixedLoad: a burst of 500 while 200 punctual workers arm and disarm at full
//                      speed; their pair cost while idle and during the burst.
// (End to end, one timer at a time: BM_ExpiryToSignal in server_bench.cpp, with its floor.)
#include <linux/futex.h>
#include <malloc.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bench_support.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/timer_server.hpp"
#include "thread_priority.hpp"

namespace {

using shmtimer::bench::BenchTable;
using shmtimer::bench::quantile;
using shmtimer::bench::SharedBlock;

// How far after the "go" the shared deadline lies: past two of the server's longest
// sleeps (its preparation horizon), as a real timeout of seconds or minutes is.
constexpr std::uint64_t kDeadlineLeadNs = 500'000'000;

std::uint64_t now_ns() { return shmtimer::monotonic_now_ns(); }

double ms_after(std::uint64_t at_ns, std::uint64_t deadline_ns) {
  return (static_cast<double>(at_ns) - static_cast<double>(deadline_ns)) / 1e6;
}

// What the forked processes and this one share: the go word (a futex: a pipe's write
// end would be inherited by every process forked later, and keep its readers waiting),
// the deadline, and how many armed it.
struct BurstShared {
  std::atomic<std::uint32_t> go{0};
  std::atomic<std::uint64_t> deadline_ns{0};
  std::atomic<int> armed{0};
};

// N hung workers, forked before any thread of this benchmark starts. Each waits for
// go(), arms one timer at the shared deadline (a table timer, SIGKILL), and hangs in
// pause(): with a server, a hung rank; without one, a target for the floor.
class HungFleet {
 public:
  HungFleet(const std::shared_ptr<shmtimer::Table>& table, int count) {
    pids_.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
      const pid_t pid = ::fork();
      if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
      if (pid == 0) hang(table, i);
      pids_.push_back(pid);
      alive_.insert(pid);
    }
  }
  ~HungFleet() {  // the workers a failed row left: never a pid already reaped
    for (const pid_t pid : alive_) ::kill(pid, SIGKILL);
    for (const pid_t pid : alive_) ::waitpid(pid, nullptr, 0);
  }
  HungFleet(const HungFleet&) = delete;
  HungFleet& operator=(const HungFleet&) = delete;

  // Every worker arms `deadline_ns`; returns once all have.
  void go(std::uint64_t deadline_ns) {
    shared_->deadline_ns.store(deadline_ns);
    shared_->go.store(1);
    ::syscall(SYS_futex, &shared_->go, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
    while (shared_->armed.load() < static_cast<int>(pids_.size()))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (now_ns() >= deadline_ns) throw std::runtime_error("the fleet armed too late for its deadline");
  }
  // Waits for every worker to die; returns when each was reaped, by pid. A worker that
  // was not killed by SIGKILL makes the row fail.
  std::unordered_map<pid_t, std::uint64_t> reap_all() {
    std::unordered_map<pid_t, std::uint64_t> reaped;
    while (!alive_.empty()) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, 0);
      if (pid < 0) throw std::runtime_error("waitpid: " + std::string(std::strerror(errno)));
      const std::uint64_t at = now_ns();
      if (alive_.erase(pid) == 0) throw std::runtime_error("a punctual worker died: pid " + std::to_string(pid));
      if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        throw std::runtime_error("pid " + std::to_string(pid) + " did not die of SIGKILL");
      reaped.emplace(pid, at);
    }
    return reaped;
  }
  const std::vector<pid_t>& pids() const { return pids_; }

 private:
  [[noreturn]] void hang(const std::shared_ptr<shmtimer::Table>& table, int index) {
    while (shared_->go.load() == 0) ::syscall(SYS_futex, &shared_->go, FUTEX_WAIT, 0u, nullptr, nullptr, 0);
    shmtimer::ShmTimerClient client(table, SIGKILL, /*require_server=*/false);  // the floor has none
    const std::uint64_t deadline = shared_->deadline_ns.load();
    client.acquire("burst-" + std::to_string(index), shmtimer::from_table_ns(deadline));
    shared_->armed.fetch_add(1);
    for (;;) ::pause();
  }

  SharedBlock<BurstShared> shared_;
  std::vector<pid_t> pids_;
  std::unordered_set<pid_t> alive_;
};

// The deadline-relative times of one or more bursts, pooled: when each worker was
// signalled, and when its parent reaped it.
struct BurstTimes {
  std::vector<double> signalled_ms, reaped_ms, burst_signalled_max_ms, burst_reaped_max_ms;

  void add(const std::vector<double>& signalled, const std::vector<double>& reaped) {
    signalled_ms.insert(signalled_ms.end(), signalled.begin(), signalled.end());
    reaped_ms.insert(reaped_ms.end(), reaped.begin(), reaped.end());
    burst_signalled_max_ms.push_back(quantile(signalled, 1.0));
    burst_reaped_max_ms.push_back(quantile(reaped, 1.0));
  }
  // Counters named `prefix` + what: over every worker of every burst, and (max_p50) the
  // median burst's last kill and last reap, so one slow burst shows only in the max.
  void report(benchmark::State& state, const std::string& prefix) const {
    state.counters[prefix + "bursts"] = static_cast<double>(burst_reaped_max_ms.size());
    state.counters[prefix + "signalled_p50_ms"] = quantile(signalled_ms, 0.5);
    state.counters[prefix + "signalled_p99_ms"] = quantile(signalled_ms, 0.99);
    state.counters[prefix + "signalled_max_ms"] = quantile(signalled_ms, 1.0);
    state.counters[prefix + "reaped_p50_ms"] = quantile(reaped_ms, 0.5);
    state.counters[prefix + "reaped_p99_ms"] = quantile(reaped_ms, 0.99);
    state.counters[prefix + "reaped_max_ms"] = quantile(reaped_ms, 1.0);
    state.counters[prefix + "burst_signalled_max_p50_ms"] = quantile(burst_signalled_max_ms, 0.5);
    state.counters[prefix + "burst_reaped_max_p50_ms"] = quantile(burst_reaped_max_ms, 0.5);
  }
};

// A started TimerServer that records when it signalled each pid ("kill worker process").
class RecordingServer {
 public:
  RecordingServer(const std::shared_ptr<shmtimer::Table>& table, int realtime_priority)
      : server_(table, options(realtime_priority)) {
    server_.start();
  }
  ~RecordingServer() { server_.stop(); }
  RecordingServer(const RecordingServer&) = delete;
  RecordingServer& operator=(const RecordingServer&) = delete;

  // When each of `pids` was signalled; waits (up to 10 s) for records still on their way.
  std::vector<double> signalled_ms(const std::vector<pid_t>& pids, std::uint64_t deadline_ns) {
    std::vector<double> ms;
    for (int wait = 0; wait < 10'000; ++wait) {
      {
        const std::lock_guard lock(mutex_);
        if (std::all_of(pids.begin(), pids.end(), [&](pid_t p) { return sent_ns_.count(p) != 0; })) {
          for (const pid_t p : pids) ms.push_back(ms_after(sent_ns_.at(p), deadline_ns));
          return ms;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    throw std::runtime_error("the server did not record a kill of every worker");
  }

 private:
  shmtimer::ServerOptions options(int realtime_priority) {
    shmtimer::ServerOptions o;
    o.realtime_priority = realtime_priority;
    o.log_event = [this](std::string_view name, const shmtimer::TimerEvent* e) {
      if (e == nullptr || name != "kill worker process") return;
      const std::lock_guard lock(mutex_);
      sent_ns_[e->pid] = e->at_ns;
    };
    return o;
  }

  std::mutex mutex_;
  std::unordered_map<pid_t, std::uint64_t> sent_ns_;
  shmtimer::TimerServer server_;
};

// One burst of `fleet`, due `lead_ns` from now: killed by `server`, or (null) by the
// floor's plain kill() loop, whose thread runs at `realtime_priority` (0: normal), as the
// server's does.
void run_burst(HungFleet& fleet, RecordingServer* server, int realtime_priority, BurstTimes& times,
               std::uint64_t lead_ns = kDeadlineLeadNs) {
  const std::uint64_t deadline = now_ns() + lead_ns;
  const std::vector<pid_t> pids = fleet.pids();
  std::vector<double> signalled;
  std::thread floor;
  if (server == nullptr) {
    signalled.resize(pids.size());
    floor = std::thread([&] {
      if (realtime_priority != 0 && !shmtimer::run_at_realtime_priority(realtime_priority).empty())
        throw std::runtime_error("the floor's thread could not take a realtime priority");
      shmtimer::bench::sleep_until_ns(deadline);
      for (std::size_t i = 0; i < pids.size(); ++i) {
        ::kill(pids[i], SIGKILL);
        signalled[i] = ms_after(now_ns(), deadline);
      }
    });
  }
  fleet.go(deadline);
  const auto reaped_at = fleet.reap_all();
  if (floor.joinable()) floor.join();
  if (server != nullptr) signalled = server->signalled_ms(pids, deadline);
  std::vector<double> reaped;
  for (const pid_t p : pids) reaped.push_back(ms_after(reaped_at.at(p), deadline));
  times.add(signalled, reaped);
}

// What earlier rows left in this process, which each of a thousand forked workers would
// copy the page tables of at fork and tear down at its death, slowing both the floor's
// reaping and the server's by whatever row ran before: BM_ScanRound's table, and freed
// heap not yet given back.
void forget_other_rows() {
  shmtimer::bench::drop_scan_table();
  ::malloc_trim(0);
}

// The priority the realtime rows give the watchdog thread and the floor's.
constexpr int kRealtimePriority = 10;
// Bursts per row: this many of the server's, each beside one of the floor's, the two in
// turns (which goes first alternates), so that drift on a noisy machine hits both alike.
constexpr int kBurstPairs = 4;

// One burst of `workers` hung processes: the server's, or (with_server false) the floor's.
// Forked before the server's threads start, as workers are not the server's children.
void burst(int workers, bool with_server, int priority, BurstTimes& times) {
  BenchTable t(4096, "burst");
  HungFleet fleet(t.table(), workers);
  std::unique_ptr<RecordingServer> server;
  if (with_server) server = std::make_unique<RecordingServer>(t.table(), priority);
  run_burst(fleet, server.get(), priority, times);
}

// range(0) workers; range(1): 1 = at a realtime priority (the server's
// ServerOptions::realtime_priority, and the floor's thread alike), 0 = normal.
void BM_Burst(benchmark::State& state) {
  forget_other_rows();
  const int workers = static_cast<int>(state.range(0));
  const int priority = state.range(1) == 1 ? kRealtimePriority : 0;
  BurstTimes server, floor;
  for (auto _ : state)
    for (int pair = 0; pair < kBurstPairs; ++pair)
      for (int leg = 0; leg < 2; ++leg) {
        const bool with_server = (pair + leg) % 2 == 0;
        burst(workers, with_server, priority, with_server ? server : floor);
      }
  server.report(state, "server_");
  floor.report(state, "floor_");
  state.counters["workers"] = workers;
  state.SetLabel(priority != 0 ? "SCHED_FIFO" : "normal priority");
}
BENCHMARK(BM_Burst)
    ->ArgsProduct({{1000}, {0, 1}})
    ->ArgNames({"workers", "realtime"})
    ->Iterations(1)
    ->Repetitions(1)  // kBurstPairs pairs of bursts, about 20 s a row
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- Mixed load ------------------------------------------------------------------------

// The calling thread at a realtime priority while in scope.
class RealtimeThread {
 public:
  explicit RealtimeThread(int priority) {
    if (!shmtimer::run_at_realtime_priority(priority).empty())
      throw std::runtime_error("this thread could not take a realtime priority");
  }
  ~RealtimeThread() {
    const sched_param normal{0};
    ::sched_setscheduler(0, SCHED_OTHER, &normal);
  }
  RealtimeThread(const RealtimeThread&) = delete;
  RealtimeThread& operator=(const RealtimeThread&) = delete;
};

constexpr int kPunctualWorkers = 200;
constexpr int kMixedBurst = 500;
constexpr int kSamplesPerWindow = 1024;
enum Phase : int { kWarmup, kIdleWindow, kBetween, kBurstWindow, kStop };

// Per punctual worker: pair samples (ns per pair, batches of 16) in the idle window and in
// the burst window, one every 50 µs of wall time at most, so each spans its window.
struct PunctualSamples {
  std::atomic<int> count[2];
  float ns[2][kSamplesPerWindow];
};
struct MixedShared {
  std::atomic<int> phase{kWarmup};
  PunctualSamples workers[kPunctualWorkers];
};

// A punctual worker: acquire+release pairs through the scope API at full speed, each
// timer 10 s ahead (never due), until the phase says stop.
[[noreturn]] void run_punctual(const std::shared_ptr<shmtimer::Table>& table, MixedShared& shared, int index) {
  shmtimer::ShmTimerClient client(table, SIGKILL, /*require_server=*/false);
  const std::string scope = shmtimer::bench::scope30(index);
  PunctualSamples& mine = shared.workers[index];
  auto last_sample = shmtimer::SteadyClock::now();
  for (;;) {
    const int phase = shared.phase.load(std::memory_order_relaxed);
    if (phase == kStop) ::_exit(0);
    // Each batch timed from its own start, and chosen for a sample before it runs: a
    // batch timed from the end of the last would carry the preemption between them, and
    // one chosen after it ran (50 µs since the last sample) would most often be the one
    // that was preempted.
    const auto start = shmtimer::SteadyClock::now();
    const int window = phase == kIdleWindow ? 0 : phase == kBurstWindow ? 1 : -1;
    const bool sampled = window >= 0 && start - last_sample >= std::chrono::microseconds(50);
    const auto deadline = start + std::chrono::seconds(10);
    for (int i = 0; i < shmtimer::bench::kBatch; ++i) {
      client.acquire(scope, deadline);
      client.release(scope);
    }
    const auto end = shmtimer::SteadyClock::now();
    if (sampled) {
      const int n = mine.count[window].load(std::memory_order_relaxed);
      if (n < kSamplesPerWindow) {
        mine.ns[window][n] = static_cast<float>(shmtimer::bench::elapsed_ns(start, end) / shmtimer::bench::kBatch);
        mine.count[window].store(n + 1, std::memory_order_relaxed);
      }
      last_sample = end;
    }
  }
}

// A burst of kMixedBurst hung workers while kPunctualWorkers arm and disarm at full speed:
// the server's burst (or the floor's) and the punctual workers' pair cost, idle (the
// 500 ms before the burst's workers arm) and during the burst (from their arming to the
// last reap). A punctual worker that dies fails the row.
void mixed_burst(bool with_server, BurstTimes& times, std::vector<double> pair_ns[2]) {
  BenchTable t(4096, "mixed");
  HungFleet fleet(t.table(), kMixedBurst);
  SharedBlock<MixedShared> shared;
  std::vector<pid_t> punctual;
  for (int i = 0; i < kPunctualWorkers; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) run_punctual(t.table(), *shared, i);
    punctual.push_back(pid);
  }
  std::unique_ptr<RecordingServer> server;
  if (with_server) server = std::make_unique<RecordingServer>(t.table(), kRealtimePriority);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  shared->phase.store(kIdleWindow);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  shared->phase.store(kBurstWindow);
  {
    // This thread reaps: at a normal priority among 200 busy workers its own wake-ups
    // took hundreds of milliseconds, for the floor and the server alike, and hid both.
    const RealtimeThread reaper(kRealtimePriority);
    // A second of lead: 500 workers take 150-350 ms to arm among 200 busy ones, and the
    // server prepares only what falls due within 200 ms.
    run_burst(fleet, server.get(), kRealtimePriority, times, 1'000'000'000);
  }
  shared->phase.store(kStop);
  for (const pid_t pid : punctual) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw std::runtime_error("punctual worker " + std::to_string(pid) + " did not end on its own");
  }
  for (const auto& w : shared->workers)
    for (int window = 0; window < 2; ++window)
      pair_ns[window].insert(pair_ns[window].end(), w.ns[window], w.ns[window] + w.count[window].load());
}

void BM_BurstMixedLoad(benchmark::State& state) {
  forget_other_rows();
  BurstTimes server, floor;
  std::vector<double> pair_ns[2];  // the server's bursts only: idle, burst
  std::vector<double> unused[2];
  for (auto _ : state)
    for (int pair = 0; pair < kBurstPairs; ++pair)
      for (int leg = 0; leg < 2; ++leg) {
        const bool with_server = (pair + leg) % 2 == 0;
        mixed_burst(with_server, with_server ? server : floor, with_server ? pair_ns : unused);
      }
  server.report(state, "server_");
  floor.report(state, "floor_");
  state.counters["workers"] = kMixedBurst;
  state.counters["punctual"] = kPunctualWorkers;
  state.counters["idle_pair_p50_ns"] = quantile(pair_ns[0], 0.5);
  state.counters["idle_pair_p99_ns"] = quantile(pair_ns[0], 0.99);
  state.counters["burst_pair_p50_ns"] = quantile(pair_ns[1], 0.5);
  state.counters["burst_pair_p99_ns"] = quantile(pair_ns[1], 0.99);
  state.counters["idle_pair_samples"] = static_cast<double>(pair_ns[0].size());
  state.counters["burst_pair_samples"] = static_cast<double>(pair_ns[1].size());
  state.SetLabel("SCHED_FIFO");
}
BENCHMARK(BM_BurstMixedLoad)->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
