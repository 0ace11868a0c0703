// A per-thread memo of recent scope lookups, so the scope-string API skips hashing and
// probing for the scopes a thread uses over and over (an expires() in a training loop).
//
// An entry names a slot and the Ready control word it was found under. It is trusted only
// as far as that word: the caller's arm_slot / disarm_slot checks the slot's control word
// against it before writing anything, and the key of a Ready slot is immutable until its
// control word changes (free and re-claim bump the generation). So a slot freed or taken
// since is a miss, never a write to the wrong slot. An entry is also keyed by the
// caller's whole identity (current_cache_key: pid and identity): a forked child has
// another pid, and a descendant that inherited the cache and was given a recycled pid has
// another identity, so neither ever matches its ancestor's entries.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "self_identity.hpp"
#include "slot_ops.hpp"

namespace shmtimer::detail {

class ScopeCache {
  static constexpr std::size_t kEntries = 4;         // direct-mapped: a few hot scopes per thread
  static constexpr std::uint32_t kCachedBytes = 40;  // scopes up to 40 bytes are kept here

 public:
  // Trivial (no member initializers), so the thread_local needs no per-access init
  // check; thread storage starts zeroed, and table_id 0 means empty (ids start at 1).
  struct Entry {
    std::uint64_t table_id;
    std::uint64_t caller_key;  // current_cache_key() when remembered, never 0
    std::uint64_t index;
    std::uint64_t control;  // the slot's Ready word when remembered
    std::uint64_t len;
    std::uint64_t identity;    // the caller's process identity, which the slot records
    std::uint64_t owner_mix;   // layout::ArmWord::owner_mix(control, identity): for arm_slot_with_owner_mix
    char bytes[kCachedBytes];  // the scope, zero padded

    Ownership ownership() const noexcept { return {control, identity}; }
  };

  // Was `e` remembered by the calling process as it is now (pid and identity)?
  static bool made_by_caller(const Entry& e) noexcept { return e.caller_key == current_cache_key(); }

  // The scopes find_common() takes: most, as "train.py#123" or "rank-3/step" are.
  static bool common_length(std::string_view scope) noexcept { return scope.size() - 8 <= 24; }  // 8..32 bytes

  // This thread's entry for `scope` in table `table_id` (whose slots start at `slots`),
  // remembered by this very process; nullptr on a miss. The caller's slot write checks
  // entry->control against the slot before it writes (see above).
  static const Entry* find(std::uint64_t table_id, const layout::Slot* slots, std::string_view scope) noexcept {
    if (common_length(scope)) return find_common(table_id, scope);
    const Entry& e = entries_[set_of(scope.data(), scope.size())];
    if (e.table_id != table_id || !made_by_caller(e) || e.len != scope.size()) return nullptr;
    // Short scopes compare against the entry's copy (one line this thread owns), longer
    // ones against the slot itself, which keeps the whole cache small enough for the
    // static TLS surplus that a dlopen()ed library (the Python module) may use.
    if (e.len <= kCachedBytes) {
      const ScopeKey::Words words{scope.data(), static_cast<std::uint32_t>(e.len)};
      for (std::uint32_t i = 0; i < kCachedBytes / 8; ++i)
        if (load8(e.bytes + 8 * i) != words.word(i)) return nullptr;
      return &e;
    }
    const layout::Slot& slot = slots[e.index];
    // Acquire: pairs with the claimant's release publish, so the scope words compared
    // below are that key's, and unchanged while control is (the seqlock's first read;
    // the caller's check of control before its write is the second).
    if (slot.control.load(std::memory_order_acquire) != e.control) return nullptr;
    const auto len = static_cast<std::uint32_t>(e.len);
    const ScopeKey::Words words{scope.data(), len};
    for (std::uint32_t i = 0; i < (len + 7) / 8; ++i)
      if (slot.scope_words[i].load(std::memory_order_relaxed) != words.word(i)) return nullptr;
    return &e;
  }

  // find() for a scope of common_length(): the hot path, small enough that acquire() and
  // release() stay leaves that save no register. The scope is compared as its first and
  // last 16 bytes (8 under 16 bytes), overlapping in the middle, which is exact:
  // overlapping bytes are the same bytes. Nothing outside [0, len) of the caller's scope
  // is read, and the entry's copy is zero padded past 32 bytes.
  [[gnu::always_inline]] static const Entry* find_common(std::uint64_t table_id, std::string_view scope) noexcept {
    const char* p = scope.data();
    const std::size_t len = scope.size();
    const Entry& e = entries_[set_of(p, len)];
    if (e.table_id != table_id || !made_by_caller(e) || e.len != len) return nullptr;
    const char* c = e.bytes;
    if (len >= 16) [[likely]] {
      const Bytes16 diff = (load16(c) ^ load16(p)) | (load16(c + len - 16) ^ load16(p + len - 16));
      return (diff[0] | diff[1]) == 0 ? &e : nullptr;
    }
    return ((load8(c) ^ load8(p)) | (load8(c + len - 8) ^ load8(p + len - 8))) == 0 ? &e : nullptr;
  }

  // `control`: the Ready word find_slot found or insert_slot published the key under, by
  // this process as it is now (its identity is read here).
  static void remember(std::uint64_t table_id, std::uint64_t index, std::uint64_t control,
                       std::string_view scope) noexcept {
    const std::uint64_t key = current_cache_key();
    if (key == 0) return;  // unknown: an entry must never match a caller it was not made by
    Entry& e = entries_[set_of(scope.data(), scope.size())];
    e.table_id = table_id;
    e.caller_key = key;
    e.identity = current_identity();
    e.index = index;
    e.control = control;
    e.len = scope.size();
    e.owner_mix = layout::ArmWord::owner_mix(control, e.identity);
    std::memset(e.bytes, 0, kCachedBytes);
    std::memcpy(e.bytes, scope.data(), std::min<std::size_t>(scope.size(), kCachedBytes));
  }

 private:
  // Two words in one vector register (SSE2 on x86-64): an xor and an or of 16 bytes each.
  using Bytes16 = std::uint64_t __attribute__((vector_size(16)));
  static Bytes16 load16(const char* p) noexcept {
    Bytes16 v;
    std::memcpy(&v, p, 16);
    return v;
  }
  static std::uint64_t load8(const char* p) noexcept {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  }

  // Mixes the length and the first and last eight bytes: scopes like "f.py#12" and
  // "f.py#13" differ only at the end.
  static std::size_t set_of(const char* p, std::size_t len) noexcept {
    const std::uint64_t mix = len >= 8 ? load8(p) ^ load8(p + len - 8) ^ len
                                       : ScopeKey::Words{p, static_cast<std::uint32_t>(len)}.word(0) ^ len;
    return static_cast<std::size_t>((mix * 0x9e3779b97f4a7c15ULL) >> 62);
  }

  // initial-exec: a %fs-relative access instead of a __tls_get_addr call, which -fPIC
  // code (the Python module) would otherwise make on every lookup, and which made GCC
  // save six registers in every hot path even where the linker relaxed the call away.
  // GCC takes the model from the definition below, not from this declaration.
  // 384 bytes in all.
  static thread_local Entry entries_[kEntries];
};
static_assert(sizeof(ScopeCache::Entry) == 96);

__attribute__((
    tls_model("initial-exec"))) inline thread_local ScopeCache::Entry ScopeCache::entries_[ScopeCache::kEntries];

}  // namespace shmtimer::detail
