#include "shmtimer/table_fault_guard.hpp"

#include "table_mappings.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <mutex>

namespace shmtimer {

namespace {

// One mapped table, read by the SIGBUS handler, which may interrupt any code (a
// registration included) and never waits. So a place is a seqlock: its writer makes
// `sequence` odd, writes the fields, and makes it even again; the handler trusts what it
// read only when it saw the same even sequence before and after. Registration claims a
// free place by CAS on `in_use` and never locks, so a child forked while another thread
// registers cannot find a lock held forever.
struct Place {
  std::atomic<bool> in_use{false};         // claimed by a registration (acquire/release with its CAS)
  std::atomic<std::uint64_t> sequence{0};  // odd while the fields below are being written (seq_cst: rewrite())
  std::atomic<std::uintptr_t> begin{0};    // 0: no table
  std::atomic<std::uintptr_t> end{0};
  std::atomic<int> fd{-1};  // the mapped file, to tell a truncation from a hole
  std::atomic<bool> writable{false};
  std::atomic<bool> faulted{false};  // relaxed: a flag read by the table's own checks
};
static_assert(std::atomic<std::uintptr_t>::is_always_lock_free && std::atomic<std::uint64_t>::is_always_lock_free &&
                  std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
              "read in a signal handler");

Place g_places[kGuardedTables];
std::atomic<std::uint64_t> g_faults{0};  // relaxed: a statistic
std::uintptr_t g_page_bytes = 4096;      // written before the handler is first installed
struct sigaction g_previous{};           // written only while SIGBUS is not ours (see guard_table_faults)

// Writer side of the seqlock. Every access to a place's words is seq_cst: one total
// order, in which the reader's two looks at an even, unchanged sequence bracket field
// reads that no rewrite came between. (No fences: ThreadSanitizer does not model them;
// registration and faults are rare, so the cost does not matter.)
template <class Write>
void rewrite(Place& place, Write&& write) {
  const std::uint64_t sequence = place.sequence.load();
  place.sequence.store(sequence + 1);
  write();
  place.sequence.store(sequence + 2);
}

struct Seen {
  std::uintptr_t begin, end;
  int fd;
  bool writable;
};

// Reader side: false when the place is free or was being rewritten meanwhile.
bool read_place(const Place& place, Seen& seen) {
  const std::uint64_t before = place.sequence.load();
  if ((before & 1) != 0) return false;
  seen = {place.begin.load(), place.end.load(), place.fd.load(), place.writable.load()};
  return seen.begin != 0 && place.sequence.load() == before;
}

// Gives the fault to whatever handled SIGBUS before the guard. With the default action,
// restores it and returns: the access faults again and the process dies as it would have.
void pass_on(int signal, siginfo_t* info, void* context) {
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(signal, info, context);
  } else if ((g_previous.sa_flags & SA_SIGINFO) == 0 && g_previous.sa_handler != SIG_DFL &&
             g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(signal);
  } else {
    struct sigaction fallback{};
    fallback.sa_handler = SIG_DFL;
    sigemptyset(&fallback.sa_mask);
    ::sigaction(SIGBUS, &fallback, nullptr);
  }
}

// Replaces the lost pages of `seen` at `address` with private zero pages. Past the file's
// end (a truncation, which cuts from the end) that is every page from the fault on; inside
// it (a page tmpfs could not allocate, in a sparse table of an older build) only the
// faulting one. Async-signal-safe: fstat and mmap.
bool replace_lost_pages(const Seen& seen, std::uintptr_t address) {
  const std::uintptr_t from = address & ~(g_page_bytes - 1);
  struct stat st{};
  const bool past_end = ::fstat(seen.fd, &st) != 0 || static_cast<std::uintptr_t>(st.st_size) <= from - seen.begin;
  const std::uintptr_t to = past_end ? seen.end : from + g_page_bytes;
  const int protection = PROT_READ | (seen.writable ? PROT_WRITE : 0);
  return ::mmap(reinterpret_cast<void*>(from), to - from, protection, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
         MAP_FAILED;
}

void on_sigbus(int signal, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
  if (info->si_code == BUS_ADRERR) {
    for (Place& place : g_places) {
      Seen seen{};
      if (!read_place(place, seen) || address < seen.begin || address >= seen.end) continue;
      if (!replace_lost_pages(seen, address)) break;
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
  // Installs the handler unless it is already the one in place, keeping whatever was there
  // to pass other faults to; so a call after a later sigaction puts the guard back in front.
  static std::mutex installing;
  const std::lock_guard lock(installing);
  struct sigaction current{};
  ::sigaction(SIGBUS, nullptr, &current);
  if ((current.sa_flags & SA_SIGINFO) != 0 && current.sa_sigaction == on_sigbus) return;
  g_page_bytes = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  struct sigaction action{};
  action.sa_sigaction = on_sigbus;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  // g_previous is written while SIGBUS still goes to the old handler, so the guard never
  // reads it half written.
  g_previous = current;
  ::sigaction(SIGBUS, &action, nullptr);
}

std::uint64_t table_fault_count() { return g_faults.load(std::memory_order_relaxed); }

namespace detail {

int register_table_mapping(void* begin, std::uint64_t bytes, int fd, bool writable) {
  for (int i = 0; i < kGuardedTables; ++i) {
    Place& place = g_places[i];
    bool free = false;
    // Acquire: the place's last user finished with it (its release store of in_use).
    if (!place.in_use.compare_exchange_strong(free, true, std::memory_order_acquire, std::memory_order_relaxed))
      continue;
    rewrite(place, [&] {
      place.begin.store(reinterpret_cast<std::uintptr_t>(begin));
      place.end.store(reinterpret_cast<std::uintptr_t>(begin) + bytes);
      place.fd.store(fd);
      place.writable.store(writable);
      place.faulted.store(false, std::memory_order_relaxed);
    });
    return i;
  }
  return -1;
}

void unregister_table_mapping(int registration) {
  if (registration < 0) return;
  Place& place = g_places[registration];
  rewrite(place, [&] { place.begin.store(0); });
  place.in_use.store(false, std::memory_order_release);  // pairs with the next claimant's CAS
}

bool table_mapping_faulted(int registration) {
  return registration >= 0 && g_places[registration].faulted.load(std::memory_order_relaxed);
}

}  // namespace detail

}  // namespace shmtimer
