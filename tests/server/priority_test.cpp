// ServerOptions::realtime_priority: the watchdog thread at SCHED_FIFO, nothing it starts
// at it, and a server denied it running on at its normal priority.
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "server_support.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/timer_server.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;
using namespace testing;

struct ThreadScheduling {
  pid_t tid = 0;
  int policy = -1;       // /proc/<tid>/stat field 41: 0 SCHED_OTHER, 1 SCHED_FIFO, ...
  int rt_priority = -1;  // field 40
};

// The scheduling of this process's thread named `name`, once it exists (up to 5 s).
ThreadScheduling thread_named(const std::string& name) {
  for (int attempt = 0; attempt < 5000; ++attempt) {
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string line;
      if (!std::getline(comm, line) || line != name) continue;
      std::ifstream stat_file(task.path() / "stat");
      const std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
      std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // from field 3
      std::string field;
      ThreadScheduling found;
      found.tid = std::stoi(task.path().filename().string());
      for (int n = 3; n <= 41 && fields >> field; ++n) {
        if (n == 40) found.rt_priority = std::stoi(field);
        if (n == 41) found.policy = std::stoi(field);
      }
      return found;
    }
    std::this_thread::sleep_for(1ms);
  }
  return {};
}

bool wait_until(const std::function<bool()>& done) {
  for (int attempt = 0; attempt < 5000 && !done(); ++attempt) std::this_thread::sleep_for(1ms);
  return done();
}

// The watchdog thread runs SCHED_FIFO at the priority asked for, and the thread it starts
// (the label reader, started by its first preparation) runs at a normal priority:
// SCHED_RESET_ON_FORK keeps a stack capture tool or a label read from taking a CPU from
// the workers. CI runs as root; without CAP_SYS_NICE this test fails, as it says.
TEST(RealtimeWatchdog, RunsSchedFifoAtThePriorityAskedAndNothingItStartsInheritsIt) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  ServerOptions options = fake_options(fake);
  options.realtime_priority = 7;
  TimerServer server(t.table, options);
  server.start();
  ASSERT_TRUE(wait_until([&] { return server.stats().realtime_priority.load() == 7; }))
      << "the watchdog could not take a realtime priority: this test needs CAP_SYS_NICE (run it as root)";
  const ThreadScheduling watchdog = thread_named("shmtimer-watch");
  EXPECT_EQ(watchdog.policy, SCHED_FIFO);
  EXPECT_EQ(watchdog.rt_priority, 7);
  plant(*t.table, 4242, "soon", monotonic_now_ns() + 150 * kMs, SIGKILL);  // prepared: labels asked for
  const ThreadScheduling labels = thread_named("shmtimer-labels");
  ASSERT_NE(labels.tid, 0) << "the label reader never started";
  EXPECT_EQ(labels.policy, SCHED_OTHER) << "the label reader inherited the watchdog's realtime class";
  EXPECT_EQ(labels.rt_priority, 0);
  server.stop();
  EXPECT_EQ(server.stats().realtime_priority.load(), 0);
}

TEST(RealtimeWatchdog, RefusesAPriorityOutsideOneTo99AndAPolicyThatSpinsForEver) {
  TempTable t;
  for (const int priority : {-1, 100}) {
    ServerOptions options;
    options.realtime_priority = priority;
    EXPECT_EQ(thrown_by([&] { TimerServer(t.table, options); }).code, ErrorCode::kInvalidArgument) << priority;
  }
  ServerOptions spinning;
  spinning.realtime_priority = 10;
  spinning.policy = ScanPolicy::pure_spin();
  const Thrown thrown = thrown_by([&] { TimerServer(t.table, spinning); });
  EXPECT_EQ(thrown.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(thrown.message.find("spins for ever"), std::string::npos) << thrown.message;
}

// A server that may not take the priority (no CAP_SYS_NICE, RLIMIT_RTPRIO 0: a container,
// a user's own server) serves at its normal one: a kill still lands.
TEST(RealtimeWatchdog, AServerDeniedTheRealtimePriorityRunsAtItsNormalOneAndStillKills) {
  const pid_t server_process = fork_child([] {
    rlimit none{0, 0};
    if (::setrlimit(RLIMIT_RTPRIO, &none) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    ::prctl(PR_SET_DUMPABLE, 1);  // a uid change cleared it: the server reads its worker's maps
    TempTable t;
    const pid_t worker = fork_hung_worker(t.table, "hang", 100ms);
    ServerOptions options;
    options.realtime_priority = 10;
    TimerServer server(t.table, options);
    server.start();
    const int status = wait_child(worker, 10s);
    if (server.stats().realtime_priority.load() != 0) ::_exit(3);
    if (thread_named("shmtimer-watch").policy != SCHED_OTHER) ::_exit(4);
    ::_exit(killed_by(status, SIGKILL) ? 0 : 5);
  });
  const int status = wait_child(server_process, 30s);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: could not drop root; 3, 4: realtime all the same; 5: no kill";
}

}  // namespace
}  // namespace shmtimer
