#include "slot_ops.hpp"

#include <atomic>
#include <cerrno>

#include "shmtimer/error.hpp"

namespace shmtimer::detail {

namespace {

constexpr std::uint64_t fmix64(std::uint64_t k) noexcept {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

__extension__ using u128 = unsigned __int128;

// The folded 128-bit product: both halves of a*b, mixed.
inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) noexcept {
  const u128 r = static_cast<u128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

}  // namespace

ScopeKey::ScopeKey(std::string_view scope) : bytes{scope.data(), static_cast<std::uint32_t>(scope.size())} {
  if (scope.size() > layout::kMaxScopeBytes) [[unlikely]]
    throw Error(ErrorCode::kScopeTooLong, "scope is " + std::to_string(scope.size()) + " bytes; the limit is " +
                                              std::to_string(layout::kMaxScopeBytes) + " (scope begins '" +
                                              std::string(scope.substr(0, 40)) + "...')");
  len = static_cast<std::uint32_t>(scope.size());
  word_count = (len + 7) / 8;
  // 16 bytes per step through a 64x64->128 multiply (in the manner of wyhash): short
  // scopes, the common case, hash in a few multiplies with no byte loop.
  std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ (std::uint64_t{len} * 0xa0761d6478bd642fULL);
  std::uint32_t i = 0;
  for (; i + 2 <= word_count; i += 2) h = mum(word(i) ^ 0xe7037ed1a0b428dbULL, word(i + 1) ^ h ^ 0x8ebc6af09c88c6e3ULL);
  if (i < word_count) h = mum(word(i) ^ 0xe7037ed1a0b428dbULL, h ^ 0x589965cc75374cc3ULL);
  hash = fmix64(h);
}

std::uint64_t home_index(std::uint64_t scope_hash, pid_t pid, std::uint64_t capacity) noexcept {
  const std::uint64_t mixed = fmix64(scope_hash ^ (static_cast<std::uint64_t>(pid) * 0x9e3779b97f4a7c15ULL));
  // Fast range reduction without a division.
  return static_cast<std::uint64_t>((static_cast<u128>(mixed) * capacity) >> 64);
}

std::uint64_t find_slot(const Table& table, pid_t pid, std::uint64_t identity, layout::Origin origin,
                        const ScopeKey& key, std::uint64_t* control_out) noexcept {
  const std::uint64_t capacity = table.capacity();
  // Acquire pairs with the CAS-max in insert_slot; a stale value only sends a sibling
  // thread to the (locked, exhaustive) insert path, which finds the key there.
  std::uint64_t max_probe = table.header().max_probe.load(std::memory_order_acquire);
  if (max_probe >= capacity) max_probe = capacity - 1;  // the header is untrusted
  std::uint64_t index = home_index(key.hash, pid, capacity);
  for (std::uint64_t d = 0; d <= max_probe; ++d) {
    const Slot& s = table.slot(index);
    // Acquire pairs with the claimant's release publish of Ready: the key fields that
    // holds_key reads are the published ones.
    const std::uint64_t control = s.control.load(std::memory_order_acquire);
    if (holds_key(s, control, pid, identity, origin, key)) {
      if (control_out != nullptr) *control_out = control;
      return index;
    }
    if (++index == capacity) index = 0;
  }
  return kNoSlot;
}

void set_occupancy(Table& table, std::uint64_t index) noexcept {
  // seq_cst: one side of the Dekker pair with clear_occupancy_if_free.
  table.bitmap_word(index / 64).fetch_or(std::uint64_t{1} << (index % 64), std::memory_order_seq_cst);
}

// Dekker argument. Claimant: CAS control Free->Claiming, then set the bit. Server: clear
// the bit, then load control; if it is not Free, set the bit again. All four are
// seq_cst, so in their single total order either the server's load comes after the
// claimant's CAS (it sees Claiming/Ready and re-sets the bit), or the claimant's
// fetch_or comes after the server's clear (the bit ends up set). Either way a claimed
// slot never ends with its bit clear. A server that dies between its two steps is
// covered by the full sweep a server does when it starts.
// Modelled in src/table/model/slot_protocol.pml (the scan's clear_occupancy_if_free; mutant ORD_OCCUPANCY).
void clear_occupancy_if_free(Table& table, std::uint64_t index) noexcept {
  const std::uint64_t bit = std::uint64_t{1} << (index % 64);
  table.bitmap_word(index / 64).fetch_and(~bit, std::memory_order_seq_cst);
  if (state_of(table.slot(index).control.load(std::memory_order_seq_cst)) != SlotState::kFree)
    set_occupancy(table, index);
}

// Modelled in src/table/model/slot_protocol.pml (try_claim; mutant ORD_PUBLISH).
std::uint64_t try_claim(Table& table, std::uint64_t index, std::uint64_t distance, const NewKey& owner,
                        const ScopeKey& key) noexcept {
  Slot& s = table.slot(index);
  std::uint64_t seen = s.control.load(std::memory_order_relaxed);
  if (state_of(seen) != SlotState::kFree) return 0;
  const std::uint32_t generation = (Control::unpack(seen).generation + 1) & layout::kMaxGeneration;
  std::uint64_t claiming = Control::pack(SlotState::kClaiming, generation, owner.pid);
  // seq_cst: takes the slot (only one claimant's CAS from this exact Free word wins) and
  // is the claimant's half of the Dekker pair with clear_occupancy_if_free.
  if (!s.control.compare_exchange_strong(seen, claiming, std::memory_order_seq_cst, std::memory_order_relaxed))
    return 0;
  set_occupancy(table, index);
  // Release field writes (plain stores on x86): a seqlock reader that acquire-loads any
  // of them then sees the Claiming word above when it re-checks control, so it never
  // mixes these fields with the previous key's. (Release stores + acquire loads instead
  // of fences, because ThreadSanitizer does not model fences.)
  constexpr auto kField = std::memory_order_release;
  s.armed.store(layout::kDisarmed, kField);
  s.identity.store(owner.identity, kField);
  s.scope_hash.store(key.hash, kField);
  s.scope_len.store(key.len, kField);
  s.signal.store(owner.signal, kField);
  s.origin.store(static_cast<std::uint32_t>(owner.origin), kField);
  s.reserved.store(0, kField);
  s.acquires.store(0, kField);
  s.releases.store(0, kField);
  for (std::uint32_t i = 0; i < layout::kScopeWords; ++i)
    s.scope_words[i].store(i < key.word_count ? key.word(i) : 0, kField);
  // CAS-max, release: a lookup that acquire-loads the new max_probe may scan this far.
  auto& max_probe = table.header().max_probe;
  std::uint32_t current = max_probe.load(std::memory_order_relaxed);
  while (current < distance && !max_probe.compare_exchange_weak(current, static_cast<std::uint32_t>(distance),
                                                                std::memory_order_release, std::memory_order_relaxed)) {
  }
  // CAS from the exact Claiming word, release: publishes every field above to whoever
  // acquire-loads the Ready word. If the slot was freed under us (only a writer outside
  // shmtimer, or a liveness bug, frees a live claimant's slot) the key is not published:
  // a later claimant of that slot owns it, and this claim moves on.
  const std::uint64_t ready = Control::pack(SlotState::kReady, generation, owner.pid);
  if (!s.control.compare_exchange_strong(claiming, ready, std::memory_order_release, std::memory_order_relaxed))
    return 0;
  return ready;
}

Claimed insert_slot(Table& table, const NewKey& owner, const ScopeKey& key) noexcept {
  const std::uint64_t capacity = table.capacity();
  std::uint64_t index = home_index(key.hash, owner.pid, capacity);
  for (std::uint64_t d = 0; d < capacity; ++d, index = (index + 1 == capacity ? 0 : index + 1))
    if (const std::uint64_t ready = try_claim(table, index, d, owner, key); ready != 0) return {index, ready};
  return {};
}

// Modelled in src/table/model/slot_protocol.pml (give_back; mutant ORD_GIVE_BACK).
bool give_back_idle(Table& table, std::uint64_t index, std::uint64_t ready) noexcept {
  Slot& s = table.slot(index);
  // Relaxed: a hint that saves the CAS on a slot in use; the seq_cst load below decides.
  if (s.armed.load(std::memory_order_relaxed) != layout::kDisarmed) return false;
  const Control c = Control::unpack(ready);
  const std::uint64_t marked = Control::pack(SlotState::kClaiming, c.generation, c.pid);
  std::uint64_t expected = ready;
  // seq_cst, as the load of armed below: the two sides of the Dekker argument with
  // arm_slot's seq_cst exchange of armed and seq_cst re-load of control.
  if (!s.control.compare_exchange_strong(expected, marked, std::memory_order_seq_cst, std::memory_order_relaxed))
    return false;
  if (s.armed.load(std::memory_order_seq_cst) != layout::kDisarmed) {
    // Release: whoever reads Ready again (acquire) sees the slot as it was published.
    s.control.store(ready, std::memory_order_release);
    return false;
  }
  return free_slot(table, index, marked);
}

// Modelled in src/table/model/slot_protocol.pml (free_slot).
bool free_slot(Table& table, std::uint64_t index, std::uint64_t expected) noexcept {
  Slot& s = table.slot(index);
  const std::uint64_t acquires = s.acquires.load(std::memory_order_relaxed);
  const std::uint64_t releases = s.releases.load(std::memory_order_relaxed);
  const Control c = Control::unpack(expected);
  // acq_rel: the acquire side orders the statistics reads above before a new claimant's
  // writes; the release side lets the next claimant's CAS see a finished slot.
  if (!s.control.compare_exchange_strong(expected, Control::pack(SlotState::kFree, c.generation, 0),
                                         std::memory_order_acq_rel, std::memory_order_relaxed))
    return false;
  auto& header = table.header();
  header.retired_acquires.fetch_add(acquires, std::memory_order_relaxed);
  header.retired_releases.fetch_add(releases, std::memory_order_relaxed);
  return true;
}

layout::LivenessUnknown liveness_unknown_reason(int error) {
  switch (error) {
    case EMFILE:
    case ENFILE: return layout::LivenessUnknown::kDescriptors;
    case ENOMEM: return layout::LivenessUnknown::kMemory;
    case EACCES:
    case EPERM: return layout::LivenessUnknown::kAccess;
    default: return layout::LivenessUnknown::kOther;
  }
}

void count_liveness_unknown(Table& table, int error) {
  // Relaxed: statistics.
  table.header().liveness_unknown[static_cast<std::size_t>(liveness_unknown_reason(error))].fetch_add(
      1, std::memory_order_relaxed);
}

// Modelled in src/table/model/slot_protocol.pml (the server's cleanup).
bool disarm_if_unchanged(Table& table, std::uint64_t index, std::uint64_t seen) noexcept {
  if (seen == layout::kDisarmed) return false;
  // acq_rel: ordered after the caller's reads of the slot, and visible to the owner's next
  // exchange.
  return table.slot(index).armed.compare_exchange_strong(seen, layout::kDisarmed, std::memory_order_acq_rel,
                                                         std::memory_order_relaxed);
}

ReadResult read_slot(const Table& table, std::uint64_t index, SlotSnapshot& out, int attempts) {
  const Slot& s = table.slot(index);
  for (int attempt = 0; attempt < attempts; ++attempt) {
    // Acquire pairs with the Ready publish: the key fields below are the published ones.
    const std::uint64_t before = s.control.load(std::memory_order_acquire);
    const Control c = Control::unpack(before);
    out.index = index;
    out.control = before;
    if (c.state != SlotState::kReady) return ReadResult::kNotReady;
    out.pid = c.pid;
    out.generation = c.generation;
    // Acquire loads (plain loads on x86). The armed word's pairs with arm_slot's exchange,
    // so the signal read after it is current. All of them pair with the claimant's
    // release field writes: if any value below came from a newer claimant, the re-check
    // of control at the end sees that claimant's Claiming word (or later) and retries.
    constexpr auto kField = std::memory_order_acquire;
    out.armed = s.armed.load(kField);
    out.deadline_ns = out.armed == layout::kDisarmed ? 0 : layout::ArmWord::deadline_ns(out.armed);
    out.signal = s.signal.load(kField);
    out.identity = s.identity.load(kField);
    const std::uint32_t origin = s.origin.load(kField);
    out.origin = origin == 1 ? layout::Origin::kFifo : layout::Origin::kTable;
    out.acquires = s.acquires.load(kField);
    out.releases = s.releases.load(kField);
    const std::uint32_t len = s.scope_len.load(kField);
    out.corrupt = len > layout::kMaxScopeBytes || origin > 1;
    const std::uint32_t safe_len = len > layout::kMaxScopeBytes ? 0 : len;
    std::uint64_t words[layout::kScopeWords];
    for (std::uint32_t i = 0; i < (safe_len + 7) / 8; ++i) words[i] = s.scope_words[i].load(kField);
    if (s.control.load(std::memory_order_relaxed) != before) continue;
    out.scope.assign(reinterpret_cast<const char*>(words), safe_len);
    return ReadResult::kReady;
  }
  return ReadResult::kUnstable;
}

}  // namespace shmtimer::detail
