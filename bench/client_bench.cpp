// The client hot path: an acquire+release pair through the scope API (30-byte scope)
// and through a Timer handle, with a fixed deadline, on 1 and 2 threads.
#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "shmtimer/shm_timer_client.hpp"

namespace {

using shmtimer::bench::BenchTable;

BenchTable& shared_table() {
  static BenchTable table(1 << 16, "client-bench");
  return table;
}

// 30 bytes, distinct per thread so threads use their own slots (their own cache lines).
std::string scope_for(int thread) {
  std::string scope = "train.py#forward_backward:" + std::to_string(1000 + thread);
  return scope;
}

const shmtimer::Deadline kDeadline = shmtimer::SteadyClock::now() + std::chrono::hours(1);

void BM_ScopePair(benchmark::State& state) {
  shmtimer::ShmTimerClient client(shared_table().table());
  const std::string scope = scope_for(state.thread_index());
  client.acquire(scope, kDeadline);  // claim the slot outside the timed loop
  for (auto _ : state) {
    client.acquire(scope, kDeadline);
    client.release(scope);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(std::to_string(scope.size()) + "-byte scope");
}
BENCHMARK(BM_ScopePair)->Threads(1)->Threads(2)->UseRealTime();

void BM_TimerHandlePair(benchmark::State& state) {
  shmtimer::ShmTimerClient client(shared_table().table());
  auto timer = client.timer(scope_for(state.thread_index()));
  for (auto _ : state) {
    timer.arm(kDeadline);
    timer.disarm();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerHandlePair)->Threads(1)->Threads(2)->UseRealTime();

// Threads on one scope: the same slot, so the same cache line, bounces between cores.
void BM_TimerHandlePairSharedSlot(benchmark::State& state) {
  shmtimer::ShmTimerClient client(shared_table().table());
  auto timer = client.timer("one-slot-for-all-threads");
  for (auto _ : state) {
    timer.arm(kDeadline);
    timer.disarm();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerHandlePairSharedSlot)->Threads(2)->UseRealTime();

// The clock read a caller needs to make a relative deadline, for scale.
void BM_SteadyClockNow(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(shmtimer::SteadyClock::now());
}
BENCHMARK(BM_SteadyClockNow);

}  // namespace
