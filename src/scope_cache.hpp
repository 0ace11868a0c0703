// A per-thread memo of recent scope lookups, so the scope-string API skips hashing and
// probing for the scopes a thread uses over and over (an expires() in a training loop).
//
// An entry is trusted only while the slot's control word still equals the one cached:
// the key of a Ready slot is immutable until its control word changes (free and
// re-claim bump the generation). It is also keyed by the caller's whole identity, pid and
// start time: a forked child has another pid, and a descendant that inherited the cache
// and was given a recycled pid has another start time, so neither ever matches its
// ancestor's entries. A stale entry is a miss, never a wrong slot.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "slot_ops.hpp"

namespace shmtimer::detail {

class ScopeCache {
 public:
  // The slot that holds (pid, start_time, scope) in `table`, if this thread looked it up
  // recently; its Ready word goes to `control`.
  static std::uint64_t find(const Table& table, pid_t pid, std::uint64_t start_time, std::string_view scope,
                            std::uint64_t& control) noexcept {
    const Entry& e = entries_[set_of(scope)];
    if (e.table_id != table.id() || e.len != scope.size() || layout::Control::unpack(e.control).pid != pid ||
        e.start_time != start_time)
      return kNoSlot;
    const layout::Slot& slot = table.slot(e.index);
    // Acquire, as for any lookup: pairs with the claimant's release publish, so the scope
    // words compared below are that key's, and unchanged while control is.
    if (slot.control.load(std::memory_order_acquire) != e.control) return kNoSlot;
    // Short scopes compare against the entry's copy (one line this thread owns), longer
    // ones against the slot itself, which keeps the whole cache small enough for the
    // static TLS surplus that a dlopen()ed library (the Python module) may use.
    if (e.len <= kCachedBytes) {
      if (!same_bytes(e.bytes, scope.data(), static_cast<std::uint32_t>(e.len))) return kNoSlot;
    } else {
      const auto len = static_cast<std::uint32_t>(e.len);
      const ScopeKey::Words words{scope.data(), len};
      for (std::uint32_t i = 0; i < (len + 7) / 8; ++i)
        if (slot.scope_words[i].load(std::memory_order_relaxed) != words.word(i)) return kNoSlot;
    }
    control = e.control;
    return e.index;
  }

  // `control` and `start_time`: the owner's identity as find_slot established it.
  static void remember(const Table& table, std::uint64_t index, std::uint64_t control, std::uint64_t start_time,
                       std::string_view scope) noexcept {
    Entry& e = entries_[set_of(scope)];
    e.table_id = table.id();
    e.index = index;
    e.control = control;
    e.start_time = start_time;
    e.len = scope.size();
    std::memset(e.bytes, 0, kCachedBytes);
    std::memcpy(e.bytes, scope.data(), std::min<std::size_t>(scope.size(), kCachedBytes));
  }

 private:
  static constexpr std::size_t kEntries = 4;      // direct-mapped: a few hot scopes per thread
  static constexpr std::uint32_t kCachedBytes = 40;  // scopes up to 40 bytes are kept here

  // Trivial (no member initializers), so the thread_local needs no per-access init
  // check; thread storage starts zeroed, and table_id 0 means empty (ids start at 1).
  struct Entry {
    std::uint64_t table_id;
    std::uint64_t index;
    std::uint64_t control;
    std::uint64_t start_time;
    std::uint64_t len;
    char bytes[kCachedBytes];  // the scope, zero padded
  };
  static_assert(sizeof(Entry) == 80);

  // Are the first `len` bytes (len <= kCachedBytes) of `cached` and `scope` equal? Whole
  // 8-byte loads, the last one overlapping the one before, OR-ed together: no branch per
  // word and no call, for the lengths scopes have ("file.py#123", "step-17").
  static bool same_bytes(const char* cached, const char* scope, std::uint32_t len) noexcept {
    const auto load8 = [](const char* p) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      return w;
    };
    if (len >= 8) {
      std::uint64_t diff = load8(cached + len - 8) ^ load8(scope + len - 8);
      for (std::uint32_t off = 0; off + 8 < len; off += 8) diff |= load8(cached + off) ^ load8(scope + off);
      return diff == 0;
    }
    const ScopeKey::Words words{scope, len};  // 0..7 bytes: zero padded, as the copy is
    return load8(cached) == words.word(0);
  }

  // Mixes the length and the first and last eight bytes: scopes like "f.py#12" and
  // "f.py#13" differ only at the end.
  static std::size_t set_of(std::string_view scope) noexcept {
    const auto len = static_cast<std::uint32_t>(scope.size());
    const ScopeKey::Words words{scope.data(), len};
    const std::uint64_t mix = words.word(0) ^ (len > 8 ? words.last_word() : 0) ^ len;
    return static_cast<std::size_t>((mix * 0x9e3779b97f4a7c15ULL) >> 62);
  }

  // initial-exec: a direct %fs-relative access instead of a __tls_get_addr call, which
  // -fPIC code would otherwise make on every lookup. 320 bytes in all.
  __attribute__((tls_model("initial-exec"))) static thread_local Entry entries_[kEntries];
};

inline thread_local ScopeCache::Entry ScopeCache::entries_[ScopeCache::kEntries];

}  // namespace shmtimer::detail
