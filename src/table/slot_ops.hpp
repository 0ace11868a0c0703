// The lock-free operations on table slots, shared by the client, the server and the
// reader. Every memory order used on the table is argued here, next to its use.
//
// Protocol in one paragraph. A slot moves Free -> Claiming -> Ready -> Free. A claimant
// takes a Free slot with a CAS that writes its own pid into the control word (so a dead
// claimant is always attributable), sets the slot's occupancy bit, writes the key
// fields, and publishes Ready with a CAS from its exact Claiming word. While Ready the
// key (pid, identity, scope) is immutable; only the armed word, signal and the
// statistics change, written by the owning process (and the armed word cleared by the
// server after a reap). A slot is freed by a CAS from its exact Ready or Claiming word, by
// its owner or by anyone once the owner's process has exited. Only the server clears
// occupancy bits.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "shmtimer/table.hpp"

namespace shmtimer::detail {

using layout::Control;
using layout::Ownership;
using layout::Slot;
using layout::SlotState;

// A scope as slots store it: little-endian 8-byte words, zero past the last byte. The
// words are computed from the caller's bytes on demand (no copy on the hot path).
struct ScopeKey {
  struct Words {
    const char* data;
    std::uint32_t len;

    std::uint64_t word(std::uint32_t i) const noexcept {
      const std::uint32_t offset = i * 8;
      if (offset >= len) return 0;
      const std::uint32_t n = len - offset;
      if (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, data + offset, 8);
        return w;
      }
      return tail_word(data + offset, n);
    }
    // The last eight bytes (len >= 8), unaligned to the word grid.
    std::uint64_t last_word() const noexcept {
      std::uint64_t w;
      std::memcpy(&w, data + len - 8, 8);
      return w;
    }

   private:
    // The last 1..7 bytes as a zero-padded word, without reading past them: two loads
    // that may overlap (the overlapping bytes are the same bytes, so OR is exact).
    static std::uint64_t tail_word(const char* p, std::uint32_t n) noexcept {
      if (n >= 4) {
        std::uint32_t lo, hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + n - 4, 4);
        return std::uint64_t{lo} | (std::uint64_t{hi} << (8 * (n - 4)));
      }
      const auto byte = [p](std::uint32_t k) { return std::uint64_t{static_cast<unsigned char>(p[k])}; };
      return byte(0) | (byte(n / 2) << (8 * (n / 2))) | (byte(n - 1) << (8 * (n - 1)));
    }
  };

  Words bytes;
  std::uint32_t len = 0;
  std::uint32_t word_count = 0;
  std::uint64_t hash = 0;

  explicit ScopeKey(std::string_view scope);  // throws kScopeTooLong
  std::uint64_t word(std::uint32_t i) const noexcept { return bytes.word(i); }
};

std::uint64_t home_index(std::uint64_t scope_hash, pid_t pid, std::uint64_t capacity) noexcept;

inline SlotState state_of(std::uint64_t control) noexcept { return Control::unpack(control).state; }

// Does slot `s` hold the published key (pid, identity, origin, key)? The origin is part
// of the key: a table client and the FIFO shim acting for the same pid and scope are two
// writers with two slots, so neither can free or arm the other's. The caller loaded
// `control` with acquire, which pairs with the claimant's release publish, so the key
// fields read here (relaxed) are the published ones.
inline bool holds_key(const Slot& s, std::uint64_t control, pid_t pid, std::uint64_t identity, layout::Origin origin,
                      const ScopeKey& key) noexcept {
  if (control != Control::pack(SlotState::kReady, Control::unpack(control).generation, pid)) return false;
  if (s.origin.load(std::memory_order_relaxed) != static_cast<std::uint32_t>(origin) ||
      s.scope_hash.load(std::memory_order_relaxed) != key.hash ||
      s.scope_len.load(std::memory_order_relaxed) != key.len || s.identity.load(std::memory_order_relaxed) != identity)
    return false;
  for (std::uint32_t i = 0; i < key.word_count; ++i)
    if (s.scope_words[i].load(std::memory_order_relaxed) != key.word(i)) return false;
  return true;
}

// Lock-free lookup: probes from the key's home slot as far as any key was ever placed.
// No system call, no write. Returns kNoSlot when the key is not in the table (a sentinel,
// not std::optional: GCC returns an optional through the stack with a byte store then a
// word load, and that failed store forwarding cost more than the whole lookup).
inline constexpr std::uint64_t kNoSlot = ~std::uint64_t{0};
std::uint64_t find_slot(const Table& table, pid_t pid, std::uint64_t identity, layout::Origin origin,
                        const ScopeKey& key, std::uint64_t* control = nullptr) noexcept;

struct NewKey {
  pid_t pid;
  std::uint64_t identity;
  std::int32_t signal;
  layout::Origin origin;
};

// A slot that holds a key, with the Ready word it was published under.
struct Claimed {
  std::uint64_t index = kNoSlot;
  std::uint64_t control = 0;
  bool ok() const { return index != kNoSlot; }
};

// Claims a Free slot for `key` and publishes it Ready and disarmed. Callers must make
// sure no other thread inserts the same (pid, key) at the same time (the client holds a
// process-wide mutex; the server is one thread). Not ok() when no slot is free.
Claimed insert_slot(Table& table, const NewKey& owner, const ScopeKey& key) noexcept;

// Claims slot `index`, `distance` slots from the key's home, if it is Free; publishes the
// key Ready and disarmed. insert_slot's step; benchmarks use it to fill a table in order.
// Returns the Ready word, or 0 when the slot was not Free or was freed under the claim.
std::uint64_t try_claim(Table& table, std::uint64_t index, std::uint64_t distance, const NewKey& owner,
                        const ScopeKey& key) noexcept;

// Frees the slot if its control word is still `expected` (Ready or Claiming); folds its
// statistics into the header. Returns false when the slot changed meanwhile.
bool free_slot(Table& table, std::uint64_t index, std::uint64_t expected) noexcept;

// Disarms slot `index` on another's behalf (the reaper's cleanup, the shim's disarm_timers_of)
// only if its armed word is still exactly `seen`, a word read from it: a timer its owner
// armed again since stands, and the word's check names its claim, so a later owner's word
// never matches. False when the word changed, or `seen` is already disarmed.
bool disarm_if_unchanged(Table& table, std::uint64_t index, std::uint64_t seen) noexcept;

// Gives back a slot its owner holds idle: frees it if its control word is still `ready`
// (the caller's own Ready word) and no timer is armed in it. An arm racing this is never
// lost: the slot is first marked Claiming (by CAS from `ready`), then the armed word is
// read; with arm_slot's seq_cst exchange and re-check of control, either that re-check
// sees the mark and the arm undoes itself (its caller rebinds), or the read sees the arm
// and the slot is restored to `ready` as it was (no other writer touches a Claiming slot
// whose claimant is alive). Returns whether the slot was freed. The owner's other threads
// must not be inside arm_slot or disarm_slot on this slot meanwhile (their stores of the
// signal and statistics, or a disarm's store, could land in the next owner's slot): the
// client recycles only when its calls come one at a time (recycle_idle_slots).
bool give_back_idle(Table& table, std::uint64_t index, std::uint64_t ready) noexcept;

// Clears the occupancy bit of a slot that was seen Free, then re-sets it if a claimant
// raced in. Server only (see the Dekker argument in slot_ops.cpp).
void clear_occupancy_if_free(Table& table, std::uint64_t index) noexcept;

// Marks a slot occupied (idempotent).
void set_occupancy(Table& table, std::uint64_t index) noexcept;

// The owner's hot path. Arming is one atomic exchange of the armed word (deadline and
// check together), so concurrent arms and disarms of one slot linearize: the slot always
// holds one whole arm or nothing, never a deadline with another arm's check.
//
// Returns false when the writer no longer owns the slot (it was freed, or freed and
// claimed by another process): the caller rebinds. The check before the exchange catches
// a slot freed at any earlier time, and then nothing is written; the one after catches a
// free that raced the exchange, which is then undone by restoring the word it replaced,
// unless the new owner wrote since. Either way the stray word names the writer's
// identity, not the new owner's, so it never verifies as the new owner's timer. (In that
// race the signal and statistics stores below may also land in the new owner's slot. It
// takes a slot freed under a live owner's arm: only the owner itself can do that, by
// forget() with a handle still arming in another thread, which the API forbids.)
// `owner_mix`: layout::ArmWord::owner_mix(control, the owner's identity), which a
// writer that arms often keeps (the scope cache does).
// Modelled in src/table/model/slot_protocol.pml (arm).
inline bool arm_slot_with_owner_mix(Slot& s, std::uint64_t control, std::uint64_t owner_mix, std::uint64_t deadline_ns,
                                    std::int32_t signal) noexcept {
  // Acquire: pairs with the claimant's Ready publish; the slot line is already in cache.
  if (s.control.load(std::memory_order_acquire) != control) [[unlikely]]
    return false;
  // Relaxed: ordered before the armed word by the exchange below (release); a reader that
  // acquire-loads the new word sees this signal (or a later one).
  if (s.signal.load(std::memory_order_relaxed) != signal) s.signal.store(signal, std::memory_order_relaxed);
  // Relaxed load+store rather than fetch_add: statistics only, and no second locked
  // instruction on the hot path. Two threads arming one slot at once may lose a count.
  s.acquires.store(s.acquires.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  const std::uint64_t word = layout::ArmWord::make_mixed(deadline_ns, owner_mix);
  // seq_cst exchange: one step for the whole arm, returning what it replaced (for the
  // undo), and a full barrier, so the control load below cannot be satisfied before the
  // word is visible: a claimant's CAS (seq_cst) that this load misses comes after the
  // exchange, and that claimant's own reset of the word then overwrites it.
  const std::uint64_t replaced = s.armed.exchange(word, std::memory_order_seq_cst);
  if (s.control.load(std::memory_order_seq_cst) == control) [[likely]]
    return true;
  std::uint64_t mine = word;
  // acq_rel: restores the new owner's word only if nobody wrote the slot since.
  s.armed.compare_exchange_strong(mine, replaced, std::memory_order_acq_rel, std::memory_order_relaxed);
  return false;
}

inline bool arm_slot(Slot& s, const Ownership& owner, std::uint64_t deadline_ns, std::int32_t signal) noexcept {
  return arm_slot_with_owner_mix(s, owner.control, layout::ArmWord::owner_mix(owner.control, owner.identity),
                                 deadline_ns, signal);
}

// Disarms. A plain store: releasing must stay cheap. The ownership check before it keeps
// a stale handle from disarming a later owner's timer; a free that races this very store
// (possible only when the owner frees its own slot with a handle still in use, or a
// writer outside shmtimer frees it) can clear the new owner's word, never arm it.
// Modelled in src/table/model/slot_protocol.pml (disarm).
inline bool disarm_slot(Slot& s, const Ownership& owner) noexcept {
  // Acquire: as in arm_slot.
  if (s.control.load(std::memory_order_acquire) != owner.control) [[unlikely]]
    return false;
  s.releases.store(s.releases.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // Release, for symmetry with arm: a reader's acquire load of the word then never sees an
  // older signal paired with a later state.
  s.armed.store(layout::kDisarmed, std::memory_order_release);
  return true;
}

// Arms slot `index` as whoever owns it now: for tests, benchmarks and corpus tools that
// plant timers of other processes. Clients never use it: they arm as themselves.
inline bool arm_as_current_owner(Table& table, std::uint64_t index, std::uint64_t deadline_ns,
                                 std::int32_t signal) noexcept {
  Slot& s = table.slot(index);
  const Ownership owner{s.control.load(std::memory_order_acquire), s.identity.load(std::memory_order_relaxed)};
  return arm_slot(s, owner, deadline_ns, signal);
}

// A consistent copy of a Ready slot, read with the seqlock pattern on the control word.
struct SlotSnapshot {
  std::uint64_t index = 0;
  std::uint64_t control = 0;
  pid_t pid = 0;
  std::uint32_t generation = 0;
  std::uint64_t armed = 0;        // the armed word as read: the server clears exactly this
  std::uint64_t deadline_ns = 0;  // its deadline (0: disarmed)
  std::uint64_t identity = 0;
  std::int32_t signal = 0;
  layout::Origin origin = layout::Origin::kTable;
  std::uint64_t acquires = 0;
  std::uint64_t releases = 0;
  std::string scope;
  bool corrupt = false;  // scope_len or origin out of range: written by something not shmtimer
  // The deadline is the owner's: written under this very claim (or the slot is disarmed).
  bool deadline_verified() const { return layout::ArmWord::verifies(armed, control, identity); }
  Ownership ownership() const { return {control, identity}; }
};

enum class ReadResult { kReady, kNotReady, kUnstable };

// Reads slot `index` into `out`. kReady: `out` is one published key with its live
// deadline. kNotReady: the slot is Free or Claiming (out.control says which). kUnstable:
// the slot kept changing for `attempts` tries.
ReadResult read_slot(const Table& table, std::uint64_t index, SlotSnapshot& out, int attempts = 8);

// Counts, in the table header, a look at a process that could not tell (errno `error`).
void count_liveness_unknown(Table& table, int error);
layout::LivenessUnknown liveness_unknown_reason(int error);

// The control word to free slot `index` from when its owner's process is gone; nullopt
// when it runs, when that could not be told, or when the slot is Free or changing.
// `control` is the slot's control word as the caller just loaded it (acquire).
// `running(pid, identity)` answers a Probe, with identity nullopt for a Claiming slot,
// which has none yet: its pid alone is checked, right before the free. Only gone() frees:
// a process that could not be looked at is kept. The free must be a CAS from exactly this
// word, so a slot claimed again since is left alone; and "the process (pid, identity) has
// exited" never goes stale, so the decision holds however late the free lands.
template <typename Running>
std::optional<std::uint64_t> gone_owner_control(const Slot& slot, std::uint64_t control, Running&& running) {
  const auto c = Control::unpack(control);
  if (c.state == SlotState::kClaiming)
    return running(c.pid, std::optional<std::uint64_t>()).gone() ? std::optional(control) : std::nullopt;
  if (c.state != SlotState::kReady) return std::nullopt;
  // Relaxed, and on the line the caller already read: the acquire load of `control`
  // pairs with the claim's release publish, so this is that claim's identity or a
  // later claim's. A later one means the control word changed since, and the free's CAS
  // from `control` then fails: an identity read from the wrong claim frees nothing.
  const std::uint64_t identity = slot.identity.load(std::memory_order_relaxed);
  return running(c.pid, std::optional(identity)).gone() ? std::optional(control) : std::nullopt;
}

template <typename Running>
std::optional<std::uint64_t> gone_owner_control(const Table& table, std::uint64_t index, Running&& running) {
  const Slot& slot = table.slot(index);
  return gone_owner_control(slot, slot.control.load(std::memory_order_acquire), running);
}

// Calls fn(index) for each slot whose occupancy bit is set, in index order.
template <typename Fn>
void for_each_occupied(const Table& table, Fn&& fn) {
  const std::uint64_t words = table.geometry().bitmap_words;
  const std::uint64_t capacity = table.capacity();
  // An idle server's round is mostly cache and TLB misses on slots it has not touched
  // for max_interval. So the first line of every slot of the next bitmap word (up to 64)
  // is prefetched before the slots of this one are visited: their misses overlap each
  // other and the visits.
  const auto prefetch_word = [&](std::uint64_t w, std::uint64_t bits) {
    for (; bits != 0; bits &= bits - 1) {
      const std::uint64_t index = w * 64 + static_cast<std::uint64_t>(__builtin_ctzll(bits));
      if (index < capacity) __builtin_prefetch(&table.slot(index), 0, 0);
    }
  };
  // Relaxed: a bit is a hint that the slot may hold something; the slot's own control
  // word (acquire) is what the caller trusts.
  std::uint64_t next_bits = words > 0 ? table.bitmap_word(0).load(std::memory_order_relaxed) : 0;
  prefetch_word(0, next_bits);
  for (std::uint64_t w = 0; w < words; ++w) {
    std::uint64_t bits = next_bits;
    if (w + 1 < words) {
      next_bits = table.bitmap_word(w + 1).load(std::memory_order_relaxed);
      prefetch_word(w + 1, next_bits);
    }
    while (bits != 0) {
      const std::uint64_t index = w * 64 + static_cast<std::uint64_t>(__builtin_ctzll(bits));
      bits &= bits - 1;
      if (index < capacity) fn(index);
    }
  }
}

}  // namespace shmtimer::detail
