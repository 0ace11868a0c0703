// The watchdog's rules, against real child processes (signals seen through waitpid) and,
// where the OS cannot be made to misbehave on demand, a scripted ProcessControl.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "process_control.hpp"
#include "shmtimer/error.hpp"
#include "process_liveness.hpp"
#include "process_maps.hpp"
#include "self_identity.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "shmtimer/timer_server.hpp"
#include "process_labels.hpp"
#include "slot_ops.hpp"
#include "server_support.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;
using namespace testing;

TEST(TimerServer, OverrunningWorkerIsKilledBySigkill) {
  TempTable t;
  Events events;
  ServerOptions options;
  options.log_event = events.callback();
  TimerServer server(t.table, options);
  const auto worker = held_hung_worker(t.table, "overrun", 50ms);
  const pid_t child = worker->pid();
  server.start();
  worker->go();
  EXPECT_TRUE(testing::killed_by(testing::wait_child(child), SIGKILL));
  server.stop();
  EXPECT_EQ(t.table->header().reaps.load(), 1u);
  EXPECT_EQ(events.count("watchdog started"), 1);
  EXPECT_EQ(events.count("watchdog stopped"), 1);
  EXPECT_GE(events.count("timer expired"), 1);
  ASSERT_EQ(events.count("kill worker process"), 1);
  for (auto& [name, e] : events.seen)
    if (name == "kill worker process") {
      EXPECT_EQ(e.pid, child);
      EXPECT_EQ(e.scope, "overrun");
      EXPECT_EQ(e.signal, SIGKILL);
      EXPECT_NEAR(e.expiration_time(), static_cast<double>(std::time(nullptr)), 5.0);
    }
}

// Nothing stands between the decision to kill and the signal: the events of an expiry
// (and the log_event callback, which may take its time) come after it. The worker blocks
// SIGUSR1, so a signal sent stays pending, where the callback looks for it.
TEST(TimerServer, TheEventsOfAnExpiryComeAfterItsSignalNeverBetweenTheDecisionAndIt) {
  TempTable t;
  Ready ready;
  const pid_t child = fork_child([&] {
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    ::sigprocmask(SIG_BLOCK, &usr1, nullptr);
    ShmTimerClient client(t.table, SIGUSR1, kArmWithoutServer);
    client.acquire("expired", SteadyClock::now());
    ready.signal();
    std::this_thread::sleep_for(20s);
  });
  ready.wait();
  std::map<std::string, bool> pending_at;  // by event: was the signal pending already?
  ServerOptions options;
  options.log_event = [&](std::string_view name, const TimerEvent* event) {
    if (event == nullptr || event->pid != child) return;
    std::ifstream status("/proc/" + std::to_string(child) + "/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("ShdPnd:", 0) == 0)
        pending_at[std::string(name)] = (std::stoull(line.substr(7), nullptr, 16) >> (SIGUSR1 - 1)) & 1;
  };
  TimerServer server(t.table, options);
  server.run_once();
  EXPECT_TRUE(pending_at["timer expired"]) << "the expiry was reported before its signal was sent";
  EXPECT_TRUE(pending_at["kill worker process"]);
  ::kill(child, SIGKILL);
  testing::wait_child(child);
}

// In a burst, every process due in a round is signalled before anything is said about any
// of them: the last kill of a thousand waits for no event, log line or label of the others.
TEST(TimerServer, EveryKillOfARoundIsSentBeforeAnyOfItsEventsIsReported) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  std::vector<std::size_t> sends_at_event;
  ServerOptions options = fake_options(fake);
  options.log_event = [&](std::string_view, const TimerEvent* event) {
    if (event != nullptr) sends_at_event.push_back(fake->sends.size());
  };
  const std::uint64_t now = monotonic_now_ns();
  for (pid_t pid = 6000; pid < 6005; ++pid) {
    fake->alive[pid] = {77, ::getuid()};
    plant(*t.table, pid, "burst", now - kMicro, SIGKILL);
  }
  TimerServer server(t.table, options);
  EXPECT_EQ(server.run_once_at(now).signalled, 5u);
  ASSERT_FALSE(sends_at_event.empty());
  for (const std::size_t sends : sends_at_event) EXPECT_EQ(sends, 5u) << "an event came between two kills";
}

// The labels of a timer's owner are its own: read from its /proc entry, and none at all
// when the pid names another identity by the end of the read. The reader thread answers
// without the server ever waiting on it.
TEST(ProcessLabels, AreTheOwnersOwnAndNoneWhenThePidNamesAnotherIdentity) {
  const pid_t child = ::fork();
  if (child == 0) {
    char rank[] = "RANK=7", run[] = "TORCHELASTIC_RUN_ID=job-9";
    char* env[] = {rank, run, nullptr};
    ::execle("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr), env);
    ::_exit(127);
  }
  for (int i = 0;
       i < 1000 && std::filesystem::read_symlink("/proc/" + std::to_string(child) + "/exe").filename() != "sleep"; ++i)
    std::this_thread::sleep_for(5ms);
  PinnedProcess pinned;
  ASSERT_TRUE(pin_process(child, std::nullopt, pinned).running());
  ::close(pinned.pidfd);
  const std::uint64_t identity = pinned.identity;
  const ProcessLabels labels = detail::read_process_labels(child, identity);
  EXPECT_EQ(labels.rank, "7");
  EXPECT_EQ(labels.run_id, "job-9");
  EXPECT_EQ(labels.command, "sleep");
  EXPECT_FALSE(labels.local_rank);
  const ProcessLabels other = detail::read_process_labels(child, identity ^ 1);  // another process's identity
  EXPECT_FALSE(other.rank || other.run_id || other.command);
  detail::ProcessLabelReader reader;
  reader.request(child, identity);
  std::optional<ProcessLabels> read;
  for (int i = 0; i < 1000 && !(read = reader.find(child, identity)); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(read);
  EXPECT_EQ(read->rank, "7");
  ::kill(child, SIGKILL);
  testing::wait_child(child);
}

TEST(TimerServer, PunctualWorkerSurvives) {
  TempTable t;
  TimerServer server(t.table);
  testing::HeldChild child([&] {  // forked before the server's threads: see HeldChild
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    for (int i = 0; i < 5; ++i) {
      Expires guard(100ms, "step", client);
      std::this_thread::sleep_for(20ms);
    }
    // Alive well past the last released deadline: a release that did not disarm would
    // get this worker killed now.
    std::this_thread::sleep_for(400ms);
  });
  server.start();
  child.go();
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(child.pid())));
  server.stop();
  EXPECT_EQ(t.table->header().reaps.load(), 0u);
}

TEST(TimerServer, SendsTheSignalOfTheEarliestExpiredTimerWithPositiveSignal) {
  TempTable t;
  Events events;
  ServerOptions options;
  options.log_event = events.callback();
  TimerServer server(t.table, options);
  Ready ready;
  const auto base = SteadyClock::now();
  const pid_t child = testing::fork_child([&] {
    ShmTimerClient never(t.table, 0, kArmWithoutServer), term(t.table, SIGTERM), kill(t.table, SIGKILL);
    kill.acquire("c-kill", base + 30ms);
    never.acquire("a-never", base + 10ms);
    term.acquire("b-term", base + 20ms);
    ready.signal();
    std::this_thread::sleep_for(20s);
  });
  ready.wait();
  server.run_once_at(to_table_ns(base + 1s));
  EXPECT_TRUE(testing::killed_by(testing::wait_child(child), SIGTERM));
  // "timer expired" for each, in deadline order, then the kill for the SIGTERM one.
  std::vector<std::string> expired;
  for (auto& [name, e] : events.seen)
    if (name == "timer expired") expired.push_back(e.scope);
  EXPECT_EQ(expired, (std::vector<std::string>{"a-never", "b-term", "c-kill"}));
  for (auto& [name, e] : events.seen)
    if (name == "kill worker process") {
      EXPECT_EQ(e.scope, "b-term");
    }
}

// Options whose event callback counts each call in `calls`, then throws.
ServerOptions options_whose_log_event_throws(std::atomic<int>& calls) {
  ServerOptions options;
  options.log_event = [&calls](std::string_view, const TimerEvent*) {
    ++calls;
    throw std::runtime_error("the log is full");
  };
  return options;
}

// A log_event that throws is logged, never propagated: the kill it reports stands, and its
// timer is cleared, so the worker is not signalled again next round.
TEST(TimerServer, AnEventCallbackThatThrowsNeitherStopsAKillNorLeavesItsTimerArmed) {
  TempTable t;
  std::atomic<int> calls{0};
  TimerServer server(t.table, options_whose_log_event_throws(calls));
  Ready ready;
  const auto base = SteadyClock::now();
  const pid_t child = testing::fork_child([&] {
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    client.acquire("hung", base + 10ms);
    ready.signal();
    std::this_thread::sleep_for(20s);
  });
  ready.wait();
  server.run_once_at(to_table_ns(base + 1s));
  EXPECT_TRUE(testing::killed_by(testing::wait_child(child), SIGKILL));
  EXPECT_GT(calls.load(), 0);
  EXPECT_EQ(t.table->header().reaps.load(), 1u);
  EXPECT_TRUE(TableReader(t.table).rows().empty()) << "the reaped timer is still armed";
}

// The watchdog thread's own events too ("watchdog started", "watchdog stopped"): a
// callback that throws on every event must not end the thread before its first round.
TEST(TimerServer, AnEventCallbackThatThrowsOnEveryEventStopsNeitherTheWatchdogThreadNorAKill) {
  TempTable t;
  std::atomic<int> calls{0};
  TimerServer server(t.table, options_whose_log_event_throws(calls));
  server.start();
  const pid_t child = testing::fork_child([&] {
    ShmTimerClient client(t.table);
    client.acquire("hung", SteadyClock::now() + 10ms);
    std::this_thread::sleep_for(20s);
  });
  EXPECT_TRUE(testing::killed_by(testing::wait_child(child), SIGKILL));
  server.stop();
  EXPECT_GE(calls.load(), 3) << "watchdog started, timer expired, kill worker process, watchdog stopped";
}

TEST(TimerServer, SignalZeroOrNegativeNeverKillsButTheTimersAreCleared) {
  TempTable t;
  TimerServer server(t.table);
  Ready ready, go;
  const pid_t child = testing::fork_child([&] {
    ShmTimerClient zero(t.table, 0, kArmWithoutServer), negative(t.table, -1);
    zero.acquire("zero", SteadyClock::now());
    negative.acquire("negative", SteadyClock::now());
    ready.signal();
    go.wait();
  });
  ready.wait();
  server.run_once_at(monotonic_now_ns() + kSecond);
  for (const auto& row : rows_of(t.table, child)) EXPECT_EQ(row.state, RowState::kIdle) << row.scope;
  EXPECT_EQ(rows_of(t.table, child).size(), 2u);
  go.signal();
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(child)));
}

TEST(TimerServer, ADeadProcessCountsAsReapedAndAllItsSlotsAreFreed) {
  TempTable t;
  ServerOptions options;
  options.dead_owner_sweep_interval = std::chrono::hours(1);  // only the reap path frees here
  TimerServer server(t.table, options);
  server.run_once();  // the first round's sweep
  const pid_t child = testing::fork_child([&] {
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    client.acquire("expired", SteadyClock::now());
    client.acquire("later", SteadyClock::now() + 1h);
    client.acquire("idle", SteadyClock::now() + 1h);
    client.release("idle");
  });
  ASSERT_TRUE(testing::exited_ok(testing::wait_child(child)));
  ASSERT_EQ(rows_of(t.table, child).size(), 3u);
  server.run_once();
  EXPECT_TRUE(rows_of(t.table, child).empty());
  EXPECT_EQ(t.table->header().reaps.load(), 0u);  // nothing was signalled
}

TEST(TimerServer, SlotsOfExitedProcessesAreFreedByTheSweep) {
  TempTable t;
  TimerServer server(t.table);
  const pid_t child = testing::fork_child([&] {
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    client.acquire("armed-not-expired", SteadyClock::now() + 1h);
    client.acquire("idle", SteadyClock::now() + 1h);
    client.release("idle");
  });
  ASSERT_TRUE(testing::exited_ok(testing::wait_child(child)));
  // A claimant that died mid-claim leaves a Claiming slot with its pid: in a slot the child's
  // two timers left free (their homes depend on its pid, so no fixed index is always free).
  std::uint64_t index = 0;
  while (detail::state_of(t.table->slot(index).control.load()) != layout::SlotState::kFree) ++index;
  t.table->slot(index).control.store(layout::Control::pack(layout::SlotState::kClaiming, 1, child));
  detail::set_occupancy(*t.table, index);
  ASSERT_EQ(TableReader(t.table).header().used_slots, 3u);
  server.run_once();
  EXPECT_EQ(TableReader(t.table).header().used_slots, 0u);
}

TEST(TimerServer, AReapedProcessLosesAllItsTimersNotOnlyTheExpiredOnes) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  TimerServer server(t.table, fake_options(fake));
  const auto now = monotonic_now_ns();
  plant(*t.table, 4242, "expired", now - kMicro, SIGTERM);
  plant(*t.table, 4242, "pending", now + 100 * kSecond, SIGKILL);
  plant(*t.table, 5353, "other-process", now + 100 * kSecond, SIGKILL);
  fake->alive[5353] = {77, ::getuid()};
  server.run_once_at(now);
  ASSERT_EQ(fake->sends.size(), 1u);
  EXPECT_EQ(std::get<0>(fake->sends[0]), 4242);
  EXPECT_EQ(std::get<1>(fake->sends[0]), SIGTERM);
  for (const auto& row : rows_of(t.table, 4242)) EXPECT_EQ(row.state, RowState::kIdle) << row.scope;
  EXPECT_EQ(rows_of(t.table, 5353).at(0).state, RowState::kArmed);
}

TEST(TimerServer, AFailedKillIsRetriedAfterAnExponentialBackoffThatNeverRestartsTheSpin) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  fake->scripted = {SignalOutcome::kFailed, SignalOutcome::kFailed, SignalOutcome::kFailed};
  TimerServer server(t.table, fake_options(fake));
  const auto now = monotonic_now_ns();
  plant(*t.table, 4242, "x", now - kMicro, SIGKILL);
  EXPECT_EQ(server.run_once_at(now).expired, 1u);  // the first attempt fails
  EXPECT_EQ(fake->sends.size(), 1u);
  EXPECT_EQ(rows_of(t.table, 4242).at(0).state, RowState::kArmed);  // kept for the retry
  // Not retried before the back-off (10 ms, then 20, 40, ...), and no round that only
  // waits or retries counts as a new expiry, which would restart the spin window.
  const auto at = [&](std::uint64_t ms) { return server.run_once_at(now + ms * kMs); };
  EXPECT_EQ(at(5).expired, 0u);
  const RoundResult waiting = at(5);
  EXPECT_EQ(waiting.retry_at_ns, now + 10 * kMs);  // wakes for the retry
  EXPECT_EQ(waiting.next_deadline_ns, 0u);         // but it is no deadline: nothing spins before it
  EXPECT_EQ(fake->sends.size(), 1u);
  EXPECT_EQ(at(10).expired, 0u);  // retry 1 fails: next at 10 + 20
  EXPECT_EQ(fake->sends.size(), 2u);
  at(29);
  EXPECT_EQ(fake->sends.size(), 2u);
  at(30);  // retry 2 fails: next at 30 + 40
  EXPECT_EQ(fake->sends.size(), 3u);
  at(69);
  EXPECT_EQ(fake->sends.size(), 3u);
  EXPECT_EQ(t.table->header().failed_kills.load(), 3u);
  at(70);  // retry 3 succeeds
  EXPECT_EQ(fake->sends.size(), 4u);
  EXPECT_EQ(rows_of(t.table, 4242).at(0).state, RowState::kIdle);
  EXPECT_EQ(t.table->header().reaps.load(), 1u);
}

TEST(TimerServer, AKillThatAlwaysFailsCostsFewRoundsAndFewSignals) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  fake->scripted.assign(1000, SignalOutcome::kFailed);
  TimerServer server(t.table, fake_options(fake));
  const auto now = monotonic_now_ns();
  plant(*t.table, 4242, "x", now - kMicro, SIGKILL);
  // A minute of rounds every millisecond: back-off capped at 10 s allows about a dozen
  // attempts, where retrying every round would make 60,000.
  for (std::uint64_t ms = 0; ms < 60'000; ++ms) server.run_once_at(now + ms * 1'000'000);
  EXPECT_LE(fake->sends.size(), 20u);
  EXPECT_GE(fake->sends.size(), 10u);
}

TEST(TimerServer, AReusedPidIsNeverSignalled) {
  TempTable t;
  TimerServer server(t.table);  // the real LinuxProcessControl
  Ready ready, go;
  const pid_t child = testing::fork_child([&] {
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    client.acquire("x", SteadyClock::now());
    ready.signal();
    go.wait();
  });
  ready.wait();
  // Make the slot's recorded identity that of an earlier process with this pid, with an
  // armed word that verifies for it: the timer reaches send(), which must tell the two apart.
  for (const auto& row : rows_of(t.table, child)) {
    auto& slot = t.table->slot(row.slot);
    slot.identity.store(row.identity - 1);
    slot.armed.store(layout::ArmWord::make(row.deadline_ns, slot.control.load(), row.identity - 1));
  }
  server.run_once_at(monotonic_now_ns() + kSecond);
  EXPECT_EQ(server.stats().signals_refused[static_cast<std::size_t>(Refusal::kPidReused)].load(), 1u)
      << "send() was not asked, or did not see the reuse";
  EXPECT_TRUE(rows_of(t.table, child).empty());  // the stale timer is gone
  EXPECT_EQ(t.table->header().reaps.load(), 0u);
  go.signal();
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(child)));  // and the child was not signalled
}

TEST(TimerServer, BadTargetsAndSignalsAreRefused) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  for (pid_t pid : {1, ::getpid(), 4001, 4002}) fake->alive[pid] = {77, ::getuid()};
  TimerServer server(t.table, fake_options(fake));
  const auto now = monotonic_now_ns();
  plant(*t.table, 1, "init", now - kMicro, SIGKILL);
  plant(*t.table, ::getpid(), "the-server", now - kMicro, SIGKILL, current_identity());
  plant(*t.table, 4001, "signal-65", now - kMicro, 65);
  plant(*t.table, 4002, "signal-9999", now - kMicro, 9999);
  // pid 0 and -1 would signal process groups: they must never reach kill().
  const auto zero = plant(*t.table, 4003, "pid-0", now - kMicro, SIGKILL);
  const auto minus = plant(*t.table, 4004, "pid-minus-1", now - kMicro, SIGKILL);
  auto rewrite_pid = [&](std::uint64_t index, pid_t pid) {
    auto c = layout::Control::unpack(t.table->slot(index).control.load());
    t.table->slot(index).control.store(layout::Control::pack(c.state, c.generation, pid));
  };
  rewrite_pid(zero, 0);
  rewrite_pid(minus, -1);
  server.run_once_at(now);
  EXPECT_TRUE(fake->sends.empty());
  EXPECT_EQ(TableReader(t.table).rows().size(), 0u);  // nothing left armed to retry forever
  EXPECT_EQ(t.table->header().reaps.load(), 0u);
}

// What /metrics reports as shmtimer_signals_refused_total{reason} and
// shmtimer_kill_lateness_seconds: each refusal under its own reason, each kill's lateness.
TEST(TimerServer, RefusalsAreCountedByReasonAndKillsByLateness) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  for (pid_t pid : {1, ::getpid(), 4001, 5001, 5002, 5003, 5004}) fake->alive[pid] = {77, ::getuid()};
  // Sends go in pid order: 5001 to 5003 get these answers, 5004 is signalled.
  fake->scripted = {SignalOutcome::kNotMapped, SignalOutcome::kNotPermitted, SignalOutcome::kIdentityMismatch};
  TimerServer server(t.table, fake_options(fake));
  const auto now = monotonic_now_ns();
  plant(*t.table, 1, "init", now - kMicro, SIGKILL);
  plant(*t.table, ::getpid(), "the-server", now - kMicro, SIGKILL, current_identity());
  plant(*t.table, 4001, "signal-65", now - kMicro, 65);
  for (pid_t pid : {5001, 5002, 5003}) plant(*t.table, pid, "refused", now - kMicro, SIGKILL);
  plant(*t.table, 5004, "killed", now - 3'000'000, SIGKILL);  // due 3 ms before the round
  server.run_once_at(now);

  const auto& stats = server.stats();
  const auto refused = [&](Refusal r) { return stats.signals_refused[static_cast<std::size_t>(r)].load(); };
  EXPECT_EQ(refused(Refusal::kNotAWorker), 1u);
  EXPECT_EQ(refused(Refusal::kServerItself), 1u);
  EXPECT_EQ(refused(Refusal::kSignalOutOfRange), 1u);
  EXPECT_EQ(refused(Refusal::kNotMapped), 1u);
  EXPECT_EQ(refused(Refusal::kOtherUser), 1u);
  EXPECT_EQ(refused(Refusal::kPidReused), 1u);
  const auto lateness = stats.kill_lateness.counts();
  EXPECT_EQ(lateness.count, 1u);
  EXPECT_GE(lateness.sum_seconds, 0.003);
  // The 2.5 ms bucket and those below hold nothing; the kill is in a bucket above.
  EXPECT_EQ(lateness.buckets[0] + lateness.buckets[1] + lateness.buckets[2] + lateness.buckets[3] +
                lateness.buckets[4] + lateness.buckets[5] + lateness.buckets[6] + lateness.buckets[7],
            0u);
  EXPECT_EQ(stats.round_duration.counts().count, 1u);
  EXPECT_NE(stats.last_round_end_ns.load(), 0u);
}

// Lateness runs to the moment the signal was queued: a send() that returns late, because
// the kernel ran the dying target on the server's CPU first, does not count as late.
TEST(TimerServer, KillLatenessRunsToTheSignalNotToTheReturnOfTheCallThatSentIt) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[5004] = {77, ::getuid()};
  fake->on_send = [&](const SignalRequest&) {
    fake->issued_ns = monotonic_now_ns();
    std::this_thread::sleep_for(50ms);  // the target takes the CPU to die
  };
  TimerServer server(t.table, fake_options(fake));
  const auto now = monotonic_now_ns();
  plant(*t.table, 5004, "killed", now - 3'000'000, SIGKILL);  // due 3 ms before the round
  server.run_once_at(now);
  const auto lateness = server.stats().kill_lateness.counts();
  ASSERT_EQ(lateness.count, 1u);
  EXPECT_GE(lateness.sum_seconds, 0.003);
  EXPECT_LT(lateness.sum_seconds, 0.050);
}

TEST(TimerServer, SignalsOnlyTheServersOwnUidByDefault) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  {
    TimerServer server(t.table, fake_options(fake));
    plant(*t.table, 4242, "x", monotonic_now_ns() - kMicro, SIGKILL);
    server.run_once();
  }
  ASSERT_EQ(fake->sends.size(), 1u);
  EXPECT_EQ(std::get<2>(fake->sends[0]), std::optional<uid_t>(::getuid()));
  auto options = fake_options(fake);
  options.any_uid = true;
  TimerServer server(t.table, options);
  plant(*t.table, 4242, "y", monotonic_now_ns() - kMicro, SIGKILL);
  server.run_once();
  ASSERT_EQ(fake->sends.size(), 2u);
  EXPECT_EQ(std::get<2>(fake->sends[1]), std::nullopt);
}

// A process is prepared once its timer falls due within two of the server's longest
// sleeps (200 ms by default), once per sweep, with the request its kill will make; a
// far-off timer's process is not: it would hold a descriptor for nothing.
TEST(TimerServer, PreparesAProcessWhoseTimerFallsDueSoonOncePerSweepAndNoneFarOff) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  fake->alive[4343] = {77, ::getuid()};
  TimerServer server(t.table, fake_options(fake));
  const std::uint64_t now = monotonic_now_ns();
  plant(*t.table, 4242, "soon", now + 150 * kMs, SIGKILL);
  plant(*t.table, 4343, "later", now + 3600 * kSecond, SIGKILL);
  server.run_once_at(now);
  ASSERT_EQ(fake->prepared.size(), 1u);
  EXPECT_EQ(fake->prepared[0].pid, 4242);
  EXPECT_EQ(fake->prepared[0].identity, 77u);
  EXPECT_EQ(fake->prepared[0].required_uid, std::optional<uid_t>(::getuid()));
  EXPECT_TRUE(fake->prepared[0].required_mapping.has_value());  // a table timer's kill asks for it
  server.run_once_at(now + kMs);
  EXPECT_EQ(fake->prepared.size(), 1u);  // not again within the sweep
  const int drops = fake->drops;
  server.run_once_at(now + 1100 * kMs);  // the next sweep lets go of what is not prepared again
  EXPECT_EQ(fake->drops, drops + 1);
  EXPECT_EQ(fake->prepared.size(), 1u);  // its deadline has passed: killed, not prepared
  ASSERT_EQ(fake->sends.size(), 1u);
  EXPECT_EQ(std::get<0>(fake->sends[0]), 4242);
}

// A burst too large to prepare within one round's slice (2 ms) is prepared over the rounds
// that follow, each asked for at once, nearest deadline first, every process once: the
// watchdog never stops scanning for tens of milliseconds to prepare, nor leaves a burst
// unprepared until its deadline.
TEST(TimerServer, PreparesABurstInSlicesOverRoundsAskedForAtOnceEachProcessOnce) {
  TempTable t(4096);
  auto fake = std::make_shared<FakeProcesses>();
  fake->on_prepare = [] { std::this_thread::sleep_for(1ms); };  // a slow /proc
  TimerServer server(t.table, fake_options(fake));
  const std::uint64_t now = monotonic_now_ns();
  constexpr int kProcesses = 20;
  for (int i = 0; i < kProcesses; ++i) {
    fake->alive[5000 + i] = {77, ::getuid()};
    plant(*t.table, 5000 + i, "burst", now + 150 * kMs + static_cast<std::uint64_t>(i) * kMicro, SIGKILL);
  }
  RoundResult result = server.run_once_at(now);
  ASSERT_GE(fake->prepared.size(), 1u);
  ASSERT_LT(fake->prepared.size(), static_cast<std::size_t>(kProcesses)) << "one round prepared the whole burst";
  EXPECT_EQ(fake->prepared[0].pid, 5000);  // the nearest deadline first
  int rounds = 1;
  while (result.retry_at_ns != 0 && rounds < 100) {
    EXPECT_LE(result.retry_at_ns, now + kMs * static_cast<std::uint64_t>(rounds)) << "the next round is not at once";
    result = server.run_once_at(now + kMs * static_cast<std::uint64_t>(rounds++));
  }
  std::set<pid_t> pids;
  for (const auto& request : fake->prepared) EXPECT_TRUE(pids.insert(request.pid).second) << request.pid;
  EXPECT_EQ(pids.size(), static_cast<std::size_t>(kProcesses)) << "after " << rounds << " rounds";
  EXPECT_TRUE(fake->sends.empty());
}

// Notes whether two rounds were ever inside it at once; each liveness answer lingers, so
// that overlapping rounds would overlap here.
class OverlapDetector : public ProcessControl {
 public:
  Probe running(pid_t, std::optional<std::uint64_t>) override {
    if (inside_.fetch_add(1) != 0) overlapped.store(true);
    std::this_thread::sleep_for(100us);
    inside_.fetch_sub(1);
    return testing::answer(true);
  }
  SignalOutcome send(const SignalRequest&, int&) override { return SignalOutcome::kSent; }
  std::atomic<bool> overlapped{false};

 private:
  std::atomic<int> inside_{0};
};

// torch's tests call run_once() on a started server: the round on the caller's thread
// must never run beside the watchdog's own (a round's sweep state is not shared; when
// they overlapped, a live process's slots were freed as its owner's "gone").
TEST(TimerServer, RunOnceWhileTheWatchdogRunsNeverOverlapsItsRounds) {
  TempTable t;
  const auto detector = std::make_shared<OverlapDetector>();
  ServerOptions options;
  options.processes = detector;
  options.dead_owner_sweep_interval = 0ns;  // every round sweeps, so every round asks
  options.policy.max_interval = 1ms;
  for (int i = 0; i < 8; ++i) plant(*t.table, 4000 + i, "live", to_table_ns(SteadyClock::now() + 1h), SIGKILL);
  TimerServer server(t.table, options);
  server.start();
  for (int i = 0; i < 300; ++i) server.run_once();
  server.stop();
  EXPECT_FALSE(detector->overlapped.load());
  EXPECT_EQ(TableReader(t.table).rows().size(), 8u);
}

TEST(LinuxProcessControl, RefusesAnotherUidAndAStaleIdentity) {
  Ready go;
  const pid_t child = testing::fork_child([&] { go.wait(); });
  LinuxProcessControl processes;
  const auto info = inspect(processes, child);
  ASSERT_TRUE(info.has_value());
  int error = 0;
  EXPECT_EQ(processes.send({child, info->identity, SIGKILL, ::getuid() + 1, {}, {}}, error),
            SignalOutcome::kNotPermitted);
  EXPECT_EQ(processes.send({child, info->identity + 1, SIGKILL, {}, {}, {}}, error), SignalOutcome::kIdentityMismatch);
  EXPECT_EQ(processes.send({child, info->identity, 0, ::getuid(), {}, {}}, error), SignalOutcome::kSent);  // probe only
  go.signal();
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(child)));
  EXPECT_EQ(processes.send({child, info->identity, SIGKILL, {}, {}, {}}, error), SignalOutcome::kNoProcess);
  EXPECT_EQ(processes.send({0, 0, SIGKILL, {}, {}, {}}, error), SignalOutcome::kNoProcess);
  EXPECT_EQ(processes.send({-1, 0, SIGKILL, {}, {}, {}}, error), SignalOutcome::kNoProcess);
}

// A worker that exited but is not yet waited for (a zombie) counts as gone, as the reference
// counts it: its timers are freed, not refused as another user's or as never mapped (its
// memory map reads empty).
TEST(LinuxProcessControl, AProcessThatExitedButIsNotWaitedForIsGoneNotRefused) {
  TempTable t;
  struct stat table{};
  ASSERT_EQ(::fstat(t.table->fd(), &table), 0);
  Ready looked_at;  // the child exits only once its identity was read: it may not be gone before
  const pid_t child = testing::fork_child([&] { looked_at.wait(); });
  LinuxProcessControl processes;
  const auto info = inspect(processes, child);
  looked_at.signal();
  ASSERT_TRUE(info.has_value());
  for (int i = 0; i < 5000 && is_running(child, std::nullopt); ++i) std::this_thread::sleep_for(1ms);
  ASSERT_FALSE(is_running(child, std::nullopt));
  int error = 0;
  EXPECT_EQ(processes.send({child, info->identity, SIGKILL, ::getuid(), FileId{table.st_dev, table.st_ino}, {}}, error),
            SignalOutcome::kNoProcess);
  EXPECT_EQ(processes.send({child, info->identity, SIGKILL, ::getuid() + 1, {}, {}}, error), SignalOutcome::kNoProcess);
  testing::wait_child(child);
}

// Preparing a process ahead of its deadline spares send() the identity and mapping reads,
// never the uid, nor whether the process still runs.
TEST(LinuxProcessControl, APreparedProcessIsStillCheckedForItsUidAndWhetherItRuns) {
  Ready go;
  const pid_t child = testing::fork_child([&] { go.wait(); });
  LinuxProcessControl processes;
  const auto info = inspect(processes, child);
  ASSERT_TRUE(info.has_value());
  processes.prepare({child, info->identity, 0, ::getuid(), {}, {}});
  ASSERT_EQ(processes.prepared(), 1u);
  int error = 0;
  EXPECT_EQ(processes.send({child, info->identity, SIGKILL, ::getuid() + 1, {}, {}}, error),
            SignalOutcome::kNotPermitted);
  EXPECT_EQ(processes.send({child, info->identity, 0, ::getuid(), {}, {}}, error), SignalOutcome::kSent);  // probe only
  go.signal();
  for (int i = 0; i < 5000 && is_running(child, std::nullopt); ++i) std::this_thread::sleep_for(1ms);
  ASSERT_FALSE(is_running(child, std::nullopt));  // exited, not yet waited for
  EXPECT_EQ(processes.send({child, info->identity, SIGKILL, ::getuid(), {}, {}}, error), SignalOutcome::kNoProcess);
  // Gone, whatever else the checks found: a zombie of another uid is gone, not refused.
  EXPECT_EQ(processes.send({child, info->identity, SIGKILL, ::getuid() + 1, {}, {}}, error), SignalOutcome::kNoProcess);
  EXPECT_EQ(processes.prepared(), 1u);  // the answer came from the prepared process
  testing::wait_child(child);
}

// What preparing learns holds for the one identity it checked, and only what it saw.
TEST(LinuxProcessControl, APreparedProcessVouchesOnlyForItsOwnIdentityAndWhatItHasMapped) {
  Ready go;
  const pid_t child = testing::fork_child([&] { go.wait(); });  // forked before the table was mapped
  TempTable t;
  struct stat st{};
  ASSERT_EQ(::fstat(t.table->fd(), &st), 0);
  const FileId table{st.st_dev, st.st_ino};
  LinuxProcessControl processes;
  const auto info = inspect(processes, child);
  ASSERT_TRUE(info.has_value());
  processes.prepare({child, info->identity, 0, {}, table, {}});
  processes.prepare({child, info->identity + 1, 0, {}, {}, {}});  // not who runs: not held
  ASSERT_EQ(processes.prepared(), 1u);
  int error = 0;
  EXPECT_EQ(processes.send({child, info->identity, SIGKILL, {}, table, {}}, error), SignalOutcome::kNotMapped);
  EXPECT_EQ(processes.send({child, info->identity + 1, SIGKILL, {}, {}, {}}, error), SignalOutcome::kIdentityMismatch);
  EXPECT_EQ(::waitpid(child, nullptr, WNOHANG), 0) << "the child was signalled";
  // One that has it mapped is signalled through what was prepared.
  Ready mapped, go_mapped;
  const pid_t worker = testing::fork_child([&] {
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    mapped.signal();
    go_mapped.wait();
  });
  mapped.wait();
  const auto worker_info = inspect(processes, worker);
  ASSERT_TRUE(worker_info.has_value());
  processes.prepare({worker, worker_info->identity, 0, {}, table, {}});
  EXPECT_EQ(processes.send({worker, worker_info->identity, SIGKILL, {}, table, {}}, error), SignalOutcome::kSent);
  EXPECT_TRUE(testing::killed_by(testing::wait_child(worker), SIGKILL));
  go.signal();
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(child)));
}

// A worker that calls exec() drops the table with its old image: prepared or not, it is no
// longer signalled for a table timer (docs/security.md, "Only a process that could have
// armed it").
TEST(LinuxProcessControl, APreparedWorkerThatCalledExecIsNotSignalledForATableTimer) {
  TempTable t;
  struct stat st{};
  ASSERT_EQ(::fstat(t.table->fd(), &st), 0);
  const FileId table{st.st_dev, st.st_ino};
  Ready go;
  const pid_t worker = testing::fork_child([&] {  // has the table mapped, from its parent
    go.wait();
    ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
  });
  LinuxProcessControl processes;
  const auto info = inspect(processes, worker);
  ASSERT_TRUE(info.has_value());
  processes.prepare({worker, info->identity, 0, {}, table, {}});
  ASSERT_EQ(processes.prepared(), 1u);
  int error = 0;
  EXPECT_EQ(processes.send({worker, info->identity, 0, {}, table, {}}, error), SignalOutcome::kSent);  // probe only
  go.signal();
  bool execed = false;
  for (int i = 0; i < 5000 && !execed; ++i) {
    std::ifstream comm("/proc/" + std::to_string(worker) + "/comm");
    std::string name;
    execed = std::getline(comm, name) && name == "sleep";
    if (!execed) std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(execed);
  EXPECT_EQ(processes.send({worker, info->identity, SIGKILL, {}, table, {}}, error), SignalOutcome::kNotMapped);
  ::kill(worker, SIGKILL);
  testing::wait_child(worker);
}

TEST(LinuxProcessControl, HoldsAtMostItsLimitAndLetsGoOfWhatIsNotPreparedAgain) {
  Ready go;
  const pid_t a = testing::fork_child([&] { go.wait(); });
  const pid_t b = testing::fork_child([&] { go.wait(); });
  LinuxProcessControl processes(1);
  const auto a_info = inspect(processes, a), b_info = inspect(processes, b);
  ASSERT_TRUE(a_info && b_info);
  processes.prepare({a, a_info->identity, 0, {}, {}, {}});
  processes.prepare({b, b_info->identity, 0, {}, {}, {}});
  EXPECT_EQ(processes.prepared(), 1u);
  processes.drop_unprepared();  // a was prepared since the last drop: kept
  EXPECT_EQ(processes.prepared(), 1u);
  processes.drop_unprepared();  // not since: let go
  EXPECT_EQ(processes.prepared(), 0u);
  go.signal();
  go.signal();
  testing::wait_child(a);
  testing::wait_child(b);
}

// By default a LinuxProcessControl holds as many processes as a quarter of the open file
// limit (two descriptors each: half of it), so that a burst of a thousand is prepared
// under shmtimerd's raised limit, and a server hosted in a process of 1,024 descriptors
// keeps the rest for its host; a limit raised later counts from the next sweep.
TEST(LinuxProcessControl, HoldsAQuarterOfTheOpenFileLimitAndMoreOnceTheLimitIsRaised) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_GE(saved.rlim_max, 2048u) << "this test raises the soft limit to 2,048";
  rlimit lowered = saved;
  lowered.rlim_cur = 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
  Ready go;
  std::vector<pid_t> children;
  for (int i = 0; i < 300; ++i) children.push_back(fork_child([&] { go.wait(); }));
  {
    LinuxProcessControl processes;
    std::vector<SignalRequest> requests;
    for (const pid_t child : children) {
      const auto info = inspect(processes, child);
      ASSERT_TRUE(info);
      requests.push_back({child, info->identity, 0, {}, {}, {}});
    }
    for (const auto& request : requests) processes.prepare(request);
    EXPECT_EQ(processes.prepared(), 256u);  // 1,024 / 4
    lowered.rlim_cur = 2048;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
    for (const auto& request : requests) processes.prepare(request);
    EXPECT_EQ(processes.prepared(), 256u);  // the budget is looked up once a sweep
    processes.drop_unprepared();
    for (const auto& request : requests) processes.prepare(request);
    EXPECT_EQ(processes.prepared(), 300u);  // 2,048 / 4 = 512 now
  }
  ::setrlimit(RLIMIT_NOFILE, &saved);
  for (std::size_t i = 0; i < children.size(); ++i) go.signal();
  for (const pid_t child : children) wait_child(child);
}

void run_server_that_reaps(const std::shared_ptr<Table>& table, bool signal_self) {
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  auto options = fake_options(fake);
  options.signal_self_after_reap = signal_self;
  TimerServer server(table, options);
  plant(*table, 4242, "x", monotonic_now_ns() - kMicro, SIGTERM);
  server.run_once();
}

TEST(TimerServer, SignalsItsOwnProcessAfterAReapOnlyWhenAsked) {
  TempTable t;
  const pid_t with = testing::fork_child([&] { run_server_that_reaps(t.table, true); });
  EXPECT_TRUE(testing::killed_by(testing::wait_child(with), SIGTERM));
  TempTable u;
  const pid_t without = testing::fork_child([&] { run_server_that_reaps(u.table, false); });
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(without)));
}

TEST(TimerServer, HeartbeatProgressAndServerPidAreWritten) {
  TempTable t;
  auto server = std::make_unique<TimerServer>(t.table);
  const auto& h = t.table->header();
  EXPECT_EQ(h.server_pid.load(), ::getpid());
  EXPECT_NEAR(static_cast<double>(server->get_last_progress_time()), static_cast<double>(std::time(nullptr)), 2);
  server->run_once_at(123);
  server->run_once_at(456);
  EXPECT_EQ(h.heartbeat_count.load(), 2u);
  EXPECT_EQ(h.heartbeat_mono_ns.load(), 456u);
  EXPECT_NEAR(static_cast<double>(server->get_last_progress_time()), static_cast<double>(std::time(nullptr)), 2);
  EXPECT_TRUE(TableReader(t.table).header().server_alive);
  server.reset();
  EXPECT_EQ(h.server_pid.load(), 0);
  EXPECT_FALSE(TableReader(t.table).header().server_alive);
}

TEST(TimerServer, ASecondServerOnALiveTableIsRefused) {
  TempTable t;
  TimerServer first(t.table);
  try {
    TimerServer second(Table::open(t.file.path()));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kServerRunning);
    EXPECT_NE(std::string(e.what()).find("pid " + std::to_string(::getpid())), std::string::npos) << e.what();
  }
}

TEST(TimerServer, ADeadServersTableIsTakenOverWithItsTimers) {
  TempTable t;
  const pid_t dead_server = testing::fork_child([&] {
    new TimerServer(Table::open(t.file.path()));  // never destroyed: dies holding the table
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    ::_exit(0);
  });
  ASSERT_TRUE(testing::exited_ok(testing::wait_child(dead_server)));
  EXPECT_EQ(t.table->header().server_pid.load(), dead_server);
  const pid_t worker = fork_hung_worker(t.table, "while-down", 100ms);  // armed while no server ran
  TimerServer server(t.table);
  EXPECT_EQ(t.table->header().server_pid.load(), ::getpid());
  server.start();
  EXPECT_TRUE(testing::killed_by(testing::wait_child(worker), SIGKILL));
}

// Restarts are counted in the table, where they outlive the servers they count: every
// start, and apart those that found a server's pid that died holding the table.
TEST(TimerServer, StartsAndTakeoversAreCountedInTheTableItself) {
  TempTable t;
  {
    TimerServer first(t.table);
  }  // a clean stop zeroes the pid: the next start takes nothing over
  const pid_t dead = fork_child([] {});
  testing::wait_child(dead);
  {
    TimerServer second(t.table);
  }
  t.table->header().server_pid.store(dead);  // a server that died holding the table
  TimerServer third(t.table);
  const HeaderInfo header = TableReader(t.table).header();
  EXPECT_EQ(header.server_starts, 3u);
  EXPECT_EQ(header.server_takeovers, 1u);
}

TEST(TimerServer, ARestartLosesNoTimer) {
  TempTable t;
  auto server = std::make_unique<TimerServer>(t.table);
  const pid_t worker = fork_hung_worker(t.table, "survives-restart", 300ms);
  server->run_once();
  server.reset();  // stop
  ASSERT_EQ(rows_of(t.table, worker).size(), 1u);
  TimerServer restarted(Table::open(t.file.path()));
  restarted.start();
  EXPECT_TRUE(testing::killed_by(testing::wait_child(worker), SIGKILL));
}

TEST(TimerServer, GarbageSlotsAreFreedWithoutSignallingAnyone) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  TimerServer server(t.table, fake_options(fake));
  const auto index = plant(*t.table, 4242, "x", monotonic_now_ns() - kMicro, SIGKILL);
  t.table->slot(index).scope_len.store(100000);
  server.run_once();
  EXPECT_TRUE(fake->sends.empty());
  EXPECT_EQ(TableReader(t.table).header().used_slots, 0u);
}

}  // namespace
}  // namespace shmtimer
