// What the soak's workers did, in memory shared with the soak parent: each thread writes
// its intent before every operation and the outcome after it, so the parent can judge
// every death against what the dead process actually held.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace soak {

inline constexpr int kThreadsPerWorker = 3;
inline constexpr int kScopesPerThread = 4;

struct ScopeRecord {
  // Deadline (CLOCK_MONOTONIC ns) of the operation in progress (intent) and of the last
  // finished one (done); 0 = released. The table holds one of the two.
  std::atomic<std::uint64_t> intent;
  std::atomic<std::uint64_t> done;
};

struct WorkerLog {
  std::atomic<pid_t> pid;
  std::atomic<int> uses_fifo;
  std::atomic<std::uint64_t> ops;
  std::atomic<std::uint64_t> fifo_errors;  // requests refused because no server listened
  std::atomic<std::uint64_t> hang_deadline_ns;  // set when a thread stops to hang: the kill must come
  std::atomic<std::uint64_t> hang_started_ns;
  ScopeRecord scopes[kThreadsPerWorker][kScopesPerThread];

  // Did the worker hold a timer that had expired by `when_ns`? Any recorded value may be
  // what the table held when the server looked.
  bool held_expired_timer(std::uint64_t when_ns) const {
    for (const auto& thread : scopes)
      for (const auto& s : thread)
        for (std::uint64_t d : {s.intent.load(), s.done.load()})
          if (d != 0 && d <= when_ns) return true;
    return false;
  }
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<pid_t>::is_always_lock_free);

}  // namespace soak
