// A burst (issue 28): in a collective hang every rank of a host hangs together, so a
// thousand timers (kHung) fall due in the same millisecond, while other workers go on arming and
// disarming. A correctness check with real processes, never a timing threshold (the
// times are bench/burst_bench.cpp's): every hung worker dies of its timer's SIGKILL, each
// at the first try (no kill failed, was retried or could not tell), and no punctual worker
// is touched, even past the deadlines it released.
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <csignal>
#include <set>
#include <thread>

#include "server_support.hpp"
#include "shmtimer/clock.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/timer_server.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;

// A thousand in the release build (CI's burst); 250 under the sanitizers, whose runtimes
// give each forked process megabytes of their own.
constexpr int kHung = testing::kSanitized ? 250 : 1000;
constexpr int kPunctual = 20;

// Shared with every forked worker: go (a futex word), the burst's deadline, how many
// workers armed, and when the punctual ones stop.
struct Shared {
  std::atomic<std::uint32_t> go{0};
  std::atomic<std::uint64_t> deadline_ns{0};
  std::atomic<int> armed{0};
  std::atomic<bool> stop{false};
};

Shared* shared_block() {
  void* p = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return new (p) Shared;
}

void wait_for_go(Shared& shared) {
  while (shared.go.load() == 0) ::syscall(SYS_futex, &shared.go, FUTEX_WAIT, 0u, nullptr, nullptr, 0);
}

// A hung rank: arms the burst's deadline and hangs.
void hang(const std::shared_ptr<Table>& table, Shared& shared, int index) {
  wait_for_go(shared);
  ShmTimerClient client(table, SIGKILL, testing::kArmWithoutServer);
  client.acquire("hung-" + std::to_string(index), from_table_ns(shared.deadline_ns.load()));
  shared.armed.fetch_add(1);
  for (;;) ::pause();
}

// A punctual worker: steps of 200 ms timeouts, each released after 1 ms of work, until
// told to stop; then it lives on past the last deadline it released, and exits 0.
void keep_time(const std::shared_ptr<Table>& table, Shared& shared, int index) {
  wait_for_go(shared);
  ShmTimerClient client(table, SIGKILL, testing::kArmWithoutServer);
  Timer timer = client.timer("punctual-" + std::to_string(index));
  shared.armed.fetch_add(1);
  while (!shared.stop.load()) {
    timer.arm(SteadyClock::now() + 200ms);
    std::this_thread::sleep_for(1ms);
    timer.disarm();
  }
  std::this_thread::sleep_for(400ms);  // past the deadline it last released
}

// As many descriptors as a Python process that hosts the server has by default: the
// burst's processes must share them, within the budget the server takes from the limit.
class OpenFileLimit {
 public:
  explicit OpenFileLimit(rlim_t soft) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit lowered = saved_;
    lowered.rlim_cur = std::min(soft, saved_.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &lowered);
  }
  ~OpenFileLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};

TEST(Burst, EveryHungWorkerOfABurstIsKilledOnceAtTheFirstTryAndNoPunctualWorkerIsTouched) {
  const OpenFileLimit limit(1024);
  testing::TempTable t(4096);
  Shared& shared = *shared_block();
  std::set<pid_t> hung, punctual;
  // Forked before the server's threads start, as a host's workers are not its children.
  for (int i = 0; i < kHung; ++i) hung.insert(testing::fork_child([&] { hang(t.table, shared, i); }));
  for (int i = 0; i < kPunctual; ++i) punctual.insert(testing::fork_child([&] { keep_time(t.table, shared, i); }));
  ServerOptions options;
  options.realtime_priority = 10;  // as shmtimerd runs it; a warning where it may not
  TimerServer server(t.table, options);
  server.start();
  const std::chrono::nanoseconds lead = testing::kSanitized ? 5s : 1s;  // ahead of every arm
  shared.deadline_ns.store(monotonic_now_ns() + static_cast<std::uint64_t>(lead.count()));
  shared.go.store(1);
  ::syscall(SYS_futex, &shared.go, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);

  // Generous: a correctness check. Each hung worker must die of SIGKILL.
  const auto until = std::chrono::steady_clock::now() + 120s;
  std::set<pid_t> killed;
  while (killed.size() < hung.size() && std::chrono::steady_clock::now() < until) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(1ms);
      continue;
    }
    ASSERT_EQ(punctual.count(pid), 0u) << "punctual worker " << pid << " died during the burst";
    ASSERT_TRUE(testing::killed_by(status, SIGKILL)) << "hung worker " << pid << " ended with status " << status;
    killed.insert(pid);
  }
  EXPECT_EQ(killed.size(), hung.size()) << "hung workers left alive";
  EXPECT_EQ(shared.armed.load(), kHung + kPunctual);

  shared.stop.store(true);
  for (const pid_t pid : punctual) EXPECT_TRUE(testing::exited_ok(testing::wait_child(pid, 30s))) << pid;
  for (const pid_t pid : hung)
    if (killed.count(pid) == 0) testing::wait_child(pid, 0ms);
  server.stop();

  const auto& header = t.table->header();
  EXPECT_EQ(header.reaps.load(), static_cast<std::uint64_t>(kHung)) << "each hung worker signalled exactly once";
  EXPECT_EQ(header.failed_kills.load(), 0u);
  for (const auto& unknown : header.liveness_unknown)
    EXPECT_EQ(unknown.load(), 0u) << "a look at a process could not tell (out of descriptors?)";
  for (const auto& refused : server.stats().signals_refused) EXPECT_EQ(refused.load(), 0u);
  EXPECT_EQ(server.stats().kill_lateness.counts().count, static_cast<std::uint64_t>(kHung));
}

}  // namespace
}  // namespace shmtimer
