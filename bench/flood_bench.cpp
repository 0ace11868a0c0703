// Table clients under a FIFO flood (issue 8: "table clients keep their latency"): the
// per-pair latency of a table client (scope API, 30-byte scope) in the server's process
// while the server serves 100,000 FIFO requests written by another process as fast as
// the pipe takes them, against the same measurement with the FIFO idle, and against a
// control where the other process only burns CPU (on a 2-core machine a flood costs the
// client a core even if nothing is shared; the control tells that apart from sharing).
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "bench_support.hpp"
#include "shmtimer/fifo_timer_client.hpp"
#include "shmtimer/shm_timer_client.hpp"

namespace {

using namespace std::chrono_literals;
using shmtimer::bench::elapsed_ns;
using shmtimer::bench::FifoServer;
using shmtimer::bench::kBatch;
using shmtimer::bench::scope30;
using shmtimer::bench::sorted_quantile;

constexpr std::uint64_t kFloodRequests = 100'000;
constexpr auto kQuietWindow = 300ms;  // the window without a flood
constexpr auto kMaxWindow = 30s;      // gives up on a server that cannot keep up

enum Load : int { kIdle = 0, kFlood = 1, kBusyControl = 2 };

struct Shared {
  std::atomic<int> started;
  std::atomic<int> finish;  // set by the parent: the child may exit
  std::atomic<int> failed;
};

double cpu_seconds(int who) {
  rusage r{};
  ::getrusage(who, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

double epoch_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The other process. It stays alive until told, so every request it sent is applied
// (a request from a process that is gone would be dropped, cheaply).
[[noreturn]] void other_process(Load load, const std::filesystem::path& fifo, Shared& shared) {
  shared.started.store(1, std::memory_order_release);
  if (load == kFlood) {
    try {
      shmtimer::FifoClientOptions options;
      options.keep_open = true;
      options.write_timeout = 30s;  // a loaded server may fall behind: wait, do not fail
      shmtimer::FifoTimerClient client(fifo, SIGKILL, options);
      const double expiration = epoch_now() + 3600;
      for (std::uint64_t i = 0; i < kFloodRequests / 2; ++i) {
        const std::string scope = scope30(400 + static_cast<int>(i % 8));
        client.acquire_epoch(scope, expiration);
        client.release(scope);
      }
    } catch (...) {
      shared.failed.store(1);
    }
  }
  while (shared.finish.load(std::memory_order_acquire) == 0) {
    if (load != kBusyControl) std::this_thread::sleep_for(1ms);
  }
  ::_exit(0);
}

// range(0): Load.
void BM_TablePairDuringFifoFlood(benchmark::State& state) {
  const auto load = static_cast<Load>(state.range(0));
  FifoServer server("flood");
  shmtimer::ShmTimerClient client(server.table());
  const std::string scope = scope30(300);
  const auto deadline = shmtimer::bench::far_deadline();
  client.acquire(scope, deadline);
  const auto& served = server.table()->header().fifo_requests;  // atomic, counted by the shim
  shmtimer::bench::SharedBlock<Shared> shared;
  std::vector<double> samples;
  samples.reserve(1 << 22);
  double window_ns = 0, server_cpu_s = 0;
  std::uint64_t requests = 0;

  for (auto _ : state) {
    shared->started.store(0);
    shared->finish.store(0);
    // Counted before the fork: the child may write, and the server apply, its first
    // requests before this thread sees `started`.
    const std::uint64_t before = served.load(std::memory_order_relaxed);
    const pid_t child = ::fork();
    if (child == 0) other_process(load, server.fifo_path(), *shared);
    while (shared->started.load(std::memory_order_acquire) == 0) std::this_thread::yield();
    // The process's CPU minus this thread's: the server thread's (the only other one).
    const double cpu_before = cpu_seconds(RUSAGE_SELF) - cpu_seconds(RUSAGE_THREAD);
    const auto start = shmtimer::SteadyClock::now();
    auto batch_start = start, now = start;
    for (std::uint64_t batch = 1;; ++batch) {
      for (int i = 0; i < kBatch; ++i) {
        client.acquire(scope, deadline);
        client.release(scope);
      }
      now = shmtimer::SteadyClock::now();
      samples.push_back(elapsed_ns(batch_start, now) / kBatch);
      batch_start = now;
      if (batch % 64 != 0) continue;  // the server's counter line is looked at rarely
      if (now - start > kMaxWindow) break;
      if (load == kFlood ? served.load(std::memory_order_relaxed) - before >= kFloodRequests
                         : now - start >= kQuietWindow)
        break;
    }
    requests = served.load(std::memory_order_relaxed) - before;
    window_ns = elapsed_ns(start, now);
    server_cpu_s = cpu_seconds(RUSAGE_SELF) - cpu_seconds(RUSAGE_THREAD) - cpu_before;
    shared->finish.store(1, std::memory_order_release);
    ::waitpid(child, nullptr, 0);
    state.SetIterationTime(window_ns / 1e9);
  }

  if (shared->failed.load() != 0) state.SkipWithError("the flooding process failed to write the FIFO");
  if (load == kFlood && requests < kFloodRequests)
    state.SkipWithError("the server did not apply every flood request within the 30 s window");
  std::sort(samples.begin(), samples.end());
  state.SetItemsProcessed(static_cast<std::int64_t>(samples.size()) * kBatch);
  state.counters["p50_ns"] = sorted_quantile(samples, 0.50);
  state.counters["p99_ns"] = sorted_quantile(samples, 0.99);
  state.counters["p999_ns"] = sorted_quantile(samples, 0.999);
  state.counters["fifo_requests"] = static_cast<double>(requests);
  state.counters["fifo_requests_per_s"] = static_cast<double>(requests) / (window_ns / 1e9);
  state.counters["server_cpu_percent"] = 100 * server_cpu_s / (window_ns / 1e9);
  state.counters["server_cpu_us_per_request"] = requests ? server_cpu_s * 1e6 / static_cast<double>(requests) : 0;
  state.SetLabel(load == kFlood         ? "FIFO flood of 100k requests from another process"
                 : load == kBusyControl ? "control: another process burns a core, no FIFO traffic"
                                        : "FIFO idle");
}
BENCHMARK(BM_TablePairDuringFifoFlood)
    ->ArgName("load")
    ->Arg(kIdle)
    ->Arg(kFlood)
    ->Arg(kBusyControl)
    ->Iterations(1)
    ->Repetitions(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
