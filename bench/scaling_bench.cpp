// Scaling of the table client: 1, 2 and 4 threads in one process, then 2 processes
// (fork), each worker doing acquire+release pairs through the scope API (30-byte scope)
// for a fixed time. Either every worker has its own slot (its own cache lines), or the
// threads share one scope, hence one slot and one cache line that bounces between
// cores. (Processes cannot share a slot: a slot belongs to one process.)
//
// Every worker, thread or process, runs the same loop and writes its results into
// anonymous shared memory, so threads and processes are measured the same way:
// aggregate pairs per second (the sum of each worker's pairs over its own wall time),
// and per-pair latency p50/p99 over all workers' batches of 16 pairs.
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "bench_support.hpp"
#include "shmtimer/shm_timer_client.hpp"

namespace {

using namespace std::chrono_literals;
using shmtimer::bench::elapsed_ns;
using shmtimer::bench::kBatch;
using shmtimer::bench::scope30;
using shmtimer::bench::ServedTable;
using shmtimer::bench::sorted_quantile;

constexpr int kMaxWorkers = 4;
constexpr std::size_t kMaxSamples = 1 << 20;  // batches recorded per worker (~0.4 s at 25 ns a pair)
constexpr auto kRunTime = 250ms;              // per worker, per repetition

struct WorkerResult {
  std::uint64_t pairs;
  double elapsed_ns;
  std::uint64_t sample_count;
  float samples_ns[kMaxSamples];  // per-pair latency of each batch
};

struct Shared {
  std::atomic<int> ready;
  std::atomic<int> go;
  WorkerResult workers[kMaxWorkers];
};

ServedTable& scaling_table() {
  static ServedTable table(1 << 16, "scaling");
  return table;
}

void run_worker(const std::shared_ptr<shmtimer::Table>& table, const std::string& scope, Shared& shared,
                WorkerResult& out) {
  shmtimer::ShmTimerClient client(table);
  const auto deadline = shmtimer::bench::far_deadline();
  client.acquire(scope, deadline);  // claims (or finds) the slot before the clock starts
  client.release(scope);
  shared.ready.fetch_add(1, std::memory_order_acq_rel);
  while (shared.go.load(std::memory_order_acquire) == 0) std::this_thread::yield();

  std::uint64_t pairs = 0, count = 0;
  const auto start = shmtimer::SteadyClock::now();
  const auto stop = start + kRunTime;
  auto batch_start = start, now = start;
  do {
    for (int i = 0; i < kBatch; ++i) {
      client.acquire(scope, deadline);
      client.release(scope);
    }
    now = shmtimer::SteadyClock::now();
    if (count < kMaxSamples) out.samples_ns[count++] = static_cast<float>(elapsed_ns(batch_start, now) / kBatch);
    batch_start = now;
    pairs += kBatch;
  } while (now < stop);
  out.pairs = pairs;
  out.elapsed_ns = elapsed_ns(start, now);
  out.sample_count = count;
}

// range(0): workers; range(1): 0 = threads, 1 = processes; range(2): 1 = one shared slot.
void BM_Scaling(benchmark::State& state) {
  const int workers = static_cast<int>(state.range(0));
  const bool processes = state.range(1) == 1;
  const bool shared_slot = state.range(2) == 1;
  const auto& table = scaling_table().table();
  shmtimer::bench::SharedBlock<Shared> shared;

  for (auto _ : state) {
    shared->ready.store(0);
    shared->go.store(0);
    std::vector<std::thread> threads;
    std::vector<pid_t> children;
    for (int w = 0; w < workers; ++w) {
      const std::string scope = scope30(shared_slot ? 100 : 100 + w);
      WorkerResult& out = shared->workers[w];
      if (processes) {
        const pid_t child = ::fork();
        if (child == 0) {
          run_worker(table, scope, *shared, out);
          ::_exit(0);
        }
        children.push_back(child);
      } else {
        threads.emplace_back([&table, scope, &shared, &out] { run_worker(table, scope, *shared, out); });
      }
    }
    while (shared->ready.load(std::memory_order_acquire) < workers) std::this_thread::yield();
    const auto start = shmtimer::SteadyClock::now();
    shared->go.store(1, std::memory_order_release);
    for (auto& t : threads) t.join();
    for (const pid_t child : children) ::waitpid(child, nullptr, 0);
    state.SetIterationTime(elapsed_ns(start, shmtimer::SteadyClock::now()) / 1e9);
  }

  double pairs_per_s = 0;
  std::uint64_t pairs = 0;
  std::vector<double> samples;
  for (int w = 0; w < workers; ++w) {
    const WorkerResult& r = shared->workers[w];
    pairs += r.pairs;
    pairs_per_s += static_cast<double>(r.pairs) / (r.elapsed_ns / 1e9);
    samples.insert(samples.end(), r.samples_ns, r.samples_ns + r.sample_count);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(pairs));
  state.counters["pairs_per_s"] = pairs_per_s;
  std::sort(samples.begin(), samples.end());
  state.counters["p50_ns"] = sorted_quantile(samples, 0.50);
  state.counters["p99_ns"] = sorted_quantile(samples, 0.99);
  state.SetLabel(std::to_string(workers) +
                 (processes      ? " processes"
                  : workers == 1 ? " thread"
                                 : " threads") +
                 (shared_slot ? ", one shared slot" : ", own slots"));
}
BENCHMARK(BM_Scaling)
    ->ArgNames({"workers", "processes", "shared"})
    ->Args({1, 0, 0})
    ->Args({2, 0, 0})
    ->Args({4, 0, 0})
    ->Args({2, 1, 0})
    ->Args({2, 0, 1})
    ->Args({4, 0, 1})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
