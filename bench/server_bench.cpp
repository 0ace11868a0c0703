// The server: scan time against capacity and occupancy, expiry-to-signal latency under
// each scan policy, and CPU use while idle. (Table clients under a FIFO flood:
// flood_bench.cpp.)
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include "bench_support.hpp"
#include "process_control.hpp"
#include "process_maps.hpp"
#include "self_identity.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/timer_server.hpp"
#include "slot_ops.hpp"

namespace {

using namespace std::chrono_literals;
using shmtimer::bench::BenchTable;
using shmtimer::bench::fork_paused_child;
using shmtimer::bench::quantile;
using shmtimer::bench::report_percentiles_us;

// Claims `count` slots spread evenly over the table, owned by this process, armed an hour
// ahead (so a round scans them all and reaps none).
void fill(shmtimer::Table& table, std::uint64_t count) {
  const std::uint64_t step = std::max<std::uint64_t>(1, table.capacity() / std::max<std::uint64_t>(count, 1));
  const shmtimer::detail::NewKey owner{shmtimer::current_pid(), shmtimer::current_identity(), SIGKILL,
                                       shmtimer::layout::Origin::kTable};
  const std::uint64_t deadline = shmtimer::monotonic_now_ns() + 3600ULL * 1'000'000'000ULL;
  for (std::uint64_t n = 0, i = 0; n < count && i < table.capacity(); ++n, i += step) {
    const shmtimer::detail::ScopeKey key("slot-" + std::to_string(i));
    shmtimer::detail::try_claim(table, i, 0, owner, key);
    shmtimer::detail::arm_as_current_owner(table, i, deadline, SIGKILL);
  }
}

// The filled table of the last (capacity, percent) asked for: kept across calls, since
// Google Benchmark calls a benchmark once per repetition and filling 2^20 slots takes a
// while. One at a time, so at most one large table is in /dev/shm; the benchmarks after
// BM_ScanRound drop it (drop_scan_table), so its 320 MB are gone before they fork.
std::unique_ptr<BenchTable>& scan_table() {
  static std::unique_ptr<BenchTable> table;
  return table;
}
}  // namespace

void shmtimer::bench::drop_scan_table() { scan_table().reset(); }

namespace {
using shmtimer::bench::drop_scan_table;

const std::shared_ptr<shmtimer::Table>& filled_table(std::uint64_t capacity, std::uint64_t percent) {
  auto& table = scan_table();
  static std::pair<std::uint64_t, std::uint64_t> made{0, 0};
  if (!table || made != std::pair{capacity, percent}) {
    table.reset();
    table = std::make_unique<BenchTable>(capacity, "scan");
    fill(*table->table(), capacity * percent / 100);
    made = {capacity, percent};
  }
  return table->table();
}

// One server round over a table of range(0) slots, range(1) percent occupied.
void BM_ScanRound(benchmark::State& state) {
  const auto capacity = static_cast<std::uint64_t>(state.range(0));
  const auto percent = static_cast<std::uint64_t>(state.range(1));
  const auto& table = filled_table(capacity, percent);
  shmtimer::ServerOptions options;
  options.dead_owner_sweep_interval = std::chrono::hours(24);  // measured apart below
  shmtimer::TimerServer server(table, options);
  server.run_once();  // the first round includes the sweep
  const std::uint64_t now = shmtimer::monotonic_now_ns();
  for (auto _ : state) benchmark::DoNotOptimize(server.run_once_at(now));
  state.counters["slots"] = static_cast<double>(capacity);
  state.counters["occupied"] = static_cast<double>(capacity * percent / 100);
}
BENCHMARK(BM_ScanRound)
    ->ArgsProduct({{1 << 10, 1 << 16, 1 << 20}, {1, 100}})
    ->ArgNames({"capacity", "percent"})
    ->MinTime(0.2)
    ->Unit(benchmark::kMicrosecond);

// Expiry to signal: a child arms a timer of range(1) ms and hangs, after a random delay so
// the server is at a random phase. Two measures per child: lateness, from the deadline to
// the server sending the signal, recorded by the server (its "kill worker process" event);
// and the time from the deadline to waitpid() seeing the child die, which adds the kernel
// tearing it down (BM_KillToReap measures that part alone). After each child, its floor
// (kill_at_deadline_us): the same deadline → waitpid with a plain kill() instead of the
// server, side by side in the row (floor_reaped_*). range(0): 0 = default policy,
// 1 = pure spin.
// Children per row: 100, so that p99 is a percentile (the second largest), not the maximum.
constexpr int kExpirySamples = 100;

// CPU time the hypervisor gave to others while this VM's vCPUs wanted to run ("steal",
// the 8th number of /proc/stat's cpu line, all vCPUs), in ms; 0 on bare metal.
double stolen_ms() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  std::uint64_t ticks[8] = {};
  stat >> cpu;
  for (auto& t : ticks) stat >> t;
  return static_cast<double>(ticks[7]) * 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The floor under one sample's deadline → waitpid, taken right after it, so that the two
// alternate and drift hits both alike: a hung child killed by a plain kill() from this
// thread when it wakes at a deadline `timeout` away (at a random phase, as the server's
// sample), and reaped here. Returns the time from the deadline to waitpid(), in µs.
double kill_at_deadline_us(std::chrono::milliseconds timeout, std::mt19937& rng) {
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));
  const pid_t child = fork_paused_child([] {});
  const std::uint64_t deadline =
      shmtimer::monotonic_now_ns() + static_cast<std::uint64_t>(std::chrono::nanoseconds(timeout).count());
  shmtimer::bench::sleep_until_ns(deadline);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  return static_cast<double>(shmtimer::monotonic_now_ns() - deadline) / 1e3;
}

void BM_ExpiryToSignal(benchmark::State& state) {
  drop_scan_table();
  BenchTable t(4096, "latency");
  std::mutex mutex;
  std::map<pid_t, std::uint64_t> lateness_ns, seen_ns;  // by child, from the server's events
  shmtimer::ServerOptions options;
  if (state.range(0) == 1) options.policy = shmtimer::ScanPolicy::pure_spin();
  options.log_event = [&](std::string_view name, const shmtimer::TimerEvent* e) {
    if (e == nullptr || (name != "kill worker process" && name != "timer expired")) return;
    std::lock_guard lock(mutex);
    (name == "timer expired" ? seen_ns : lateness_ns)[e->pid] =
        e->at_ns > e->deadline_ns ? e->at_ns - e->deadline_ns : 0;
  };
  shmtimer::TimerServer server(t.table(), options);
  server.start();
  const auto timeout = std::chrono::milliseconds(state.range(1));
  std::vector<double> lateness_us, seen_us, reaped_us, floor_reaped_us;
  std::mt19937 rng(static_cast<unsigned>(state.range(1)));
  const std::uint64_t wakes_before = t.table()->header().wake_requests.load();
  const double stolen_before = stolen_ms();
  // The child sets its own deadline, `timeout` from its arm, as a worker's expires(after=)
  // does: a deadline set before fork() could pass before the timer even exists.
  shmtimer::bench::SharedBlock<std::atomic<std::int64_t>> child_deadline_ns;
  for (auto _ : state) {
    for (int sample = 0; sample < kExpirySamples; ++sample) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));  // a random phase
      const pid_t child = ::fork();
      if (child == 0) {
        shmtimer::ShmTimerClient client(t.table());
        const auto deadline = shmtimer::SteadyClock::now() + timeout;
        child_deadline_ns->store(deadline.time_since_epoch().count());
        client.acquire("hang", deadline);
        ::pause();
        ::_exit(0);
      }
      int status = 0;
      ::waitpid(child, &status, 0);
      const shmtimer::Deadline deadline{shmtimer::SteadyClock::duration(child_deadline_ns->load())};
      reaped_us.push_back(std::chrono::duration<double, std::micro>(shmtimer::SteadyClock::now() - deadline).count());
      // The server records the kill after sending it, so on a busy machine the child may
      // be reaped first: wait for the record (up to a second) rather than lose the sample.
      for (int wait = 0; wait < 1000; ++wait) {
        if (std::lock_guard lock(mutex); lateness_ns.count(child) != 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      {
        std::lock_guard lock(mutex);
        if (const auto it = lateness_ns.find(child); it != lateness_ns.end())
          lateness_us.push_back(static_cast<double>(it->second) / 1e3);
        if (const auto it = seen_ns.find(child); it != seen_ns.end())
          seen_us.push_back(static_cast<double>(it->second) / 1e3);
      }
      floor_reaped_us.push_back(kill_at_deadline_us(timeout, rng));
    }
  }
  server.stop();
  report_percentiles_us(state, lateness_us);
  state.counters["seen_p50_us"] = quantile(seen_us, 0.5);  // the round that found it expired
  state.counters["seen_p99_us"] = quantile(seen_us, 0.99);
  state.counters["reaped_p50_us"] = quantile(reaped_us, 0.5);
  state.counters["reaped_p99_us"] = quantile(reaped_us, 0.99);
  state.counters["floor_reaped_p50_us"] = quantile(floor_reaped_us, 0.5);
  state.counters["floor_reaped_p99_us"] = quantile(floor_reaped_us, 0.99);
  state.counters["wake_requests"] = static_cast<double>(t.table()->header().wake_requests.load() - wakes_before);
  state.counters["stolen_ms"] = stolen_ms() - stolen_before;
  state.SetLabel(std::string(state.range(0) == 1 ? "pure spin" : "default policy") + ", timeout " +
                 std::to_string(state.range(1)) + " ms");
}
BENCHMARK(BM_ExpiryToSignal)
    ->ArgsProduct({{0}, {1, 5, 20, 40, 150, 300}})
    ->Args({1, 150})
    ->ArgNames({"spin", "timeout_ms"})
    ->Iterations(1)
    ->Repetitions(1)  // 100 children a row, up to 300 ms each: one repetition is enough time
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Wake-up calls in a steady loop: a Timer handle armed 60 s ahead and disarmed, over and
// over, with the default server running. Only a deadline earlier than the server's next
// look makes the system call, so this should make none; reported per million pairs.
void BM_WakeCallsInASteadyLoop(benchmark::State& state) {
  drop_scan_table();
  BenchTable t(4096, "wakes");
  shmtimer::TimerServer server(t.table());
  server.start();
  shmtimer::ShmTimerClient client(t.table());
  shmtimer::Timer timer = client.timer("steady");
  const std::uint64_t before = t.table()->header().wake_requests.load();
  std::uint64_t pairs = 0;
  for (auto _ : state) {
    timer.arm(shmtimer::SteadyClock::now() + 60s);
    timer.disarm();
    ++pairs;
  }
  server.stop();
  const auto wakes = static_cast<double>(t.table()->header().wake_requests.load() - before);
  state.counters["pairs"] = static_cast<double>(pairs);
  state.counters["wakes_per_million_pairs"] = pairs ? wakes * 1e6 / static_cast<double>(pairs) : 0;
}
BENCHMARK(BM_WakeCallsInASteadyLoop)->Iterations(20'000'000)->Repetitions(1)->UseRealTime();

// The floor under BM_ExpiryToSignal: the benchmark kills the hanging child itself (no
// server, no timer) and times kill() to waitpid() seeing it die, with the child made the
// same way. What the server adds is the difference.
void BM_KillToReap(benchmark::State& state) {
  BenchTable t(4096, "kill-floor");
  std::vector<double> latencies_us;
  for (auto _ : state) {
    for (int sample = 0; sample < kExpirySamples; ++sample) {
      const pid_t child = fork_paused_child([&] {
        shmtimer::ShmTimerClient client(t.table(), SIGKILL, /*require_server=*/false);  // no server, by design
        client.acquire("hang", shmtimer::SteadyClock::now() + std::chrono::hours(1));
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the child is in pause(), as a hung worker
      const auto killed = shmtimer::SteadyClock::now();
      ::kill(child, SIGKILL);
      int status = 0;
      ::waitpid(child, &status, 0);
      latencies_us.push_back(std::chrono::duration<double, std::micro>(shmtimer::SteadyClock::now() - killed).count());
    }
  }
  report_percentiles_us(state, latencies_us);
  state.SetLabel("floor: kill() to waitpid(), no server");
}
BENCHMARK(BM_KillToReap)->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// The kill path alone, the part of BM_ExpiryToSignal's lateness after the round that finds
// a timer due: LinuxProcessControl::send() to a hung child that has the table mapped, with
// every check a table timer's kill makes, either cold (range(0) == 0) or prepared 5 ms
// ahead, as the server prepares a process whose timer falls due soon. The child has been
// alive 5 ms before that, as a worker runs a while before its timer falls due. send() is
// timed to its return, which can include the child dying on this CPU first: with the
// child pinned to this CPU pidfd_send_signal returned after 0.14 ms at p50, on the other
// CPU after 0.02 ms, and a child prepared within a millisecond of its fork was on this
// CPU more often. The server's lateness ends before that (last_signal_ns()).
void BM_SignalPath(benchmark::State& state) {
  BenchTable t(4096, "signal-path");
  struct stat st{};
  if (::fstat(t.table()->fd(), &st) != 0) throw std::runtime_error("fstat");
  const shmtimer::FileId table{st.st_dev, st.st_ino};
  std::vector<double> send_us;
  for (auto _ : state) {
    for (int sample = 0; sample < kExpirySamples; ++sample) {
      const pid_t child = fork_paused_child([] {});  // has the table mapped, from this process
      shmtimer::LinuxProcessControl processes;
      shmtimer::ProcessInfo info;
      if (!processes.inspect(child, std::nullopt, info).running()) throw std::runtime_error("the child does not run");
      const shmtimer::SignalRequest request{child, info.identity, SIGKILL, ::getuid(), table, std::nullopt};
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (state.range(0) == 1) processes.prepare(request);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      int error = 0;
      const auto start = shmtimer::SteadyClock::now();
      const auto outcome = processes.send(request, error);
      send_us.push_back(std::chrono::duration<double, std::micro>(shmtimer::SteadyClock::now() - start).count());
      ::kill(child, SIGKILL);
      ::waitpid(child, nullptr, 0);
      if (outcome != shmtimer::SignalOutcome::kSent) throw std::runtime_error("the child was not signalled");
    }
  }
  report_percentiles_us(state, send_us);
}
BENCHMARK(BM_SignalPath)
    ->ArgName("prepared")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->Repetitions(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The floor under the lateness of BM_ExpiryToSignal: how late a bare thread wakes from a
// timed FUTEX_WAIT, as the server sleeps until a deadline (the same 1 us timer slack, no
// server, no table). On a VM this includes the host waking the idle vCPU.
void BM_TimedWakeLateness(benchmark::State& state) {
  std::vector<double> late_us;
  std::mt19937 rng(7);
  for (auto _ : state) {
    std::thread sleeper([&] {
      ::prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
      std::uint32_t word = 0;
      for (int sample = 0; sample < kExpirySamples; ++sample) {
        const auto sleep_ns = static_cast<long>(1'000'000 + rng() % 20'000'000);  // 1 to 21 ms
        const timespec timeout{0, sleep_ns};
        const auto start = shmtimer::SteadyClock::now();
        ::syscall(SYS_futex, &word, FUTEX_WAIT, 0u, &timeout, nullptr, 0);
        const double slept_ns = std::chrono::duration<double, std::nano>(shmtimer::SteadyClock::now() - start).count();
        late_us.push_back(std::max(0.0, slept_ns - static_cast<double>(sleep_ns)) / 1e3);
      }
    });
    sleeper.join();
  }
  report_percentiles_us(state, late_us);
}
BENCHMARK(BM_TimedWakeLateness)->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// The threads of this process named `name`, by tid, with the CPU time each has run in ns:
// the first field of /proc/self/task/<tid>/schedstat (exact, where stat's utime and stime
// count 10 ms ticks).
std::map<pid_t, std::uint64_t> threads_named(const std::string& name) {
  std::map<pid_t, std::uint64_t> threads;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (!std::getline(comm, line) || line != name) continue;
    std::ifstream schedstat(task.path() / "schedstat");
    std::uint64_t ns = 0;
    schedstat >> ns;
    threads[static_cast<pid_t>(std::stoi(task.path().filename().string()))] = ns;
  }
  return threads;
}

// The CPU that the thread named `name` which start() starts uses, in % of one core, over
// 4 s of wall time; stop() ends it. That thread's alone, not the process's: the benchmark
// process runs other servers (section 1's pairs are timed against one) and whatever
// earlier rows left running, and none of that is this server's idle cost.
template <class Start, class Stop>
double cpu_percent_while(const std::string& name, Start&& start, Stop&& stop) {
  const auto before_start = threads_named(name);
  start();
  std::this_thread::sleep_for(100ms);  // the thread is named and past its start
  pid_t tid = 0;
  for (const auto& [t, ns] : threads_named(name))
    if (before_start.count(t) == 0) tid = t;
  if (tid == 0) throw std::runtime_error("no new thread named " + name);
  const std::uint64_t cpu_before = threads_named(name).at(tid);
  const auto wall_start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(4s);
  const std::uint64_t cpu_after = threads_named(name).at(tid);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  stop();
  return 100.0 * static_cast<double>(cpu_after - cpu_before) / 1e9 / wall;
}

void BM_IdleCpu(benchmark::State& state) {
  drop_scan_table();
  BenchTable t(1 << 16, "idle");
  fill(*t.table(), static_cast<std::uint64_t>(state.range(0)));
  double percent = 0;
  for (auto _ : state) {
    shmtimer::TimerServer server(t.table());
    percent = cpu_percent_while("shmtimer-watch", [&] { server.start(); }, [&] { server.stop(); });
  }
  state.counters["cpu_percent"] = percent;
  state.counters["timers"] = static_cast<double>(state.range(0));
}
BENCHMARK(BM_IdleCpu)
    ->Arg(0)
    ->Arg(100)
    ->Arg(10000)
    ->Iterations(1)
    ->Repetitions(1)  // 4 s of wall time each
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The floor under BM_IdleCpu: no server, a thread that only sleeps in timed futex waits of
// the default max_interval (100 ms), as an idle server does between rounds. On a VM each
// sleep and wake-up costs CPU of its own.
void BM_IdleFloor(benchmark::State& state) {
  std::atomic<std::uint32_t> word{0};
  std::thread sleeper;
  double percent = 0;
  for (auto _ : state) {
    word.store(0);
    percent = cpu_percent_while(
        "idle-floor",
        [&] {
          sleeper = std::thread([&] {
            ::pthread_setname_np(::pthread_self(), "idle-floor");
            const timespec interval{0, 100'000'000};
            while (word.load() == 0)
              ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, 0u, &interval, nullptr, 0);
          });
        },
        [&] {
          word.store(1);
          ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, 1, nullptr, nullptr, 0);
          sleeper.join();
        });
  }
  state.counters["cpu_percent"] = percent;
}
BENCHMARK(BM_IdleFloor)->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
