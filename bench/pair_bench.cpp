// The acquire+release pair, side by side, for every C++ client: the table client through
// the scope API (30-byte scope) and through a Timer handle, and the FIFO client (PyTorch's
// protocol) opening the FIFO per request as the reference does, and with the descriptor
// kept open. The FIFO is drained by an in-process TimerServer + FifoShim, so each FIFO
// request is written, read, parsed and applied to the table: FIFO mode end to end.
// (PyTorch's Python FileTimerClient and the Python module are timed by python_pairs.py
// in the same run; report.py puts them all in one table.)
//
// Google Benchmark's time is the mean pair over the timed loop (repetitions give its
// median); p50_ns/p99_ns come from a sampling phase after the loop (bench_support.hpp).
#include "bench_support.hpp"
#include "shmtimer/fifo_timer_client.hpp"
#include "shmtimer/shm_timer_client.hpp"

namespace {

using shmtimer::bench::FifoServer;
using shmtimer::bench::kBatch;
using shmtimer::bench::sample_pairs;
using shmtimer::bench::scope30;
using shmtimer::bench::ServedTable;
using shmtimer::bench::set_latency_counters;

ServedTable& pair_table() {
  static ServedTable table(1 << 16, "pair-bench");
  return table;
}

void BM_Pair_TableScope(benchmark::State& state) {
  shmtimer::ShmTimerClient client(pair_table().table());
  const std::string scope = scope30(0);
  const auto deadline = shmtimer::bench::far_deadline();
  client.acquire(scope, deadline);  // claims the slot outside the timed loop
  for (auto _ : state) {
    client.acquire(scope, deadline);
    client.release(scope);
  }
  state.SetItemsProcessed(state.iterations());
  set_latency_counters(state, sample_pairs(100'000, kBatch, [&] {
                         client.acquire(scope, deadline);
                         client.release(scope);
                       }));
  state.SetLabel(std::to_string(scope.size()) + "-byte scope");
}
BENCHMARK(BM_Pair_TableScope)->UseRealTime();

void BM_Pair_TableTimerHandle(benchmark::State& state) {
  shmtimer::ShmTimerClient client(pair_table().table());
  auto timer = client.timer(scope30(1));
  const auto deadline = shmtimer::bench::far_deadline();
  for (auto _ : state) {
    timer.arm(deadline);
    timer.disarm();
  }
  state.SetItemsProcessed(state.iterations());
  set_latency_counters(state, sample_pairs(100'000, kBatch, [&] {
                         timer.arm(deadline);
                         timer.disarm();
                       }));
}
BENCHMARK(BM_Pair_TableTimerHandle)->UseRealTime();

// range(0): 0 = open the FIFO per request (the reference's way), 1 = keep_open.
void fifo_pair(benchmark::State& state, bool keep_open) {
  FifoServer server(keep_open ? "pair-fifo-kept" : "pair-fifo");
  shmtimer::FifoClientOptions options;
  options.keep_open = keep_open;
  shmtimer::FifoTimerClient client(server.fifo_path(), SIGKILL, options);
  const std::string scope = scope30(2);
  const auto deadline = shmtimer::bench::far_deadline();
  for (auto _ : state) {
    client.acquire(scope, deadline);
    client.release(scope);
  }
  state.SetItemsProcessed(state.iterations());
  // A pair costs microseconds here: time each one on its own.
  set_latency_counters(state, sample_pairs(2'000, 1, [&] {
                         client.acquire(scope, deadline);
                         client.release(scope);
                       }));
}

void BM_Pair_FifoOpenPerRequest(benchmark::State& state) { fifo_pair(state, false); }
BENCHMARK(BM_Pair_FifoOpenPerRequest)->UseRealTime();

void BM_Pair_FifoKeepOpen(benchmark::State& state) { fifo_pair(state, true); }
BENCHMARK(BM_Pair_FifoKeepOpen)->UseRealTime();

// The clock read a caller needs to make a relative deadline, and that every latency
// sample pays once per batch: for scale.
void BM_SteadyClockNow(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(shmtimer::SteadyClock::now());
}
BENCHMARK(BM_SteadyClockNow)->UseRealTime();

}  // namespace
