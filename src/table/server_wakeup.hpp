// The early wake-up: a timer armed while the server sleeps is seen in time even when its
// deadline comes before the server's planned wake-up, and arming stays free of system
// calls whenever it does not.
//
// The words (table header line 4): `wake_at_ns`, a bound the server publishes on when it
// will next look at the table, and `wake_pending`, a futex word.
//
//   client, after its arm's exchange          server, each round
//   --------------------------------          ------------------
//   if deadline < wake_at_ns:                  publish marker M = now + max_interval  (1)
//     if wake_pending == 0 and                 drain sources; scan (seq_cst loads)
//        exchange(wake_pending, 1) == 0:       plan the next look W <= M
//       FUTEX_WAKE(wake_pending)               loop: publish W; if exchange(pending, 0)
//                                                    rescan (W only ever lowered)    (2)
//                                              FUTEX_WAIT(pending, 0, until W)
//
// Why no arm is missed. The arm (a seq_cst exchange) and the client's seq_cst load of
// wake_at_ns face the server's seq_cst store of the marker and the scan's seq_cst loads
// of the armed words after it, a Dekker pair: if the client read a value older than the
// marker, its arm comes before the marker in the single order of seq_cst operations, so
// the scan's load, after the marker, sees the arm. Otherwise the client read the marker or a later value V, every one of which
// bounds the server's next look from above (W <= M, and W is only lowered); so either the
// deadline is at or after V and the server looks at the table by then, or the client
// sets wake_pending. A pending flag set before the server's exchange (2) is seen there
// and costs one rescan; one set after it makes FUTEX_WAIT return at once (the kernel
// compares the word atomically) or is followed by the FUTEX_WAKE that ends the wait.
//
// Why it costs nothing in the steady state. The marker is the longest the server would
// sleep anyway, so a deadline past max_interval never wakes anyone, even during a round;
// the plan W is what the scan found, so re-arming a timer that was already seen (its new
// deadline is later) never wakes either. Only a deadline earlier than anything the server
// knows makes the system call, and only the client that flips wake_pending from 0 to 1:
// the others see it set with a plain load.
//
// Every byte here is untrusted: a client that writes wake_at_ns or wake_pending can only
// make the server look at the table sooner (a rescan) or later (never later than
// max_interval, which the server enforces whatever the words say), never reap wrongly.
#pragma once

#include <cstdint>

#include "shmtimer/table.hpp"

namespace shmtimer::detail {

// Out of line and cold: the rare case, a deadline earlier than the server's next look.
void request_wakeup(layout::TableHeader& header) noexcept;

// The client's step after an arm that succeeded (arm_slot's seq_cst exchange comes first).
// Modelled in src/table/model/slot_protocol.pml (arm's wake-up step).
inline void wake_server_for(layout::TableHeader& header, std::uint64_t deadline_ns) noexcept {
  // seq_cst: the Dekker pair with the server's marker store and its scan's seq_cst loads (above). On
  // x86-64 it is a plain load, after the locked exchange that already drained the store
  // buffer.
  if (deadline_ns >= header.wake_at_ns.load(std::memory_order_seq_cst)) [[likely]]
    return;
  request_wakeup(header);
}

// The server's side: publishes its plans and sleeps on the futex word. One per server.
class ServerWakeup {
 public:
  explicit ServerWakeup(Table& table) noexcept : header_(table.header()) {}

  // Step (1), at the start of a round: from here until the round ends, a client may rely
  // on the server looking again by the returned bound (the server must keep W <= it).
  std::uint64_t publish_marker(std::uint64_t now_ns, std::uint64_t max_interval_ns) noexcept;

  // Step (2): publishes the planned look `wake_ns` (lowered to what is already published,
  // never raised). True when a client asked for a wake-up since the last call: rescan
  // before sleeping.
  bool publish_plan(std::uint64_t wake_ns) noexcept;

  // The time the server has promised to look again; what sleep_until() must not pass.
  std::uint64_t promised_ns() const noexcept { return promised_ns_; }

  // Sleeps until `deadline_ns` on the server's clock, read as `now_ns` (or the promise, if
  // earlier), or until a client, the stop request or a request source wakes the server.
  // Returns the time it planned to wake at.
  std::uint64_t sleep_until(std::uint64_t now_ns, std::uint64_t deadline_ns) noexcept;

  // Wakes the sleeping server from this process (stop(), a readable FIFO).
  void wake() noexcept;

 private:
  layout::TableHeader& header_;
  std::uint64_t promised_ns_ = 0;  // the lowest bound published since the last marker
  bool marker_live_ = false;       // promised_ns_ is a marker, not a plan
};

}  // namespace shmtimer::detail
