// Concurrency: many threads, many processes, and writers SIGKILLed at random points.
// Afterwards every live slot must hold exactly what its owner last wrote (or, for a
// writer killed mid-operation, what it was writing), and nothing may be stuck.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <barrier>
#include <set>
#include <thread>

#include "self_identity.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "shmtimer/timer_server.hpp"
#include "slot_ops.hpp"
#include "shmtimer/clock.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

using shmtimer::testing::kArmWithoutServer;

using testing::TempTable;

constexpr int kScopesPerWorker = 12;

std::string scope_name(int i) {
  return "scope-" + std::to_string(i) + std::string(static_cast<std::size_t>(i * 7), '.');
}

// A deadline that names its scope, so a reader can tell a torn (scope, deadline) pair.
// A deadline whose microseconds end in the scope's number (deadlines are stored in whole
// microseconds), so a row pairing one scope with another's deadline shows.
std::uint64_t tagged_deadline(int scope, std::uint64_t counter) {
  return ((counter + 1) * 1000 + static_cast<std::uint64_t>(scope)) * 1000;
}
int tag_of(std::uint64_t deadline_ns) { return static_cast<int>(deadline_ns / 1000 % 1000); }

TEST(Concurrency, ThreadsRacingOnNewScopesClaimOneSlotEach) {
  TempTable t(4096);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  constexpr int kThreads = 4, kScopes = 200;
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int s = 0; s < kScopes; ++s) client.acquire("shared-" + std::to_string(s), from_table_ns(5));
    });
  for (auto& th : threads) th.join();
  std::map<std::string, int> slots_per_scope;
  for (const auto& row : TableReader(t.table).rows(true))
    if (row.state != RowState::kFree) ++slots_per_scope[row.scope];
  EXPECT_EQ(slots_per_scope.size(), static_cast<std::size_t>(kScopes));
  for (const auto& [scope, n] : slots_per_scope) EXPECT_EQ(n, 1) << scope;
}

TEST(Concurrency, ThreadsWritersAndAReaderNeverSeeATornRow) {
  TempTable t(4096);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  constexpr int kThreads = 3, kOps = 20000;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> torn{0}, rows_seen{0}, passes{0};
  std::thread reader([&] {
    TableReader r(t.table);
    for (; !done.load(std::memory_order_acquire); ++passes) {
      for (const auto& row : r.rows(true)) {
        if (row.state == RowState::kFree || row.state == RowState::kClaiming) continue;
        ++rows_seen;
        // Scopes are "t<thread>-<scope>"; armed deadlines end in the scope's number.
        const auto dash = row.scope.find('-');
        const int scope = std::stoi(row.scope.substr(dash + 1));
        if (row.pid != ::getpid() || (row.state == RowState::kArmed && tag_of(row.deadline_ns) != scope)) ++torn;
      }
    }
  });
  std::vector<std::vector<std::uint64_t>> last(kThreads, std::vector<std::uint64_t>(kScopesPerWorker, 0));
  std::vector<std::thread> writers;
  for (int th = 0; th < kThreads; ++th)
    writers.emplace_back([&, th] {
      std::mt19937 rng(static_cast<unsigned>(th));
      std::vector<Timer> timers;
      for (int s = 0; s < kScopesPerWorker; ++s)
        timers.push_back(client.timer("t" + std::to_string(th) + "-" + std::to_string(s)));
      // At least kOps, and on until the reader has made 20 passes while they ran (a fast
      // build finishes kOps before a descheduled reader has looked once).
      for (int op = 0; op < kOps || (passes.load() < 20 && op < 100 * kOps); ++op) {
        const int s = static_cast<int>(rng() % kScopesPerWorker);
        const std::string scope = "t" + std::to_string(th) + "-" + std::to_string(s);
        switch (rng() % 4) {
          case 0:
            last[th][s] = tagged_deadline(s, op);
            client.acquire(scope, from_table_ns(last[th][s]));
            break;
          case 1:
            last[th][s] = 0;
            client.release(scope);
            break;
          case 2:
            last[th][s] = tagged_deadline(s, op);
            timers[s].arm(from_table_ns(last[th][s]));
            break;
          default:
            last[th][s] = 0;
            timers[s].disarm();
            break;
        }
      }
    });
  for (auto& w : writers) w.join();
  done.store(true, std::memory_order_release);
  reader.join();
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_GT(rows_seen.load(), 0u);
  std::map<std::string, std::uint64_t> table_values;
  for (const auto& row : TableReader(t.table).rows(true))
    if (row.state != RowState::kFree) table_values[row.scope] = row.deadline_ns;
  for (int th = 0; th < kThreads; ++th)
    for (int s = 0; s < kScopesPerWorker; ++s)
      EXPECT_EQ(table_values["t" + std::to_string(th) + "-" + std::to_string(s)], last[th][s]);
}

// What a worker process was doing, in memory shared with the test: `intent` is written
// before each operation and `done` after it.
struct WorkerLog {
  std::atomic<std::int32_t> pid;
  std::atomic<std::uint64_t> ops;
  std::atomic<std::uint64_t> intent[kScopesPerWorker];
  std::atomic<std::uint64_t> done[kScopesPerWorker];
};
static_assert(std::atomic<std::int32_t>::is_always_lock_free);

[[noreturn]] void worker_main(const std::shared_ptr<Table>& table, WorkerLog& log, unsigned seed) {
  ShmTimerClient client(table, SIGKILL, kArmWithoutServer);
  std::mt19937 rng(seed);
  std::vector<std::optional<Timer>> timers(kScopesPerWorker);
  for (std::uint64_t op = 1;; ++op) {
    const int s = static_cast<int>(rng() % kScopesPerWorker);
    const int kind = static_cast<int>(rng() % 4);
    const std::uint64_t value = kind % 2 == 0 ? tagged_deadline(s, op) : 0;
    log.intent[s].store(value, std::memory_order_seq_cst);
    switch (kind) {
      case 0: client.acquire(scope_name(s), from_table_ns(value)); break;
      case 1: client.release(scope_name(s)); break;
      case 2:
        if (!timers[s]) timers[s].emplace(client.timer(scope_name(s)));
        timers[s]->arm(from_table_ns(value));
        break;
      default:
        if (timers[s])
          timers[s]->disarm();
        else
          client.release(scope_name(s));
        break;
    }
    log.done[s].store(value, std::memory_order_seq_cst);
    log.ops.fetch_add(1, std::memory_order_relaxed);
  }
}

TEST(Concurrency, ProcessesKilledAtRandomPointsLeaveNoTornOrStuckSlot) {
  TempTable t(1024);
  constexpr int kWorkers = 4, kRounds = 12;
  auto* logs = static_cast<WorkerLog*>(::mmap(nullptr, sizeof(WorkerLog) * kWorkers * kRounds, PROT_READ | PROT_WRITE,
                                              MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(logs, MAP_FAILED);
  std::mt19937 rng(20261125);
  std::uint64_t total_ops = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<pid_t> pids;
    for (int w = 0; w < kWorkers; ++w) {
      WorkerLog& log = logs[round * kWorkers + w];
      const pid_t pid = ::fork();
      if (pid == 0) worker_main(t.table, log, static_cast<unsigned>(round * 100 + w));
      log.pid.store(pid);
      pids.push_back(pid);
    }
    // Kill each at a random point: some almost at once (mid-claim), some after many ops.
    for (pid_t pid : pids) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
      ::kill(pid, SIGKILL);
    }
    for (pid_t pid : pids) ASSERT_TRUE(testing::killed_by(testing::wait_child(pid), SIGKILL));

    // Every Ready slot of these workers holds what was last written or being written.
    std::map<std::pair<pid_t, std::string>, int> keys;
    for (const auto& row : TableReader(t.table).rows(true)) {
      if (row.state == RowState::kFree || row.state == RowState::kClaiming) continue;
      const WorkerLog* log = nullptr;
      for (int w = 0; w < kWorkers; ++w)
        if (logs[round * kWorkers + w].pid.load() == row.pid) log = &logs[round * kWorkers + w];
      if (log == nullptr) continue;  // an earlier round's leftovers, already checked
      ++keys[{row.pid, row.scope}];
      int s = -1;
      for (int i = 0; i < kScopesPerWorker; ++i)
        if (scope_name(i) == row.scope) s = i;
      ASSERT_GE(s, 0) << "unknown scope " << row.scope;
      const std::uint64_t done = log->done[s].load(), intent = log->intent[s].load();
      EXPECT_TRUE(row.deadline_ns == done || row.deadline_ns == intent)
          << "pid " << row.pid << " scope " << s << ": table " << row.deadline_ns << ", done " << done << ", intent "
          << intent;
    }
    for (const auto& [key, n] : keys) EXPECT_EQ(n, 1) << "duplicate slots for " << key.second;
    for (int w = 0; w < kWorkers; ++w) total_ops += logs[round * kWorkers + w].ops.load();
  }
  EXPECT_GT(total_ops, 1000u);

  // Nothing is stuck: one server sweep frees every slot of the dead workers, including
  // any left mid-claim, and the bitmap agrees.
  TimerServer server(t.table);
  server.run_once();
  const auto header = TableReader(t.table).header();
  EXPECT_EQ(header.used_slots, 0u);
  for (std::uint64_t i = 0; i < t.table->capacity(); ++i)
    EXPECT_EQ(layout::Control::unpack(t.table->slot(i).control.load()).state, layout::SlotState::kFree) << i;
  ::munmap(logs, sizeof(WorkerLog) * kWorkers * kRounds);
}

struct Rendezvous {
  std::atomic<int> finished;
  std::atomic<int> checked;
};

TEST(Concurrency, ProcessesAndThreadsShareOneTable) {
  TempTable t(4096);
  constexpr int kProcesses = 3, kThreads = 2, kOps = 5000;
  auto* meet = static_cast<Rendezvous*>(
      ::mmap(nullptr, sizeof(Rendezvous), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(meet, MAP_FAILED);
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcesses; ++p)
    pids.push_back(testing::fork_child([&, p] {
      ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
      std::vector<std::thread> threads;
      for (int th = 0; th < kThreads; ++th)
        threads.emplace_back([&, th] {
          for (int op = 0; op < kOps; ++op) {
            const std::string scope = "p" + std::to_string(p) + "t" + std::to_string(th) + "s" + std::to_string(op % 7);
            client.acquire(scope, from_table_ns(static_cast<std::uint64_t>(op + 1)));
            if (op % 3 == 0) client.release(scope);
          }
        });
      for (auto& th : threads) th.join();
      meet->finished.fetch_add(1);
      while (meet->checked.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // stay alive
    }));
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (meet->finished.load() < kProcesses && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::set<std::pair<pid_t, std::string>> keys;
  std::size_t ready = 0;
  for (const auto& row : TableReader(t.table).rows(true))
    if (row.state == RowState::kArmed || row.state == RowState::kIdle) {
      ++ready;
      keys.insert({row.pid, row.scope});
    }
  meet->checked.store(1);
  for (pid_t pid : pids) EXPECT_TRUE(testing::exited_ok(testing::wait_child(pid)));
  ::munmap(meet, sizeof(Rendezvous));
  EXPECT_EQ(ready, keys.size());  // no duplicates
  EXPECT_EQ(ready, static_cast<std::size_t>(kProcesses * kThreads * 7));
}

// give_back_idle against an arm racing it (slot_ops.hpp): every arm that reports success
// still holds its slot, so it cannot have been lost to a give-back. One thread arms and
// disarms, claiming a new slot whenever its arm finds the slot given back; the other gives
// the current slot back whenever it is idle.
TEST(Concurrency, AnArmRacingAGiveBackOfItsIdleSlotIsNeverLost) {
  TempTable t(64);
  const detail::ScopeKey key(std::string_view("racer"));
  const detail::NewKey me{::getpid(), current_identity(), SIGKILL, layout::Origin::kTable};
  auto first = detail::insert_slot(*t.table, me, key);
  ASSERT_TRUE(first.ok());
  // The current claim, for the giver: index and Ready word (read together under a seqlock
  // would be overkill: a mismatched pair only makes a give-back fail its CAS).
  std::atomic<std::uint64_t> index{first.index}, control{first.control};
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> given_back{0}, lost{0}, arms{0}, reclaims{0};
  std::thread giver([&] {
    while (!stop.load(std::memory_order_relaxed))
      if (detail::give_back_idle(*t.table, index.load(), control.load())) given_back.fetch_add(1);
  });
  // The slot's control word once a give-back in progress has decided: the giver marks
  // the slot Claiming, then frees it or restores `ready`.
  const auto settled = [&](const layout::Slot& slot, std::uint64_t ready) {
    const auto r = layout::Control::unpack(ready);
    const std::uint64_t marked = layout::Control::pack(layout::SlotState::kClaiming, r.generation, r.pid);
    std::uint64_t now = slot.control.load(std::memory_order_seq_cst);
    for (; now == marked; now = slot.control.load(std::memory_order_seq_cst)) std::this_thread::yield();
    return now;
  };
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(testing::kSanitized ? 3 : 2);
  while (std::chrono::steady_clock::now() < until) {
    const layout::Ownership owner{control.load(), me.identity};
    auto& slot = t.table->slot(index.load());
    if (detail::arm_slot(slot, owner, monotonic_now_ns() + 3'600'000'000'000ULL, SIGKILL)) {
      arms.fetch_add(1, std::memory_order_relaxed);
      if (settled(slot, owner.control) != owner.control) lost.fetch_add(1);  // given back while armed
      detail::disarm_slot(slot, owner);
      continue;
    }
    if (settled(slot, owner.control) == owner.control) continue;  // a give-back that backed off
    auto again = detail::insert_slot(*t.table, me, key);          // as the client rebinds
    ASSERT_TRUE(again.ok());
    reclaims.fetch_add(1, std::memory_order_relaxed);
    index.store(again.index);
    control.store(again.control);
  }
  stop = true;
  giver.join();
  EXPECT_EQ(lost.load(), 0u);
  EXPECT_GT(given_back.load(), 0u);  // the race was run
  EXPECT_GT(arms.load(), 0u);
  std::printf("%llu arms, %llu give-backs, %llu re-claims\n", static_cast<unsigned long long>(arms.load()),
              static_cast<unsigned long long>(given_back.load()), static_cast<unsigned long long>(reclaims.load()));
}

}  // namespace
}  // namespace shmtimer
