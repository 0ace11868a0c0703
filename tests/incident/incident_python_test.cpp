// Python workers' incident reports: py-spy finds the innermost Python frame of the right
// thread, whether the worker hangs in a C call, on a lock another thread holds, or in a
// pure-Python loop. The worker arms through shmtimer's Python module.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "incident_support.hpp"
#include "server_support.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;

constexpr const char* kWorker = R"x(import sys, threading, time
import shmtimer
client = shmtimer.ShmTimerClient(sys.argv[1], require_server=False)
lock = threading.Lock()
def holder():
    with lock:
        time.sleep(1000)
def sleeping_in_c():
    time.sleep(1000)
def wait_for_lock():
    lock.acquire()
def spin_forever():
    n = 0
    while True:
        n += 1
if sys.argv[2] == "lock":
    threading.Thread(target=holder, daemon=True).start()
    time.sleep(0.2)
client.acquire("python-" + sys.argv[2], time.time() + 0.3)
{"sleep": sleeping_in_c, "lock": wait_for_lock, "loop": spin_forever}[sys.argv[2]]()
)x";

std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') ADD_FAILURE() << name << " is not set (CTest sets it: tests/CMakeLists.txt)";
  return value == nullptr ? "" : value;
}

// Runs the worker in `mode` under a capturing server; returns the incident's directory
// and the worker's pid.
std::pair<std::filesystem::path, pid_t> incident_of_worker(const testing::IncidentDir& dir, const std::string& mode,
                                                           bool with_py_spy = true) {
  testing::TempTable t;
  const std::string pythonpath = required_env("SHMTIMER_TEST_PYTHONPATH");
  ServerOptions options;
  options.incidents.capture_bound = 20s;
  options.incidents.directory = dir.path;
  options.incidents.py_spy = with_py_spy ? required_env("SHMTIMER_TEST_PY_SPY") : "";
  // Where the worker's client registers its faulthandler dump: beside its table.
  options.incidents.stacks_directory = t.file.path().parent_path() / "stacks";
  const auto script = dir.path.string() + ".worker.py";
  {
    std::ofstream out(script);
    out << kWorker;
  }
  TimerServer server(t.table, options);
  server.start();
  const std::string table = t.file.path().string();
  const pid_t child = testing::fork_child([&] {
    ::setenv("PYTHONPATH", pythonpath.c_str(), 1);
    ::execl("/usr/bin/python3", "python3", script.c_str(), table.c_str(), mode.c_str(), nullptr);
    ::_exit(127);
  });
  EXPECT_TRUE(testing::killed_by(testing::wait_child(child, 60s), SIGKILL));
  server.stop();
  std::filesystem::remove(script);
  const auto incidents = dir.incidents();
  EXPECT_EQ(incidents.size(), 1u);
  return {incidents.empty() ? std::filesystem::path() : incidents[0], child};
}

std::string py_spy_output(const std::filesystem::path& incident, pid_t pid) {
  return testing::read_text(incident / ("pid" + std::to_string(pid) + ".py-spy.txt"));
}

TEST(IncidentPython, AWorkerHungInACCallHasItsCallerAsTheMainThreadsInnermostFrame) {
  testing::IncidentDir dir;
  const auto [incident, pid] = incident_of_worker(dir, "sleep");
  const std::string dump = py_spy_output(incident, pid);
  EXPECT_NE(dump.find("\"MainThread\"\n    sleeping_in_c ("), std::string::npos) << dump;
  EXPECT_NE(testing::read_text(incident / "summary.txt").find("sleeping_in_c ("), std::string::npos);
  EXPECT_NE(testing::read_text(incident / ("pid" + std::to_string(pid) + ".eu-stack.txt")).find("TID"),
            std::string::npos);
}

TEST(IncidentPython, AWorkerWaitingOnALockShowsItsWaitAndTheHoldersThread) {
  testing::IncidentDir dir;
  const auto [incident, pid] = incident_of_worker(dir, "lock");
  const std::string dump = py_spy_output(incident, pid);
  EXPECT_NE(dump.find("\"MainThread\"\n    wait_for_lock ("), std::string::npos) << dump;
  EXPECT_NE(dump.find("(holder)\"\n    holder ("), std::string::npos) << dump;
  EXPECT_NE(testing::read_text(incident / "summary.txt").find("wait_for_lock ("), std::string::npos);
}

TEST(IncidentPython, AWorkerInAPurePythonLoopShowsTheLoopsFunction) {
  testing::IncidentDir dir;
  const auto [incident, pid] = incident_of_worker(dir, "loop");
  const std::string dump = py_spy_output(incident, pid);
  EXPECT_NE(dump.find("\"MainThread\"\n    spin_forever ("), std::string::npos) << dump;
}

// Without py-spy (not installed, or ptrace forbidden), the worker's own faulthandler dump,
// asked for with SIGURG, has the frames.
TEST(IncidentPython, ACooperativeDumpGivesTheMainThreadsFrameWithoutPySpy) {
  testing::IncidentDir dir;
  const auto [incident, pid] = incident_of_worker(dir, "lock", /*with_py_spy=*/false);
  const std::string dump = testing::read_text(incident / ("pid" + std::to_string(pid) + ".faulthandler.txt"));
  EXPECT_NE(dump.find("in wait_for_lock\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("in holder\n"), std::string::npos) << dump;
  const std::string summary = testing::read_text(incident / "summary.txt");
  EXPECT_NE(summary.find("wait_for_lock ("), std::string::npos) << summary;
}

}  // namespace
}  // namespace shmtimer
