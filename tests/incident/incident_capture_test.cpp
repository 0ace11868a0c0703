// Incident reports with real processes: a hung C++ worker's native stacks, a capture that
// hangs (the kill still lands), and observe-only mode (nothing signalled, one incident).
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>

#include "incident_support.hpp"
#include "server_support.hpp"

// Named in the native stacks the test looks for: not static, never inlined.
extern "C" __attribute__((noinline)) void shmtimer_test_worker_blocked_on_futex() {
  static std::atomic<int> word{0};
  for (;;) ::syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
}

namespace shmtimer {
namespace {

using namespace std::chrono_literals;
using testing::IncidentDir;

ServerOptions capturing(const IncidentDir& dir, std::chrono::milliseconds bound, testing::Events& events) {
  ServerOptions options;
  options.log_event = events.callback();
  options.incidents.capture_bound = bound;
  options.incidents.directory = dir.path;
  options.incidents.py_spy = "";  // these workers are not Python (incident_python_test.cpp)
  return options;
}

std::unique_ptr<testing::HeldChild> held_worker(const std::shared_ptr<Table>& table, const char* scope,
                                                std::function<void()> then) {
  return std::make_unique<testing::HeldChild>([table, scope, then] {
    ShmTimerClient client(table, SIGKILL, testing::kArmWithoutServer);
    client.acquire(scope, SteadyClock::now() + 100ms);
    then();
  });
}

// Starts `server` over a worker that arms `scope` for 100 ms and then runs `hang`, and
// waits for the worker to be killed (the worker is forked before the server's threads
// start); the server is stopped when this returns. Returns the worker's pid.
pid_t run_until_killed(TimerServer& server, const std::shared_ptr<Table>& table, const char* scope,
                       std::function<void()> hang) {
  const auto worker = held_worker(table, scope, std::move(hang));
  const pid_t child = worker->pid();
  server.start();
  worker->go();
  EXPECT_TRUE(testing::killed_by(testing::wait_child(child, 60s), SIGKILL));
  server.stop();
  return child;
}

// The one incident in `dir` (a failure, and an empty path, when there is not exactly one).
std::filesystem::path the_one_incident(const IncidentDir& dir) {
  const auto incidents = dir.incidents();
  EXPECT_EQ(incidents.size(), 1u);
  return incidents.size() == 1 ? incidents[0] : std::filesystem::path();
}

TEST(Incident, AHungCppWorkersNativeStacksNameTheFunctionItIsBlockedIn) {
  testing::TempTable t;
  IncidentDir dir;
  testing::Events events;
  TimerServer server(t.table, capturing(dir, 20s, events));
  const pid_t child = run_until_killed(server, t.table, "futex", [] { shmtimer_test_worker_blocked_on_futex(); });
  const std::vector<std::filesystem::path> incidents{the_one_incident(dir)};
  ASSERT_FALSE(incidents[0].empty());
  const std::string stacks = testing::read_text(incidents[0] / ("pid" + std::to_string(child) + ".eu-stack.txt"));
  EXPECT_NE(stacks.find("shmtimer_test_worker_blocked_on_futex"), std::string::npos) << stacks;
  const std::string summary = testing::read_text(incidents[0] / "summary.txt");
  EXPECT_NE(summary.find("shmtimer_test_worker_blocked_on_futex"), std::string::npos) << summary;
  const auto event = testing::read_event(incidents[0]);
  ASSERT_EQ(event["expired"].size(), 1u);
  EXPECT_EQ(event["expired"][0]["pid"], child);
  EXPECT_EQ(event["expired"][0]["scope_id"], "futex");
  for (auto& [name, e] : events.seen) {
    if (name == "kill worker process") {
      EXPECT_EQ(e.incident, incidents[0].string());
    }
  }
  EXPECT_EQ(server.stats().incidents.load(), 1u);
}

// A capture tool that never returns (as one attached to a process it cannot read might):
// it is cut at the bound, recorded as timed out, and the kill goes out.
TEST(Incident, ACaptureThatHangsIsCutAtTheBoundAndTheKillStillLands) {
  testing::TempTable t;
  IncidentDir dir;
  const auto tool = dir.path.string() + ".hanging-tool";
  {
    std::ofstream script(tool);
    script << "#!/bin/sh\nexec sleep 1000\n";
  }
  ::chmod(tool.c_str(), 0700);
  testing::Events events;
  ServerOptions options = capturing(dir, 300ms, events);
  options.incidents.eu_stack = tool;
  options.incidents.gdb = "";
  TimerServer server(t.table, options);
  run_until_killed(server, t.table, "cut", [] { std::this_thread::sleep_for(60s); });
  std::filesystem::remove(tool);
  const auto incident = the_one_incident(dir);
  ASSERT_FALSE(incident.empty());
  const auto event = testing::read_event(incident);
  EXPECT_EQ(event["processes"][0]["captures"][0]["status"], "timed out") << event.dump(2);
  EXPECT_LT(event["capture_ms"].get<double>(), 300 + 1000) << "held far past its bound";
  EXPECT_GE(server.stats().capture_failures.load(), 1u);
}

// A worker that stopped itself (SIGSTOP): whatever the native capture does with it, the
// kill lands.
TEST(Incident, AStoppedWorkerIsStillKilled) {
  testing::TempTable t;
  IncidentDir dir;
  testing::Events events;
  TimerServer server(t.table, capturing(dir, 2s, events));
  run_until_killed(server, t.table, "stopped", [] { ::raise(SIGSTOP); });
  the_one_incident(dir);
}

TEST(Incident, ObserveOnlySignalsNothingAndWritesExactlyOneIncident) {
  testing::TempTable t;
  IncidentDir dir;
  testing::Events events;
  ServerOptions options = capturing(dir, 5s, events);
  options.incidents.observe_only = true;
  TimerServer server(t.table, options);
  // Hung past its deadline for a second (many rounds), then it finishes on its own.
  const auto worker = held_worker(t.table, "observed", [] {
    std::this_thread::sleep_for(1500ms);
    ::_exit(0);
  });
  const pid_t child = worker->pid();
  server.start();
  worker->go();
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(child, 30s)));
  server.stop();
  EXPECT_EQ(dir.incidents().size(), 1u);
  EXPECT_EQ(events.count("kill worker process"), 0);
  EXPECT_EQ(t.table->header().reaps.load(), 0u);
}

// A tool that is not installed: the report says so, and the next method runs.
TEST(Incident, AMissingToolIsRecordedAndTheNextMethodTakesItsPlace) {
  testing::TempTable t;
  IncidentDir dir;
  testing::Events events;
  ServerOptions options = capturing(dir, 20s, events);
  options.incidents.eu_stack = "/nonexistent/eu-stack";
  TimerServer server(t.table, options);
  run_until_killed(server, t.table, "fallback", [] { shmtimer_test_worker_blocked_on_futex(); });
  const auto incident = the_one_incident(dir);
  ASSERT_FALSE(incident.empty());
  const auto captures = testing::read_event(incident)["processes"][0]["captures"];
  ASSERT_EQ(captures.size(), 2u) << captures.dump(2);
  EXPECT_EQ(captures[0]["status"], "failed");
  EXPECT_NE(captures[0]["why"].get<std::string>().find("not installed"), std::string::npos);
  EXPECT_EQ(captures[1]["method"], "gdb");
  EXPECT_EQ(captures[1]["status"], "ok") << captures.dump(2);
  const std::string summary = testing::read_text(incident / "summary.txt");
  EXPECT_NE(summary.find("shmtimer_test_worker_blocked_on_futex"), std::string::npos) << summary;
}

// Whatever bytes a worker puts in its scope, its command name and its environment, the
// summary has one line per process and no control character.
TEST(Incident, HostileScopesCommandsAndEnvironmentsNeverForgeAReportLine) {
  testing::TempTable t;
  IncidentDir dir;
  testing::Events events;
  TimerServer server(t.table, capturing(dir, 20s, events));
  const std::string hostile = "x\ndiffers: rank 9 (pid 1)\r\x1b[2J";
  const auto worker = std::make_unique<testing::HeldChild>([&] {
    ::setenv("RANK", hostile.c_str(), 1);
    ::prctl(PR_SET_NAME, "evil\ndiffers", 0, 0, 0);
    ShmTimerClient client(t.table, SIGKILL, testing::kArmWithoutServer);
    client.acquire(hostile, SteadyClock::now() + 300ms);
    shmtimer_test_worker_blocked_on_futex();
  });
  const pid_t child = worker->pid();
  server.start();
  worker->go();
  EXPECT_TRUE(testing::killed_by(testing::wait_child(child, 60s), SIGKILL));
  server.stop();
  const auto incidents = dir.incidents();
  ASSERT_EQ(incidents.size(), 1u);
  const std::string summary = testing::read_text(incidents[0] / "summary.txt");
  EXPECT_EQ(std::count(summary.begin(), summary.end(), '\n'), 5)
      << summary;  // headline, blank, one process, blank, verdict
  for (char c : {'\r', '\x1b'}) EXPECT_EQ(summary.find(c), std::string::npos) << summary;
  EXPECT_EQ(summary.find("\ndiffers: rank 9"), std::string::npos) << summary;
  EXPECT_NO_THROW(testing::read_event(incidents[0]));
}

// A slot's pid is anyone's to write: a server that may not signal another user's process
// (no any_uid) does not read its memory into a report either.
TEST(Incident, AnotherUsersProcessIsNeitherCapturedNorSignalled) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root, to run a worker as another user";
  testing::TempTable t;
  IncidentDir dir;
  testing::Events events;
  TimerServer server(t.table, capturing(dir, 20s, events));
  const auto worker = held_worker(t.table, "other-user", [] {
    if (::setuid(65534) != 0) ::_exit(3);  // nobody, after arming
    std::this_thread::sleep_for(60s);
  });
  const pid_t child = worker->pid();
  server.start();
  worker->go();
  // The refusal disarms the timer: then nothing more will happen to it.
  for (int i = 0; i < 500 && t.table->header().reaps.load() == 0 &&
                  server.stats().signals_refused[static_cast<std::size_t>(Refusal::kOtherUser)].load() == 0;
       ++i)
    std::this_thread::sleep_for(10ms);
  server.stop();
  EXPECT_EQ(server.stats().signals_refused[static_cast<std::size_t>(Refusal::kOtherUser)].load(), 1u);
  EXPECT_TRUE(dir.incidents().empty());
  EXPECT_EQ(server.stats().incidents.load(), 0u);
  ::kill(child, SIGKILL);
  EXPECT_TRUE(testing::killed_by(testing::wait_child(child, 30s), SIGKILL));
}

TEST(Incident, ADirectoryOthersMayWriteFailsTheServersStartNotAKill) {
  testing::TempTable t;
  IncidentDir dir;
  std::filesystem::create_directory(dir.path);
  ::chmod(dir.path.c_str(), 0777);
  testing::Events events;
  EXPECT_THROW(TimerServer(t.table, capturing(dir, 1s, events)), Error);
}

}  // namespace
}  // namespace shmtimer
