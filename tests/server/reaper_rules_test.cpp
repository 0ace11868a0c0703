// The reaper's rules, one at a time, through a ProcessControl whose answers the test
// scripts (FakeProcesses records every request it is asked): what a kill asks of the
// kernel for each kind of timer, and what is freed when the target turns out gone.
#include <gtest/gtest.h>

#include "process_control.hpp"
#include "server_support.hpp"

namespace shmtimer {
namespace {

using namespace testing;

TEST(ReaperRules, ATableTimersKillRequiresTheServersUidAndTheTableMapped) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  TimerServer server(t.table, fake_options(fake));
  plant(*t.table, 4242, "x", monotonic_now_ns() - kMicro, SIGKILL, 77);
  server.run_once();
  ASSERT_EQ(fake->requests.size(), 1u);
  const SignalRequest& r = fake->requests[0];
  EXPECT_EQ(r.identity, 77u);
  EXPECT_EQ(r.required_uid, std::optional<uid_t>(::getuid()));
  struct stat st{};
  ASSERT_EQ(::fstat(t.table->fd(), &st), 0);
  ASSERT_TRUE(r.required_mapping.has_value());
  EXPECT_EQ(r.required_mapping->dev, st.st_dev);
  EXPECT_EQ(r.required_mapping->ino, st.st_ino);
}

// The shim checked the sender's uid at receipt, but a process can change uid after it:
// the kill asks again. It asks no mapping: the shim arms for processes that never map.
TEST(ReaperRules, AFifoTimersKillRequiresTheServersUidAtSignalTimeAndNoMapping) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  TimerServer server(t.table, fake_options(fake));
  plant(*t.table, 4242, "x", monotonic_now_ns() - kMicro, SIGKILL, 77, layout::Origin::kFifo);
  server.run_once();
  ASSERT_EQ(fake->requests.size(), 1u);
  EXPECT_EQ(fake->requests[0].required_uid, std::optional<uid_t>(::getuid()));
  EXPECT_FALSE(fake->requests[0].required_mapping.has_value());
}

// What the kill found decides what is freed: the slots of that identity, and only those.
// Another process of the same pid (a newcomer, identity 88) keeps its armed timer.
void a_kill_that_finds_its_target_gone_frees_only_its_identity(SignalOutcome found) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {88, ::getuid()};
  fake->scripted = {found};
  TimerServer server(t.table, fake_options(fake));
  const auto now = monotonic_now_ns();
  plant(*t.table, 4242, "old", now - kMicro, SIGKILL, 77);
  plant(*t.table, 4242, "old-idle", now + 3600 * kSecond, SIGKILL, 77);
  plant(*t.table, 4242, "newcomer", now + 3600 * kSecond, SIGKILL, 88);
  server.run_once_at(now);
  const auto rows = rows_of(t.table, 4242);
  ASSERT_EQ(rows.size(), 1u) << "the gone identity's slots were not all freed, or the newcomer's was";
  EXPECT_EQ(rows[0].scope, "newcomer");
  EXPECT_EQ(rows[0].identity, 88u);
  EXPECT_EQ(rows[0].state, RowState::kArmed);
}

TEST(ReaperRules, AKillThatFindsNoProcessFreesOnlyThatIdentitysSlots) {
  a_kill_that_finds_its_target_gone_frees_only_its_identity(SignalOutcome::kNoProcess);
}

TEST(ReaperRules, AKillThatFindsThePidReusedFreesOnlyTheOldIdentitysSlots) {
  a_kill_that_finds_its_target_gone_frees_only_its_identity(SignalOutcome::kIdentityMismatch);
}

// A kill that could not look (kUnknown) frees and disarms nothing, and is tried again.
TEST(ReaperRules, AKillThatCouldNotLookKeepsEveryTimerAndTriesAgain) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  fake->scripted = {SignalOutcome::kUnknown};
  TimerServer server(t.table, fake_options(fake));
  const auto now = monotonic_now_ns();
  plant(*t.table, 4242, "hung", now - kMicro, SIGKILL, 77);
  const RoundResult first = server.run_once_at(now);
  EXPECT_EQ(first.signalled, 0u);
  EXPECT_NE(first.retry_at_ns, 0u);
  ASSERT_EQ(rows_of(t.table, 4242).size(), 1u);
  EXPECT_EQ(rows_of(t.table, 4242)[0].state, RowState::kArmed);
  std::uint64_t unknown = 0;
  for (const auto& counter : t.table->header().liveness_unknown) unknown += counter.load();
  EXPECT_EQ(unknown, 1u);
  EXPECT_EQ(server.run_once_at(first.retry_at_ns).signalled, 1u);  // the retry, answered kSent
}

// A capacity that is not a multiple of 64 leaves bits in the last bitmap word that name
// no slot. Set, by a stray writer, they must never send a scan past the last slot.
TEST(ReaperRules, OccupancyBitsPastTheCapacityAreNeverVisited) {
  TempTable t(70);
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  TimerServer server(t.table, fake_options(fake));
  plant(*t.table, 4242, "x", monotonic_now_ns() + 3600 * kSecond, SIGKILL, 77);
  t.table->bitmap_word(1).store(~std::uint64_t{0});  // bits 64..127; slots stop at 69
  for (int i = 0; i < 3; ++i) server.run_once_at(monotonic_now_ns() + i * 2 * kSecond);  // scans and sweeps
  ASSERT_EQ(rows_of(t.table, 4242).size(), 1u);  // and the one real timer is as it was
  EXPECT_EQ(rows_of(t.table, 4242)[0].state, RowState::kArmed);
}

}  // namespace
}  // namespace shmtimer
