#include "shmtimer/shm_timer_client.hpp"

#include <pthread.h>

#include <mutex>

#include "shmtimer/error.hpp"
#include "shmtimer/process_identity.hpp"
#include "scope_cache.hpp"
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
    ::pthread_atfork([] { insert_mutex().lock(); }, [] { insert_mutex().unlock(); },
                     [] { insert_mutex().unlock(); });
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

[[noreturn]] void throw_full(const Table& table) {
  table.header().full_failures.fetch_add(1, std::memory_order_relaxed);  // statistics
  throw Error(ErrorCode::kTableFull, "timer table " + table.path().string() + " is full: all " +
                                         std::to_string(table.capacity()) +
                                         " slots are claimed by live processes (create it with a larger capacity)");
}

// Frees slots whose owner is gone (dead, a zombie, or its pid reused), so a table full
// of dead processes' slots does not fail a live one while the server is down.
std::uint64_t reclaim_dead_owners(const Table& table) {
  std::uint64_t freed = 0;
  detail::for_each_occupied(table, [&](std::uint64_t index) {
    const std::uint64_t control = table.slot(index).control.load(std::memory_order_acquire);
    const auto c = layout::Control::unpack(control);
    if (c.state == layout::SlotState::kFree || c.pid <= 0) return;
    const auto stat = read_process_stat(c.pid);
    const bool reused = c.state == layout::SlotState::kReady && stat &&
                        stat->start_time != table.slot(index).start_time.load(std::memory_order_relaxed);
    if (!stat || stat->is_zombie() || reused) freed += detail::free_slot(table, index, control) ? 1 : 0;
  });
  return freed;
}

}  // namespace

ShmTimerClient::ShmTimerClient(std::shared_ptr<Table> table, int signal) : table_(std::move(table)), signal_(signal) {
  if (!table_) throw Error(ErrorCode::kInvalidArgument, "ShmTimerClient needs a table");
  if (table_->read_only()) throw Error(ErrorCode::kInvalidArgument, "ShmTimerClient needs a writable table");
  check_signal(signal);
  insert_mutex();  // registers the fork handlers before any thread can fork
}

std::uint64_t ShmTimerClient::find_existing(std::string_view scope_id) const {
  const pid_t pid = current_pid();
  if (const auto index = detail::ScopeCache::find(*table_, pid, scope_id); index != detail::kNoSlot) [[likely]]
    return index;
  const detail::ScopeKey key(scope_id);
  const auto index = detail::find_slot(*table_, pid, current_start_time(), key);
  if (index != detail::kNoSlot) detail::ScopeCache::remember(*table_, index, scope_id);
  return index;
}

layout::Slot& ShmTimerClient::slot_for(std::string_view scope_id) {
  if (const auto index = find_existing(scope_id); index != detail::kNoSlot) [[likely]]
    return table_->slot(index);

  const detail::ScopeKey key(scope_id);
  const pid_t pid = current_pid();
  const std::uint64_t start_time = current_start_time();
  std::lock_guard lock(insert_mutex());
  // Again under the lock: a sibling thread may have claimed it since.
  if (const auto index = detail::find_slot(*table_, pid, start_time, key); index != detail::kNoSlot)
    return table_->slot(index);
  const detail::NewKey owner{pid, start_time, signal_, layout::Origin::kTable};
  auto index = detail::insert_slot(*table_, owner, key);
  if (!index && reclaim_dead_owners(*table_) > 0) index = detail::insert_slot(*table_, owner, key);
  if (!index) throw_full(*table_);
  return table_->slot(*index);
}

void ShmTimerClient::acquire(std::string_view scope_id, Deadline deadline) {
  detail::arm_slot(slot_for(scope_id), to_table_ns(deadline), signal_);
}

void ShmTimerClient::release(std::string_view scope_id) {
  if (const auto index = find_existing(scope_id); index != detail::kNoSlot) detail::disarm_slot(table_->slot(index));
}

bool ShmTimerClient::forget(std::string_view scope_id) {
  const detail::ScopeKey key(scope_id);
  std::lock_guard lock(insert_mutex());
  const auto index = detail::find_slot(*table_, current_pid(), current_start_time(), key);
  if (index == detail::kNoSlot) return false;
  return detail::free_slot(*table_, index, table_->slot(index).control.load(std::memory_order_acquire));
}

Timer ShmTimerClient::timer(std::string_view scope_id) { return Timer(*this, std::string(scope_id)); }

Timer::Timer(ShmTimerClient& client, std::string scope)
    : client_(&client), scope_(std::move(scope)), slot_(&client.slot_for(scope_)), bound_pid_(current_pid()) {}

void Timer::arm(Deadline deadline) {
  if (current_pid() != bound_pid_) [[unlikely]] {  // a forked child: bind to its own slot
    slot_ = &client_->slot_for(scope_);
    bound_pid_ = current_pid();
  }
  detail::arm_slot(*slot_, to_table_ns(deadline), client_->signal_);
}

void Timer::disarm() noexcept {
  // In a forked child that never armed, the bound slot is the parent's: leave it alone.
  if (current_pid() != bound_pid_) [[unlikely]] return;
  detail::disarm_slot(*slot_);
}

}  // namespace shmtimer
