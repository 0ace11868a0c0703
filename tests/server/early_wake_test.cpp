// The early wake-up (src/table/server_wakeup.hpp): a timer whose deadline comes before the
// server's planned look wakes the server; one that does not, costs no system call.
// Servers here sleep an hour between looks unless woken, so a wake-up that does not
// happen shows up as a timer never served, not as a few milliseconds of lateness.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <thread>

#include "server_support.hpp"
#include "server_wakeup.hpp"
#include "shmtimer/fifo_protocol.hpp"
#include "shmtimer/fifo_shim.hpp"
#include "self_identity.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/timer_server.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;
using namespace testing;

// Generous bounds for behaviour, not speed: without the wake-up each wait below would
// last an hour.
constexpr auto kServed = 30s;

ServerOptions sleepy_options() {
  ServerOptions options;
  options.policy.max_interval = std::chrono::hours(1);
  options.dead_owner_sweep_interval = std::chrono::hours(1);
  return options;
}

TEST(EarlyWake, AHangShorterThanTheServersSleepIsKilledWithoutWaitingForIt) {
  TempTable t;
  TimerServer server(t.table, sleepy_options());
  HeldChild child([&] {  // forked before the server's threads: see HeldChild
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    client.acquire("short", SteadyClock::now() + 30ms);
    std::this_thread::sleep_for(20s);
  });
  server.start();
  std::this_thread::sleep_for(50ms);  // the server has planned its hour-long sleep
  child.go();
  EXPECT_TRUE(killed_by(wait_child(child.pid(), kServed), SIGKILL)) << "the arm did not wake the sleeping server";
  server.stop();  // returns at once: stop() wakes the server too
  EXPECT_GE(t.table->header().wake_requests.load(), 1u);
}

// Each worker arms its next timer the moment the server has dealt with the last one (it
// clears the word in the round that reports it), so arms keep landing while a round is
// under way, after the scan has passed their slot: the case the marker and the pending
// word exist for. A lost one would wait for the hour. Separate processes, since the
// server clears every timer of a process it reaps, the one that expired or not.
TEST(EarlyWake, EveryArmRacingTheServersRoundIsServedWithoutWaitingForTheInterval) {
  TempTable t;
  TimerServer server(t.table, sleepy_options());
  constexpr int kWorkers = 3;
  const int rounds = kSanitized ? 150 : 600;
  std::vector<std::unique_ptr<HeldChild>> workers;  // forked before the server's threads: see HeldChild
  for (int n = 0; n < kWorkers; ++n)
    workers.push_back(std::make_unique<HeldChild>([&, n] {
      ShmTimerClient client(t.table, 0, kArmWithoutServer);  // signal 0: expired timers are cleared, never killed
      const std::string scope = "racer-" + std::to_string(n);
      client.acquire(scope, SteadyClock::now() + 1h);
      const auto index = detail::find_slot(*t.table, current_pid(), current_identity(), layout::Origin::kTable,
                                           detail::ScopeKey(scope));
      const auto& armed = t.table->slot(index).armed;
      for (int i = 1; i <= rounds; ++i) {
        client.acquire(scope, SteadyClock::now() + std::chrono::microseconds(50 + (i * 37 + n * 101) % 400));
        const auto give_up = SteadyClock::now() + kServed;
        while (armed.load() != layout::kDisarmed)
          if (SteadyClock::now() > give_up) ::_exit(2);  // never seen: the arm was lost
      }
    }));
  server.start();
  for (const auto& worker : workers) worker->go();
  for (const auto& worker : workers)
    EXPECT_TRUE(exited_ok(wait_child(worker->pid(), 2 * kServed))) << "an arm racing a round was never seen";
  server.stop();
}

// The window the pending word closes: an arm that lands while a round runs, after the
// scan passed its slot, with a deadline before the plan that round makes. Rounds here
// are long (a table full of another process's hour-long timers), and the worker arms a
// 10 s timer (which wakes the server for a round and sets its plan) and then, a random
// moment into that round, a 1 ms one. Without the rescan the 1 ms timer waits for the
// plan, 10 s; so it must be seen (its word cleared) before that.
TEST(EarlyWake, AnArmDuringARoundAfterTheScanPassedItIsSeenBeforeTheRoundsPlan) {
  TempTable t(1 << 16);
  const pid_t parent = ::getppid();  // alive throughout: its planted timers are never due
  const auto parent_identity = identity_of(parent);
  ASSERT_NE(parent_identity, 0u);
  for (int i = 0; i < (1 << 16) - 16; ++i)
    plant(*t.table, parent, "filler-" + std::to_string(i), monotonic_now_ns() + 3600 * kSecond, 0, parent_identity);
  TimerServer server(t.table, sleepy_options());
  HeldChild worker([&] {  // forked before the server's threads: see HeldChild
    ShmTimerClient client(t.table, 0, kArmWithoutServer);
    std::mt19937 rng(7);
    for (int i = 0; i < (kSanitized ? 10 : 40); ++i) {
      const auto plan = SteadyClock::now() + 10s;
      client.acquire("plan", plan);  // wakes the server: a round starts
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 400));
      client.acquire("short", SteadyClock::now() + 1ms);
      const auto index = detail::find_slot(*t.table, current_pid(), current_identity(), layout::Origin::kTable,
                                           detail::ScopeKey("short"));
      while (t.table->slot(index).armed.load() != layout::kDisarmed)
        if (SteadyClock::now() > plan - 1s) ::_exit(2);  // missed: served only at the plan
      client.release("plan");
    }
  });
  server.start();
  worker.go();
  EXPECT_TRUE(exited_ok(wait_child(worker.pid(), 4 * kServed))) << "an arm during a round waited for the round's plan";
  server.stop();
}

TEST(EarlyWake, ASteadyArmDisarmLoopOfLongTimersMakesNoWakeUpCall) {
  TempTable t;
  TimerServer server(t.table);  // the default policy: a look every 100 ms at the latest
  server.start();
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  Timer timer = client.timer("steady");
  client.acquire("steady-scope", SteadyClock::now() + 60s);
  client.release("steady-scope");
  const std::uint64_t before = t.table->header().wake_requests.load();
  const auto until = SteadyClock::now() + 1s;  // ten of the server's rounds
  std::uint64_t pairs = 0;
  while (SteadyClock::now() < until) {
    for (int i = 0; i < 1000; ++i, ++pairs) {
      timer.arm_after(60s);
      timer.disarm();
      client.acquire("steady-scope", SteadyClock::now() + 60s);
      client.release("steady-scope");
    }
  }
  server.stop();
  EXPECT_GT(pairs, 0u);
  EXPECT_EQ(t.table->header().wake_requests.load() - before, 0u) << pairs << " pairs";
}

// The wake-up words are writable by every client. Garbage in them may cost the server
// rescans, or its early wake-ups; never a timer past max_interval.
TEST(EarlyWake, HostileWakeWordsNeverStopTheServerLookingEveryInterval) {
  TempTable t;
  ServerOptions options;
  options.policy.max_interval = 50ms;
  TimerServer server(t.table, options);
  const auto worker = held_hung_worker(t.table, "vandalized", 30ms);  // before any thread starts
  server.start();
  std::atomic<bool> done{false};
  std::thread vandal([&] {
    auto& header = t.table->header();
    for (std::uint32_t i = 0; !done; ++i) {
      header.wake_at_ns.store(i % 2 ? 0 : ~std::uint64_t{0});
      header.wake_pending.store(i % 3 == 0 ? 0 : i);
      std::this_thread::sleep_for(100us);
    }
  });
  worker->go();
  EXPECT_TRUE(killed_by(wait_child(worker->pid(), kServed), SIGKILL));
  done = true;
  vandal.join();
  server.stop();
}

// A client that read a plan skips the wake-up call when its deadline is at or after it,
// trusting the server to look by then. So within a round (marker, plan, rescans), a plan
// published later may only lower the bound, never raise it: a rescan that found less to
// do (a timer disarmed meanwhile) must still look at the table by the earlier plan, or an
// arm that read it and landed behind the rescan's scan would wait a whole interval.
TEST(EarlyWake, APlanPublishedWithinARoundOnlyEverLowersWhatClientsRead) {
  TempTable t;
  detail::ServerWakeup wakeup(*t.table);
  const std::uint64_t now = 1'000'000'000, interval = 100'000'000;
  auto published = [&] { return t.table->header().wake_at_ns.load(); };
  EXPECT_EQ(wakeup.publish_marker(now, interval), now + interval);
  EXPECT_EQ(published(), now + interval);
  wakeup.publish_plan(now + 5'000'000);  // the scan found a deadline in 5 ms
  EXPECT_EQ(published(), now + 5'000'000);
  wakeup.publish_plan(now + 50'000'000);  // a rescan found it disarmed: the bound stands
  EXPECT_EQ(published(), now + 5'000'000);
  EXPECT_EQ(wakeup.promised_ns(), now + 5'000'000);
  wakeup.publish_plan(now + 2'000'000);  // an earlier deadline lowers it
  EXPECT_EQ(published(), now + 2'000'000);
}

TEST(EarlyWake, AFifoRequestWakesTheSleepingServer) {
  TempTable t;
  TempPath fifo_path{"shmtimer-fifo"};
  TimerServer server(t.table, sleepy_options());
  server.add_source(std::make_shared<FifoShim>(t.table, fifo_path.path()));
  server.start();
  std::this_thread::sleep_for(50ms);
  Ready ready;
  const pid_t child = fork_child([&] {
    ready.signal();
    std::this_thread::sleep_for(20s);
  });
  ready.wait();
  write_fifo(fifo_path.path(), fifo::format_acquire(child, "fifo-short", epoch_now() + 0.03, SIGKILL));
  EXPECT_TRUE(killed_by(wait_child(child, kServed), SIGKILL)) << "the FIFO request did not wake the server";
  server.stop();
}

}  // namespace
}  // namespace shmtimer
