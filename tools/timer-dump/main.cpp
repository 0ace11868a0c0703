// timer-dump: a read-only inspector of a live shmtimer table, in the spirit of Aeron's
// AeronStat. A thin client of shmtimer::TableReader: it maps the table read-only, never
// writes it and never waits on a writer. The manual is docs/timer-dump.md.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <optional>

#include "format.hpp"
#include "json_format.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/table_fault_guard.hpp"
#include "snapshot.hpp"
#include "incident_list.hpp"
#include "table_list.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 1;
constexpr int kExitCannotRead = 2;  // missing, unreadable, not a table, wrong version
constexpr int kExitNoServer = 3;    // --check: no live server holds the table

enum class Output { kText, kJson, kPrometheus };

struct Options {
  std::string table;
  bool table_given = false;
  bool list = false;                    // --list: the tables in --dir
  std::optional<std::string> job;       // --job: the table of this run id in --dir
  std::string dir;                      // default: the user's private directory
  bool incidents = false;               // --incidents: the incident reports in --dir/incidents
  std::optional<std::string> incident;  // --incident: one report's summary
  bool json = false;
  bool prometheus = false;
  bool check = false;
  std::optional<double> watch_s;  // unset: print once
  timer_dump::Filter filter;

  Output output() const { return json ? Output::kJson : prometheus ? Output::kPrometheus : Output::kText; }
};

constexpr const char* kFooter =
    "Exit status: 0 success; 1 usage error; 2 the table cannot be opened, is not a table or has\n"
    "another format version (the message says which); 3 with --check, no live server holds the table.\n"
    "Manual: docs/timer-dump.md";

void add_options(CLI::App& app, Options& o) {
  app.set_version_flag("--version", std::string("timer-dump ") + SHMTIMER_VERSION);
  app.add_option_function<std::string>(
         "--table",
         [&o](const std::string& value) {
           o.table = value;
           o.table_given = true;
         },
         "Table file (default: $SHMTIMER_TABLE, else /dev/shm/shmtimer-<uid>/table)")
      ->type_name("PATH");
  app.add_flag("--list", o.list, "List the tables in --dir (path, capacity, armed timers, server) and exit");
  app.add_option_function<std::string>(
         "--job", [&o](const std::string& value) { o.job = value; },
         "The table that a job's hosted server (python -m shmtimer.run, ShmTimerServer) made up for this run id, "
         "found in --dir")
      ->type_name("RUN_ID");
  app.add_option("--dir", o.dir, "Where --list and --job look (default: /dev/shm/shmtimer-<uid>)")->type_name("DIR");
  app.add_flag("--incidents", o.incidents,
               "List the incident reports in DIR/incidents, oldest first, with who expired and which rank differs");
  app.add_option_function<std::string>(
         "--incident", [&o](const std::string& value) { o.incident = value; },
         "Print the summary of incident NAME in DIR/incidents (latest: the newest)")
      ->type_name("NAME");
  app.add_flag("--json", o.json, "Print one JSON document (field names: docs/timer-dump.md)");
  app.add_flag("--prometheus", o.prometheus,
               "Print metrics in the Prometheus text format, for the node_exporter textfile collector");
  app.add_option_function<double>(
         "--watch", [&o](const double& value) { o.watch_s = value; },
         "Clear the screen and reprint every SECONDS (e.g. 0.5) until SIGINT; exit 0")
      ->type_name("SECONDS");
  app.add_option_function<pid_t>(
         "--pid", [&o](const pid_t& value) { o.filter.pid = value; }, "Only timers of this process")
      ->type_name("PID");
  app.add_option_function<std::string>(
         "--scope", [&o](const std::string& value) { o.filter.scope = value; }, "Only timers whose scope contains TEXT")
      ->type_name("TEXT");
  app.add_flag("--expired", o.filter.expired_only, "Only timers at or past their deadline (overdue)");
  app.add_flag("--all", o.filter.all, "Also list idle and claiming slots, and count the free ones");
  app.add_flag("--check", o.check,
               "Health check: print one status line; exit 3 unless a verified live server beat recently (4 of its "
               "longest sleeps + 5 s)");
  app.footer(kFooter);
}

// Combinations the parser cannot express; "" when the options are consistent.
std::string usage_problem(const Options& o) {
  if (o.json && o.prometheus) return "--json and --prometheus cannot be combined";
  if ((o.incidents || o.incident) && (o.list || o.job || o.table_given || o.watch_s || o.check || o.json ||
                                      o.prometheus || o.filter.narrows() || (o.incidents && o.incident)))
    return "--incidents and --incident take no other option but --dir";
  if (o.job && o.table_given) return "--job and --table cannot be combined: each names the table";
  if (o.list && (o.job || o.table_given || o.watch_s || o.check || o.json || o.prometheus || o.filter.narrows()))
    return "--list takes no other option but --dir";
  if (o.prometheus && (o.filter.narrows() || o.filter.all))
    return "--prometheus describes the whole table; it takes no --pid, --scope, --expired or --all";
  if (o.watch_s && !(std::isfinite(*o.watch_s) && *o.watch_s > 0)) return "--watch needs a positive number of seconds";
  if (o.watch_s && o.check) return "--check and --watch cannot be combined";
  if (o.filter.pid && *o.filter.pid <= 0) return "--pid needs a positive process id";
  return "";
}

std::string render(const timer_dump::Snapshot& snapshot, Output output, bool pretty_json) {
  switch (output) {
    case Output::kJson: return timer_dump::format_json(snapshot, pretty_json);
    case Output::kPrometheus: return timer_dump::format_prometheus(snapshot);
    case Output::kText: break;
  }
  return timer_dump::format_text(snapshot);
}

void write_stdout(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

int dump_once(const shmtimer::TableReader& reader, const Options& o) {
  const auto snapshot = timer_dump::take_snapshot(reader, o.filter);
  const bool served = snapshot.header.served();
  if (!o.check || o.output() != Output::kText)
    write_stdout(render(snapshot, o.output(), true));
  else if (served)
    write_stdout(timer_dump::format_check_line(snapshot));
  if (!o.check || served) return kExitOk;
  std::fprintf(stderr, "timer-dump: %s", timer_dump::format_check_line(snapshot).c_str());
  return kExitNoServer;
}

// The first line of each --watch refresh in text mode, as watch(1) prints one.
std::string watch_banner(const Options& o, const timer_dump::Snapshot& snapshot) {
  char interval[32];
  std::snprintf(interval, sizeof interval, "%g", *o.watch_s);
  return std::string("Every ") + interval + "s: timer-dump --table " + snapshot.header.path.string() + "    " +
         timer_dump::format_local_time(snapshot.taken_unix_s) + "\n\n";
}

// Sleeps for the interval; true when SIGINT or SIGTERM arrived (they are blocked, so they
// wait as pending signals and are taken here; no handler runs).
bool wait_for_stop(const sigset_t& stop, double seconds) {
  const double whole = std::floor(seconds);
  timespec interval{static_cast<std::time_t>(whole), static_cast<long>((seconds - whole) * 1e9)};
  const int signal = ::sigtimedwait(&stop, nullptr, &interval);
  return signal == SIGINT || signal == SIGTERM;
}

// Refreshes until SIGINT or SIGTERM, then exits 0. On a terminal each refresh clears the
// screen; into a pipe or file the refreshes follow one another (JSON: one per line).
int watch(const shmtimer::TableReader& reader, const Options& o) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop, nullptr);
  const bool terminal = ::isatty(STDOUT_FILENO) == 1;
  for (;;) {
    const auto snapshot = timer_dump::take_snapshot(reader, o.filter);
    std::string text = terminal ? "\033[H\033[2J" : "";
    if (o.output() == Output::kText) text += watch_banner(o, snapshot);
    write_stdout(text + render(snapshot, o.output(), terminal));
    if (wait_for_stop(stop, *o.watch_s)) return kExitOk;
  }
}

int run(Options o) {
  const std::filesystem::path dir = o.dir.empty() ? shmtimer::private_directory() : std::filesystem::path(o.dir);
  if (o.list) {
    write_stdout(timer_dump::format_table_list(timer_dump::list_tables(dir), dir));
    return kExitOk;
  }
  if (o.incidents) {
    write_stdout(timer_dump::format_incident_list(timer_dump::list_incidents(dir / "incidents"), dir / "incidents"));
    return kExitOk;
  }
  if (o.incident) {
    write_stdout(timer_dump::incident_summary(dir / "incidents", *o.incident));
    return kExitOk;
  }
  if (o.job) o.table = timer_dump::table_of_job(dir, *o.job).string();
  const auto reader = shmtimer::TableReader::open(o.table);  // read-only mapping
  return o.watch_s ? watch(reader, o) : dump_once(reader, o);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  options.table = shmtimer::default_table_path().string();
  CLI::App app{
      "timer-dump: inspect a live shmtimer table, read-only.\n"
      "Prints the header and one row per armed timer, soonest deadline first.",
      "timer-dump"};
  add_options(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the error and a hint to stderr
    return kExitUsage;
  }
  if (const std::string problem = usage_problem(options); !problem.empty()) {
    std::fprintf(stderr, "timer-dump: %s\nRun with --help for more information.\n", problem.c_str());
    return kExitUsage;
  }
  // A table truncated while it is read is reported (exit 2), not a SIGBUS.
  shmtimer::guard_table_faults();
  try {
    return run(options);
  } catch (const std::exception& e) {  // shmtimer::Error says what is wrong with the file
    std::fprintf(stderr, "timer-dump: %s\n", e.what());
    return kExitCannotRead;
  }
}
