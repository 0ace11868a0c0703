// The lock-free operations on table slots, shared by the client, the server and the
// reader. Every memory order used on the table is argued here, next to its use.
//
// Protocol in one paragraph. A slot moves Free -> Claiming -> Ready -> Free. A claimant
// takes a Free slot with a CAS that writes its own pid into the control word (so a dead
// claimant is always attributable), sets the slot's occupancy bit, writes the key
// fields, and publishes Ready with a release store. While Ready the key (pid, start
// time, scope) is immutable; only deadline_ns, signal and the statistics change, written
// by the owning process. A slot is freed by a CAS Ready -> Free, by its owner or by the
// server once the owner is dead. Only the server clears occupancy bits.
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

// Does slot `s` hold the published key (pid, start_time, key)? The caller loaded
// `control` with acquire, which pairs with the claimant's release publish, so the key
// fields read here (relaxed) are the published ones.
inline bool holds_key(const Slot& s, std::uint64_t control, pid_t pid, std::uint64_t start_time,
                      const ScopeKey& key) noexcept {
  if (control != Control::pack(SlotState::kReady, Control::unpack(control).generation, pid)) return false;
  if (s.scope_hash.load(std::memory_order_relaxed) != key.hash ||
      s.scope_len.load(std::memory_order_relaxed) != key.len ||
      s.start_time.load(std::memory_order_relaxed) != start_time)
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
std::uint64_t find_slot(const Table& table, pid_t pid, std::uint64_t start_time, const ScopeKey& key) noexcept;

struct NewKey {
  pid_t pid;
  std::uint64_t start_time;
  std::int32_t signal;
  layout::Origin origin;
};

// Claims a Free slot for `key` and publishes it Ready and disarmed. Callers must make
// sure no other thread inserts the same (pid, key) at the same time (the client holds a
// process-wide mutex; the server is one thread). Returns nullopt when no slot is free.
std::optional<std::uint64_t> insert_slot(const Table& table, const NewKey& owner, const ScopeKey& key) noexcept;

// Claims slot `index`, `distance` slots from the key's home, if it is Free; publishes the
// key Ready and disarmed. insert_slot's step; benchmarks use it to fill a table in order.
bool try_claim(const Table& table, std::uint64_t index, std::uint64_t distance, const NewKey& owner,
               const ScopeKey& key) noexcept;

// Frees the slot if its control word is still `expected` (Ready or Claiming); folds its
// statistics into the header. Returns false when the slot changed meanwhile.
bool free_slot(const Table& table, std::uint64_t index, std::uint64_t expected) noexcept;

// Clears the occupancy bit of a slot that was seen Free, then re-sets it if a claimant
// raced in. Server only (see the Dekker argument in slot_ops.cpp).
void clear_occupancy_if_free(const Table& table, std::uint64_t index) noexcept;

// Marks a slot occupied (idempotent).
void set_occupancy(const Table& table, std::uint64_t index) noexcept;

// The owner's hot path: arm and disarm an already-claimed slot. Two relaxed statistics
// writes and one release store to a line the owner already holds; no RMW, no syscall.
inline void arm_slot(Slot& s, std::uint64_t deadline_ns, std::int32_t signal) noexcept {
  // Relaxed: ordered before the deadline by the release store below; a reader that
  // acquire-loads the new deadline sees this signal (or a later one).
  if (s.signal.load(std::memory_order_relaxed) != signal) s.signal.store(signal, std::memory_order_relaxed);
  // Relaxed load+store rather than fetch_add: statistics only, and no locked instruction
  // on the hot path. Two threads arming one slot at once may lose a count.
  s.acquires.store(s.acquires.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // Relaxed: the key (control, start_time) is immutable while the owner holds the slot.
  const std::uint32_t check = layout::deadline_check(deadline_ns, s.control.load(std::memory_order_relaxed),
                                                     s.start_time.load(std::memory_order_relaxed), signal);
  // Release: publishes the signal above with the deadline.
  s.deadline_ns.store(deadline_ns, std::memory_order_release);
  // Release, after the deadline: a reader that sees this check with an older deadline (or
  // the reverse) sees a mismatch and waits a round; an owner that is re-arming is not hung.
  s.deadline_check.store(check, std::memory_order_release);
}

inline void disarm_slot(Slot& s) noexcept {
  s.releases.store(s.releases.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // Release, for symmetry with arm: nothing is published with a disarm, but a reader's
  // acquire load then never sees an older signal paired with a later state.
  s.deadline_ns.store(layout::kDisarmed, std::memory_order_release);
}

// A consistent copy of a Ready slot, read with the seqlock pattern on the control word.
struct SlotSnapshot {
  std::uint64_t index = 0;
  std::uint64_t control = 0;
  pid_t pid = 0;
  std::uint32_t generation = 0;
  std::uint64_t deadline_ns = 0;
  std::uint64_t start_time = 0;
  std::int32_t signal = 0;
  layout::Origin origin = layout::Origin::kTable;
  std::uint64_t acquires = 0;
  std::uint64_t releases = 0;
  std::uint32_t deadline_check = 0;
  std::string scope;
  bool corrupt = false;  // scope_len or origin out of range: written by something not shmtimer
  // The deadline is the owner's: its check matches (or the slot is disarmed).
  bool deadline_verified() const {
    return deadline_ns == layout::kDisarmed ||
           deadline_check == layout::deadline_check(deadline_ns, control, start_time, signal);
  }
};

enum class ReadResult { kReady, kNotReady, kUnstable };

// Reads slot `index` into `out`. kReady: `out` is one published key with its live
// deadline. kNotReady: the slot is Free or Claiming (out.control says which). kUnstable:
// the slot kept changing for `attempts` tries.
ReadResult read_slot(const Table& table, std::uint64_t index, SlotSnapshot& out, int attempts = 8);

// Calls fn(index) for each slot whose occupancy bit is set, in index order.
template <typename Fn>
void for_each_occupied(const Table& table, Fn&& fn) {
  const std::uint64_t words = table.geometry().bitmap_words;
  const std::uint64_t capacity = table.capacity();
  for (std::uint64_t w = 0; w < words; ++w) {
    // Relaxed: the bit is a hint that the slot may hold something; the slot's own
    // control word (acquire) is what the caller trusts.
    std::uint64_t bits = table.bitmap_word(w).load(std::memory_order_relaxed);
    while (bits != 0) {
      const std::uint64_t index = w * 64 + static_cast<std::uint64_t>(__builtin_ctzll(bits));
      bits &= bits - 1;
      if (index < capacity) fn(index);
    }
  }
}

}  // namespace shmtimer::detail
