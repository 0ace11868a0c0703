// The overhead of the C++ Expires guard (include/shmtimer/timer_client.hpp) over a raw
// acquire+release pair on the same table client, 30-byte scope:
//   raw pair                      client.acquire(scope, deadline); client.release(scope)
//   raw pair + clock              the same with deadline = now() + 60 s, as Expires computes it
//   Expires, explicit scope       { Expires g(60s, scope); }          (the configured client)
//   Expires, default scope        { Expires g(60s); }                 ("<file>#<line>", built once per call site)
//   Expires, explicit client      { Expires g(60s, scope, client); }  (a TimerClient&: no configured-client load)
// The raw pair and the configured-client guard also run on 2 threads, where the guards
// use the configured client side by side. p50_ns/p99_ns: bench_support.hpp.
#include "bench_support.hpp"
#include "shmtimer/shm_timer_client.hpp"

namespace {

using namespace std::chrono_literals;
using shmtimer::bench::kBatch;
using shmtimer::bench::scope30;
using shmtimer::bench::ServedTable;

ServedTable& expires_table() {
  static ServedTable table(1 << 16, "expires");
  return table;
}

// The configured (process-global) client, set once, as an application does at start-up.
const std::shared_ptr<shmtimer::ShmTimerClient>& configured() {
  static const auto client = [] {
    auto c = std::make_shared<shmtimer::ShmTimerClient>(expires_table().table());
    shmtimer::configure(c);
    return c;
  }();
  return client;
}

// Times `pair` in Google Benchmark's loop, then samples it for p50/p99.
template <class Pair>
void run(benchmark::State& state, Pair&& pair) {
  pair();  // claims the slot outside the timed loop
  for (auto _ : state) pair();
  state.SetItemsProcessed(state.iterations());
  shmtimer::bench::set_latency_counters(state, shmtimer::bench::sample_pairs(50'000, kBatch, pair));
}

void BM_Expires_RawPair(benchmark::State& state) {
  auto& client = *configured();
  const std::string scope = scope30(200 + state.thread_index());
  const auto deadline = shmtimer::bench::far_deadline();
  run(state, [&] {
    client.acquire(scope, deadline);
    client.release(scope);
  });
}
BENCHMARK(BM_Expires_RawPair)->Threads(1)->Threads(2)->UseRealTime();

void BM_Expires_RawPairWithClock(benchmark::State& state) {
  auto& client = *configured();
  const std::string scope = scope30(210 + state.thread_index());
  run(state, [&] {
    client.acquire(scope, shmtimer::SteadyClock::now() + 60s);
    client.release(scope);
  });
}
BENCHMARK(BM_Expires_RawPairWithClock)->UseRealTime();

void BM_Expires_ExplicitScope(benchmark::State& state) {
  configured();
  const std::string scope = scope30(220 + state.thread_index());
  run(state, [&] {
    shmtimer::Expires guard(60s, scope);
    benchmark::DoNotOptimize(&guard);
  });
}
BENCHMARK(BM_Expires_ExplicitScope)->Threads(1)->Threads(2)->UseRealTime();

void BM_Expires_DefaultScope(benchmark::State& state) {
  configured();
  std::size_t scope_bytes = 0;
  run(state, [&] {
    shmtimer::Expires guard(60s);
    scope_bytes = guard.scope().size();
    benchmark::DoNotOptimize(&guard);
  });
  state.SetLabel("scope " + std::to_string(scope_bytes) + " bytes");
}
BENCHMARK(BM_Expires_DefaultScope)->UseRealTime();

void BM_Expires_ExplicitClient(benchmark::State& state) {
  shmtimer::TimerClient& client = *configured();
  const std::string scope = scope30(230 + state.thread_index());
  run(state, [&] {
    shmtimer::Expires guard(60s, scope, client);
    benchmark::DoNotOptimize(&guard);
  });
}
BENCHMARK(BM_Expires_ExplicitClient)->UseRealTime();

}  // namespace
