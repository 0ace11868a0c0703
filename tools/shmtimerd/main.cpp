// shmtimerd: the watchdog daemon. Serves one table until SIGTERM or SIGINT, or until the
// table's file is deleted, resized or replaced (exit 4).
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <optional>

#include "event_log.hpp"
#include "http_endpoint.hpp"
#include "log_setup.hpp"
#include "metrics_page.hpp"
#include "systemd_notify.hpp"
#include "shmtimer/fifo_shim.hpp"
#include "shmtimer/process_access_check.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/table_fault_guard.hpp"
#include "shmtimer/table_reader.hpp"
#include "shmtimer/timer_server.hpp"

namespace {

struct Flags {
  std::string table;
  std::string fifo;
  std::uint64_t capacity = 65536;
  // ScanPolicy's defaults.
  double spin_us = std::chrono::duration<double, std::micro>(shmtimer::ScanPolicy{}.spin).count();
  double max_interval_ms = std::chrono::duration<double, std::milli>(shmtimer::ScanPolicy{}.max_interval).count();
  double max_wake_lead_us = std::chrono::duration<double, std::micro>(shmtimer::ScanPolicy{}.max_wake_lead).count();
  bool pure_spin = false;
  // The watchdog thread's SCHED_FIFO priority; unset: 10, or 0 with --pure-spin (a thread
  // that never sleeps must not run above every other process).
  std::optional<int> realtime_priority;
  std::string log_format = "text";
  std::string log_level = "info";
  bool signal_self = false;
  bool any_uid = false;
  double sweep_interval_ms = 1000;
  std::optional<shmtimerd::ListenAddress> metrics_address;
  double capture_bound_ms = 0;
  std::string incident_dir;  // empty: "incidents" beside the table
  bool observe_only = false;
  std::string py_spy = shmtimer::IncidentOptions{}.py_spy;
  int soft_signal = 0;
  double grace_ms = static_cast<double>(shmtimer::KillLadder{}.grace.count());
};

// "TERM", "SIGTERM", "15", or "timer" (the expired timer's own signal).
int parse_soft_signal(const std::string& text) {
  if (text == "timer") return shmtimer::KillLadder::kTimersOwnSignal;
  const std::string name = text.rfind("SIG", 0) == 0 ? text.substr(3) : text;
  for (int s = 1; s < NSIG; ++s)
    if (const char* abbrev = ::sigabbrev_np(s); abbrev != nullptr && name == abbrev) return s;
  try {
    std::size_t used = 0;
    const int number = std::stoi(text, &used);
    if (used == text.size() && number > 0 && number <= SIGRTMAX) return number;
  } catch (const std::exception&) {
  }
  throw CLI::ValidationError("--soft-signal", "'" + text + "' is not a signal (TERM, SIGTERM, 15, or timer)");
}

shmtimer::ServerOptions server_options(const Flags& flags) {
  shmtimer::ServerOptions options;
  options.policy.spin = std::chrono::nanoseconds(static_cast<std::int64_t>(flags.spin_us * 1e3));
  options.policy.max_interval = std::chrono::nanoseconds(static_cast<std::int64_t>(flags.max_interval_ms * 1e6));
  options.policy.max_wake_lead = std::chrono::nanoseconds(static_cast<std::int64_t>(flags.max_wake_lead_us * 1e3));
  if (flags.pure_spin) options.policy = shmtimer::ScanPolicy::pure_spin();
  options.realtime_priority = flags.realtime_priority.value_or(flags.pure_spin ? 0 : 10);
  options.signal_self_after_reap = flags.signal_self;
  options.any_uid = flags.any_uid;
  options.dead_owner_sweep_interval =
      std::chrono::nanoseconds(static_cast<std::int64_t>(flags.sweep_interval_ms * 1e6));
  options.incidents.capture_bound = std::chrono::milliseconds(static_cast<std::int64_t>(flags.capture_bound_ms));
  options.incidents.observe_only = flags.observe_only;
  options.ladder.soft_signal = flags.soft_signal;
  options.ladder.grace = std::chrono::milliseconds(static_cast<std::int64_t>(flags.grace_ms));
  options.incidents.py_spy = flags.py_spy;
  options.incidents.stacks_directory = std::filesystem::path(flags.table).parent_path() / "stacks";  // the clients'
  options.incidents.directory = flags.incident_dir.empty()
                                    ? std::filesystem::path(flags.table).parent_path() / "incidents"
                                    : std::filesystem::path(flags.incident_dir);
  return options;
}

// Under systemd's watchdog the loop must come round often enough for its pings,
// whatever --max-interval-ms says (see SystemdNotifier::kPingFraction).
void fit_sleep_to_watchdog(shmtimer::ServerOptions& options, const shmtimerd::SystemdNotifier& notifier) {
  const auto timeout = notifier.watchdog_timeout();
  if (!timeout) return;
  const auto cap =
      std::chrono::duration_cast<std::chrono::nanoseconds>(*timeout) / shmtimerd::SystemdNotifier::kPingFraction;
  if (options.policy.max_interval <= cap) return;
  spdlog::info("systemd watchdog timeout {} ms: sleeping at most {} ms between rounds", timeout->count() / 1000,
               cap.count() / 1'000'000);
  options.policy.max_interval = cap;
}

// SIGTERM and SIGINT, blocked by main() before any thread starts (threads inherit the
// mask) and waited for by serve(): no thread runs a handler, none dies of the default
// action (the log's thread included), and shutdown is ordinary code.
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

int serve(const Flags& flags, const shmtimerd::Loggers& loggers) {
  // Whatever else this process opens (metrics clients, log files), the kill path has the
  // most descriptors the system allows it, and a reserve besides (LinuxProcessControl).
  const std::uint64_t descriptors = shmtimer::raise_open_file_limit();
  spdlog::info("open file limit {}", descriptors);
  // A sandbox that takes the kill path away must stop the start, not every kill later.
  if (const std::string problem = shmtimer::why_workers_cannot_be_watched(); !problem.empty())
    throw shmtimer::Error(shmtimer::ErrorCode::kIo, "refusing to start: " + problem);

  shmtimer::CreateOptions create;
  create.capacity = flags.capacity;
  shmtimer::prepare_private_directory(flags.table);
  auto table = shmtimer::Table::open_or_create(flags.table, create);
  shmtimerd::SystemdNotifier notifier(table);
  shmtimer::ServerOptions options = server_options(flags);
  auto events = std::make_shared<shmtimerd::EventLog>(loggers.json_events, table->path().string());
  options.log_kills = false;  // the events say it all: one line per kill
  options.log_event = [events](std::string_view name, const shmtimer::TimerEvent* event) { (*events)(name, event); };
  std::shared_ptr<shmtimer::FifoShim> fifo;  // set before the watchdog thread starts
  std::atomic<bool> fifo_lost{false};
  // The table's file was deleted, resized or replaced: new workers would find no server (or
  // another one), so stop with status 4 and let the supervisor start one on a fresh table.
  std::atomic<bool> table_lost{false};
  std::atomic<shmtimer::FileChange> table_change{shmtimer::FileChange::kNone};
  options.on_table_file_change = [&table_lost, &table_change](shmtimer::FileChange change) {
    table_change.store(change);
    if (!table_lost.exchange(true)) ::kill(::getpid(), SIGTERM);
  };
  options.after_round = [&notifier, &fifo, &fifo_lost](const shmtimer::RoundResult& round) {
    notifier.after_round(round);
    // Another server took the FIFO's path: serving on would look healthy and serve no one.
    // Stop, with status 1, through the same signal path as a SIGTERM.
    if (fifo && fifo->lost() && !fifo_lost.exchange(true)) {
      spdlog::error("stopping: the FIFO {} is no longer this server's", fifo->path().string());
      ::kill(::getpid(), SIGTERM);
    }
  };
  fit_sleep_to_watchdog(options, notifier);

  shmtimer::TimerServer server(table, options);
  if (!flags.fifo.empty()) {
    shmtimer::FifoShimOptions fifo_options;
    fifo_options.any_uid = flags.any_uid;
    fifo = std::make_shared<shmtimer::FifoShim>(table, flags.fifo, server.options().log_event, fifo_options);
    server.add_source(fifo);
  }
  std::unique_ptr<shmtimerd::MetricsPage> metrics;
  std::unique_ptr<shmtimerd::HttpEndpoint> http;
  if (flags.metrics_address) {
    metrics = std::make_unique<shmtimerd::MetricsPage>(server, fifo.get());
    http = std::make_unique<shmtimerd::HttpEndpoint>(*flags.metrics_address, *metrics);
    const auto& host = flags.metrics_address->host;
    spdlog::info("serving metrics on http://{}:{}/metrics and /healthz",
                 host.find(':') == std::string::npos ? host : "[" + host + "]", http->port());
  }
  spdlog::info("serving table {} (capacity {}, pid {})", table->path().string(), table->capacity(), ::getpid());
  server.start();
  int received = 0;
  const sigset_t stopping = stop_signals();
  sigwait(&stopping, &received);
  spdlog::info("received {}; stopping", received == SIGTERM ? "SIGTERM" : "SIGINT");
  notifier.stopping();
  http.reset();
  server.stop();
  // A resized table is still at the path, and a restarted server would refuse it (exit 2)
  // for good: remove it, so that the restart makes a new one.
  if (table_change == shmtimer::FileChange::kResized && table->unlink_if_still_named())
    spdlog::error("removed the damaged table {}, so that a restarted server makes it anew", table->path().string());
  if (table_lost) spdlog::error("stopped because the table file changed (exit status 4)");
  return table_lost ? 4 : fifo_lost ? 1 : 0;
}

int run(const Flags& flags, const shmtimerd::Loggers& loggers) {
  if (flags.any_uid && ::geteuid() != 0) {
    // Without root it could signal no other user's process anyway; refusing says so
    // instead of letting the flag look like it does something.
    spdlog::critical("--any-uid needs root: a non-root server can only signal its own user's processes");
    return 1;
  }
  // A truncated table must not kill the watchdog with SIGBUS before it can say so.
  shmtimer::guard_table_faults();
  try {
    return serve(flags, loggers);
  } catch (const shmtimer::Error& e) {
    spdlog::critical("{}", e.what());
    return e.code() == shmtimer::ErrorCode::kServerRunning ? 3 : 2;
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  flags.table = shmtimer::default_table_path().string();
  CLI::App app{
      "shmtimerd: per-host watchdog over a shared-memory timer table.\n"
      "Signals worker processes whose timers expired (see docs/server.md)."};
  app.set_version_flag("--version", std::string("shmtimerd ") + SHMTIMER_VERSION);
  app.add_option("--table", flags.table, "Table file (default: $SHMTIMER_TABLE, else /dev/shm/shmtimer-<uid>/table)");
  if (const char* env = std::getenv("TORCHELASTIC_TIMER_FILE"); env != nullptr) flags.fifo = env;
  app.add_option("--fifo", flags.fifo,
                 "Also serve PyTorch's FileTimer protocol on this FIFO (default: $TORCHELASTIC_TIMER_FILE if set)");
  app.add_option("--capacity", flags.capacity, "Slots, when the table is created")
      ->check(CLI::Range(std::uint64_t{1}, shmtimer::layout::kMaxCapacity))
      ->capture_default_str();
  // Every number has a range: NaN, infinities and huge values are usage errors, not a
  // server that spins or never wakes. (CLI::Range alone lets NaN through: every
  // comparison with it is false.)
  const CLI::Validator finite(
      [](const std::string& text) {
        double value = 0;
        return CLI::detail::lexical_cast(text, value) && std::isfinite(value) ? std::string()
                                                                              : "'" + text + "' is not a finite number";
      },
      "FINITE");
  app.add_option("--spin-us", flags.spin_us, "Spin window after a reap and before a deadline (0..1e6)")
      ->check(finite & CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--max-interval-ms", flags.max_interval_ms, "Longest sleep between scans (0.01..60000)")
      ->check(finite & CLI::Range(0.01, 60000.0))
      ->capture_default_str();
  app.add_option("--max-wake-lead-us", flags.max_wake_lead_us,
                 "Most the server wakes ahead of a deadline to make up for late wake-ups it measured (0..1e6)")
      ->check(finite & CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_flag("--pure-spin", flags.pure_spin, "Never sleep (a core per server; lowest latency)");
  app.add_option("--realtime-priority", flags.realtime_priority,
                 "SCHED_FIFO priority of the watchdog thread, 1..99; 0: normal (default 10, 0 with --pure-spin)")
      ->check(CLI::Range(0, 99));
  app.add_option("--sweep-interval-ms", flags.sweep_interval_ms,
                 "How often slots of exited processes are freed (1..3600000)")
      ->check(finite & CLI::Range(1.0, 3.6e6))
      ->capture_default_str();
  app.add_option("--log-format", flags.log_format, "text or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_flag("--signal-self-after-reap", flags.signal_self,
               "PyTorch 2.x: after killing a worker, send the same signal to this daemon");
  app.add_flag("--any-uid", flags.any_uid, "Signal processes of any user (root only; see docs/security.md)");
  app.add_option("--capture-bound-ms", flags.capture_bound_ms,
                 "Before a kill, capture the stacks of the hung process and its peers into an incident report, "
                 "holding the kill back at most this long (0: no capture; docs/diagnosis.md)")
      ->check(CLI::Range(0.0, 600000.0));
  app.add_option("--incident-dir", flags.incident_dir,
                 "Where incident reports go (default: 'incidents' beside the table; private to this user)");
  app.add_flag("--observe-only", flags.observe_only,
               "Report and capture expiries, signal nothing (the expired timers are disarmed)");
  app.add_option("--py-spy", flags.py_spy, "The py-spy program for Python stacks (empty: do not use it)");
  app.add_option_function<std::string>(
      "--soft-signal", [&flags](const std::string& text) { flags.soft_signal = parse_soft_signal(text); },
      "Escalate: send this signal first (TERM, SIGTERM, 15, or timer: the timer's own), SIGKILL after --grace-ms");
  app.add_option("--grace-ms", flags.grace_ms, "From the soft signal to SIGKILL (default 5000)")
      ->check(CLI::Range(0.0, 3600000.0));
  app.add_option_function<std::string>(
         "--metrics-address",
         [&flags](const std::string& text) { flags.metrics_address = shmtimerd::parse_listen_address(text); },
         "Serve /metrics (Prometheus) and /healthz over HTTP on HOST:PORT, e.g. 127.0.0.1:9464 (off by default)")
      ->check(CLI::Validator(
          [](const std::string& text) {
            return shmtimerd::parse_listen_address(text) ? std::string()
                                                         : "'" + text + "' is not HOST:PORT (IPv6: [ADDR]:PORT)";
          },
          "HOST:PORT"));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;  // --help and --version exit 0; a usage error exits 1
  }

  const sigset_t stopping = stop_signals();
  pthread_sigmask(SIG_BLOCK, &stopping, nullptr);
  const shmtimerd::Loggers loggers = shmtimerd::setup_logging(flags.log_format, flags.log_level);
  const int status = run(flags, loggers);
  // What is queued gets written, unless the log's reader is stuck; either way the exit
  // never waits on the log's thread, which may be stuck in a write for good.
  shmtimerd::drain_logs(std::chrono::seconds(2));
  ::_exit(status);
}
