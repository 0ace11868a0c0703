// The shared-memory client: acquire/re-acquire/release, handles, guards, errors.
#include <gtest/gtest.h>

#include "shmtimer/error.hpp"
#include "self_identity.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "shmtimer/timer_server.hpp"
#include "slot_ops.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

using shmtimer::testing::kArmWithoutServer;

using namespace std::chrono_literals;
using testing::TempTable;

// The armed or idle rows of this process, by scope.
std::map<std::string, TimerRow> my_rows(const std::shared_ptr<Table>& table) {
  std::map<std::string, TimerRow> rows;
  for (auto& row : TableReader(table).rows(true))
    if (row.pid == ::getpid() && row.state != RowState::kFree) rows.emplace(row.scope, row);
  return rows;
}

// Deadlines are stored in whole microseconds (docs/table-format.md).
Deadline at_us(std::uint64_t us) { return from_table_ns(us * 1000); }
std::uint64_t us_of(std::uint64_t ns) { return ns / 1000; }

TEST(ShmTimerClient, AcquireWritesTheSlot) {
  TempTable t;
  ShmTimerClient client(t.table, SIGTERM, kArmWithoutServer);
  client.acquire("train.py#42", at_us(123456789));
  const auto rows = my_rows(t.table);
  ASSERT_EQ(rows.size(), 1u);
  const auto& row = rows.at("train.py#42");
  EXPECT_EQ(row.state, RowState::kArmed);
  EXPECT_EQ(us_of(row.deadline_ns), 123456789u);
  EXPECT_EQ(row.signal, SIGTERM);
  EXPECT_EQ(row.identity, current_identity());
  EXPECT_TRUE(row.pid_alive);
  EXPECT_EQ(row.origin, layout::Origin::kTable);
}

TEST(ShmTimerClient, ReacquireUpdatesTheSameSlotInPlace) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  client.acquire("scope", at_us(1000));
  const auto first = my_rows(t.table).at("scope").slot;
  client.acquire("scope", at_us(2000));
  const auto rows = my_rows(t.table);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows.at("scope").slot, first);
  EXPECT_EQ(us_of(rows.at("scope").deadline_ns), 2000u);  // only the newest deadline counts
  EXPECT_EQ(rows.at("scope").acquires, 2u);
}

TEST(ShmTimerClient, ReleaseDisarmsAndKeepsTheSlotForReuse) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  client.acquire("scope", at_us(1000));
  client.release("scope");
  auto rows = my_rows(t.table);
  EXPECT_EQ(rows.at("scope").state, RowState::kIdle);
  EXPECT_TRUE(TableReader(t.table).rows().empty());  // no armed timers
  client.acquire("scope", at_us(3000));
  EXPECT_EQ(my_rows(t.table).at("scope").slot, rows.at("scope").slot);
}

TEST(ShmTimerClient, ReleasingAnUnknownScopeDoesNothing) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  EXPECT_NO_THROW(client.release("never-acquired"));
  EXPECT_TRUE(my_rows(t.table).empty());
}

TEST(ShmTimerClient, ScopesAreDistinctKeys) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  client.acquire("a", at_us(1));
  client.acquire("b", at_us(2));
  client.acquire("", at_us(3));
  client.acquire(std::string("a\0b", 3), at_us(4));
  const auto rows = my_rows(t.table);
  EXPECT_EQ(rows.size(), 4u);
  EXPECT_EQ(us_of(rows.at("a").deadline_ns), 1u);
  EXPECT_EQ(us_of(rows.at(std::string("a\0b", 3)).deadline_ns), 4u);
}

TEST(ShmTimerClient, ScopeOf256BytesFitsAnd257IsAnError) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  const std::string fits(256, 's');
  client.acquire(fits, at_us(5));
  EXPECT_EQ(my_rows(t.table).at(fits).scope, fits);  // never truncated
  try {
    client.acquire(std::string(257, 's'), at_us(5));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kScopeTooLong);
    EXPECT_NE(std::string(e.what()).find("257 bytes; the limit is 256"), std::string::npos) << e.what();
  }
  EXPECT_EQ(testing::thrown_by([&] { client.release(std::string(300, 'x')); }).code, ErrorCode::kScopeTooLong);
  EXPECT_EQ(my_rows(t.table).size(), 1u);
}

TEST(ShmTimerClient, FullTableIsAClearErrorAndCounted) {
  TempTable t(4);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  for (int i = 0; i < 4; ++i) client.acquire("s" + std::to_string(i), at_us(9));
  try {
    client.acquire("one-too-many", at_us(9));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTableFull);
    EXPECT_NE(std::string(e.what()).find("all 4 slots"), std::string::npos) << e.what();
  }
  EXPECT_EQ(t.table->header().full_failures.load(), 1u);
  client.acquire("s2", at_us(10));  // existing scopes still work
  EXPECT_EQ(us_of(my_rows(t.table).at("s2").deadline_ns), 10u);
}

TEST(ShmTimerClient, FullTableReclaimsSlotsOfDeadProcesses) {
  TempTable t(4);
  const pid_t child = testing::fork_child([&] {
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    for (int i = 0; i < 4; ++i) client.acquire("child" + std::to_string(i), at_us(1ULL << 45));
  });
  ASSERT_TRUE(testing::exited_ok(testing::wait_child(child)));
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  EXPECT_NO_THROW(client.acquire("mine", at_us(1)));
  EXPECT_EQ(my_rows(t.table).size(), 1u);
}

TEST(ShmTimerClient, ForgetFreesTheSlot) {
  TempTable t(2);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  client.acquire("a", at_us(1));
  client.acquire("b", at_us(1));
  EXPECT_TRUE(client.forget("a"));
  EXPECT_FALSE(client.forget("a"));
  client.acquire("c", at_us(1));
  EXPECT_EQ(my_rows(t.table).size(), 2u);
  EXPECT_EQ(t.table->header().retired_acquires.load(), 1u);
}

TEST(ShmTimerClient, RejectsASignalAboveSigrtmaxAndAReadOnlyTable) {
  TempTable t;
  const auto above = testing::thrown_by([&] { ShmTimerClient(t.table, SIGRTMAX + 1, kArmWithoutServer); });
  EXPECT_EQ(above.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(above.message.find("above SIGRTMAX"), std::string::npos) << above.message;
  OpenOptions ro;
  ro.read_only = true;
  const auto read_only =
      testing::thrown_by([&] { ShmTimerClient(Table::open(t.file.path(), ro), SIGKILL, kArmWithoutServer); });
  EXPECT_EQ(read_only.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(read_only.message.find("needs a writable table"), std::string::npos) << read_only.message;
  EXPECT_NO_THROW(ShmTimerClient(t.table, 0, kArmWithoutServer));  // signal 0: a timer that never kills
  EXPECT_NO_THROW(ShmTimerClient(t.table, -1, kArmWithoutServer));
}

TEST(Timer, ArmAndDisarmWriteTheBoundSlot) {
  TempTable t;
  ShmTimerClient client(t.table, SIGUSR1, kArmWithoutServer);
  auto timer = client.timer("hot-loop");
  timer.arm(at_us(777));
  EXPECT_EQ(us_of(my_rows(t.table).at("hot-loop").deadline_ns), 777u);
  EXPECT_EQ(my_rows(t.table).at("hot-loop").signal, SIGUSR1);
  timer.disarm();
  EXPECT_EQ(my_rows(t.table).at("hot-loop").state, RowState::kIdle);
  // The handle and the scope API share the key.
  client.acquire("hot-loop", at_us(888));
  EXPECT_EQ(my_rows(t.table).size(), 1u);
  timer.disarm();
  EXPECT_EQ(my_rows(t.table).at("hot-loop").state, RowState::kIdle);
}

TEST(Timer, AForkedChildGetsItsOwnSlot) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  auto timer = client.timer("forked");
  timer.arm(at_us(100));
  const pid_t child = testing::fork_child([&] {
    timer.disarm();  // the parent's timer, not the child's: must stay armed
    timer.arm(at_us(200));
    client.acquire("child-only", at_us(300));
  });
  ASSERT_TRUE(testing::exited_ok(testing::wait_child(child)));
  std::map<pid_t, std::map<std::string, std::uint64_t>> by_pid;
  for (auto& row : TableReader(t.table).rows(true))
    if (row.state != RowState::kFree) by_pid[row.pid][row.scope] = us_of(row.deadline_ns);
  EXPECT_EQ(by_pid[::getpid()].size(), 1u);
  EXPECT_EQ(by_pid[::getpid()]["forked"], 100u);
  EXPECT_EQ(by_pid[child]["forked"], 200u);
  EXPECT_EQ(by_pid[child]["child-only"], 300u);
}

TEST(ScopeCache, AForkedChildNeverWritesItsParentsCachedSlot) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  client.acquire("cached", at_us(100));  // now in this thread's cache
  client.acquire("cached", at_us(101));
  const pid_t child = testing::fork_child([&] {
    client.acquire("cached", at_us(200));
    client.release("cached");
    client.acquire("cached", at_us(201));
  });
  ASSERT_TRUE(testing::exited_ok(testing::wait_child(child)));
  std::map<pid_t, std::uint64_t> deadline_by_pid;
  for (auto& row : TableReader(t.table).rows(true))
    if (row.scope == "cached") deadline_by_pid[row.pid] = us_of(row.deadline_ns);
  EXPECT_EQ(deadline_by_pid[::getpid()], 101u);
  EXPECT_EQ(deadline_by_pid[child], 201u);
}

TEST(ScopeCache, AFreedAndReclaimedSlotIsNotMistakenForTheOldKey) {
  // A short scope (the general lookup) and scopes of the hot path's lengths (8-32 bytes).
  for (const auto& [first, second] : {std::pair<std::string, std::string>{"first", "second"},
                                      {"train.py#101", "train.py#202"},
                                      {"/work/job/train.py#first", "/work/job/train.py#other"}}) {
    SCOPED_TRACE(first);
    TempTable t(1);  // one slot: the next key must reuse it
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    client.acquire(first, at_us(1));
    ASSERT_TRUE(client.forget(first));
    client.acquire(second, at_us(2));
    client.release(first);  // a cached lookup of `first` must not touch `second`
    EXPECT_EQ(us_of(my_rows(t.table).at(second).deadline_ns), 2u);
    // Nor may an arm through that entry: the one slot is `second`'s, so `first` finds none.
    EXPECT_EQ(testing::thrown_by([&] { client.acquire(first, at_us(3)); }).code, ErrorCode::kTableFull);
    EXPECT_EQ(us_of(my_rows(t.table).at(second).deadline_ns), 2u);
    EXPECT_EQ(my_rows(t.table).count(first), 0u);
  }
}

TEST(ScopeCache, ScopesThatDifferInAnyOneByteAreNeverConfused) {
  TempTable t(8);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  // Every length the cache handles differently (under 8, 8-15, 16-32, 33-40, longer) and
  // every byte position: the two scopes share a cache set whenever the byte is not among
  // the first or last eight, so only the byte compare tells them apart.
  for (std::size_t len = 1; len <= 48; ++len)
    for (std::size_t at = 0; at < len; ++at) {
      const std::string a(len, 'a');
      std::string b = a;
      b[at] = 'b';
      client.acquire(a, at_us(10));
      client.acquire(b, at_us(20));
      client.acquire(a, at_us(11));  // through the cache
      client.acquire(b, at_us(21));
      const auto rows = my_rows(t.table);
      ASSERT_EQ(us_of(rows.at(a).deadline_ns), 11u) << "length " << len << ", byte " << at;
      ASSERT_EQ(us_of(rows.at(b).deadline_ns), 21u) << "length " << len << ", byte " << at;
      ASSERT_TRUE(client.forget(a) && client.forget(b));
    }
}

TEST(ScopeCache, ScopesThatShareACacheSetStayDistinct) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  // Many scopes through a 4-entry cache, long and short, twice over.
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < 40; ++i) {
      const std::string scope = (i % 2 ? std::string(60, 'L') : std::string("s")) + std::to_string(i);
      client.acquire(scope, at_us(static_cast<std::uint64_t>(1000 * round + i + 1)));
    }
  const auto rows = my_rows(t.table);
  ASSERT_EQ(rows.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    const std::string scope = (i % 2 ? std::string(60, 'L') : std::string("s")) + std::to_string(i);
    EXPECT_EQ(us_of(rows.at(scope).deadline_ns), static_cast<std::uint64_t>(1000 + i + 1)) << scope;
  }
}

TEST(Expires, AcquiresForTheBlockAndReleasesAfter) {
  TempTable t;
  auto client = std::make_shared<ShmTimerClient>(t.table, SIGKILL, kArmWithoutServer);
  const auto before = monotonic_now_ns();
  {
    Expires guard(10s, "block", client);
    const auto row = my_rows(t.table).at("block");
    EXPECT_EQ(row.state, RowState::kArmed);
    EXPECT_GE(row.deadline_ns, before + 10'000'000'000ULL);
    EXPECT_LE(row.deadline_ns, monotonic_now_ns() + 10'000'000'000ULL);
  }
  EXPECT_EQ(my_rows(t.table).at("block").state, RowState::kIdle);
}

TEST(Expires, ReleasesWhenTheBlockThrows) {
  TempTable t;
  auto client = std::make_shared<ShmTimerClient>(t.table, SIGKILL, kArmWithoutServer);
  try {
    Expires guard(10s, "throws", client);
    throw std::runtime_error("boom");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(my_rows(t.table).at("throws").state, RowState::kIdle);
}

void recurse(const std::shared_ptr<TimerClient>& client, int depth, std::vector<std::string>& scopes) {
  Expires guard(std::chrono::seconds(depth + 1), {}, client);  // the default scope: this line
  scopes.emplace_back(guard.scope());
  if (depth > 0) recurse(client, depth - 1, scopes);
}

TEST(Expires, DefaultScopeIsFileAndLineAndRecursionReacquiresIt) {
  TempTable t;
  auto client = std::make_shared<ShmTimerClient>(t.table, SIGKILL, kArmWithoutServer);
  std::vector<std::string> scopes;
  recurse(client, 3, scopes);
  ASSERT_EQ(scopes.size(), 4u);
  for (const auto& s : scopes) EXPECT_EQ(s, scopes[0]);
  EXPECT_NE(scopes[0].find("client_test.cpp#"), std::string::npos) << scopes[0];
  const auto rows = my_rows(t.table);
  ASSERT_EQ(rows.size(), 1u);  // one key, re-acquired at each level
  EXPECT_EQ(rows.at(scopes[0]).acquires, 4u);
}

TEST(Configure, ExpiresWithoutAClientIsAClearError) {
  configure(nullptr);
  try {
    Expires guard(1s, "x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotConfigured);
    EXPECT_NE(std::string(e.what()).find("configure"), std::string::npos);
  }
}

TEST(Configure, ExpiresUsesTheConfiguredClient) {
  TempTable t;
  configure(std::make_shared<ShmTimerClient>(t.table, SIGKILL, kArmWithoutServer));
  {
    Expires guard(1s, "configured");
  }
  EXPECT_EQ(my_rows(t.table).count("configured"), 1u);
  configure(nullptr);
}

// A server counts as live from the moment it holds the table, not from its first round:
// a worker started right after shmtimerd must not be refused while the server sets up.
TEST(ShmTimerClient, RequireServerCountsAServerLiveBeforeItsFirstRound) {
  TempTable t;
  TimerServer server(t.table);  // holds the table; no round has run
  ShmTimerClient client(t.table, SIGKILL, true);
  EXPECT_NO_THROW(client.acquire("early", SteadyClock::now() + 10s));
  EXPECT_EQ(my_rows(t.table).at("early").state, RowState::kArmed);
}

// require_server: no live server, no timer (PyTorch's client fails without a server).
// Liveness is the heartbeat, looked at again at most every 100 ms.
TEST(ShmTimerClient, RequireServerRefusesATableNoLiveServerHolds) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, true);
  const auto expect_refused = [&](const std::string& scope) {
    try {
      client.acquire(scope, SteadyClock::now() + 10s);
      ADD_FAILURE() << scope << ": armed with no live server";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kNoServer) << e.what();
      EXPECT_NE(std::string(e.what()).find("no live server"), std::string::npos) << e.what();
    }
    EXPECT_EQ(my_rows(t.table).count(scope), 0u);
  };
  expect_refused("never-served");
  {
    TimerServer server(t.table);
    server.run_once();  // one heartbeat
    client.acquire("served", SteadyClock::now() + 10s);
    client.release("served");
  }  // the server is gone (server_pid 0)
  std::this_thread::sleep_for(150ms);  // past the 100 ms the last look is trusted
  expect_refused("after-the-server");
  // A server that died without a word (SIGKILL): a pid, and a heartbeat long stale.
  auto& header = t.table->header();
  header.server_pid.store(::getpid());
  header.server_max_interval_ms.store(100);
  header.heartbeat_mono_ns.store(monotonic_now_ns() - 60 * 1'000'000'000ULL);
  expect_refused("stale-heartbeat");
  ShmTimerClient opted_out(t.table, SIGKILL, false);
  opted_out.acquire("opted-out", SteadyClock::now() + 10s);
  EXPECT_EQ(my_rows(t.table).at("opted-out").state, RowState::kArmed);
}

// The default requires a server, and a server's stop is seen by the very next arm, through
// the hot paths too (a scope already in the cache, a bound Timer): no 100 ms of trust.
TEST(ShmTimerClient, ByDefaultTheNextArmAfterTheServerStopsIsRefusedOnTheHotPathToo) {
  TempTable t;
  ShmTimerClient client(t.table);  // require_server, by default
  EXPECT_TRUE(client.require_server());
  auto server = std::make_unique<TimerServer>(t.table);
  server->run_once();
  client.acquire("cached", SteadyClock::now() + 10s);
  client.release("cached");
  auto timer = client.timer("bound");
  timer.arm_after(10s);
  timer.disarm();
  for (const bool destroyed : {false, true}) {
    // A stop (a Python agent's ShmTimerServer.stop()), then the end of the server, as
    // shmtimerd's on SIGTERM or on a deleted table.
    if (destroyed)
      server.reset();
    else
      server->stop();
    EXPECT_EQ(testing::thrown_by([&] { client.acquire("cached", SteadyClock::now() + 10s); }).code,
              ErrorCode::kNoServer);
    EXPECT_EQ(testing::thrown_by([&] { timer.arm_after(10s); }).code, ErrorCode::kNoServer);
    EXPECT_EQ(my_rows(t.table).at("cached").state, RowState::kIdle);
    EXPECT_EQ(my_rows(t.table).at("bound").state, RowState::kIdle);
    if (destroyed) break;
    server->start();  // serving again: the same arms are taken
    EXPECT_NO_THROW(client.acquire("cached", SteadyClock::now() + 10s));
    EXPECT_NO_THROW(timer.arm_after(10s));
    client.release("cached");
    timer.disarm();
  }
}

// Guards hold the configured client by pointer: configure() keeps every client it was
// given, so a guard whose client was replaced meanwhile still releases through it.
TEST(Configure, AGuardOutlivesTheConfigureThatReplacedItsClient) {
  TempTable first, second;
  configure(std::make_shared<ShmTimerClient>(first.table, SIGKILL, kArmWithoutServer));
  {
    Expires guard(10s, "outlives");
    // The first client has no other owner now.
    configure(std::make_shared<ShmTimerClient>(second.table, SIGKILL, kArmWithoutServer));
    EXPECT_EQ(my_rows(first.table).at("outlives").state, RowState::kArmed);
  }
  EXPECT_EQ(my_rows(first.table).at("outlives").state, RowState::kIdle);
  EXPECT_EQ(my_rows(second.table).count("outlives"), 0u);
  configure(nullptr);
}

// A guard copies its scope (inline up to 64 bytes): the caller's string may be a
// temporary that is gone when the guard releases.
TEST(Expires, ATemporaryScopeOfAnyLengthIsReleasedUnderItsOwnName) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  for (const std::size_t length :
       {std::size_t{5}, Expires::kInlineScopeBytes, Expires::kInlineScopeBytes + 1, std::size_t{256}}) {
    const std::string name(length, 'q');
    {
      Expires guard(10s, std::string(name.data(), name.size()), client);  // the temporary dies here
      const std::string reuse(name.size(), 'x');  // likely in the temporary's freed buffer (ASan: use after free)
      EXPECT_EQ(guard.scope(), name);
    }
    EXPECT_EQ(my_rows(t.table).at(name).state, RowState::kIdle) << length;
  }
}

TEST(SlotOps, LookupsFindKeysPlacedFarFromHome) {
  // A tiny table at full load forces long probe sequences.
  TempTable t(16);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  for (int i = 0; i < 16; ++i) client.acquire("k" + std::to_string(i), at_us(static_cast<std::uint64_t>(i + 1)));
  for (int i = 0; i < 16; ++i) client.acquire("k" + std::to_string(i), at_us(static_cast<std::uint64_t>(i + 100)));
  const auto rows = my_rows(t.table);
  ASSERT_EQ(rows.size(), 16u);
  for (int i = 0; i < 16; ++i)
    EXPECT_EQ(us_of(rows.at("k" + std::to_string(i)).deadline_ns), static_cast<std::uint64_t>(i + 100));
}

// Release frees (torch's server forgets a released timer): with recycling on, a new
// scope per step holds a bounded number of slots, and an armed slot is never given back.
TEST(Recycling, ANewScopePerStepStaysWithinItsBoundAndAnArmedTimerStands) {
  TempTable t(64);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  client.recycle_idle_slots(16);
  client.acquire("hung", at_us(1ULL << 45));
  std::size_t most = 0;
  for (int i = 0; i < 5000; ++i) {  // 5000 scopes through a 64-slot table
    const std::string scope = "step-" + std::to_string(i);
    client.acquire(scope, at_us(1ULL << 44));
    client.release(scope);
    if (i % 97 == 0) most = std::max(most, my_rows(t.table).size());
  }
  EXPECT_LE(most, 17u);  // `keep` claims, plus the one being made
  const auto rows = my_rows(t.table);
  ASSERT_TRUE(rows.count("hung"));
  EXPECT_EQ(rows.at("hung").state, RowState::kArmed);
  EXPECT_EQ(us_of(rows.at("hung").deadline_ns), 1ULL << 45);
}

// Without recycling (the default) released slots stay claimed: the same loop fills the
// table, as before.
TEST(Recycling, IsOffByDefaultSoReleasedSlotsStayClaimed) {
  TempTable t(64);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  const auto thrown = testing::thrown_by([&] {
    for (int i = 0; i < 100; ++i) {
      client.acquire("step-" + std::to_string(i), at_us(1ULL << 44));
      client.release("step-" + std::to_string(i));
    }
  });
  EXPECT_EQ(thrown.code, ErrorCode::kTableFull);
  EXPECT_GE(t.table->header().full_failures.load(), 1u);
}

// A handle whose idle slot was given back arms again (on a new slot) and its timer holds.
TEST(Recycling, AHandleWhoseIdleSlotWasGivenBackArmsOnANewSlot) {
  TempTable t(64);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  client.recycle_idle_slots(4);
  Timer handle = client.timer("handle");
  for (int i = 0; i < 10; ++i) client.acquire("other-" + std::to_string(i), at_us(1ULL << 44));  // kept: armed
  for (int i = 0; i < 10; ++i) client.release("other-" + std::to_string(i));
  for (int i = 0; i < 10; ++i) client.acquire("more-" + std::to_string(i), at_us(1ULL << 44));  // recycles
  handle.arm(at_us(1ULL << 45));
  const auto rows = my_rows(t.table);
  ASSERT_TRUE(rows.count("handle"));
  EXPECT_EQ(rows.at("handle").state, RowState::kArmed);
  EXPECT_EQ(us_of(rows.at("handle").deadline_ns), 1ULL << 45);
}

// A forked child inherits the client's list of claims, never its parent's slots: the
// child's recycling gives back only slots it claimed itself.
TEST(Recycling, AForkedChildNeverGivesBackItsParentsSlots) {
  TempTable t(256);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  client.recycle_idle_slots(4);
  for (int i = 0; i < 3; ++i) {
    client.acquire("parent-" + std::to_string(i), at_us(1ULL << 44));
    client.release("parent-" + std::to_string(i));
  }
  const pid_t child = testing::fork_child([&] {
    for (int i = 0; i < 40; ++i) {
      client.acquire("child-" + std::to_string(i), at_us(1ULL << 44));
      client.release("child-" + std::to_string(i));
    }
  });
  ASSERT_TRUE(testing::exited_ok(testing::wait_child(child)));
  const auto rows = my_rows(t.table);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(rows.count("parent-" + std::to_string(i))) << i;
}

}  // namespace
}  // namespace shmtimer
