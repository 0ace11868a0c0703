// The benchmark suite's entry point: one executable, shmtimer_bench, for every benchmark
// in bench/ (run by bench/run.sh, which writes docs/benchmarks.md). Nothing here is a
// test: nothing asserts a time.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // the server's and shim's info lines are noise here
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
