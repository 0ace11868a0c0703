// The escalation ladder: the soft signal first, SIGKILL only after the grace period, and
// a worker that ends on the soft signal is never killed.
#include <gtest/gtest.h>

#include <csignal>

#include "server_support.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<testing::HeldChild> held_worker_on_sigterm(const std::shared_ptr<Table>& table, void (*on_term)(int)) {
  return std::make_unique<testing::HeldChild>([table, on_term] {
    std::signal(SIGTERM, on_term);
    ShmTimerClient client(table, SIGKILL, testing::kArmWithoutServer);
    client.acquire("laddered", SteadyClock::now() + 50ms);
    std::this_thread::sleep_for(60s);
  });
}

ServerOptions laddered(std::chrono::milliseconds grace, testing::Events& events) {
  ServerOptions options;
  options.log_event = events.callback();
  options.ladder.soft_signal = SIGTERM;
  options.ladder.grace = grace;
  return options;
}

TEST(KillLadder, AWorkerThatEndsOnTheSoftSignalIsNeverKilled) {
  testing::TempTable t;
  testing::Events events;
  TimerServer server(t.table, laddered(10s, events));
  const auto worker = held_worker_on_sigterm(t.table, [](int) { ::_exit(7); });  // flushes, then exits 7
  const pid_t child = worker->pid();
  server.start();
  worker->go();
  const int status = testing::wait_child(child, 30s);
  server.stop();
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 7);
  EXPECT_EQ(events.count("kill worker process"), 0);
}

TEST(KillLadder, AWorkerThatIgnoresTheSoftSignalIsKilledOnlyAfterTheGrace) {
  testing::TempTable t;
  testing::Events events;
  const auto grace = 400ms;
  TimerServer server(t.table, laddered(grace, events));
  const auto worker = held_worker_on_sigterm(t.table, SIG_IGN);
  const pid_t child = worker->pid();
  server.start();
  const auto started = std::chrono::steady_clock::now();
  worker->go();
  EXPECT_TRUE(testing::killed_by(testing::wait_child(child, 30s), SIGKILL));
  const auto lived = std::chrono::steady_clock::now() - started;
  server.stop();
  // A lower bound, not a timing target: SIGKILL before the grace ends breaks the ladder.
  EXPECT_GE(lived, 50ms + grace);
  ASSERT_EQ(events.count("kill worker process"), 1);
  for (auto& [name, e] : events.seen) {
    if (name == "kill worker process") {
      EXPECT_EQ(e.signal, SIGKILL);
    }
  }
}

}  // namespace
}  // namespace shmtimer
