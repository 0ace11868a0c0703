// What the soak's workers did, in memory shared with the soak parent: each thread writes
// its intent before every operation and the outcome after it, so the parent can judge
// every death against what the dead process actually held.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace soak {

inline constexpr int kThreadsPerWorker = 3;
// Watched scopes are armed with a short deadline, released before it, and not armed
// again until the process has outlived the released deadline: a release that did not
// disarm gets the process killed while its log says it held nothing.
inline constexpr int kWatchedScopes = 4;
// Busy scopes are armed and released back to back, for load (table workers only).
inline constexpr int kBusyScopes = 2;
inline constexpr int kScopesPerThread = kWatchedScopes + kBusyScopes;

struct ScopeRecord {
  // Deadline (CLOCK_MONOTONIC ns) of the operation in progress (intent) and of the last
  // finished one (done); 0 = released. The table holds one of the two.
  std::atomic<std::uint64_t> intent;
  std::atomic<std::uint64_t> done;
  // The deadline of a release that took effect after it (0: none since the scope was last
  // armed). The server may have found that timer expired just before the release, and its
  // signal may then come up to the kill bound after that deadline, not later.
  std::atomic<std::uint64_t> late_deadline_ns;

  bool expired_by(std::uint64_t when_ns, std::uint64_t kill_bound_ns) const {
    for (std::uint64_t d : {intent.load(), done.load()})
      if (d != 0 && d <= when_ns) return true;
    const std::uint64_t late = late_deadline_ns.load();
    return late != 0 && late <= when_ns && when_ns <= late + kill_bound_ns;
  }
};

// What the worker held when the server's signal reached it, judged by its handler at that
// moment (a judgement at reap time, a millisecond later, would excuse an early kill).
enum class Verdict : int {
  kNotSignalled = 0,
  kHangExpired = 1,     // its hang's deadline had passed: the kill it is owed
  kTimerExpired = 2,    // another timer it held may have been armed and expired: deserved
  kNothingExpired = 3,  // every timer it held was released in time or not yet due: a false kill
};

struct WorkerLog {
  std::atomic<pid_t> pid;
  std::atomic<int> uses_fifo;
  std::atomic<std::uint64_t> ops;
  std::atomic<std::uint64_t> survived;       // watched releases the process outlived (kSurvivalMarginNs)
  std::atomic<std::uint64_t> late_releases;  // watched releases that finished after their deadline
  std::atomic<std::uint64_t> fifo_acquires;  // FIFO requests seen applied in the table
  std::atomic<std::uint64_t> fifo_releases;
  std::atomic<std::uint64_t> fifo_refused;    // no server during a restart: the client was told, and retried
  std::atomic<std::uint64_t> fifo_resent;     // sent again: a new server took over before the table showed it
  std::atomic<std::uint64_t> fifo_unapplied;  // a live server never applied it within the kill bound
  std::atomic<std::uint64_t> hang_started_ns;
  ScopeRecord hang;  // intent != 0 once the main thread has stopped to hang: the kill must come
  ScopeRecord scopes[kThreadsPerWorker][kScopesPerThread];
  // Written once, by the handler of the server's signal (the worker dies right after).
  std::atomic<std::uint64_t> signalled_ns;
  std::atomic<Verdict> verdict;

  // Could the server have found one of the worker's timers armed and expired, given a
  // signal that arrived at `when_ns`? Any recorded deadline may be what the table held
  // when the server looked; a late release excuses a signal within the kill bound of its
  // deadline. Lock-free atomics only: called from a signal handler.
  Verdict judge(std::uint64_t when_ns, std::uint64_t kill_bound_ns) const {
    if (hang.intent.load() != 0 && hang.expired_by(when_ns, 0)) return Verdict::kHangExpired;
    for (const auto& thread : scopes)
      for (const auto& s : thread)
        if (s.expired_by(when_ns, kill_bound_ns)) return Verdict::kTimerExpired;
    return Verdict::kNothingExpired;
  }
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<pid_t>::is_always_lock_free &&
              std::atomic<Verdict>::is_always_lock_free);

}  // namespace soak
