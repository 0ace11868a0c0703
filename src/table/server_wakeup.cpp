#include "server_wakeup.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <ctime>

namespace shmtimer::detail {

namespace {

// Shared futexes (no FUTEX_PRIVATE_FLAG): the word lives in a MAP_SHARED file mapping, and
// the waker is another process. The kernel keys the futex by the file page and offset.
long futex_wake_all(std::atomic<std::uint32_t>& word) noexcept {
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// A relative timeout (FUTEX_WAIT measures it on CLOCK_MONOTONIC): the server's own clock
// may be a test's, so only the length of the sleep is taken from it.
void futex_wait_while_zero(std::atomic<std::uint32_t>& word, std::uint64_t timeout_ns) noexcept {
  const timespec timeout{static_cast<time_t>(timeout_ns / 1'000'000'000),
                         static_cast<long>(timeout_ns % 1'000'000'000)};
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, 0u, &timeout, nullptr, 0);
  // EAGAIN (the word was not 0), ETIMEDOUT, EINTR or a wake: the caller rescans in all.
}

// Flips the pending word 0 -> 1 and wakes the server; true when this call flipped it.
bool raise_pending(layout::TableHeader& header) noexcept {
  // A plain load first: once one waker has set the flag, the others do not write the
  // line at all. seq_cst, as the exchange: see the argument in the header.
  if (header.wake_pending.load(std::memory_order_seq_cst) != 0) return false;
  if (header.wake_pending.exchange(1, std::memory_order_seq_cst) != 0) return false;
  futex_wake_all(header.wake_pending);
  return true;
}

}  // namespace

void request_wakeup(layout::TableHeader& header) noexcept {
  // Relaxed: statistics (the wake-ups per million arms that docs/benchmarks.md reports).
  if (raise_pending(header)) header.wake_requests.fetch_add(1, std::memory_order_relaxed);
}

// Modelled in src/table/model/slot_protocol.pml (the server's marker; mutant ORD_MARKER).
std::uint64_t ServerWakeup::publish_marker(std::uint64_t now_ns, std::uint64_t max_interval_ns) noexcept {
  // A marker published less than half an interval ago still stands (the server spins
  // through many rounds a millisecond at times): keeping it spares the clients, who read
  // this line on every arm, a cache miss per round.
  if (!(marker_live_ && promised_ns_ >= now_ns + max_interval_ns / 2)) {
    promised_ns_ = now_ns + max_interval_ns;
    marker_live_ = true;
    // seq_cst store: the server's half of the Dekker pair. The scan's loads of the armed
    // words that follow are seq_cst too (src/server/reaper.cpp), so this store and they are
    // ordered in the single seq_cst order: an arm whose client read an older value comes
    // before this store there, hence before the scan's load, which therefore sees it.
    // (No fence: seq_cst loads are plain loads on x86-64, and ThreadSanitizer models them
    // but not fences.)
    header_.wake_at_ns.store(promised_ns_, std::memory_order_seq_cst);
  }
  // Requests made before this point are answered by the scan that follows: the arm before
  // a request consumed here happens before it (the exchange reads the client's release),
  // and the arm of a client that found the word already set precedes this exchange in
  // the seq_cst order, as does the scan's seq_cst load after it. Load first: the line is
  // written only when there is something to consume.
  if (header_.wake_pending.load(std::memory_order_seq_cst) != 0)
    header_.wake_pending.exchange(0, std::memory_order_seq_cst);
  return promised_ns_;
}

// Modelled in src/table/model/slot_protocol.pml (the server's plan).
bool ServerWakeup::publish_plan(std::uint64_t wake_ns) noexcept {
  if (wake_ns < promised_ns_) {
    promised_ns_ = wake_ns;
    marker_live_ = false;
    // seq_cst: a client that reads it compares its deadline against it; it only ever
    // lowers the bound, so whatever value a client read, the server looks by then.
    header_.wake_at_ns.store(wake_ns, std::memory_order_seq_cst);
  }
  // seq_cst load, then exchange: consumes the requests made so far, and writes the line
  // only when there are some. A request made after the load leaves the word at 1, which
  // FUTEX_WAIT sees (or its FUTEX_WAKE ends the wait). An arm that preceded a request
  // consumed here happens before the rescan that follows, which therefore sees it.
  if (header_.wake_pending.load(std::memory_order_seq_cst) == 0) return false;
  const bool requested = header_.wake_pending.exchange(0, std::memory_order_seq_cst) != 0;
  return requested;  // the rescan's seq_cst loads come after it, as in publish_marker
}

std::uint64_t ServerWakeup::sleep_until(std::uint64_t now_ns, std::uint64_t deadline_ns) noexcept {
  const std::uint64_t until = deadline_ns < promised_ns_ ? deadline_ns : promised_ns_;
  if (until > now_ns) futex_wait_while_zero(header_.wake_pending, until - now_ns);
  return until;
}

void ServerWakeup::wake() noexcept {
  // Unconditional exchange: the in-process wakers (stop(), the source watcher) must wake
  // the server even if a client's stale 1 is lying in the word.
  header_.wake_pending.exchange(1, std::memory_order_seq_cst);
  futex_wake_all(header_.wake_pending);
}

}  // namespace shmtimer::detail
