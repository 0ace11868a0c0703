#include "shmtimer/shm_timer_client.hpp"

#include <pthread.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "shmtimer/error.hpp"
#include "process_liveness.hpp"
#include "self_identity.hpp"
#include "shmtimer/printable.hpp"
#include "scope_cache.hpp"
#include "server_wakeup.hpp"
#include "slot_ops.hpp"

namespace shmtimer {

namespace {

// Serializes the claim of new keys among the threads of one process, so two threads that
// acquire the same new scope at once cannot claim two slots for it. Lookups of existing
// keys never take it, and no other process ever waits on it. Held across fork() so the
// child never inherits it locked by a thread that does not exist there.
std::mutex& insert_mutex() {
  static std::mutex mutex;
  static const bool registered = [] {
    ::pthread_atfork([] { insert_mutex().lock(); }, [] { insert_mutex().unlock(); }, [] { insert_mutex().unlock(); });
    return true;
  }();
  (void)registered;
  return mutex;
}

void check_signal(int signal) {
  if (signal > SIGRTMAX)
    throw Error(ErrorCode::kInvalidArgument,
                "signal " + std::to_string(signal) + " is above SIGRTMAX (" + std::to_string(SIGRTMAX) + ")");
}

[[noreturn]] void throw_full(Table& table) {
  table.header().full_failures.fetch_add(1, std::memory_order_relaxed);  // statistics
  throw Error(ErrorCode::kTableFull, "timer table " + table.path().string() + " is full: all " +
                                         std::to_string(table.capacity()) +
                                         " slots are claimed by live processes (create it with a larger capacity)");
}

// A server reads the table's pids in its own pid namespace. A client in another one (a
// container sharing /dev/shm with the server's) would name pids the server takes for its
// own neighbours': never protected, and a danger to them. So it is refused, loudly.
void check_pid_namespace(const Table& table) {
  // Relaxed: a standalone value, written by the server before it serves.
  const std::uint32_t served_in = table.header().server_pidns.load(std::memory_order_relaxed);
  const std::uint32_t here = current_pid_namespace();
  if (served_in != 0 && here != 0 && served_in != here)
    throw Error(ErrorCode::kInvalidArgument,
                "timer table " + table.path().string() + " is served from another pid namespace (pid:[" +
                    std::to_string(served_in) + "], this process is in pid:[" + std::to_string(here) +
                    "]): its server could not tell this process's pids from its own neighbours'. Run shmtimerd in "
                    "this process's pid namespace (docs/security.md)");
}

// Frees slots whose owner has exited, so a table full of dead processes' slots does not
// fail a live one while the server is down.
// Only owners the kernel says are gone: one that could not be looked at (this process
// out of descriptors, say) keeps its slot, and is counted in the header.
std::uint64_t reclaim_dead_owners(Table& table) {
  const auto running = [&](pid_t pid, std::optional<std::uint64_t> identity) {
    const Probe probe = probe_process(pid, identity);
    if (probe.unknown()) detail::count_liveness_unknown(table, probe.error);
    return probe;
  };
  std::uint64_t freed = 0;
  detail::for_each_occupied(table, [&](std::uint64_t index) {
    if (const auto control = detail::gone_owner_control(table, index, running))
      freed += detail::free_slot(table, index, *control);
  });
  return freed;
}

// A slot is only ever claimed under an identity that names this process alone.
[[noreturn]] void throw_unknown_identity() {
  const int error = errno;
  throw Error(ErrorCode::kIo, std::string("this process's identity could not be learned (pidfd_open and "
                                          "/proc/self/stat failed, the last with: ") +
                                  std::strerror(error) + "), so it cannot claim a timer slot");
}

std::uint64_t coarse_monotonic_ns() noexcept {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);  // the vDSO: no system call
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000 + static_cast<std::uint64_t>(now.tv_nsec);
}

}  // namespace

void ShmTimerClient::check_server() const {
  const auto& header = table_->header();
  // Acquire: pairs with the release store of zero by a server that stops, made after it
  // zeroed its pid; so a client that sees the zero also sees no pid, and refuses at once.
  const bool between_servers = header.wake_at_ns.load(std::memory_order_acquire) == 0;
  // Acquire: pairs with the server's release store of its pid, published after its first
  // heartbeat (src/server/timer_server.cpp). The other words are liveness hints, read relaxed.
  const pid_t pid = header.server_pid.load(std::memory_order_acquire);
  const std::uint64_t now = coarse_monotonic_ns();
  if (pid != 0 && now < server_checked_until_ns_.load(std::memory_order_relaxed)) [[likely]]
    return;
  const std::uint64_t beat = header.heartbeat_mono_ns.load(std::memory_order_relaxed);
  const std::uint64_t age = now > beat ? now - beat : 0;  // the coarse clock may lag a tick
  if (pid == 0 || beat == 0 ||
      age > layout::heartbeat_stale_after_ns(header.server_max_interval_ms.load(std::memory_order_relaxed)))
    throw Error(ErrorCode::kNoServer,
                "no live server holds timer table " + table_->path().string() +
                    (pid == 0 ? std::string(between_servers ? " (none is serving it: its last server stopped, or none "
                                                              "ever started)"
                                                            : " (none is serving it)")
                              : " (the last heartbeat of server pid " + std::to_string(pid) + " is " +
                                    std::to_string(age / 1'000'000) + " ms old)") +
                    ": a timer armed now would not be enforced. Start shmtimerd on it, or create the client "
                    "with require_server=false");
  server_checked_until_ns_.store(now + 100'000'000, std::memory_order_relaxed);
}

namespace {
std::shared_ptr<Table> checked(std::shared_ptr<Table> table) {
  if (!table) throw Error(ErrorCode::kInvalidArgument, "ShmTimerClient needs a table");
  return table;
}
}  // namespace

ShmTimerClient::ShmTimerClient(std::shared_ptr<Table> table, int signal, bool require_server)
    : table_(checked(std::move(table))),
      table_id_(table_->id()),
      header_(&table_->header()),
      slots_(&table_->slot(0)),
      signal_(signal),
      require_server_(require_server) {
  if (table_->read_only()) throw Error(ErrorCode::kInvalidArgument, "ShmTimerClient needs a writable table");
  check_signal(signal);
  check_pid_namespace(*table_);
  insert_mutex();  // registers the fork handlers before any thread can fork
}

std::uint64_t ShmTimerClient::find_existing(std::string_view scope_id, layout::Ownership& owner) const {
  // The cache, checked here against the slot: unlike the hot path, whose slot write
  // checks the entry, a caller of this keeps the answer (a Timer binds to it).
  const auto* hit = detail::ScopeCache::find(table_id_, slots_, scope_id);
  if (hit && slots_[hit->index].control.load(std::memory_order_acquire) == hit->control) {
    owner = hit->ownership();
    return hit->index;
  }
  const detail::ScopeKey key(scope_id);
  owner.identity = current_identity();
  const auto index =
      detail::find_slot(*table_, current_pid(), owner.identity, layout::Origin::kTable, key, &owner.control);
  if (index != detail::kNoSlot) detail::ScopeCache::remember(table_id_, index, owner.control, scope_id);
  return index;
}

std::uint64_t ShmTimerClient::slot_for(std::string_view scope_id, layout::Ownership& owner) {
  if (const auto index = find_existing(scope_id, owner); index != detail::kNoSlot) [[likely]]
    return index;

  const detail::ScopeKey key(scope_id);
  const pid_t pid = current_pid();
  if (owner.identity == 0 && (owner.identity = current_identity()) == 0) throw_unknown_identity();
  std::lock_guard lock(insert_mutex());
  // Again under the lock: a sibling thread may have claimed it since.
  if (const auto index = detail::find_slot(*table_, pid, owner.identity, layout::Origin::kTable, key, &owner.control);
      index != detail::kNoSlot)
    return index;
  const detail::NewKey key_owner{pid, owner.identity, signal_, layout::Origin::kTable};
  if (recycle_keep_ != 0 && my_claims().size() >= recycle_keep_) recycle_idle(recycle_keep_ / 2);
  auto claimed = detail::insert_slot(*table_, key_owner, key);
  // A full table: this client's idle slots first (all of them), then dead processes'.
  if (!claimed.ok() && recycle_keep_ != 0 && recycle_idle(0) > 0)
    claimed = detail::insert_slot(*table_, key_owner, key);
  if (!claimed.ok() && reclaim_dead_owners(*table_) > 0) claimed = detail::insert_slot(*table_, key_owner, key);
  if (!claimed.ok()) throw_full(*table_);
  if (recycle_keep_ != 0) my_claims().push_back({claimed.index, claimed.control});
  owner.control = claimed.control;
  return claimed.index;
}

void ShmTimerClient::recycle_idle_slots(std::size_t keep) {
  std::lock_guard lock(insert_mutex());
  recycle_keep_ = keep;
  if (keep == 0) claims_.clear();
}

std::deque<ShmTimerClient::Claim>& ShmTimerClient::my_claims() {
  if (claims_pid_ != current_pid() || claims_identity_ != current_identity()) {
    claims_.clear();  // none yet, or the parent's, inherited through fork()
    claims_pid_ = current_pid();
    claims_identity_ = current_identity();
  }
  return claims_;
}

std::size_t ShmTimerClient::recycle_idle(std::size_t down_to) {
  auto& claims = my_claims();
  std::size_t given_back = 0;
  // Oldest first; a claim whose slot is no longer ours (forgotten, or freed by the server
  // after a reap) is dropped, one that holds a timer is kept.
  for (auto it = claims.begin(); it != claims.end() && claims.size() > down_to;) {
    // Relaxed: a hint to drop the claim; give_back_idle's CAS is what decides a free.
    const bool ours = table_->slot(it->index).control.load(std::memory_order_relaxed) == it->control;
    if (!ours) {
      it = claims.erase(it);
    } else if (detail::give_back_idle(*table_, it->index, it->control)) {
      ++given_back;
      it = claims.erase(it);
    } else {
      ++it;
    }
  }
  return given_back;
}

// The slot is looked up again after an arm that found it no longer ours: that takes a
// free and re-claim of this very slot between lookup and arm, so a few rounds settle it.
constexpr int kArmAttempts = 4;

// This thread's scope cache, then the slot write, whose ownership check against the
// entry's control word is also the check that the entry still holds. Scopes of other
// lengths take the slow path, through the cache too (find_existing).
bool ShmTimerClient::try_arm_cached(std::string_view scope_id, std::uint64_t deadline_ns) noexcept {
  if (!detail::ScopeCache::common_length(scope_id)) [[unlikely]]
    return false;
  const auto* hit = detail::ScopeCache::find_common(table_id_, scope_id);
  if (hit == nullptr || !detail::arm_slot_with_owner_mix(slots_[hit->index], hit->control, hit->owner_mix, deadline_ns,
                                                         signal_)) [[unlikely]]
    return false;
  detail::wake_server_for(*header_, deadline_ns);
  return true;
}

bool ShmTimerClient::try_disarm_cached(std::string_view scope_id) noexcept {
  if (!detail::ScopeCache::common_length(scope_id)) [[unlikely]]
    return false;
  const auto* hit = detail::ScopeCache::find_common(table_id_, scope_id);
  return hit != nullptr && detail::disarm_slot(slots_[hit->index], hit->ownership());
}

void ShmTimerClient::acquire_slow(std::string_view scope_id, std::uint64_t deadline_ns) {
  if (require_server_) {
    check_server();
    if (try_arm_cached(scope_id, deadline_ns)) [[likely]]
      return;
  }
  for (int attempt = 0; attempt < kArmAttempts; ++attempt) {
    layout::Ownership owner;
    const auto index = slot_for(scope_id, owner);
    if (detail::arm_slot(slots_[index], owner, deadline_ns, signal_)) {
      detail::wake_server_for(*header_, deadline_ns);
      return;
    }
  }
  throw Error(ErrorCode::kIo, "scope '" + printable(scope_id) + "': its slot kept being freed under this process");
}

void ShmTimerClient::release_slow(std::string_view scope_id) {
  for (int attempt = 0; attempt < kArmAttempts; ++attempt) {
    layout::Ownership owner;
    const auto index = find_existing(scope_id, owner);
    if (index == detail::kNoSlot || detail::disarm_slot(slots_[index], owner)) return;
  }
}

bool ShmTimerClient::forget(std::string_view scope_id) {
  const detail::ScopeKey key(scope_id);
  std::lock_guard lock(insert_mutex());
  std::uint64_t control = 0;
  const auto index =
      detail::find_slot(*table_, current_pid(), current_identity(), layout::Origin::kTable, key, &control);
  if (index == detail::kNoSlot) return false;
  return detail::free_slot(*table_, index, control);
}

Timer ShmTimerClient::timer(std::string_view scope_id) { return Timer(*this, std::string(scope_id)); }

Timer::Timer(ShmTimerClient& client, std::string scope)
    : client_(&client), scope_(std::move(scope)), signal_(client.signal_) {
  bind();
}

void Timer::bind() {
  bound_pid_ = current_pid();
  header_ = &client_->table_->header();
  slot_ = &client_->table_->slot(client_->slot_for(scope_, owner_));
  owner_mix_ = layout::ArmWord::owner_mix(owner_.control, owner_.identity);
}

// Inlined into arm() and disarm(): two loads of this process's identity and two compares.
[[gnu::always_inline]] inline bool Timer::bound_here() const noexcept {
  // A forked child has another pid; a descendant given a recycled pid has another start
  // time. Either must bind its own slot, never write its ancestor's.
  return current_pid() == bound_pid_ && current_identity() == owner_.identity;
}

void Timer::arm(Deadline deadline) {
  if (!client_->served_or_not_required()) [[unlikely]]
    client_->check_server();
  const std::uint64_t deadline_ns = to_table_ns(deadline);
  if (bound_here() && detail::arm_slot_with_owner_mix(*slot_, owner_.control, owner_mix_, deadline_ns, signal_))
      [[likely]] {
    detail::wake_server_for(*header_, deadline_ns);
    return;
  }
  rebind_and_arm(deadline_ns);
}

void Timer::rebind_and_arm(std::uint64_t deadline_ns) {
  if (client_->require_server_) client_->check_server();
  for (int attempt = 0; attempt < kArmAttempts; ++attempt) {  // rebind: see kArmAttempts
    bind();
    if (detail::arm_slot_with_owner_mix(*slot_, owner_.control, owner_mix_, deadline_ns, signal_)) {
      detail::wake_server_for(*header_, deadline_ns);
      return;
    }
  }
  throw Error(ErrorCode::kIo, "timer '" + printable(scope_) + "': its slot kept being freed under this process");
}

void Timer::disarm() noexcept {
  // In a process that never armed through this handle (a forked child), or whose slot is
  // gone, there is nothing of ours to disarm: the ownership check leaves the slot alone.
  if (!bound_here()) [[unlikely]]
    return;
  detail::disarm_slot(*slot_, owner_);
}

}  // namespace shmtimer
