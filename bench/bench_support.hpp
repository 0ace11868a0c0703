// Shared by the benchmarks: a table in /dev/shm that removes itself at exit, an
// in-process FIFO server (TimerServer + FifoShim, so FIFO mode is measured end to end),
// the 30-byte scopes every client uses, and latency sampling (medians and tails, not
// means) from batches timed with steady_clock.
#pragma once

#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <stdexcept>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "shmtimer/clock.hpp"
#include "shmtimer/fifo_shim.hpp"
#include "shmtimer/table.hpp"
#include "shmtimer/timer_server.hpp"

namespace shmtimer::bench {

class BenchTable {
 public:
  explicit BenchTable(std::uint64_t capacity, const std::string& name = "bench") {
    path_ = "/dev/shm/shmtimer-" + name + "-" + std::to_string(::getpid()) + ".table";
    std::filesystem::remove(path_);
    CreateOptions options;
    options.capacity = capacity;
    table_ = Table::create(path_, options);
  }
  ~BenchTable() { std::filesystem::remove(path_); }
  BenchTable(const BenchTable&) = delete;
  BenchTable& operator=(const BenchTable&) = delete;
  const std::shared_ptr<Table>& table() const { return table_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::shared_ptr<Table> table_;
};

// A BenchTable with a started TimerServer (the default policy), as users run their
// clients: a client's default require_server holds, so its hot path is timed with the
// check that a server serves the table.
class ServedTable {
 public:
  explicit ServedTable(std::uint64_t capacity, const std::string& name)
      : table_(capacity, name), server_(table_.table()) {
    server_.start();
  }
  ~ServedTable() { server_.stop(); }
  ServedTable(const ServedTable&) = delete;
  ServedTable& operator=(const ServedTable&) = delete;
  const std::shared_ptr<Table>& table() const { return table_.table(); }

 private:
  BenchTable table_;
  TimerServer server_;
};

// A started TimerServer that also drains a FIFO (FifoShim), as `shmtimerd --fifo` does:
// FIFO clients in a benchmark are timed against a real reader that parses and applies
// every request to the table.
class FifoServer {
 public:
  explicit FifoServer(const std::string& name, std::uint64_t capacity = 4096)
      : table_(capacity, name),
        fifo_path_("/dev/shm/shmtimer-" + name + "-" + std::to_string(::getpid()) + ".fifo"),
        shim_(std::make_shared<FifoShim>(table_.table(), fifo_path_)),
        server_(table_.table()) {
    server_.add_source(shim_);
    server_.start();
  }
  ~FifoServer() { server_.stop(); }
  FifoServer(const FifoServer&) = delete;
  FifoServer& operator=(const FifoServer&) = delete;

  const std::shared_ptr<Table>& table() const { return table_.table(); }
  const std::filesystem::path& fifo_path() const { return fifo_path_; }
  const FifoShim& shim() const { return *shim_; }

 private:
  BenchTable table_;
  std::filesystem::path fifo_path_;
  std::shared_ptr<FifoShim> shim_;
  TimerServer server_;
};

// A 30-byte scope, distinct per `n` (so threads and processes use their own slots);
// the same length as PyTorch's usual "<file>#<line>" scope.
inline std::string scope30(int n) {
  std::string scope = "train.py#forward_backward:" + std::to_string(1000 + n);
  return scope;  // 26 + 4 bytes
}

// An hour ahead: no benchmark timer ever expires.
inline Deadline far_deadline() { return SteadyClock::now() + std::chrono::hours(1); }

inline double elapsed_ns(SteadyClock::time_point from, SteadyClock::time_point to) {
  return std::chrono::duration<double, std::nano>(to - from).count();
}

// The q-quantile (0..1) of samples, nearest-rank.
inline double quantile(std::vector<double> samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const auto rank = static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1) + 0.5);
  return samples[std::min(rank, samples.size() - 1)];
}

// The q-quantile of samples that are already sorted (to sort a large set only once).
inline double sorted_quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(rank, sorted.size() - 1)];
}

// Forks a child that runs `setup`, says so through a pipe and hangs in pause(), as a hung
// worker; returns its pid once it has said so.
template <class Setup>
inline pid_t fork_paused_child(Setup&& setup) {
  int ready[2];
  if (::pipe(ready) != 0) throw std::runtime_error("pipe");
  const pid_t child = ::fork();
  if (child == 0) {
    setup();
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  char byte;
  (void)!::read(ready[0], &byte, 1);
  ::close(ready[0]);
  ::close(ready[1]);
  return child;
}

// Lets go of BM_ScanRound's large table (server_bench.cpp), kept across its repetitions:
// a benchmark that forks drops it first.
void drop_scan_table();

// Sleeps until `at_ns` on CLOCK_MONOTONIC with the server's own 1 µs timer slack, so a
// floor's thread wakes at a deadline as punctually as the watchdog thread can.
inline void sleep_until_ns(std::uint64_t at_ns) {
  ::prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
  const timespec at{static_cast<time_t>(at_ns / 1'000'000'000), static_cast<long>(at_ns % 1'000'000'000)};
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) == EINTR) {
  }
}

// The samples, p50, p99 and max counters of a row, in µs.
inline void report_percentiles_us(benchmark::State& state, const std::vector<double>& us) {
  state.counters["samples"] = static_cast<double>(us.size());
  state.counters["p50_us"] = quantile(us, 0.5);
  state.counters["p99_us"] = quantile(us, 0.99);
  state.counters["max_us"] = quantile(us, 1.0);
}

// Pairs per timed batch. A steady_clock read costs ~30 ns here, as much as a pair, so
// fast pairs are timed 16 at a time and the batch divided: each sample then carries
// 1/16 of a clock read (~2 ns).
inline constexpr int kBatch = 16;

// Per-pair latency samples: `batches` batches of `batch` calls of pair(), each timed with
// steady_clock (one read per batch: a batch ends where the next begins). Run after the
// timed loop, so the clock reads never count in Google Benchmark's own figure.
template <class Pair>
std::vector<double> sample_pairs(int batches, int batch, Pair&& pair) {
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(batches));
  auto start = SteadyClock::now();
  for (int b = 0; b < batches; ++b) {
    for (int i = 0; i < batch; ++i) pair();
    const auto end = SteadyClock::now();
    samples.push_back(elapsed_ns(start, end) / batch);
    start = end;
  }
  return samples;
}

// p50/p99 of per-pair samples as counters (ns); the JSON carries them to the report.
// With several threads, each samples its own pairs and the counters are their mean.
inline void set_latency_counters(benchmark::State& state, const std::vector<double>& samples_ns) {
  state.counters["p50_ns"] = benchmark::Counter(quantile(samples_ns, 0.50), benchmark::Counter::kAvgThreads);
  state.counters["p99_ns"] = benchmark::Counter(quantile(samples_ns, 0.99), benchmark::Counter::kAvgThreads);
}

// Anonymous shared memory that survives fork(): how forked workers hand results back.
template <class T>
class SharedBlock {
 public:
  explicit SharedBlock(std::size_t bytes = sizeof(T)) : bytes_(std::max(bytes, sizeof(T))) {
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    ptr_ = new (p) T;  // default-init: mmap gives zeroed pages, untouched until used
  }
  ~SharedBlock() {
    ptr_->~T();
    ::munmap(ptr_, bytes_);
  }
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;
  T* operator->() const { return ptr_; }
  T& operator*() const { return *ptr_; }

 private:
  std::size_t bytes_;
  T* ptr_;
};

}  // namespace shmtimer::bench
