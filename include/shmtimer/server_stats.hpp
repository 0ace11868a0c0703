// What a server counts about its own work, for its /metrics endpoint. The table header
// holds what every reader of the table can see (acquires, reaps, failed kills); these live
// in the server's process: why signals were refused, how late kills were, how long rounds
// took, whether the table's file is still the one served. What the FIFO shim counts is
// fifo_stats.hpp.
//
// Written by the watchdog thread, read by any thread. Every field is a relaxed atomic:
// they are statistics, ordered with nothing, and a reader may see one a round ahead of
// another. Each only ever grows, except last_round_end_ns and table_file_change, which
// are standalone values, as is realtime_priority.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "shmtimer/table.hpp"

namespace shmtimer {

// A latency histogram with fixed buckets, 10 us to 10 s (upper bounds, in seconds).
class Histogram {
 public:
  static constexpr std::array<double, 19> kBoundsSeconds{
      1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  // Per bucket, not cumulative; the last is above every bound (+Inf).
  struct Counts {
    std::array<std::uint64_t, kBoundsSeconds.size() + 1> buckets{};
    std::uint64_t count = 0;  // the sum of the buckets, as read
    double sum_seconds = 0;
  };

  void observe_ns(std::uint64_t ns);
  Counts counts() const;

 private:
  std::array<std::atomic<std::uint64_t>, kBoundsSeconds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

// Why an expired timer's owner was not signalled. Its timer is disarmed (or its slot
// freed, for kPidReused) and the refusal logged.
enum class Refusal {
  kNotAWorker,        // pid <= 1
  kServerItself,      // the server's own pid, without signal_self_after_reap
  kSignalOutOfRange,  // above SIGRTMAX
  kOtherUser,         // another uid than the server's, without any_uid
  kNotMapped,         // does not have the table mapped, so did not arm the timer
  kPidReused,         // the pid now belongs to another process
  kUnverifiable,      // its maps may not be read (not dumpable), and no rule vouches for it
};
inline constexpr std::size_t kRefusals = 7;
static_assert(static_cast<std::size_t>(Refusal::kUnverifiable) + 1 == kRefusals, "a Refusal without a counter");
const char* refusal_label(Refusal refusal);  // "not_a_worker", ...: the metrics' `reason` label

struct ServerStats {
  std::array<std::atomic<std::uint64_t>, kRefusals> signals_refused{};
  Histogram kill_lateness;                          // from a timer's deadline to its owner's signal being sent
  Histogram round_duration;                         // one round: drain the sources, scan, reap
  std::atomic<std::uint64_t> incidents{0};          // incident reports started
  std::atomic<std::uint64_t> capture_failures{0};   // captures that failed or overran, and reports not made
  std::atomic<std::uint64_t> last_round_end_ns{0};  // on the server's monotonic clock; 0: none yet
  std::atomic<int> realtime_priority{0};            // the watchdog thread's SCHED_FIFO priority; 0: normal
  // What the watchdog found become of its table's file; kNone until then, and set once.
  std::atomic<FileChange> table_file_change{FileChange::kNone};

  void count(Refusal refusal) {
    signals_refused[static_cast<std::size_t>(refusal)].fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace shmtimer
