// The calling process's own identity (process_liveness.hpp says what an identity is),
// on the client's hot path: learned once, and again in the child after fork()
// (pthread_atfork), so the hot path never makes a system call to learn it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace shmtimer {

struct SelfIdentity {
  // Written at first use (racing first users store the same values) and in the
  // single-threaded child after fork: identity and cache_key first, then pid with release
  // order. A reader of identity acquire-loads pid first, so it never sees pid without the
  // identity that goes with it. pid stays 0 while the identity could not be learned (no
  // descriptor left, say): every use tries again, and a client refuses to claim a slot.
  std::atomic<pid_t> pid;
  std::atomic<std::uint64_t> identity;
  // Both in one word, so the scope cache checks who it is with one compare: the low 41
  // bits of identity, its kind, and pid (pids stay below 2^22, PID_MAX_LIMIT). 0 if the
  // identity is not known: the cache then never hits, and every call takes the slow path.
  std::atomic<std::uint64_t> cache_key;
};
inline constexpr unsigned kCacheKeyPidBits = 22;
inline constinit SelfIdentity g_self_identity{};  // zero until first use
pid_t learn_self_identity() noexcept;             // fills it when it can; returns getpid()

inline pid_t current_pid() noexcept {
  // Relaxed: the pid alone is needed here, and it is written once per process.
  const pid_t pid = g_self_identity.pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : learn_self_identity();
}
// Relaxed: read by the thread whose per-thread cache it keys; the child's refresh after
// fork runs on the very thread that goes on. 0 means "not known": never cache on it.
inline std::uint64_t current_cache_key() noexcept { return g_self_identity.cache_key.load(std::memory_order_relaxed); }
// 0 when it could not be learned.
inline std::uint64_t current_identity() noexcept {
  if (g_self_identity.pid.load(std::memory_order_acquire) == 0) learn_self_identity();
  return g_self_identity.identity.load(std::memory_order_relaxed);
}

// The inode of this process's pid namespace (/proc/self/ns/pid), 0 if unknown. Pids are
// only meaningful within one namespace.
std::uint32_t current_pid_namespace() noexcept;

}  // namespace shmtimer
