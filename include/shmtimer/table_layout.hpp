// The shared-memory table, format version 3.1: the one place where its layout lives.
//
// A table is one file (usually under /dev/shm) mapped by every client, the server and
// the inspector. Nothing else in shmtimer computes an offset; docs/table-format.md
// describes the same bytes in prose.
//
//   offset 0                      4096               4096 + B            slots_offset
//   +-----------------------------+------------------+-------------------+---------------------+
//   | TableHeader (one page)      | occupancy bitmap | pad to page       | Slot[capacity]      |
//   +-----------------------------+------------------+-------------------+---------------------+
//                                   B = ceil(capacity/64) words of 8 bytes, 64-byte rounded
//
//   TableHeader (64-byte lines)
//   line 0  magic:u64 | version_major:u16 version_minor:u16 header_bytes:u32 | capacity:u64
//           | slot_bytes:u32 max_scope_bytes:u32 | file_bytes:u64 | creator_uid:u32 reserved:u32
//           | created_unix_ns:u64 | slots_offset:u64
//   line 1  server_pid:i32 server_pidns:u32 | server_identity:u64 | heartbeat_mono_ns:u64
//           | heartbeat_count:u64                                         (written by the server)
//   line 2  max_probe:u32                                     (longest key displacement so far)
//   line 3  retired_acquires | retired_releases | reaps | full_failures | fifo_requests
//           | failed_kills (u64)
//   line 4  wake_at_ns:u64 | wake_pending:u32 server_max_interval_ms:u32 | wake_requests:u64
//   line 5  liveness_unknown[4]:u64                         (by LivenessUnknown: why not known)
//           | server_starts:u64 | server_takeovers:u64                  (3.1; zero in 3.0 tables)
//
//   Slot (320 bytes = 5 lines, 64-byte aligned)
//   line 0  control:u64 | armed:u64 | identity:u64 | scope_hash:u64
//           | scope_len:u32 signal:i32 | origin:u32 reserved:u32 | acquires:u64 | releases:u64
//   line 1-4 scope bytes, 256 bytes as 32 u64 words, zero padded past scope_len
//
//   control = state:8 (bits 56-63) | generation:24 (bits 32-55) | pid:32 (bits 0-31)
//   armed   = deadline_us:46 (bits 18-63) | check:18 (bits 0-17); 0 = disarmed
//
// Every field is little-endian (the host's), and every field that more than one process
// may touch after creation is a lock-free, address-free std::atomic. The header's plain
// fields are written once, before `magic` is published with a release store.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace shmtimer::layout {

inline constexpr std::uint64_t kMagic = 0x52454d49544d4853ULL;  // "SHMTIMER" in memory
// 3.0: a slot's identity may be a pidfs inode (2.x: a start time alone), and line 5.
// 3.1: line 5 counts server starts and takeovers (a 3.0 reader ignores them, and a 3.1
// reader of a 3.0 table reads zeros until a 3.1 server starts on it).
inline constexpr std::uint16_t kVersionMajor = 3;
inline constexpr std::uint16_t kVersionMinor = 1;
inline constexpr std::size_t kCacheLineBytes = 64;  // fixed, not hardware_destructive_interference_size:
                                                    // the layout must not depend on compiler flags.
inline constexpr std::size_t kPageBytes = 4096;
inline constexpr std::size_t kHeaderBytes = kPageBytes;
inline constexpr std::size_t kMaxScopeBytes = 256;
inline constexpr std::size_t kScopeWords = kMaxScopeBytes / 8;
inline constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 24;  // 16M slots, 5 GiB
inline constexpr std::uint32_t kMaxGeneration = (1u << 24) - 1;

// armed == kDisarmed: the slot is claimed by (pid, scope) but holds no timer.
inline constexpr std::uint64_t kDisarmed = 0;

enum class SlotState : std::uint8_t {
  kFree = 0,      // unclaimed: may be claimed by CAS from this exact control word
  kClaiming = 1,  // claimed by control.pid, key being written; invisible as a timer
  kReady = 2,     // key published and immutable until freed; deadline_ns is live
};

enum class Origin : std::uint32_t { kTable = 0, kFifo = 1 };

// The control word is the slot's commit marker. It packs the owner pid with the state,
// so a claim and its owner appear in one atomic store: a claimant that dies mid-claim is
// always attributable and so reclaimable. The generation changes on every claim, so a
// reader that saw one key can tell it from a later key in the same slot.
struct Control {
  SlotState state;
  std::uint32_t generation;
  std::int32_t pid;

  static constexpr std::uint64_t pack(SlotState s, std::uint32_t gen, std::int32_t pid) {
    return (std::uint64_t{static_cast<std::uint8_t>(s)} << 56) | (std::uint64_t{gen & kMaxGeneration} << 32) |
           std::uint64_t{static_cast<std::uint32_t>(pid)};
  }
  static constexpr Control unpack(std::uint64_t word) {
    return {static_cast<SlotState>(word >> 56), static_cast<std::uint32_t>(word >> 32) & kMaxGeneration,
            static_cast<std::int32_t>(static_cast<std::uint32_t>(word))};
  }
  constexpr std::uint64_t packed() const { return pack(state, generation, pid); }
};

struct alignas(kCacheLineBytes) TableHeader {
  // Line 0: geometry, written once by the creator. `magic` is stored last with release
  // ordering; a reader that loads it with acquire sees every other field of this line.
  std::atomic<std::uint64_t> magic;
  std::uint16_t version_major;
  std::uint16_t version_minor;
  std::uint32_t header_bytes;
  std::uint64_t capacity;
  std::uint32_t slot_bytes;
  std::uint32_t max_scope_bytes;
  std::uint64_t file_bytes;
  std::uint32_t creator_uid;
  std::uint32_t reserved0;
  std::uint64_t created_unix_ns;
  std::uint64_t slots_offset;

  // Line 1: the server's liveness, written only by the server. Relaxed: each word is
  // advisory on its own (tools compare the heartbeat against their own clock).
  alignas(kCacheLineBytes) std::atomic<std::int32_t> server_pid;
  // The inode of the server's pid namespace (/proc/self/ns/pid): pids in the table mean
  // processes of that namespace, so a client in another one is refused at open.
  std::atomic<std::uint32_t> server_pidns;
  std::atomic<std::uint64_t> server_identity;  // the server's process identity (src/os/process_liveness.hpp)
  std::atomic<std::uint64_t> heartbeat_mono_ns;
  std::atomic<std::uint64_t> heartbeat_count;

  // Line 2: the longest distance any key was placed from its home slot. Only grows
  // (CAS-max), so a lookup that scans that far from home finds any key it could hold.
  alignas(kCacheLineBytes) std::atomic<std::uint32_t> max_probe;

  // Line 3: counters, relaxed fetch_add (statistics; no ordering with anything).
  // Acquires and releases are counted per slot on the hot path and folded in here when a
  // slot is freed, so the header never becomes a contended line.
  alignas(kCacheLineBytes) std::atomic<std::uint64_t> retired_acquires;
  std::atomic<std::uint64_t> retired_releases;
  std::atomic<std::uint64_t> reaps;
  std::atomic<std::uint64_t> full_failures;
  std::atomic<std::uint64_t> fifo_requests;
  std::atomic<std::uint64_t> failed_kills;  // signals that failed (each retry counts)

  // Line 4: the early wake-up. The server publishes when it will next look at the table;
  // a client whose new deadline is earlier wakes it through the futex word
  // `wake_pending`. The protocol and every ordering are argued in src/table/server_wakeup.hpp.
  // Zero means "never wake".
  alignas(kCacheLineBytes) std::atomic<std::uint64_t> wake_at_ns;  // CLOCK_MONOTONIC
  std::atomic<std::uint32_t> wake_pending;  // futex word: 1 = a wake was asked for since the server looked
  // The server's longest sleep, so a client can tell a stale heartbeat from a server
  // between rounds (heartbeat_stale_after_ns; 0: no server has said yet). Relaxed: a
  // standalone value.
  std::atomic<std::uint32_t> server_max_interval_ms;
  std::atomic<std::uint64_t> wake_requests;  // FUTEX_WAKE calls made by clients (statistics)

  // Line 5: looks at a process that could not tell whether it runs or may be signalled
  // (so it was kept, not freed or reaped), by LivenessUnknown. Relaxed fetch_add:
  // statistics, written by the server and by clients reclaiming a full table.
  alignas(kCacheLineBytes) std::atomic<std::uint64_t> liveness_unknown[4];
  // Servers that started on this table, and of them those that took it over from a server
  // that died holding it (its pid still in line 1): restarts, counted where they outlive
  // the servers they count. Relaxed fetch_add by each server at its start (statistics).
  std::atomic<std::uint64_t> server_starts;
  std::atomic<std::uint64_t> server_takeovers;
};

// Why a look at a process could not tell: line 5's index.
enum class LivenessUnknown : std::uint8_t {
  kDescriptors = 0,  // EMFILE, ENFILE
  kMemory = 1,       // ENOMEM
  kAccess = 2,       // EACCES, EPERM (a sandbox, a process that is not dumpable)
  kOther = 3,
};

struct alignas(kCacheLineBytes) Slot {
  // Line 0: everything the hot path and the scan touch.
  std::atomic<std::uint64_t> control;  // Control; orderings are argued in src/table/slot_ops.hpp
  // The timer: ArmWord (deadline and check in one word, so every arm, disarm and server
  // clear is one atomic step), kDisarmed = no timer.
  std::atomic<std::uint64_t> armed;
  std::atomic<std::uint64_t> identity;    // the owner's process identity (src/os/process_liveness.hpp)
  std::atomic<std::uint64_t> scope_hash;  // hash of the scope bytes alone
  std::atomic<std::uint32_t> scope_len;
  std::atomic<std::int32_t> signal;     // <= 0: never kill for this timer
  std::atomic<std::uint32_t> origin;    // Origin
  std::atomic<std::uint32_t> reserved;  // 0
  std::atomic<std::uint64_t> acquires;  // per-slot statistics, written by the owner only
  std::atomic<std::uint64_t> releases;
  // Lines 1-4: the scope, as words so a racing reader never reads a byte non-atomically.
  std::atomic<std::uint64_t> scope_words[kScopeWords];
};

// Who a writer is in a slot: the Ready control word it claimed or found (its pid and the
// claim's generation) and its identity. Arms are bound to this, not to what the slot holds
// when the arm lands (src/table/slot_ops.hpp). A writer's own copy, never in the file.
struct Ownership {
  std::uint64_t control = 0;
  std::uint64_t identity = 0;
};

// The armed word: the deadline in whole microseconds of CLOCK_MONOTONIC (rounded up, at
// least 1, so an armed word is never 0) and an 18-bit check over that deadline and the
// writer's identity: the Ready control word it owns (pid and generation) and its process
// identity. The server acts on an expired deadline only if the check matches the slot's
// current owner, so a word written by anyone else (a stale handle whose slot was freed
// and claimed again, stray bytes) is never turned into a kill of that owner.
// 46 bits of microseconds cover 814 days of uptime; a later deadline saturates to
// kMaxTicks, which means "never due" (deadline_ns() returns kNeverNs): a timer past the
// range is not enforced, and is never taken for an expired one.
struct ArmWord {
  static constexpr unsigned kCheckBits = 18;
  static constexpr std::uint64_t kCheckMask = (std::uint64_t{1} << kCheckBits) - 1;
  static constexpr std::uint64_t kMaxTicks = (std::uint64_t{1} << (64 - kCheckBits)) - 1;
  static constexpr std::uint64_t kTickNs = 1000;
  static constexpr std::uint64_t kNeverNs = std::uint64_t{1} << 63;  // after any clock reading

  // The writer's part of the check, which a writer that arms often can keep.
  static constexpr std::uint64_t owner_mix(std::uint64_t control, std::uint64_t identity) {
    return (control * 0x9e3779b97f4a7c15ULL) ^ (identity * 0xc2b2ae3d27d4eb4fULL);
  }
  static constexpr std::uint64_t check(std::uint64_t ticks, std::uint64_t control, std::uint64_t identity) {
    return check_mixed(ticks, owner_mix(control, identity));
  }
  static constexpr std::uint64_t check_mixed(std::uint64_t ticks, std::uint64_t mix) {
    std::uint64_t k = ticks ^ mix;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k & kCheckMask;
  }
  static constexpr std::uint64_t ticks_of(std::uint64_t deadline_ns) {
    const std::uint64_t ticks = deadline_ns / kTickNs + (deadline_ns % kTickNs != 0);
    return ticks == 0 ? 1 : (ticks > kMaxTicks ? kMaxTicks : ticks);
  }
  // The word `owner` (a Ready control word) with `identity` writes to arm at deadline_ns.
  static constexpr std::uint64_t make(std::uint64_t deadline_ns, std::uint64_t owner, std::uint64_t identity) {
    return make_mixed(deadline_ns, owner_mix(owner, identity));
  }
  // The same from the writer's owner_mix().
  static constexpr std::uint64_t make_mixed(std::uint64_t deadline_ns, std::uint64_t mix) {
    const std::uint64_t ticks = ticks_of(deadline_ns);
    return (ticks << kCheckBits) | check_mixed(ticks, mix);
  }
  static constexpr std::uint64_t deadline_ns(std::uint64_t word) {
    const std::uint64_t ticks = word >> kCheckBits;
    return ticks == kMaxTicks ? kNeverNs : ticks * kTickNs;
  }
  // Was `word` written by the owner (control, identity)? A disarmed word verifies.
  static constexpr bool verifies(std::uint64_t word, std::uint64_t control, std::uint64_t identity) {
    return word == kDisarmed || (word & kCheckMask) == check(word >> kCheckBits, control, identity);
  }
};

// How old a live server's heartbeat may get, the one rule by which clients (before they
// arm) and readers (timer-dump --check, "served") tell a live server from a dead or hung
// one. A server beats every round, at most server_max_interval_ms apart. A false "no
// server" fails a healthy job, so the margin is wide: four intervals plus 5 s absorb a
// slow round and a starved, loaded machine, and a dead server is still noticed within
// seconds. 0 (no server has said): the 60 s most a shmtimerd sleeps, plus 5 s.
constexpr std::uint64_t heartbeat_stale_after_ns(std::uint32_t server_max_interval_ms) {
  constexpr std::uint64_t kMargin = 5'000'000'000;
  return server_max_interval_ms == 0 ? 60'000'000'000 + kMargin
                                     : 4 * std::uint64_t{server_max_interval_ms} * 1'000'000 + kMargin;
}

// Where the pieces of a table of a given capacity live.
struct Geometry {
  std::uint64_t capacity;
  std::uint64_t bitmap_offset;
  std::uint64_t bitmap_words;
  std::uint64_t slots_offset;
  std::uint64_t file_bytes;
};

constexpr std::uint64_t round_up(std::uint64_t n, std::uint64_t to) { return (n + to - 1) / to * to; }

constexpr Geometry geometry_for(std::uint64_t capacity) {
  const std::uint64_t words = (capacity + 63) / 64;
  const std::uint64_t bitmap_offset = kHeaderBytes;
  const std::uint64_t slots_offset = round_up(bitmap_offset + round_up(words * 8, kCacheLineBytes), kPageBytes);
  return {capacity, bitmap_offset, words, slots_offset, slots_offset + capacity * sizeof(Slot)};
}

// ---- The layout, pinned. A change here is a format change: bump kVersionMajor and
// ---- update docs/table-format.md.
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::int32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint64_t>) == 8 && alignof(std::atomic<std::uint64_t>) == 8);
static_assert(sizeof(std::atomic<std::uint32_t>) == 4 && sizeof(std::atomic<std::int32_t>) == 4);
static_assert(std::endian::native == std::endian::little, "the table layout is defined little-endian");

static_assert(offsetof(TableHeader, magic) == 0);
static_assert(offsetof(TableHeader, version_major) == 8);
static_assert(offsetof(TableHeader, version_minor) == 10);
static_assert(offsetof(TableHeader, header_bytes) == 12);
static_assert(offsetof(TableHeader, capacity) == 16);
static_assert(offsetof(TableHeader, slot_bytes) == 24);
static_assert(offsetof(TableHeader, max_scope_bytes) == 28);
static_assert(offsetof(TableHeader, file_bytes) == 32);
static_assert(offsetof(TableHeader, creator_uid) == 40);
static_assert(offsetof(TableHeader, created_unix_ns) == 48);
static_assert(offsetof(TableHeader, slots_offset) == 56);
static_assert(offsetof(TableHeader, server_pid) == 64);
static_assert(offsetof(TableHeader, server_pidns) == 68);
static_assert(offsetof(TableHeader, server_identity) == 72);
static_assert(offsetof(TableHeader, heartbeat_mono_ns) == 80);
static_assert(offsetof(TableHeader, heartbeat_count) == 88);
static_assert(offsetof(TableHeader, max_probe) == 128);
static_assert(offsetof(TableHeader, retired_acquires) == 192);
static_assert(offsetof(TableHeader, retired_releases) == 200);
static_assert(offsetof(TableHeader, reaps) == 208);
static_assert(offsetof(TableHeader, full_failures) == 216);
static_assert(offsetof(TableHeader, fifo_requests) == 224);
static_assert(offsetof(TableHeader, failed_kills) == 232);
static_assert(offsetof(TableHeader, wake_at_ns) == 256);
static_assert(offsetof(TableHeader, wake_pending) == 264);
static_assert(offsetof(TableHeader, server_max_interval_ms) == 268);
static_assert(offsetof(TableHeader, wake_requests) == 272);
static_assert(offsetof(TableHeader, liveness_unknown) == 320);
static_assert(offsetof(TableHeader, server_starts) == 352);
static_assert(offsetof(TableHeader, server_takeovers) == 360);
static_assert(sizeof(TableHeader) == 384 && sizeof(TableHeader) <= kHeaderBytes);

static_assert(offsetof(Slot, control) == 0);
static_assert(offsetof(Slot, armed) == 8);
static_assert(offsetof(Slot, identity) == 16);
static_assert(offsetof(Slot, scope_hash) == 24);
static_assert(offsetof(Slot, scope_len) == 32);
static_assert(offsetof(Slot, signal) == 36);
static_assert(offsetof(Slot, origin) == 40);
static_assert(offsetof(Slot, reserved) == 44);
static_assert(offsetof(Slot, acquires) == 48);
static_assert(offsetof(Slot, releases) == 56);
static_assert(offsetof(Slot, scope_words) == 64);
static_assert(sizeof(Slot) == 320 && alignof(Slot) == kCacheLineBytes);

static_assert(ArmWord::make(1, 1, 1) != kDisarmed && ArmWord::deadline_ns(ArmWord::make(1500, 7, 9)) == 2000);
static_assert(ArmWord::deadline_ns(ArmWord::make(~std::uint64_t{0} / 2, 7, 9)) == ArmWord::kNeverNs);
static_assert(ArmWord::verifies(ArmWord::make(5000, 7, 9), 7, 9) &&
              !ArmWord::verifies(ArmWord::make(5000, 7, 9), 8, 9));

static_assert(geometry_for(1).slots_offset == 2 * kPageBytes);
static_assert(geometry_for(1u << 20).bitmap_words == 16384);
static_assert(geometry_for(1u << 20).slots_offset % kPageBytes == 0);

}  // namespace shmtimer::layout
