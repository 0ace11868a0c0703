// shmtimerd as operators run it: /metrics and /healthz over HTTP, systemd's notify
// protocol on a NOTIFY_SOCKET, and events as structured log records.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <nlohmann/json.hpp>
#include <cctype>

#include "daemon_support.hpp"
#include "metrics_support.hpp"
#include "metrics_page.hpp"
#include "shmtimer/fifo_protocol.hpp"
#include "shmtimer/shm_timer_client.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;
using testing::get;
using testing::LoggedDaemon;
using testing::metrics_port;
using testing::TempPath;

constexpr auto kSlow = testing::kSanitized ? 4 : 1;  // sanitizer builds run several times slower

// The line of the log that starts with `start`, without its newline; empty when none.
std::string line_starting(const std::string& log, const std::string& start) {
  const std::size_t at = log.find(start);
  return at == std::string::npos ? "" : log.substr(at, log.find('\n', at) - at);
}

// Advances `at` past a number: digits, then a point and exactly `decimals` digits when
// decimals > 0. False when the text there is not one.
bool is_number_at(const std::string& text, std::size_t& at, int decimals = 0) {
  const std::size_t begin = at;
  while (at < text.size() && std::isdigit(static_cast<unsigned char>(text[at]))) ++at;
  if (at == begin) return false;
  if (decimals == 0) return true;
  if (at >= text.size() || text[at++] != '.') return false;
  for (int i = 0; i < decimals; ++i, ++at)
    if (at >= text.size() || !std::isdigit(static_cast<unsigned char>(text[at]))) return false;
  return true;
}

// The value of the sample of `metric` (its name and labels after the table label, e.g.
// `shmtimer_live_timers` or `shmtimer_fifo_parse_errors_total{...,reason="not_json"}`).
std::optional<double> sample(const std::string& page, const std::string& metric, const std::string& labels = "") {
  const std::string head = metric + "{table=\"";
  const std::string tail = (labels.empty() ? "" : "," + labels) + "} ";
  for (std::size_t at = page.find("\n" + head); at != std::string::npos; at = page.find("\n" + head, at + 1)) {
    const std::size_t labels_end = page.find('"', at + 1 + head.size()) + 1;  // after the table label
    if (page.compare(labels_end, tail.size(), tail) == 0) return std::stod(page.substr(labels_end + tail.size()));
  }
  return std::nullopt;
}

using testing::epoch_now;
using testing::write_fifo;

// A process that sleeps in exec'd `sleep`, with `env` in its environment from the start
// (/proc/<pid>/environ shows the environment a process was exec'd with). Returns once
// the exec is done.
pid_t spawn_sleeper(const std::map<std::string, std::string>& env = {}) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [key, value] : env) ::setenv(key.c_str(), value.c_str(), 1);
    ::execlp("sleep", "sleep", "60", nullptr);
    ::_exit(127);
  }
  const auto exe = "/proc/" + std::to_string(pid) + "/exe";
  for (int i = 0; i < 1000; ++i) {
    std::error_code error;
    if (std::filesystem::read_symlink(exe, error).filename() == "sleep") break;
    std::this_thread::sleep_for(5ms);
  }
  return pid;
}

TEST(ShmtimerdMetrics, ServesTheTablesAndTheServersMetricsAndCountsAReap) {
  TempPath table_path;
  TempPath fifo{"shmtimer-fifo"};
  LoggedDaemon daemon(table_path.path(), {"--metrics-address", "127.0.0.1:0", "--fifo", fifo.path().string()});
  const int port = metrics_port(daemon);
  ASSERT_GT(port, 0) << daemon.log();
  ASSERT_TRUE(testing::wait_for_server(table_path.path()));

  ShmTimerClient client(Table::open(table_path.path()));
  for (const char* scope : {"a", "b", "c"}) client.acquire(scope, SteadyClock::now() + 60s);
  write_fifo(fifo.path(), "{not json\n");
  std::string page = get(port, "/metrics");
  EXPECT_EQ(sample(page, "shmtimer_live_timers"), 3) << page;
  EXPECT_EQ(sample(page, "shmtimer_used_slots"), 3);
  EXPECT_EQ(sample(page, "shmtimer_acquires_total"), 3);
  EXPECT_EQ(sample(page, "shmtimer_signals_refused_total", R"(reason="not_mapped")"), 0);
  EXPECT_EQ(sample(page, "shmtimer_kill_lateness_seconds_count"), 0);
  EXPECT_EQ(sample(page, "shmtimer_kill_lateness_seconds_bucket", R"(le="+Inf")"), 0);
  for (int i = 0; i < 100 && sample(page, "shmtimer_round_duration_seconds_count").value_or(0) < 1; ++i) {
    std::this_thread::sleep_for(20ms);  // the first round may still be running
    page = get(port, "/metrics");
  }
  EXPECT_GE(sample(page, "shmtimer_round_duration_seconds_count").value_or(0), 1);

  const pid_t hung = spawn_sleeper();
  write_fifo(fifo.path(), fifo::format_acquire(hung, "hung", epoch_now() + 0.05, SIGKILL));
  EXPECT_TRUE(testing::killed_by(testing::wait_child(hung), SIGKILL));
  for (int i = 0; i < 100 && sample(page, "shmtimer_reaps_total") != 1; ++i) {
    std::this_thread::sleep_for(20ms);
    page = get(port, "/metrics");
  }
  EXPECT_EQ(sample(page, "shmtimer_reaps_total"), 1) << page;
  EXPECT_EQ(sample(page, "shmtimer_kill_lateness_seconds_count"), 1);
  EXPECT_EQ(sample(page, "shmtimer_kill_lateness_seconds_bucket", R"(le="+Inf")"), 1);
  EXPECT_EQ(sample(page, "shmtimer_fifo_parse_errors_total", R"(reason="not_json")"), 1);
  EXPECT_EQ(sample(page, "shmtimer_fifo_parse_errors_total", R"(reason="pid")"), 0);
  EXPECT_EQ(sample(page, "shmtimer_fifo_requests_total"), 1);
  EXPECT_NE(page.find("# TYPE shmtimer_kill_lateness_seconds histogram\n"), std::string::npos);
  int status = 0;
  EXPECT_EQ(get(port, "/nothing-here", &status), "");
  EXPECT_EQ(status, 404);
  EXPECT_TRUE(testing::exited_ok(daemon.stop())) << daemon.log();
}

// --capture-bound-ms: the kill of a hung worker comes with an incident report, which its
// event names and /metrics counts (with the capture failures beside it).
TEST(ShmtimerdMetrics, AKillWithCaptureNamesItsIncidentReportAndCountsIt) {
  TempPath table_path;
  TempPath fifo{"shmtimer-fifo"};
  const auto incidents = table_path.path().string() + ".incidents";
  LoggedDaemon daemon(table_path.path(), {"--metrics-address", "127.0.0.1:0", "--fifo", fifo.path().string(),
                                          "--capture-bound-ms", "20000", "--incident-dir", incidents});
  const int port = metrics_port(daemon);
  ASSERT_GT(port, 0) << daemon.log();
  ASSERT_TRUE(testing::wait_for_server(table_path.path()));
  const pid_t hung = spawn_sleeper();
  write_fifo(fifo.path(), fifo::format_acquire(hung, "hung", epoch_now() + 0.05, SIGKILL));
  EXPECT_TRUE(testing::killed_by(testing::wait_child(hung, 30s), SIGKILL));
  EXPECT_TRUE(daemon.read_until("incident=")) << daemon.log();
  std::string page = get(port, "/metrics");
  EXPECT_EQ(sample(page, "shmtimer_incidents_total"), 1) << page;
  EXPECT_TRUE(sample(page, "shmtimer_capture_failures_total").has_value()) << page;
  std::size_t reports = 0;
  for (const auto& entry : std::filesystem::directory_iterator(incidents)) reports += entry.is_directory() ? 1 : 0;
  EXPECT_EQ(reports, 1u);
  EXPECT_TRUE(testing::exited_ok(daemon.stop())) << daemon.log();
  std::filesystem::remove_all(incidents);
}

// shmtimerd's watchdog thread runs SCHED_FIFO at priority 10 unless told otherwise, and
// /metrics says at which (CI runs as root, which may take it).
TEST(ShmtimerdMetrics, TheWatchdogRunsAtRealtimePriorityTenByDefaultAndZeroWhenTurnedOff) {
  for (const auto& [flags, expected] :
       std::vector<std::pair<std::vector<std::string>, int>>{{{}, 10}, {{"--realtime-priority", "0"}, 0}}) {
    TempPath table_path;
    std::vector<std::string> args{"--metrics-address", "127.0.0.1:0"};
    args.insert(args.end(), flags.begin(), flags.end());
    LoggedDaemon daemon(table_path.path(), args);
    const int port = metrics_port(daemon);
    ASSERT_GT(port, 0) << daemon.log();
    ASSERT_TRUE(testing::wait_for_server(table_path.path()));
    std::string page = get(port, "/metrics");
    for (int i = 0; i < 100 && sample(page, "shmtimer_watchdog_realtime_priority") != expected; ++i) {
      std::this_thread::sleep_for(20ms);
      page = get(port, "/metrics");
    }
    EXPECT_EQ(sample(page, "shmtimer_watchdog_realtime_priority"), expected) << daemon.log();
    EXPECT_TRUE(testing::exited_ok(daemon.stop())) << daemon.log();
  }
}

TEST(ShmtimerdMetrics, ABadAddressIsAUsageErrorAndABusyPortAClearError) {
  TempPath table_path;
  for (const char* bad : {"9464", "localhost", ":9464", "127.0.0.1:99999", "::1:9464", "127.0.0.1:x"}) {
    LoggedDaemon daemon(table_path.path(), {"--metrics-address", bad});
    const int status = daemon.wait_exit();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << bad << ": " << daemon.log();
    EXPECT_NE(daemon.log().find("is not HOST:PORT"), std::string::npos) << daemon.log();
  }
  LoggedDaemon first(table_path.path(), {"--metrics-address", "127.0.0.1:0"});
  const int port = metrics_port(first);
  TempPath other_table;
  LoggedDaemon second(other_table.path(), {"--metrics-address", "127.0.0.1:" + std::to_string(port)});
  const int status = second.wait_exit();
  EXPECT_NE(second.log().find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos) << second.log();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << second.log();
}

TEST(ShmtimerdMetrics, HealthzIsOkWhileRoundsAreFreshAndUnavailableWhenTheLoopStalls) {
  TempPath table_path;
  LoggedDaemon daemon(table_path.path(), {"--metrics-address", "127.0.0.1:0"});
  const int port = metrics_port(daemon);
  ASSERT_TRUE(daemon.read_until("watchdog started")) << daemon.log();
  int status = 0;
  std::string ok = get(port, "/healthz", &status);
  for (int i = 0; i < 100 * kSlow && status != 200; ++i) {  // 503 until the first round ends
    std::this_thread::sleep_for(20ms);
    ok = get(port, "/healthz", &status);
  }
  EXPECT_EQ(status, 200) << ok;
  EXPECT_EQ(ok.rfind("ok: last watchdog round", 0), 0u) << ok;

  testing::StoppedThread stalled(daemon.pid(), "shmtimer-watch");
  // The loop may sleep 100 ms; after that plus 1 s without a round it is stalled.
  std::string body;
  for (int i = 0; i < 100 * kSlow && status != 503; ++i) {
    std::this_thread::sleep_for(50ms);
    body = get(port, "/healthz", &status);
  }
  EXPECT_EQ(status, 503) << body;
  EXPECT_EQ(body.rfind("stalled: last watchdog round", 0), 0u) << body;
  stalled.release();
  for (int i = 0; i < 100 * kSlow && status != 200; ++i) {
    std::this_thread::sleep_for(50ms);
    body = get(port, "/healthz", &status);
  }
  EXPECT_EQ(status, 200) << body;
  EXPECT_TRUE(testing::exited_ok(daemon.stop()));
}

// A NOTIFY_SOCKET as systemd binds it: a datagram socket the daemon sends its state to.
class NotifySocket {
 public:
  NotifySocket() {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.path().c_str());
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind");
  }
  ~NotifySocket() { ::close(fd_); }
  std::string path() const { return path_.path().string(); }

  struct Message {
    std::chrono::steady_clock::time_point at;
    std::string text;
  };
  // Messages that arrive within `duration`.
  std::vector<Message> receive_for(std::chrono::milliseconds duration) {
    std::vector<Message> out;
    const auto end = std::chrono::steady_clock::now() + duration;
    for (auto now = std::chrono::steady_clock::now(); now < end; now = std::chrono::steady_clock::now()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1,
                 static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(end - now).count()) + 1) <= 0)
        continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) out.push_back({std::chrono::steady_clock::now(), std::string(buf, static_cast<std::size_t>(n))});
    }
    return out;
  }

 private:
  TempPath path_{"shmtimer-notify"};
  int fd_ = -1;
};

bool has_line(const std::string& message, const std::string& line) {
  return ("\n" + message + "\n").find("\n" + line + "\n") != std::string::npos;
}

TEST(SystemdNotify, ReadyOnceThenWatchdogWellWithinHalfTheTimeoutFromTheLoopAndSilenceWhenItStalls) {
  const auto watchdog = std::chrono::milliseconds(1000 * kSlow);
  NotifySocket socket;
  TempPath table_path;
  LoggedDaemon daemon(table_path.path(), {},
                      {{"NOTIFY_SOCKET", socket.path()},
                       {"WATCHDOG_USEC", std::to_string(std::chrono::microseconds(watchdog).count())}});
  ASSERT_TRUE(daemon.read_until("watchdog started")) << daemon.log();
  const auto before = socket.receive_for(4 * watchdog);

  int ready = 0;
  std::vector<std::chrono::steady_clock::time_point> pings;
  for (const auto& m : before) {
    if (has_line(m.text, "READY=1")) ++ready;
    if (has_line(m.text, "WATCHDOG=1")) {
      pings.push_back(m.at);
      EXPECT_NE(m.text.find("STATUS=serving "), std::string::npos) << m.text;
    }
  }
  EXPECT_EQ(ready, 1);
  ASSERT_FALSE(before.empty());
  EXPECT_TRUE(has_line(before.front().text, "READY=1")) << before.front().text;
  ASSERT_GE(pings.size(), 4u);
  for (std::size_t i = 1; i < pings.size(); ++i) EXPECT_LE(pings[i] - pings[i - 1], watchdog / 2) << "ping " << i;

  {
    testing::StoppedThread stalled(daemon.pid(), "shmtimer-watch");
    socket.receive_for(watchdog / 2);  // a ping already on its way
    const auto during = socket.receive_for(2 * watchdog);
    for (const auto& m : during) EXPECT_FALSE(has_line(m.text, "WATCHDOG=1")) << "pinged while stalled";
  }
  EXPECT_TRUE(testing::exited_ok(daemon.stop()));
}

TEST(ShmtimerdEvents, JsonEventsAreObjectsWithTheirOwnFieldsAndTheTargetsJob) {
  TempPath table_path;
  TempPath fifo{"shmtimer-fifo"};
  LoggedDaemon daemon(table_path.path(), {"--fifo", fifo.path().string(), "--log-format", "json"});
  ASSERT_TRUE(daemon.read_until("watchdog started")) << daemon.log();
  const pid_t hung = spawn_sleeper({{"TORCHELASTIC_RUN_ID", "job-7"}, {"RANK", "3"}, {"LOCAL_RANK", "1"}});
  // 0.5 s ahead: the server reads the target's labels while it prepares the kill.
  write_fifo(fifo.path(), fifo::format_acquire(hung, "step\n{\"forged\": 1}", epoch_now() + 0.5, SIGKILL));
  EXPECT_TRUE(testing::killed_by(testing::wait_child(hung), SIGKILL));
  ASSERT_TRUE(daemon.read_until("\"event\":\"kill worker process\"")) << daemon.log();
  EXPECT_TRUE(testing::exited_ok(daemon.stop()));

  std::map<std::string, nlohmann::json> events;
  std::map<std::string, int> counts;
  std::istringstream lines(daemon.log());
  for (std::string line; std::getline(lines, line);) {
    const auto record = nlohmann::json::parse(line);  // every line is one JSON object
    EXPECT_FALSE(record.contains("forged")) << line;
    if (!record.contains("event")) continue;
    events[record["event"].get<std::string>()] = record;
    ++counts[record["event"].get<std::string>()];
  }
  ASSERT_EQ(counts["timer expired"], 1) << daemon.log();
  ASSERT_EQ(counts["kill worker process"], 1);
  for (const auto& name : {"timer expired", "kill worker process"}) {
    const auto& e = events[name];
    EXPECT_EQ(e["level"], "info");
    EXPECT_EQ(e["pid"], hung);
    EXPECT_EQ(e["scope"], "step\\x0a{\"forged\": 1}") << "a newline in a scope is escaped";
    EXPECT_EQ(e["signal"], SIGKILL);
    EXPECT_EQ(e["origin"], "fifo");
    EXPECT_TRUE(e["slot"].is_number_unsigned());
    EXPECT_NEAR(e["deadline"].get<double>(), epoch_now(), 30.0);
    EXPECT_GE(e["lateness_ms"].get<double>(), 0.0);
    EXPECT_EQ(e["run_id"], "job-7");
    EXPECT_EQ(e["rank"], "3");
    EXPECT_EQ(e["local_rank"], "1");
    EXPECT_EQ(e["command"], "sleep");
    EXPECT_EQ(e["table"], table_path.path().string());
  }
  // One line per kill: the event, without the watchdog's own unstructured line besides.
  EXPECT_EQ(daemon.log().find("signalled pid"), std::string::npos) << daemon.log();
}

TEST(ShmtimerdEvents, TextEventsAreOneLineOfKeyValueFieldsThatNoValueCanForge) {
  TempPath table_path;
  TempPath fifo{"shmtimer-fifo"};
  LoggedDaemon daemon(table_path.path(), {"--fifo", fifo.path().string()});
  ASSERT_TRUE(daemon.read_until("watchdog started")) << daemon.log();
  const pid_t hung = spawn_sleeper({{"RANK", "5' forged='1"}});
  write_fifo(fifo.path(), fifo::format_acquire(hung, "a\nb", epoch_now() + 0.5, SIGKILL));  // labels: see above
  EXPECT_TRUE(testing::killed_by(testing::wait_child(hung), SIGKILL));
  ASSERT_TRUE(daemon.read_until("kill worker process pid=")) << daemon.log();
  EXPECT_TRUE(testing::exited_ok(daemon.stop()));
  // A quote in a value is escaped, so it cannot close the value and forge a field.
  // Expected, with N for numbers: kill worker process pid=N scope='a\\x0ab' signal=9
  // slot=N origin=fifo deadline=N.NNNNNN lateness_ms=N.NNN command='sleep'
  // rank='5\' forged=\'1' table='<path>'
  const std::string line = line_starting(daemon.log(), "kill worker process pid=");
  const auto expect_text = [&](std::size_t& at, const std::string& text) {
    const bool ok = line.compare(at, text.size(), text) == 0;
    at += text.size();
    return ok;
  };
  std::size_t at = 0;
  EXPECT_TRUE(
      expect_text(at, "kill worker process pid=" + std::to_string(hung) + " scope='a\\\\x0ab' signal=9 slot=") &&
      is_number_at(line, at) && expect_text(at, " origin=fifo deadline=") && is_number_at(line, at, 6) &&
      expect_text(at, " lateness_ms=") && is_number_at(line, at, 3) && expect_text(at, " command='sleep'") &&
      expect_text(at, " rank='5\\' forged=\\'1' table='" + table_path.path().string() + "'") && at == line.size())
      << line;
}

// The daemon's log is a pipe of one page that nobody reads, as a journald that stopped
// draining, while 200 timers expire every 10 ms (signal 0: logged, never killed): tens of
// thousands of lines, past the pipe and the log's queue. The watchdog only queues lines,
// so a hung worker is still killed on time, the lines that did not fit are counted as
// dropped, and the daemon still stops on SIGTERM.
TEST(ShmtimerdLog, ASinkThatNeverDrainsNeitherDelaysNorStopsAKill) {
  TempPath table_path;
  LoggedDaemon daemon(table_path.path(), {"--metrics-address", "127.0.0.1:0", "--log-level", "debug"}, {}, 4096);
  const int port = metrics_port(daemon);
  ASSERT_GT(port, 0);
  ASSERT_TRUE(testing::wait_for_server(table_path.path()));
  std::vector<std::string> scopes;  // made here: the loop allocates nothing while the worker is forked
  for (int i = 0; i < 200; ++i) scopes.push_back("noise-" + std::to_string(i));  // of the table's 256 slots
  std::atomic<bool> noisy{true};
  std::thread noise([&] {
    ShmTimerClient quiet(Table::open(table_path.path()), 0);
    while (noisy.load()) {
      for (const auto& scope : scopes) quiet.acquire(scope, SteadyClock::now());
      std::this_thread::sleep_for(10ms);
    }
  });
  std::this_thread::sleep_for(1s);  // the pipe and the log's queue are long full
  {
    testing::HungWorker hung(table_path.path());
    EXPECT_TRUE(hung.killed_on_time());
  }
  noisy.store(false);
  noise.join();
  EXPECT_GT(sample(get(port, "/metrics"), "shmtimer_log_lines_dropped_total").value_or(0), 0);
  EXPECT_TRUE(testing::exited_ok(daemon.stop()));
}

// The page's counters are sums read one slot at a time; a sum that dips must not reach
// Prometheus, which would take it for a counter reset.
TEST(MetricsPage, CountersNeverDecreaseEvenWhenTheTablesSumDips) {
  testing::TempTable t;
  TimerServer server(t.table);
  shmtimerd::MetricsPage page(server, nullptr);
  auto& reaps = t.table->header().reaps;
  reaps.store(5);
  EXPECT_EQ(sample(page.render(), "shmtimer_reaps_total"), 5);
  reaps.store(3);  // as a racing read could see it
  EXPECT_EQ(sample(page.render(), "shmtimer_reaps_total"), 5);
  reaps.store(8);
  EXPECT_EQ(sample(page.render(), "shmtimer_reaps_total"), 8);
}

TEST(MetricsPage, ExportsTheBuildAndTheProcessesOwnCpuMemoryDescriptorsAndStartTime) {
  testing::TempTable t;
  TimerServer server(t.table);
  shmtimerd::MetricsPage page(server, nullptr);
  const std::string text = page.render();
  EXPECT_EQ(sample(text, "shmtimer_build_info", std::string("version=\"") + SHMTIMER_VERSION + "\""), 1) << text;
  EXPECT_GE(sample(text, "process_cpu_seconds_total").value_or(-1), 0) << text;
  EXPECT_GT(sample(text, "process_resident_memory_bytes").value_or(0), 1 << 20) << text;
  EXPECT_GT(sample(text, "process_virtual_memory_bytes").value_or(0), 1 << 20) << text;
  EXPECT_GE(sample(text, "process_open_fds").value_or(0), 3) << text;  // stdin, stdout, stderr, the table...
  EXPECT_GE(sample(text, "process_max_fds").value_or(0), sample(text, "process_open_fds").value_or(1)) << text;
  const double started = sample(text, "process_start_time_seconds").value_or(0);
  EXPECT_LE(started, epoch_now() + 1) << text;
  EXPECT_GT(started, epoch_now() - 3600) << "a test process started within the hour: " << text;
}

// Once the server found its table deleted, a probe and a scrape say so: the server is
// alive, but no new worker can reach it.
TEST(MetricsPage, HealthFailsAndAGaugeNamesTheChangeOnceTheTableIsDeleted) {
  testing::TempTable t;
  ServerOptions options;
  options.dead_owner_sweep_interval = std::chrono::nanoseconds(0);
  TimerServer server(t.table, options);
  shmtimerd::MetricsPage page(server, nullptr);
  server.run_once();
  EXPECT_TRUE(page.health().fresh);
  EXPECT_EQ(sample(page.render(), "shmtimer_table_file_changed", "change=\"deleted\""), 0);
  std::filesystem::remove(t.file.path());
  server.run_once();
  const auto health = page.health();
  EXPECT_FALSE(health.fresh);
  EXPECT_STREQ(health.table_file_change, "deleted");
  EXPECT_EQ(sample(page.render(), "shmtimer_table_file_changed", "change=\"deleted\""), 1);
  EXPECT_EQ(sample(page.render(), "shmtimer_table_file_changed", "change=\"resized\""), 0);
}

}  // namespace
}  // namespace shmtimer
