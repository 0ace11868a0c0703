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

TEST(ScanPolicy, PureSpinNeverSleeps) {
  EXPECT_TRUE(decide_idle(ScanPolicy::pure_spin(), 1000 * kMs, 0, 0).spin);
}

TEST(ScanPolicy, ZeroSpinSleepsExactlyUntilTheDeadline) {
  const auto d = decide_idle({0ns, 10ms}, 1000 * kMs, 1002 * kMs, 0);
  EXPECT_FALSE(d.spin);
  EXPECT_EQ(d.sleep_ns, 2 * kMs);
}

}  // namespace
}  // namespace shmtimer
