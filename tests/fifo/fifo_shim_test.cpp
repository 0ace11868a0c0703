// The FIFO shim inside the server, with the C++ FifoTimerClient and raw writes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "fifo_senders.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/fifo_shim.hpp"
#include "shmtimer/fifo_timer_client.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "server_support.hpp"

namespace shmtimer {
namespace {

using shmtimer::testing::kArmWithoutServer;

using namespace std::chrono_literals;
using testing::kSanitized;
using testing::Ready;
using testing::TempPath;
using testing::TempTable;

struct FifoFixture {
  TempTable t;
  TempPath fifo_path{"shmtimer-fifo"};
  std::vector<std::string> events;
  std::shared_ptr<FifoShim> shim = std::make_shared<FifoShim>(
      t.table, fifo_path.path(), [this](std::string_view name, const TimerEvent*) { events.emplace_back(name); });
  TimerServer server{t.table};
  FifoFixture() { server.add_source(shim); }

  void write_raw(const std::string& bytes) { testing::write_fifo(fifo_path.path(), bytes); }
  // Every claimed slot, armed or not.
  std::vector<TimerRow> rows() {
    std::vector<TimerRow> out;
    for (auto& row : TableReader(t.table).rows(true))
      if (row.state != RowState::kFree) out.push_back(row);
    return out;
  }
};

std::string line(pid_t pid, const std::string& scope, double expiration, int signal = 9) {
  return fifo::format_acquire(pid, scope, expiration, signal);
}

using testing::epoch_now;

TEST(FifoShim, AnAcquireLandsInTheTableAsAFifoTimerOnTheMonotonicClock) {
  FifoFixture f;
  FifoTimerClient client(f.fifo_path.path(), SIGTERM);
  const auto before = monotonic_now_ns();
  client.acquire_epoch("fifo-scope", epoch_now() + 10);
  f.server.run_once();
  const auto rows = f.rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].pid, ::getpid());
  EXPECT_EQ(rows[0].scope, "fifo-scope");
  EXPECT_EQ(rows[0].origin, layout::Origin::kFifo);
  EXPECT_EQ(rows[0].signal, SIGTERM);
  EXPECT_NEAR(static_cast<double>(rows[0].deadline_ns - before) / 1e9, 10.0, 0.5);
  EXPECT_EQ(f.shim->request_count(), 1u);
  EXPECT_EQ(f.t.table->header().fifo_requests.load(), 1u);
  EXPECT_EQ(f.events, (std::vector<std::string>{"set timer"}));
}

TEST(FifoShim, ReleaseFreesTheSlotAndAnUnknownScopeIsANoOp) {
  FifoFixture f;
  FifoTimerClient client(f.fifo_path.path());
  client.acquire_epoch("s", epoch_now() + 10);
  client.release("s");
  client.release("never-acquired");
  f.server.run_once();
  EXPECT_TRUE(f.rows().empty());
  EXPECT_EQ(f.shim->request_count(), 3u);
}

TEST(FifoShim, MalformedLinesAreSkippedAndTheRestOfTheReadIsKept) {
  FifoFixture f;
  const pid_t me = ::getpid();
  f.write_raw(line(me, "a", epoch_now() + 10) + "{broken json\n" +
              R"({"pid": 0, "scope_id": "x", "expiration_time": 1, "signal": 9})" + "\n" +
              line(me, "b", epoch_now() + 10) + R"({"pid": 1, "scope_id": "x", "expiration_time": 1, "signal": 65})" +
              "\n" + R"({"pid": 1, "scope_id": 3, "expiration_time": 1, "signal": 9})" + "\n" +
              R"({"pid": 1, "scope_id": "x", "signal": 9})" + "\n" + line(me, "c", epoch_now() + 10));
  f.server.run_once();
  std::set<std::string> scopes;
  for (const auto& row : f.rows()) scopes.insert(row.scope);
  EXPECT_EQ(scopes, (std::set<std::string>{"a", "b", "c"}));
  EXPECT_EQ(f.shim->request_count(), 3u);
  EXPECT_EQ(f.shim->malformed_count(), 5u);
}

TEST(FifoShim, ALineSplitAcrossWritesIsReassembled) {
  FifoFixture f;
  const std::string whole = line(::getpid(), "split", epoch_now() + 10);
  const int fd = ::open(f.fifo_path.path().c_str(), O_WRONLY | O_NONBLOCK);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, whole.data(), 20), 20);
  f.server.run_once();
  EXPECT_TRUE(f.rows().empty());
  ASSERT_EQ(::write(fd, whole.data() + 20, whole.size() - 20), static_cast<ssize_t>(whole.size() - 20));
  ::close(fd);
  f.server.run_once();
  ASSERT_EQ(f.rows().size(), 1u);
  EXPECT_EQ(f.rows()[0].scope, "split");
}

TEST(FifoShim, ALineLongerThanPipeBufIsRefusedAndItsNeighboursKept) {
  FifoFixture f;
  const pid_t me = ::getpid();
  const std::string huge = R"({"pid": 1, "scope_id": ")" + std::string(5000, 'x') +
                           R"(", "expiration_time": 1, "signal": 9})"
                           "\n";
  const std::string before = line(me, "before", epoch_now() + 10);
  const std::string after = line(me, "after", epoch_now() + 10);
  const int fd = ::open(f.fifo_path.path().c_str(), O_WRONLY | O_NONBLOCK);
  ASSERT_GE(fd, 0);
  for (const std::string* part : {&before, &huge, &after})
    ASSERT_EQ(::write(fd, part->data(), part->size()), static_cast<ssize_t>(part->size()));
  ::close(fd);
  f.server.run_once();
  EXPECT_EQ(f.rows().size(), 2u);
  EXPECT_EQ(f.shim->malformed_count(), 1u);
}

TEST(FifoShim, RequestsFromADeadPidAreIgnored) {
  FifoFixture f;
  const pid_t child = testing::fork_child([] {});
  ASSERT_TRUE(testing::exited_ok(testing::wait_child(child)));
  f.write_raw(line(child, "ghost", epoch_now() + 10));
  f.server.run_once();
  EXPECT_TRUE(f.rows().empty());
}

TEST(FifoShim, AValidRequestAfterANeighboursBrokenFragmentIsStillApplied) {
  FifoFixture f;
  // A writer's fragment with no newline, then another writer's whole request.
  f.write_raw("{\"version\": 1, \"pid\": 12");
  f.write_raw(line(::getpid(), "after-fragment", epoch_now() + 10));
  // An oversized fragment (more than PIPE_BUF, no newline), then a whole request.
  f.write_raw(std::string(5000, 'x'));
  f.write_raw(line(::getpid(), "after-overlong", epoch_now() + 10));
  f.server.run_once();
  std::set<std::string> scopes;
  for (const auto& row : f.rows()) scopes.insert(row.scope);
  EXPECT_EQ(scopes, (std::set<std::string>{"after-fragment", "after-overlong"}));
  EXPECT_EQ(f.shim->malformed_count(), 2u);
  EXPECT_EQ(f.shim->recovered_count(), 2u);
}

// Requests the server would never act on: they get no slot at all, so they cannot fill
// the table.
TEST(FifoShim, ARequestForAProcessTheServerWouldNeverSignalTakesNoSlot) {
  FifoFixture f;
  testing::LiveThread thread;
  std::vector<pid_t> refused{1, thread.tid()};  // init, a thread id
  pid_t other_user = 0;
  if (::geteuid() == 0) {
    other_user = testing::fork_child([] {
      if (::setuid(65534) == 0) std::this_thread::sleep_for(30s);
    });
    for (int i = 0; i < 1000; ++i) {  // until it has become another user
      struct stat st{};
      if (::stat(("/proc/" + std::to_string(other_user)).c_str(), &st) == 0 && st.st_uid == 65534) break;
      std::this_thread::sleep_for(1ms);
    }
    refused.push_back(other_user);
  }
  for (const pid_t pid : refused) f.write_raw(line(pid, "refused", epoch_now() - 1));
  f.server.run_once();
  EXPECT_TRUE(f.rows().empty());
  EXPECT_EQ(f.shim->refused_count(), refused.size());
  if (other_user != 0) {
    ::kill(other_user, SIGKILL);
    testing::wait_child(other_user);
  }
}

// A table full of live timers and a flood of acquires for new scopes: each round searches
// the full table once, not once per request, and reads for a bounded time, so a due timer
// is still reaped on time. (The bound is loose for a loaded machine; docs/security.md
// gives the measured lateness.)
TEST(FifoShim, AFloodOnAFullTableDoesNotStallTheWatchdog) {
  // Sanitized builds run many times slower: a smaller table and a wider bound there.
  constexpr std::uint64_t kCapacity = kSanitized ? 16384 : 65536;
  constexpr double kBoundMs = kSanitized ? 15000 : 1000;
  TempTable t(kCapacity);
  TempPath fifo_path{"shmtimer-fifo"};
  auto shim = std::make_shared<FifoShim>(t.table, fifo_path.path());
  TimerServer server(t.table);
  server.add_source(shim);
  // The victim takes its slot first, then waits until the table is full and the flood is
  // on before it arms 300 ms and hangs; it reports its deadline.
  int go[2], deadline_pipe[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(deadline_pipe), 0);
  Ready victim_ready;
  const pid_t victim = testing::fork_child([&] {
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    client.acquire("victim", SteadyClock::now() + 1h);
    victim_ready.signal();
    char c;
    if (::read(go[0], &c, 1) != 1) return;
    const auto deadline = SteadyClock::now() + 300ms;
    client.acquire("victim", deadline);
    const std::uint64_t ns = to_table_ns(deadline);
    if (::write(deadline_pipe[1], &ns, sizeof ns) != sizeof ns) return;
    std::this_thread::sleep_for(30s);
  });
  victim_ready.wait();
  ShmTimerClient filler(t.table, SIGKILL, kArmWithoutServer);
  try {
    for (int i = 0;; ++i) filler.acquire("fill-" + std::to_string(i), SteadyClock::now() + 1h);
  } catch (const Error& e) {
    ASSERT_EQ(e.code(), ErrorCode::kTableFull);
  }
  testing::HeldChild flooder([&] {  // forked before the server's threads: see HeldChild
    FifoClientOptions options;
    options.keep_open = true;
    FifoTimerClient client(fifo_path.path(), SIGKILL, options);
    const auto until = SteadyClock::now() + 3s;
    for (int i = 0; SteadyClock::now() < until; ++i) {
      try {
        client.acquire("flood-" + std::to_string(i), SteadyClock::now() + 1h);
      } catch (const Error&) {  // a full pipe: go on
      }
    }
  });
  server.start();
  flooder.go();
  std::this_thread::sleep_for(500ms);  // the flood is on
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  std::uint64_t deadline_ns = 0;
  ASSERT_EQ(::read(deadline_pipe[0], &deadline_ns, sizeof deadline_ns), static_cast<ssize_t>(sizeof deadline_ns));
  const int status = testing::wait_child(victim, 20s);
  const double late_ms = static_cast<double>(monotonic_now_ns() - deadline_ns) / 1e6;
  EXPECT_TRUE(testing::killed_by(status, SIGKILL));
  EXPECT_LT(late_ms, kBoundMs);
  std::printf("victim reaped %.1f ms after its deadline under the flood\n", late_ms);
  testing::wait_child(flooder.pid(), 20s);
  server.stop();
  EXPECT_GT(t.table->header().full_failures.load(), 0u);
  for (int fd : {go[0], go[1], deadline_pipe[0], deadline_pipe[1]}) ::close(fd);
}

TEST(FifoShim, AWorkerThatOverrunsAFifoTimerIsKilled) {
  FifoFixture f;
  // Both forked before the server's threads: see HeldChild.
  testing::HeldChild hung([&] {
    FifoTimerClient client(f.fifo_path.path());
    client.acquire("overrun", SteadyClock::now() + 100ms);
    std::this_thread::sleep_for(20s);
  });
  testing::HeldChild punctual([&] {
    FifoTimerClient client(f.fifo_path.path());
    {
      Expires guard(500ms, "punctual", client);
      std::this_thread::sleep_for(50ms);
    }
    std::this_thread::sleep_for(1s);  // alive past the released deadline: a release that did nothing is seen
  });
  f.server.start();
  hung.go();
  punctual.go();
  EXPECT_TRUE(testing::killed_by(testing::wait_child(hung.pid()), SIGKILL));
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(punctual.pid())));
  f.server.stop();
}

// Torch's own FileTimerServer removes the FIFO at its path (at start and at stop). The
// shim makes it again, once what was written to the old one is read, and serves on.
TEST(FifoShim, ARemovedFifoIsMadeAgainWithoutLosingWhatWasWrittenBefore) {
  FifoFixture f;
  f.server.start();
  const double later = epoch_now() + 3600;
  f.write_raw(line(::getpid(), "before-removal", later));
  ASSERT_EQ(::unlink(f.fifo_path.path().c_str()), 0);
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (f.shim->recreations() == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  struct stat st{};
  ASSERT_EQ(::lstat(f.fifo_path.path().c_str(), &st), 0) << "the removed FIFO was never made again";
  ASSERT_TRUE(S_ISFIFO(st.st_mode));
  f.write_raw(line(::getpid(), "after-removal", later));
  while (f.shim->request_count() < 2 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  f.server.stop();
  std::set<std::string> scopes;
  for (const auto& row : f.rows()) scopes.insert(row.scope);
  EXPECT_EQ(scopes, (std::set<std::string>{"before-removal", "after-removal"}));
  EXPECT_EQ(f.shim->recreations(), 1u);
  EXPECT_FALSE(f.shim->lost());
}

// A FIFO replaced by another file is another server's now: the shim reports it lost, and
// never removes it (not even when it is destroyed).
TEST(FifoShim, AFifoReplacedByAnotherServersIsReportedLostAndLeftAlone) {
  TempTable t;
  TempPath fifo_path{"shmtimer-fifo"};
  TimerServer server(t.table);
  auto shim = std::make_shared<FifoShim>(t.table, fifo_path.path());
  server.add_source(shim);
  server.start();
  // Another server's FIFO, put in place in one step: with an unlink and a mkfifo the
  // running shim could remake its own FIFO in between (it remakes a removed one).
  const std::string theirs_path = fifo_path.path().string() + ".theirs";
  ASSERT_EQ(::mkfifo(theirs_path.c_str(), 0600), 0);  // as torch's FileTimerServer does
  ASSERT_EQ(::rename(theirs_path.c_str(), fifo_path.path().c_str()), 0);
  struct stat theirs{};
  ASSERT_EQ(::lstat(fifo_path.path().c_str(), &theirs), 0);
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (!shim->lost() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(shim->lost());
  server.stop();
  shim.reset();
  struct stat after{};
  ASSERT_EQ(::lstat(fifo_path.path().c_str(), &after), 0) << "the other server's FIFO was removed";
  EXPECT_EQ(after.st_ino, theirs.st_ino);
}

TEST(FifoShim, TheServerIsNotBlockedWhileNoClientHasOpenedTheFifo) {
  FifoFixture f;
  for (int i = 0; i < 3; ++i) f.server.run_once();  // would hang if the open or a read blocked
  EXPECT_EQ(f.t.table->header().heartbeat_count.load(), 3u);
}

TEST(FifoShim, AFloodLosesNothing) {
  FifoFixture f;
  constexpr int kRequests = 100000;
  testing::HeldChild writer([&] {  // forked before the server's threads: see HeldChild
    FifoClientOptions options;
    options.keep_open = true;
    FifoTimerClient client(f.fifo_path.path(), SIGKILL, options);
    for (int i = 0; i < kRequests / 2; ++i) {
      const std::string scope = "flood-" + std::to_string(i % 16);
      client.acquire(scope, SteadyClock::now() + 1h);
      client.release(scope);
    }
    std::this_thread::sleep_for(200ms);  // stay alive until the server has read everything
  });
  f.server.start();
  writer.go();
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(writer.pid(), 120s)));
  f.server.stop();
  // Anything still in the pipe: each round reads for a bounded time, so it may take a few.
  for (int round = 0; round < 1000 && f.shim->request_count() < kRequests; ++round) f.server.run_once();
  EXPECT_EQ(f.shim->request_count(), static_cast<std::uint64_t>(kRequests));
  EXPECT_EQ(f.shim->malformed_count(), 0u);
}

// FileTimerServer.register_timers for a server hosted in Python: requests are taken as
// FIFO lines are, refusals and release included.
TEST(FifoShim, RegisteredRequestsAreTakenAsTheirFifoLinesWouldBe) {
  FifoFixture f;
  const pid_t child = testing::fork_child([] { std::this_thread::sleep_for(30s); });
  const double later = epoch_now() + 3600;
  f.shim->register_requests({{child, "kept", later, SIGTERM},
                             {child, "released", later, SIGKILL},
                             {0, "group", later, SIGKILL},
                             {1, "init", later, SIGKILL}});
  f.shim->register_requests({{child, "released", -1, 0}});
  const auto rows = f.rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].pid, child);
  EXPECT_EQ(rows[0].scope, "kept");
  EXPECT_EQ(rows[0].origin, layout::Origin::kFifo);
  EXPECT_EQ(rows[0].signal, SIGTERM);
  EXPECT_EQ(f.shim->malformed_count(), 1u);  // pid 0: not a valid request at all
  EXPECT_EQ(f.shim->refused_count(), 1u);    // pid 1: valid, but never a worker
  EXPECT_EQ(f.shim->request_count(), 4u);
  EXPECT_EQ(std::count(f.events.begin(), f.events.end(), "set timer"), 2);
  EXPECT_EQ(std::count(f.events.begin(), f.events.end(), "clear timer"), 1);
  EXPECT_EQ(testing::thrown_by([&] { f.shim->register_requests({{child, "\xff", later, SIGKILL}}); }).code,
            ErrorCode::kInvalidArgument);  // not UTF-8
  ::kill(child, SIGKILL);
  testing::wait_child(child);
}

// FileTimerServer.clear_timers: every armed timer of the named processes is disarmed,
// from the FIFO or the table; FIFO slots are given back, a table client keeps its slot;
// other processes' timers stand.
TEST(FifoShim, DisarmTimersOfDisarmsEveryTimerOfTheNamedProcessesOnly) {
  FifoFixture f;
  Ready armed;
  auto table_worker = [&](const char* scope) {
    return testing::fork_child([&, scope] {
      ShmTimerClient client(f.t.table, SIGKILL, kArmWithoutServer);
      client.acquire(scope, SteadyClock::now() + 1h);
      armed.signal();
      std::this_thread::sleep_for(30s);
    });
  };
  const pid_t cleared = table_worker("table-timer");
  armed.wait();
  const pid_t bystander = table_worker("bystander");
  armed.wait();
  f.shim->register_requests({{cleared, "fifo-timer", epoch_now() + 3600, SIGKILL}});
  EXPECT_EQ(f.shim->disarm_timers_of({cleared}), 2u);
  std::set<std::pair<std::string, bool>> left;
  for (const auto& row : f.rows()) left.emplace(row.scope, row.state == RowState::kArmed);
  EXPECT_EQ(left, (std::set<std::pair<std::string, bool>>{{"table-timer", false}, {"bystander", true}}));
  EXPECT_EQ(f.shim->disarm_timers_of({cleared}), 0u);  // nothing armed is left
  for (const pid_t pid : {cleared, bystander}) {
    ::kill(pid, SIGKILL);
    testing::wait_child(pid);
  }
}

// A log_event that throws is logged, never propagated: the requests it reports stand applied.
TEST(FifoShim, AnEventCallbackThatThrowsUndoesNoRequest) {
  TempTable t;
  TempPath fifo_path{"shmtimer-fifo"};
  int calls = 0;
  auto shim = std::make_shared<FifoShim>(t.table, fifo_path.path(), [&](std::string_view, const TimerEvent*) {
    ++calls;
    throw std::runtime_error("the log is full");
  });
  const pid_t child = testing::fork_child([] { std::this_thread::sleep_for(30s); });
  shim->register_requests({{child, "armed", epoch_now() + 3600, SIGKILL}});
  EXPECT_EQ(TableReader(t.table).rows().size(), 1u) << "the set timer was undone";
  EXPECT_EQ(shim->disarm_timers_of({child}), 1u);
  EXPECT_TRUE(TableReader(t.table).rows().empty()) << "the cleared timer is still armed";
  EXPECT_EQ(calls, 2);  // "set timer", "clear timer"
  ::kill(child, SIGKILL);
  testing::wait_child(child);
}

// A server hosted in Python sleeps until its next known deadline; a timer registered
// from the host's thread must wake it, as a table client's arm does, or a short hang is
// reaped only when the long sleep ends.
TEST(FifoShim, ARegisteredRequestWakesASleepingServer) {
  TempTable t;
  ServerOptions options;
  options.policy.max_interval = std::chrono::hours(1);
  options.dead_owner_sweep_interval = std::chrono::hours(1);
  TimerServer server(t.table, options);
  TempPath fifo_path{"shmtimer-fifo"};
  auto shim = std::make_shared<FifoShim>(t.table, fifo_path.path());
  server.add_source(shim);
  testing::HeldChild hung([] { std::this_thread::sleep_for(30s); });  // forked before the server's threads
  server.start();
  std::this_thread::sleep_for(50ms);  // the server has planned its hour-long sleep
  shim->register_requests({{hung.pid(), "short", epoch_now() + 0.1, SIGKILL}});
  EXPECT_TRUE(testing::killed_by(testing::wait_child(hung.pid(), 10s), SIGKILL))
      << "the registered timer did not wake the sleeping server";
  server.stop();
}

// register_requests and disarm_timers_of come from the host's thread while the watchdog
// drains the FIFO on its own: the shim serializes them (ThreadSanitizer checks the rest).
TEST(FifoShim, RequestsRegisteredWhileTheServerDrainsAreAllApplied) {
  FifoFixture f;
  constexpr int kEach = 2000;
  testing::HeldChild writer([&] {  // forked before the server's threads: see HeldChild
    FifoClientOptions options;
    options.keep_open = true;
    FifoTimerClient client(f.fifo_path.path(), SIGKILL, options);
    for (int i = 0; i < kEach / 2; ++i) {
      client.acquire("fifo", SteadyClock::now() + 1h);
      client.release("fifo");
    }
    std::this_thread::sleep_for(30s);  // killed once counted
  });
  f.server.start();
  writer.go();
  const double later = epoch_now() + 3600;
  for (int i = 0; i < kEach / 2; ++i) {
    f.shim->register_requests({{writer.pid(), "hosted", later, SIGKILL}});
    f.shim->register_requests({{writer.pid(), "hosted", -1, 0}});
    if (i % 100 == 0) f.shim->disarm_timers_of({writer.pid()});
  }
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (f.shim->request_count() < 2 * kEach && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  f.server.stop();
  EXPECT_EQ(f.shim->request_count(), static_cast<std::uint64_t>(2 * kEach));
  EXPECT_EQ(f.shim->malformed_count(), 0u);
  ::kill(writer.pid(), SIGKILL);
  testing::wait_child(writer.pid());
}

TEST(FifoShim, TheFifoIsRemovedWhenTheShimGoes) {
  TempTable t;
  TempPath p("shmtimer-fifo");
  {
    FifoShim shim(t.table, p.path());
    struct stat st{};
    ASSERT_EQ(::lstat(p.path().c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  EXPECT_FALSE(std::filesystem::exists(p.path()));
}

TEST(FifoShim, AnOldFifoIsReplacedButARegularFileOrSymlinkIsRefused) {
  TempTable t;
  TempPath p("shmtimer-fifo");
  ASSERT_EQ(::mkfifo(p.path().c_str(), 0600), 0);
  EXPECT_NO_THROW(FifoShim(t.table, p.path()));

  std::ofstream(p.path()) << "precious data";
  try {
    FifoShim shim(t.table, p.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsafeFile);
    EXPECT_NE(std::string(e.what()).find("regular file"), std::string::npos) << e.what();
  }
  std::string content;
  std::getline(std::ifstream(p.path()), content);
  EXPECT_EQ(content, "precious data");
  std::filesystem::remove(p.path());

  TempPath target("shmtimer-target");
  std::ofstream(target.path()) << "x";
  std::filesystem::create_symlink(target.path(), p.path());
  const auto symlink = testing::thrown_by([&] { FifoShim(t.table, p.path()); });
  EXPECT_EQ(symlink.code, ErrorCode::kUnsafeFile);
  EXPECT_NE(symlink.message.find("a symlink"), std::string::npos) << symlink.message;
  EXPECT_TRUE(std::filesystem::is_symlink(p.path()));
}

TEST(FifoTimerClient, NoServerIsAClearError) {
  FifoClientOptions fast;
  fast.open_attempts = 2;
  fast.open_retry_interval = 1ms;
  TempPath missing("shmtimer-nofifo");
  FifoTimerClient nobody(missing.path(), SIGKILL, fast);
  try {
    nobody.acquire("x", SteadyClock::now() + 1s);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNoServer);
    EXPECT_NE(std::string(e.what()).find("no FileTimerServer"), std::string::npos);
  }
  TempPath unread("shmtimer-unread");
  ASSERT_EQ(::mkfifo(unread.path().c_str(), 0600), 0);  // a FIFO with no reader: ENXIO
  FifoTimerClient no_reader(unread.path(), SIGKILL, fast);
  try {
    no_reader.release("x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNoServer);
    EXPECT_EQ(e.sys_errno(), ENXIO);
  }
}

TEST(FifoTimerClient, EnforcesThePipeBufLimit) {
  FifoFixture f;
  FifoTimerClient client(f.fifo_path.path());
  try {
    client.acquire(std::string(5000, 's'), SteadyClock::now() + 1s);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("PIPE_BUF"), std::string::npos);
  }
}

TEST(FifoTimerClient, AKeptOpenFifoIsReopenedAfterAServerRestart) {
  TempTable t;
  TempPath p("shmtimer-fifo");
  FifoClientOptions options;
  options.keep_open = true;
  FifoTimerClient client(p.path(), SIGKILL, options);
  {
    FifoShim first(t.table, p.path());
    client.acquire("a", SteadyClock::now() + 1h);
    first.drain();
    EXPECT_EQ(first.request_count(), 1u);
  }
  FifoShim second(t.table, p.path());
  client.acquire("b", SteadyClock::now() + 1h);  // the old descriptor's reader is gone
  second.drain();
  EXPECT_EQ(second.request_count(), 1u);
}

}  // namespace
}  // namespace shmtimer

namespace shmtimer {
namespace {

// The shim learns a sender's start time and verdict from /proc once, and forgets them
// when the sender exits (src/fifo/fifo_senders.hpp).
TEST(FifoSenders, AKnownSenderIsJudgedFromMemoryUntilItExits) {
  detail::FifoSenders senders(/*any_uid=*/false);
  const pid_t child = testing::fork_child([] { std::this_thread::sleep_for(30s); });
  const auto first = senders.judge(child);
  EXPECT_FALSE(first.refusal);
  EXPECT_EQ(first.identity, testing::identity_of(child));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(senders.judge(child).identity, first.identity);
  EXPECT_EQ(senders.lookups_from_proc(), 1u);
  EXPECT_EQ(senders.known(), 1u);

  ::kill(child, SIGKILL);
  testing::wait_child(child);
  senders.forget_exited();
  EXPECT_EQ(senders.known(), 0u);
  EXPECT_EQ(senders.judge(child).refusal, FifoRefusal::kNoProcess);  // the pid is free now
  EXPECT_EQ(senders.judge(1).refusal, FifoRefusal::kNotAWorker);
  EXPECT_EQ(senders.judge(0).refusal, FifoRefusal::kNotAWorker);
}

}  // namespace
}  // namespace shmtimer
