// The idle policy as a pure function: no sleeping in these tests.
#include <gtest/gtest.h>

#include "shmtimer/scan_policy.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;
constexpr std::uint64_t kMs = 1'000'000;

ScanPolicy policy() { return {50us, 10ms}; }

TEST(ScanPolicy, DefaultsMatchTheDocumentation) {
  EXPECT_EQ(ScanPolicy{}.spin, 50us);
  EXPECT_EQ(ScanPolicy{}.max_interval, 100ms);
  EXPECT_EQ(ScanPolicy{}.max_wake_lead, 5ms);
}

TEST(ScanPolicy, IdleTableSleepsTheMaximumInterval) {
  const auto d = decide_idle(policy(), 1000 * kMs, 0, 0);
  EXPECT_FALSE(d.spin);
  EXPECT_EQ(d.sleep_ns, 10 * kMs);
}

TEST(ScanPolicy, NeverSleepsPastTheNearestDeadlineAndWakesASpinEarly) {
  const auto d = decide_idle(policy(), 1000 * kMs, 1003 * kMs, 0);
  EXPECT_FALSE(d.spin);
  EXPECT_EQ(d.sleep_ns, 3 * kMs - 50'000);
}

TEST(ScanPolicy, FarDeadlineIsCappedByTheMaximumInterval) {
  const auto d = decide_idle(policy(), 1000 * kMs, 5000 * kMs, 0);
  EXPECT_EQ(d.sleep_ns, 10 * kMs);
}

TEST(ScanPolicy, SpinsWhenADeadlineIsWithinTheSpinWindow) {
  EXPECT_TRUE(decide_idle(policy(), 1000 * kMs, 1000 * kMs + 40'000, 0).spin);
}

TEST(ScanPolicy, SpinsAfterABurstUntilTheWindowCloses) {
  EXPECT_TRUE(decide_idle(policy(), 1000 * kMs, 0, 1000 * kMs + 1).spin);
  EXPECT_FALSE(decide_idle(policy(), 1000 * kMs, 0, 1000 * kMs).spin);
}

TEST(ScanPolicy, PureSpinNeverSleeps) { EXPECT_TRUE(decide_idle(ScanPolicy::pure_spin(), 1000 * kMs, 0, 0).spin); }

TEST(ScanPolicy, ZeroSpinSleepsExactlyUntilTheDeadline) {
  const auto d = decide_idle({0ns, 10ms}, 1000 * kMs, 1002 * kMs, 0);
  EXPECT_FALSE(d.spin);
  EXPECT_EQ(d.sleep_ns, 2 * kMs);
}

TEST(ScanPolicy, WakesAheadOfADeadlineByHowLateSleepsHaveBeenEndingUpToTheCap) {
  // Sleeps ending 700 us late: wake 700 us + the spin before the deadline.
  auto d = decide_idle(policy(), 1000 * kMs, 1003 * kMs, 0, 700'000);
  EXPECT_FALSE(d.spin);
  EXPECT_EQ(d.sleep_ns, 3 * kMs - 50'000 - 700'000);
  // Never by more than max_wake_lead (5 ms here), however late they ended.
  d = decide_idle(policy(), 1000 * kMs, 1008 * kMs, 0, 50 * kMs);
  EXPECT_EQ(d.sleep_ns, 8 * kMs - 50'000 - 5 * kMs);
  // Within the lead: spin the rest of the way.
  EXPECT_TRUE(decide_idle(policy(), 1000 * kMs, 1000 * kMs + 600'000, 0, 700'000).spin);
  // A sleep at the maximum interval, with no deadline, takes no lead.
  EXPECT_EQ(decide_idle(policy(), 1000 * kMs, 0, 0, 700'000).sleep_ns, 10 * kMs);
}

TEST(ScanPolicy, WithoutAWakeLeadOnlyTheSpinLeads) {
  ScanPolicy no_lead = policy();
  no_lead.max_wake_lead = 0ns;
  EXPECT_EQ(decide_idle(no_lead, 1000 * kMs, 1003 * kMs, 0, 700'000).sleep_ns, 3 * kMs - 50'000);
}

TEST(WakeLateness, RemembersTheLargestOfTheLast128) {
  WakeLateness late;
  EXPECT_EQ(late.recent_max_ns(), 0u);
  late.observe(900'000);
  for (int i = 0; i < 127; ++i) late.observe(10'000);
  EXPECT_EQ(late.recent_max_ns(), 900'000u);  // still among the last 128
  late.observe(20'000);
  EXPECT_EQ(late.recent_max_ns(), 20'000u);  // the slow one has aged out
}

}  // namespace
}  // namespace shmtimer
