// Incident capture (issue 27): how long each capture method takes on a hung process,
// through the server's own capture code (StackCapture), and a kill's lateness with
// capture off and on, side by side in one run.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "bench_support.hpp"
#include "incident_directory.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "stack_capture.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using shmtimer::bench::quantile;
using shmtimer::bench::report_percentiles_us;

constexpr int kCaptureSamples = 20;
constexpr int kLatenessSamples = 20;

// A private directory for the reports, removed at the end.
struct ReportDir {
  ReportDir() : path("/tmp/shmtimer-bench-incidents-" + std::to_string(::getpid())) {}
  ~ReportDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

std::string py_spy() {
  const char* configured = std::getenv("SHMTIMER_BENCH_PY_SPY");
  return configured != nullptr ? configured : "py-spy";
}

// A Python process sleeping in time.sleep, as a hung Python worker; its pid once started.
pid_t spawn_sleeping_python() {
  pid_t child = -1;
  const char* argv[] = {"python3", "-c", "import time\nprint('ready', flush=True)\ntime.sleep(1000)", nullptr};
  int ready[2];
  if (::pipe(ready) != 0) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, ready[1], 1);
  posix_spawnp(&child, "python3", &actions, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(ready[1]);
  char buffer[8];
  (void)!::read(ready[0], buffer, sizeof buffer);
  ::close(ready[0]);
  return child;
}

// range(0): 0 eu-stack, 1 gdb (on a C++ process in pause()), 2 py-spy (on python3 in time.sleep).
void BM_CaptureMethod(benchmark::State& state) {
  const int method = static_cast<int>(state.range(0));
  const char* names[] = {"eu-stack", "gdb", "py-spy"};
  ReportDir reports;
  const auto root = shmtimer::detail::open_incident_root(reports.path);
  const pid_t target = method == 2 ? spawn_sleeping_python() : shmtimer::bench::fork_paused_child([] {});
  shmtimer::IncidentOptions options;
  options.py_spy = method == 2 ? py_spy() : "";
  options.eu_stack = method == 0 ? "eu-stack" : "";
  options.gdb = method == 1 ? "gdb" : "";
  std::vector<double> us;
  std::string failure;
  for (auto _ : state) {
    for (int sample = 0; sample < kCaptureSamples && failure.empty(); ++sample) {
      std::string name;
      const auto dir = shmtimer::detail::make_incident_directory(root, target, name);
      shmtimer::detail::StackCapture capture(target, shmtimer::detail::capture_steps_for(target, options));
      while (!capture.advance(dir)) std::this_thread::sleep_for(200us);
      const auto& step = capture.steps().at(0);
      if (step.status != shmtimer::detail::CaptureStep::Status::kOk) failure = step.why;
      us.push_back(step.milliseconds * 1e3);
    }
  }
  ::kill(target, SIGKILL);
  ::waitpid(target, nullptr, 0);
  if (!failure.empty()) state.SkipWithError(failure.c_str());
  report_percentiles_us(state, us);
  state.SetLabel(names[method]);
}
BENCHMARK(BM_CaptureMethod)
    ->DenseRange(0, 2)
    ->Iterations(1)
    ->Repetitions(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// A hung C++ worker (20 ms timer) killed by a server with capture off (range 0) or on
// (range 1: eu-stack, a 10 s bound): the server's lateness (deadline to signal) and the
// parent's (deadline to waitpid), as a user sees it.
void BM_KillLatenessWithCapture(benchmark::State& state) {
  const bool capture = state.range(0) == 1;
  shmtimer::bench::BenchTable t(4096, "incident");
  ReportDir reports;
  shmtimer::ServerOptions options;
  options.incidents.capture_bound = capture ? std::chrono::milliseconds(10'000) : std::chrono::milliseconds(0);
  options.incidents.directory = reports.path;
  options.incidents.py_spy = "";
  options.incidents.gdb = "";
  std::mutex mutex;
  std::map<pid_t, double> lateness_us;
  options.log_event = [&](std::string_view name, const shmtimer::TimerEvent* e) {
    if (name != "kill worker process" || e == nullptr) return;
    std::lock_guard lock(mutex);
    lateness_us[e->pid] = e->at_ns > e->deadline_ns ? static_cast<double>(e->at_ns - e->deadline_ns) / 1e3 : 0;
  };
  shmtimer::TimerServer server(t.table(), options);
  spdlog::set_level(spdlog::level::err);  // one "incident report" line per sample otherwise
  server.start();
  shmtimer::bench::SharedBlock<std::atomic<std::int64_t>> child_deadline_ns;
  std::vector<double> server_us, reaped_us;
  for (auto _ : state) {
    for (int sample = 0; sample < kLatenessSamples; ++sample) {
      const pid_t child = ::fork();
      if (child == 0) {
        shmtimer::ShmTimerClient client(t.table());
        const auto deadline = shmtimer::SteadyClock::now() + 20ms;
        child_deadline_ns->store(deadline.time_since_epoch().count());
        client.acquire("hang", deadline);
        ::pause();
        ::_exit(0);
      }
      ::waitpid(child, nullptr, 0);
      const shmtimer::Deadline deadline{shmtimer::SteadyClock::duration(child_deadline_ns->load())};
      reaped_us.push_back(std::chrono::duration<double, std::micro>(shmtimer::SteadyClock::now() - deadline).count());
      for (int wait = 0; wait < 1000; ++wait) {
        if (std::lock_guard lock(mutex); lateness_us.count(child) != 0) break;
        std::this_thread::sleep_for(1ms);
      }
      std::lock_guard lock(mutex);
      if (const auto it = lateness_us.find(child); it != lateness_us.end()) server_us.push_back(it->second);
    }
  }
  server.stop();
  spdlog::set_level(spdlog::level::info);
  report_percentiles_us(state, server_us);
  state.counters["reaped_p50_us"] = quantile(reaped_us, 0.5);
  state.counters["reaped_p99_us"] = quantile(reaped_us, 0.99);
  state.counters["incidents"] = static_cast<double>(server.stats().incidents.load());
  state.SetLabel(capture ? "capture on (eu-stack, bound 10 s)" : "capture off");
}
BENCHMARK(BM_KillLatenessWithCapture)
    ->DenseRange(0, 1)
    ->Iterations(1)
    ->Repetitions(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
