#include "shmtimer/table_fault_guard.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <mutex>

namespace shmtimer {

namespace {

// One mapped table. The SIGBUS handler reads these and never locks: registration writes
// `end` and `writable` before it publishes `begin` (release), and the handler reads
// `begin` (acquire) before the others, so a place it finds in use is complete. Removal
// clears `begin` first. A table is unmapped only after its removal, and a fault in memory
// already unmapped is no table's, so no place is read while it is being reused for the
// same addresses.
struct Place {
  std::atomic<std::uintptr_t> begin{0};  // 0: free
  std::atomic<std::uintptr_t> end{0};
  std::atomic<bool> writable{false};
  std::atomic<bool> faulted{false};  // relaxed: a flag read by the table's own checks
};
static_assert(std::atomic<std::uintptr_t>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
              "read in a signal handler");

Place g_places[kGuardedTables];
std::mutex g_registry_mutex;  // between registrations only; the handler never takes it
std::atomic<std::uint64_t> g_faults{0};  // relaxed: a statistic
std::uintptr_t g_page_bytes = 4096;      // set before the handler is installed
struct sigaction g_previous {};          // idem

// Gives the fault to whatever handled SIGBUS before the guard. With the default action,
// restores it and returns: the access faults again and the process dies as it would have.
void pass_on(int signal, siginfo_t* info, void* context) {
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(signal, info, context);
  } else if ((g_previous.sa_flags & SA_SIGINFO) == 0 && g_previous.sa_handler != SIG_DFL &&
             g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(signal);
  } else {
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    sigemptyset(&fallback.sa_mask);
    ::sigaction(SIGBUS, &fallback, nullptr);
  }
}

// Async-signal-safe: atomics, mmap and sigaction only. A table is truncated from its end,
// so everything from the faulting page to the mapping's end lies past the file's end.
void on_sigbus(int signal, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
  if (info->si_code == BUS_ADRERR) {
    for (Place& place : g_places) {
      const std::uintptr_t begin = place.begin.load(std::memory_order_acquire);
      const std::uintptr_t end = place.end.load(std::memory_order_relaxed);
      if (begin == 0 || address < begin || address >= end) continue;
      const std::uintptr_t from = address & ~(g_page_bytes - 1);
      const int protection = PROT_READ | (place.writable.load(std::memory_order_relaxed) ? PROT_WRITE : 0);
      if (::mmap(reinterpret_cast<void*>(from), end - from, protection, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
                 0) == MAP_FAILED)
        break;
      place.faulted.store(true, std::memory_order_relaxed);
      g_faults.fetch_add(1, std::memory_order_relaxed);
      errno = saved_errno;
      return;  // the access runs again, on a zero page
    }
  }
  errno = saved_errno;
  pass_on(signal, info, context);
}

}  // namespace

void guard_table_faults() {
  static std::once_flag installed;
  std::call_once(installed, [] {
    g_page_bytes = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGBUS, &action, &g_previous);
  });
}

std::uint64_t table_fault_count() { return g_faults.load(std::memory_order_relaxed); }

namespace detail {

int register_table_mapping(void* begin, std::uint64_t bytes, bool writable) {
  const std::lock_guard lock(g_registry_mutex);
  for (int i = 0; i < kGuardedTables; ++i) {
    Place& place = g_places[i];
    if (place.begin.load(std::memory_order_relaxed) != 0) continue;
    place.end.store(reinterpret_cast<std::uintptr_t>(begin) + bytes, std::memory_order_relaxed);
    place.writable.store(writable, std::memory_order_relaxed);
    place.faulted.store(false, std::memory_order_relaxed);
    place.begin.store(reinterpret_cast<std::uintptr_t>(begin), std::memory_order_release);  // publishes the rest
    return i;
  }
  return -1;
}

void unregister_table_mapping(int registration) {
  if (registration < 0) return;
  const std::lock_guard lock(g_registry_mutex);
  g_places[registration].begin.store(0, std::memory_order_relaxed);
}

bool table_mapping_faulted(int registration) {
  return registration >= 0 && g_places[registration].faulted.load(std::memory_order_relaxed);
}

}  // namespace detail

}  // namespace shmtimer
