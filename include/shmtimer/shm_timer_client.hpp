// The shared-memory client: acquire and release write the caller's slot in the table
// directly; a Timer handle is bound to its slot and skips even the scope lookup.
#pragma once

#include <atomic>
#include <csignal>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "shmtimer/table.hpp"
#include "shmtimer/timer_client.hpp"

namespace shmtimer {

class Timer;

class ShmTimerClient final : public TimerClient {
 public:
  // `signal` is what the server sends when one of this client's timers expires; <= 0
  // means never kill (as in the reference). `require_server` (the default): an acquire
  // (or a Timer's arm) throws Error(kNoServer) while no live server holds the table, as
  // PyTorch's client fails without a server, instead of arming a timer nobody enforces.
  // On the hot path that costs one load of a header word the arm reads anyway (a server
  // that stopped, or never ran, left it zero); the slow paths also judge the server's
  // heartbeat, at most every 100 ms per client. A server that crashed leaves the word
  // set: its timers are enforced by the server that takes the table over (README.md,
  // "Python"; TimerServer::withdraw_presence).
  explicit ShmTimerClient(std::shared_ptr<Table> table, int signal = SIGKILL, bool require_server = true);

  // Lock-free and syscall-free once the scope has a slot in this process. The first
  // acquire of a new scope claims a slot (slow path, see docs/table-format.md); a full
  // table throws Error(kTableFull), a scope over 256 bytes Error(kScopeTooLong).
  // Inline, so that the hot paths (try_arm_cached, try_disarm_cached) are leaf calls
  // that save no register: the caller already holds the arguments for the slow path.
  void acquire(std::string_view scope_id, Deadline deadline) override {
    const std::uint64_t deadline_ns = to_table_ns(deadline);
    if (!served_or_not_required() || !try_arm_cached(scope_id, deadline_ns)) [[unlikely]]
      acquire_slow(scope_id, deadline_ns);
  }
  void release(std::string_view scope_id) override {
    if (!try_disarm_cached(scope_id)) [[unlikely]]
      release_slow(scope_id);
  }

  // A handle bound to this process's slot for `scope_id`, claiming it if needed.
  Timer timer(std::string_view scope_id);

  // Gives the scope's slot back to the table. Slots otherwise stay claimed (disarmed)
  // after release, so re-acquiring costs no claim; a process using unbounded distinct
  // scopes should forget them. No Timer for this scope may be in use meanwhile.
  bool forget(std::string_view scope_id);

  // Recycling: from now on, before this client claims a slot while it holds `keep` or
  // more, it gives back its idle (disarmed) slots, oldest first, down to keep / 2, and
  // all of them before it reports a full table. Then a process that makes a new scope
  // per step holds a bounded number of slots, as torch's server forgets a released
  // timer. Armed slots are never given back, and an arm racing the recycling is never
  // lost (slot_ops.hpp, give_back_idle). 0 (the default): never.
  // Only for a client whose calls (and its Timers') come one at a time, as the Python
  // module's do under the GIL: a call paused inside its slot write in another thread
  // could otherwise write into a slot already given to another process.
  void recycle_idle_slots(std::size_t keep);

  int signal() const { return signal_; }
  bool require_server() const { return require_server_; }
  const std::shared_ptr<Table>& table() const { return table_; }

 private:
  friend class Timer;
  // The slot index of this process's key, with the identity it is owned under; kNoSlot
  // when there is none. Per-thread cache, then the table.
  std::uint64_t find_existing(std::string_view scope_id, layout::Ownership& owner) const;
  // The hot paths: a scope of the common length found in this thread's cache, and the
  // slot write. False when that does not apply or does not take; the slow paths then
  // do the whole work (they also check for a server, for a client that requires one).
  bool try_arm_cached(std::string_view scope_id, std::uint64_t deadline_ns) noexcept;
  bool try_disarm_cached(std::string_view scope_id) noexcept;
  void acquire_slow(std::string_view scope_id, std::uint64_t deadline_ns);
  void release_slow(std::string_view scope_id);
  std::uint64_t slot_for(std::string_view scope_id, layout::Ownership& owner);  // find, else claim
  // False when this client requires a server and the table says that none serves it:
  // wake_at_ns is zero until a server's first round and after it stops (server_wakeup.hpp).
  // Relaxed: a hint that only sends the call to the slow path, which decides.
  bool served_or_not_required() const noexcept {
    return !require_server_ || header_->wake_at_ns.load(std::memory_order_relaxed) != 0;
  }
  // Throws Error(kNoServer) when require_server_ and no live server holds the table.
  void check_server() const;
  // Under the insert lock: gives back idle claims, oldest first, until at most `down_to`
  // claims are left (or none is idle); returns how many slots it gave back.
  std::size_t recycle_idle(std::size_t down_to);
  struct Claim;
  std::deque<Claim>& my_claims();  // claims_, emptied first if they are another process's

  std::shared_ptr<Table> table_;
  // The table's id, header and slots, copied here: the hot path reads them from this
  // object's own line instead of through the table.
  std::uint64_t table_id_;
  layout::TableHeader* header_;
  layout::Slot* slots_;
  int signal_;
  bool require_server_;
  // CLOCK_MONOTONIC_COARSE time until which the server counts as alive without looking
  // again. Relaxed: a standalone hint; threads that race here both just look.
  mutable std::atomic<std::uint64_t> server_checked_until_ns_{0};
  // The slots this client claimed while recycling, oldest first, with the Ready word each
  // was claimed under, and whose they are (a forked child inherits the list, never the
  // slots). Guarded by the process-wide insert lock.
  struct Claim {
    std::uint64_t index;
    std::uint64_t control;
  };
  std::size_t recycle_keep_ = 0;
  std::deque<Claim> claims_;
  pid_t claims_pid_ = 0;
  std::uint64_t claims_identity_ = 0;
};

class Timer {
 public:
  // Arms: one atomic exchange on the bound slot, after an identity check that rebinds in
  // a child after fork() (or when the slot was freed under the handle).
  void arm(Deadline deadline);
  void arm_after(std::chrono::nanoseconds after) {
    arm(SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(after));
  }
  void disarm() noexcept;
  const std::string& scope() const { return scope_; }

 private:
  friend class ShmTimerClient;
  Timer(ShmTimerClient& client, std::string scope);
  void bind();
  bool bound_here() const noexcept;
  // The slow path of arm(), out of line so the fast one stays a leaf without a frame.
  [[gnu::noinline, gnu::cold]] void rebind_and_arm(std::uint64_t deadline_ns);

  ShmTimerClient* client_;
  std::string scope_;
  int signal_;                             // the client's, kept here so arm() reads one line of this handle
  layout::TableHeader* header_ = nullptr;  // for the early wake-up after an arm
  layout::Slot* slot_ = nullptr;
  layout::Ownership owner_;
  std::uint64_t owner_mix_ = 0;  // layout::ArmWord::owner_mix of owner_, kept for arm()
  pid_t bound_pid_ = 0;
};

}  // namespace shmtimer
