// The timer-dump binary against real tables: known timers in text and JSON, each filter,
// --all, --prometheus, --check, --watch, every exit code, and a table that threads and
// processes write while it is dumped again and again.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <tuple>

#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "shmtimer/timer_server.hpp"
#include "slot_ops.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

using shmtimer::testing::kArmWithoutServer;

using namespace std::chrono_literals;
using testing::TempPath;
using testing::TempTable;
using json = nlohmann::json;

struct Output {
  int exit_code = -1;
  std::string out;  // stdout, and stderr too when asked for
};

Output run_dump(const std::string& args, bool with_stderr = false) {
  const std::string command = std::string(TIMER_DUMP_PATH) + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* pipe = ::popen(command.c_str(), "r");
  Output result;
  if (pipe == nullptr) return result;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe)) result.out += buf.data();
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string table_arg(const TempTable& t) { return "--table " + t.file.path().string(); }

json dump_json(const TempTable& t, const std::string& extra = "") {
  const auto result = run_dump(table_arg(t) + " --json " + extra);
  EXPECT_EQ(result.exit_code, 0) << result.out;
  return json::parse(result.out);
}

std::vector<std::string> scopes_of(const json& doc) {
  std::vector<std::string> scopes;
  for (const auto& row : doc["timers"]) scopes.push_back(row["scope"]);
  return scopes;
}

// A pid that no longer exists: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t pid = testing::fork_child([] {});
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(pid)));
  return pid;
}

// A table holding, besides this process's timers, an overdue timer of a dead process:
//   overdue-job     dead pid, deadline 1 s ago, SIGTERM, FIFO origin
//   alpha/step      this process, deadline in 1 h
//   beta/step       this process, deadline in 2 h
//   gamma/idle      this process, claimed and released (idle)
struct KnownTable {
  TempTable t{256};
  ShmTimerClient client{t.table, SIGKILL, kArmWithoutServer};
  pid_t dead = dead_pid();

  KnownTable() {
    client.acquire("beta/step", SteadyClock::now() + 2h);
    client.acquire("alpha/step", SteadyClock::now() + 1h);
    client.acquire("gamma/idle", SteadyClock::now() + 1h);
    client.release("gamma/idle");
    const detail::ScopeKey key("overdue-job");
    const auto slot = detail::insert_slot(*t.table, {dead, 77, SIGTERM, layout::Origin::kFifo}, key);
    EXPECT_TRUE(slot.ok());
    detail::arm_slot(t.table->slot(slot.index), {slot.control, 77}, to_table_ns(SteadyClock::now() - 1s), SIGTERM);
  }
};

TEST(TimerDumpCli, TextForKnownTimers) {
  KnownTable k;
  const auto result = run_dump(table_arg(k.t));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  const std::string& text = result.out;
  EXPECT_NE(text.find("table      " + k.t.file.path().string() + "\n"), std::string::npos) << text;
  EXPECT_NE(text.find("format     3.1, created "), std::string::npos) << text;
  EXPECT_NE(text.find("capacity   256 slots, 4 used\n"), std::string::npos) << text;
  EXPECT_NE(text.find("server     none, no heartbeat yet\n"), std::string::npos) << text;
  EXPECT_NE(text.find("timers     3 live, 1 overdue\n"), std::string::npos) << text;
  // Soonest deadline first; the dead process's timer is overdue (negative remaining).
  const auto overdue = text.find("overdue-job"), alpha = text.find("alpha/step"), beta = text.find("beta/step");
  ASSERT_NE(overdue, std::string::npos);
  ASSERT_NE(alpha, std::string::npos);
  ASSERT_NE(beta, std::string::npos);
  EXPECT_LT(overdue, alpha);
  EXPECT_LT(alpha, beta);
  EXPECT_EQ(text.find("gamma/idle"), std::string::npos);
  const std::string overdue_line = text.substr(text.rfind('\n', overdue) + 1, overdue - text.rfind('\n', overdue) - 1);
  EXPECT_EQ(overdue_line.rfind(std::to_string(k.dead) + " ", 0), 0u) << overdue_line;
  EXPECT_NE(overdue_line.find(" no "), std::string::npos) << overdue_line;
  EXPECT_NE(overdue_line.find(" -1.0"), std::string::npos) << overdue_line;  // about -1.000s
  EXPECT_NE(overdue_line.find(" SIGTERM "), std::string::npos) << overdue_line;
  EXPECT_NE(overdue_line.find(" fifo "), std::string::npos) << overdue_line;
  const std::string alpha_line = text.substr(text.rfind('\n', alpha) + 1, alpha - text.rfind('\n', alpha) - 1);
  EXPECT_EQ(alpha_line.rfind(std::to_string(::getpid()) + " ", 0), 0u) << alpha_line;
  EXPECT_NE(alpha_line.find(" yes "), std::string::npos) << alpha_line;
  EXPECT_NE(alpha_line.find(" 59m5"), std::string::npos) << alpha_line;  // 59m59s or so remaining
  EXPECT_NE(alpha_line.find(" SIGKILL "), std::string::npos) << alpha_line;
  EXPECT_NE(alpha_line.find(" table "), std::string::npos) << alpha_line;
}

TEST(TimerDumpCli, JsonForKnownTimers) {
  KnownTable k;
  const json doc = dump_json(k.t);
  EXPECT_EQ(doc["table"]["path"], k.t.file.path().string());
  EXPECT_EQ(doc["table"]["capacity"], 256);
  EXPECT_EQ(doc["table"]["used_slots"], 4);
  EXPECT_EQ(doc["server"]["alive"], false);
  EXPECT_TRUE(doc["server"]["heartbeat_age_s"].is_null());
  EXPECT_EQ(doc["counters"]["acquires"], 4);  // 3 acquires here, 1 arm of the planted slot
  EXPECT_EQ(doc["counters"]["releases"], 1);
  EXPECT_EQ(doc["slots"]["live_timers"], 3);
  EXPECT_EQ(doc["slots"]["overdue_timers"], 1);
  EXPECT_EQ(doc["slots"]["idle"], 1);
  EXPECT_EQ(doc["slots"]["free"], 252);
  EXPECT_EQ(scopes_of(doc), (std::vector<std::string>{"overdue-job", "alpha/step", "beta/step"}));
  const auto& overdue = doc["timers"][0];
  EXPECT_EQ(overdue["pid"], k.dead);
  EXPECT_EQ(overdue["pid_alive"], false);
  EXPECT_EQ(overdue["reclaimable"], true);
  EXPECT_EQ(overdue["overdue"], true);
  EXPECT_LT(overdue["remaining_s"].get<double>(), -0.9);
  EXPECT_EQ(overdue["signal"], SIGTERM);
  EXPECT_EQ(overdue["origin"], "fifo");
  const auto& alpha = doc["timers"][1];
  EXPECT_EQ(alpha["pid"], ::getpid());
  EXPECT_EQ(alpha["pid_alive"], true);
  EXPECT_EQ(alpha["state"], "armed");
  EXPECT_EQ(alpha["signal_name"], "SIGKILL");
  EXPECT_GT(alpha["remaining_s"].get<double>(), 3500.0);
  EXPECT_LE(alpha["remaining_s"].get<double>(), 3600.0);
  EXPECT_NEAR(alpha["deadline_unix_s"].get<double>(), static_cast<double>(std::time(nullptr)) + 3600, 120);
  EXPECT_EQ(alpha["deadline_local"].get<std::string>().size(), std::string("2025-01-01T00:00:00.000+00:00").size());
  EXPECT_LT(alpha["deadline_mono_ns"].get<std::uint64_t>(), doc["timers"][2]["deadline_mono_ns"].get<std::uint64_t>());
}

TEST(TimerDumpCli, Filters) {
  KnownTable k;
  using Scopes = std::vector<std::string>;
  EXPECT_EQ(scopes_of(dump_json(k.t, "--pid " + std::to_string(::getpid()))), (Scopes{"alpha/step", "beta/step"}));
  EXPECT_EQ(scopes_of(dump_json(k.t, "--pid " + std::to_string(k.dead))), (Scopes{"overdue-job"}));
  EXPECT_EQ(scopes_of(dump_json(k.t, "--scope /step")), (Scopes{"alpha/step", "beta/step"}));
  EXPECT_EQ(scopes_of(dump_json(k.t, "--scope eta")), (Scopes{"beta/step"}));
  EXPECT_EQ(scopes_of(dump_json(k.t, "--scope no-such")), (Scopes{}));
  EXPECT_EQ(scopes_of(dump_json(k.t, "--expired")), (Scopes{"overdue-job"}));
  EXPECT_EQ(scopes_of(dump_json(k.t, "--expired --pid " + std::to_string(::getpid()))), (Scopes{}));
  const json filtered = dump_json(k.t, "--scope alpha --pid " + std::to_string(::getpid()));
  EXPECT_EQ(scopes_of(filtered), (Scopes{"alpha/step"}));
  EXPECT_EQ(filtered["filter"]["scope"], "alpha");
  EXPECT_EQ(filtered["filter"]["pid"], ::getpid());
  EXPECT_EQ(filtered["slots"]["live_timers"], 3);  // counts ignore the filters
  const auto text = run_dump(table_arg(k.t) + " --expired");
  EXPECT_NE(text.out.find("filter     expired: 1 shown\n"), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find("alpha/step"), std::string::npos) << text.out;
}

TEST(TimerDumpCli, AllListsIdleSlotsAndCountsFreeOnes) {
  KnownTable k;
  const json doc = dump_json(k.t, "--all");
  EXPECT_EQ(scopes_of(doc), (std::vector<std::string>{"overdue-job", "alpha/step", "beta/step", "gamma/idle"}));
  EXPECT_EQ(doc["timers"][3]["state"], "idle");
  EXPECT_TRUE(doc["timers"][3]["remaining_s"].is_null());
  EXPECT_EQ(doc["slots"]["free"], 252);
  EXPECT_EQ(doc["slots"]["reclaimable"], 1);
  const auto text = run_dump(table_arg(k.t) + " --all");
  EXPECT_NE(text.out.find("slots      3 armed, 1 idle, 0 claiming, 1 reclaimable, 252 free"), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("\nidle     " + std::to_string(::getpid())), std::string::npos) << text.out;
}

// The read API timer-dump uses for --all: every non-free slot, as a full scan finds them.
TEST(TimerDumpCli, OccupiedRowsAreTheNonFreeRowsOfAFullScan) {
  KnownTable k;
  // A slot left mid-claim by a process that died: Claiming, its occupancy bit set.
  std::uint64_t free_index = 0;
  while (layout::Control::unpack(k.t.table->slot(free_index).control.load()).state != layout::SlotState::kFree)
    ++free_index;
  k.t.table->slot(free_index).control.store(layout::Control::pack(layout::SlotState::kClaiming, 1, k.dead));
  detail::set_occupancy(*k.t.table, free_index);
  const TableReader reader(k.t.table);
  auto describe = [](const std::vector<TimerRow>& rows) {
    std::vector<std::tuple<std::uint64_t, std::string, pid_t, std::string>> out;
    for (const auto& row : rows)
      if (row.state != RowState::kFree) out.emplace_back(row.slot, to_string(row.state), row.pid, row.scope);
    return out;
  };
  const auto occupied = reader.occupied_rows();
  EXPECT_EQ(describe(occupied), describe(reader.rows(true)));
  EXPECT_EQ(occupied.size(), 5u);
  const json doc = dump_json(k.t, "--all");
  EXPECT_EQ(doc["slots"]["claiming"], 1);
  EXPECT_EQ(doc["slots"]["reclaimable"], 2);
  const auto claiming = std::find_if(doc["timers"].begin(), doc["timers"].end(),
                                     [](const json& row) { return row["state"] == "claiming"; });
  ASSERT_NE(claiming, doc["timers"].end());
  EXPECT_EQ((*claiming)["pid"], k.dead);
  EXPECT_EQ((*claiming)["slot"], free_index);
  EXPECT_EQ((*claiming)["pid_alive"], false);
}

TEST(TimerDumpCli, Prometheus) {
  KnownTable k;
  const auto result = run_dump(table_arg(k.t) + " --prometheus");
  ASSERT_EQ(result.exit_code, 0);
  const std::string label = "{table=\"" + k.t.file.path().string() + "\"}";
  for (const std::string& sample :
       {"shmtimer_server_alive" + label + " 0\n", "shmtimer_live_timers" + label + " 3\n",
        "shmtimer_overdue_timers" + label + " 1\n", "shmtimer_acquires_total" + label + " 4\n",
        "shmtimer_capacity_slots" + label + " 256\n", "shmtimer_reaps_total" + label + " 0\n"})
    EXPECT_NE(result.out.find(sample), std::string::npos) << sample << result.out;
  EXPECT_NE(result.out.find("# HELP shmtimer_live_timers "), std::string::npos);
  EXPECT_NE(result.out.find("# TYPE shmtimer_reaps_total counter\n"), std::string::npos);
  EXPECT_EQ(run_dump(table_arg(k.t) + " --prometheus --pid 1").exit_code, 1);
}

TEST(TimerDumpCli, CheckExits3WithoutALiveServerAnd0WithOne) {
  TempTable t;
  const auto without = run_dump(table_arg(t) + " --check", true);
  EXPECT_EQ(without.exit_code, 3);
  EXPECT_NE(without.out.find("not served"), std::string::npos) << without.out;
  {
    TimerServer server(t.table);  // this process now holds the table; no thread needed
    server.run_once();            // one heartbeat
    const auto with = run_dump(table_arg(t) + " --check", true);
    EXPECT_EQ(with.exit_code, 0) << with.out;
    EXPECT_NE(with.out.find(": served; server pid " + std::to_string(::getpid()) + " (alive), last heartbeat "),
              std::string::npos)
        << with.out;
    const json doc = json::parse(run_dump(table_arg(t) + " --check --json").out);
    EXPECT_EQ(doc["server"]["pid"], ::getpid());
    EXPECT_EQ(doc["server"]["alive"], true);
    EXPECT_EQ(doc["server"]["heartbeat_count"], 1);
    EXPECT_GE(doc["server"]["heartbeat_age_s"].get<double>(), 0.0);
    EXPECT_NE(run_dump(table_arg(t) + " --prometheus --check").out.find("shmtimer_server_alive{"), std::string::npos);
  }
  EXPECT_EQ(run_dump(table_arg(t) + " --check --json").exit_code, 3);  // the server is gone again
}

TEST(TimerDumpCli, CheckIsNotFooledByAForgedHeaderNamingAnotherLiveProcess) {
  TempTable t;
  // The table's owner writes a header naming init, with init's real start time and a
  // fresh heartbeat: init neither has the table mapped nor (as a rule) its owner's uid.
  auto& h = t.table->header();
  h.server_pid.store(1);
  h.server_identity.store(testing::identity_of(1));
  h.heartbeat_mono_ns.store(monotonic_now_ns());
  h.heartbeat_count.store(5);
  const auto forged = run_dump(table_arg(t) + " --check", true);
  EXPECT_EQ(forged.exit_code, 3) << forged.out;
  EXPECT_NE(forged.out.find("not served"), std::string::npos) << forged.out;
}

TEST(TimerDumpCli, CheckFailsForALiveServerThatHasNotBeatenForLong) {
  TempTable t;
  TimerServer server(t.table);
  server.run_once_at(monotonic_now_ns() - 120 * 1'000'000'000ULL);  // its last round: two minutes ago
  const auto stale = run_dump(table_arg(t) + " --check", true);
  EXPECT_EQ(stale.exit_code, 3) << stale.out;
}

// One rule for "a live server holds the table" (layout::heartbeat_stale_after_ns): a server
// that sleeps at most 100 ms is stale after 4 x 100 ms + 5 s, for --check as for a client.
TEST(TimerDumpCli, CheckAndAClientAgreeWhenAServersHeartbeatIsStale) {
  TempTable t;
  ServerOptions options;
  options.policy.max_interval = 100ms;
  TimerServer server(t.table, options);
  const auto judged_at = [&](std::uint64_t age_ms) {
    server.run_once_at(monotonic_now_ns() - age_ms * 1'000'000);  // its last round: that long ago
    bool client_armed = true;
    try {
      ShmTimerClient(t.table).acquire("judged", SteadyClock::now() + 10s);  // a new client: no trusted look
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kNoServer) << e.what();
      client_armed = false;
    }
    const bool check_served = run_dump(table_arg(t) + " --check", true).exit_code == 0;
    EXPECT_EQ(check_served, client_armed) << "a heartbeat " << age_ms << " ms old";
    return check_served;
  };
  EXPECT_TRUE(judged_at(3'000));   // within 5.4 s
  EXPECT_FALSE(judged_at(8'000));  // past it, long before the 65 s of a server that did not say
}

TEST(TimerDumpCli, AWatchedTableTruncatedUnderItIsAClearErrorNotSigbus) {
  TempTable t;
  const pid_t dump = ::fork();
  if (dump == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execl(TIMER_DUMP_PATH, TIMER_DUMP_PATH, "--table", t.file.path().c_str(), "--watch", "0.02",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(::truncate(t.file.path().c_str(), 4096), 0);
  const int status = testing::wait_child(dump, 10s);
  ASSERT_TRUE(WIFEXITED(status)) << "timer-dump died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

TEST(TimerDumpCli, ErrorExitCodes) {
  TempPath missing;
  const auto no_file = run_dump("--table " + missing.path().string(), true);
  EXPECT_EQ(no_file.exit_code, 2);
  EXPECT_NE(no_file.out.find("No such file"), std::string::npos) << no_file.out;

  TempPath garbage;
  std::ofstream(garbage.path()) << std::string(8192, 'z');
  ::chmod(garbage.path().c_str(), 0600);
  const auto not_table = run_dump("--table " + garbage.path().string(), true);
  EXPECT_EQ(not_table.exit_code, 2);
  EXPECT_NE(not_table.out.find("not a shmtimer table"), std::string::npos) << not_table.out;

  TempTable future;
  future.table->header().version_major = 4;  // a plain field of the mapped file
  const auto version = run_dump(table_arg(future) + " --json", true);
  EXPECT_EQ(version.exit_code, 2);
  EXPECT_NE(version.out.find("table format version 4."), std::string::npos) << version.out;

  for (const char* usage : {"--no-such-flag", "--pid", "--pid abc", "--pid 0", "--watch 0", "--json --prometheus",
                            "--check --watch 1", "stray-argument"}) {
    const auto bad = run_dump(std::string(usage) + " --table " + garbage.path().string(), true);
    EXPECT_EQ(bad.exit_code, 1) << usage << ": " << bad.out;
    EXPECT_NE(bad.out.find("--help"), std::string::npos) << usage << ": " << bad.out;
  }
}

TEST(TimerDumpCli, HelpVersionAndTheDefaultTable) {
  const auto help = run_dump("--help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag : {"--table", "--json", "--watch", "--pid", "--scope", "--expired", "--all", "--check",
                           "--prometheus", "Exit status"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  EXPECT_NE(run_dump("--version").out.find("timer-dump 1.0.0"), std::string::npos);

  TempTable t;
  ::setenv("SHMTIMER_TABLE", t.file.path().c_str(), 1);
  const auto from_env = run_dump("--json");
  ::unsetenv("SHMTIMER_TABLE");
  ASSERT_EQ(from_env.exit_code, 0);
  EXPECT_EQ(json::parse(from_env.out)["table"]["path"], t.file.path().string());
}

TEST(TimerDumpCli, TheManualShowsTheCurrentHelpText) {
  std::ifstream manual(TIMER_DUMP_MANUAL);
  ASSERT_TRUE(manual) << TIMER_DUMP_MANUAL;
  const std::string text((std::istreambuf_iterator<char>(manual)), std::istreambuf_iterator<char>());
  const std::string marker = "`timer-dump --help` prints";
  const auto fence = text.find("```\n", text.find(marker));
  ASSERT_NE(text.find(marker), std::string::npos);
  ASSERT_NE(fence, std::string::npos);
  const auto start = fence + 4;
  const std::string copy = text.substr(start, text.find("```", start) - start);
  EXPECT_EQ(copy, run_dump("--help").out);
}

// A directory under /dev/shm with tables in it, as the private directory holds them;
// removed with everything in it when the test ends.
class TableDirectory {
 public:
  TableDirectory() {
    char dir[] = "/dev/shm/shmtimer-test-dir-XXXXXX";
    if (::mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = dir;
  }
  ~TableDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::shared_ptr<Table> add(const std::string& name) {
    CreateOptions options;
    options.capacity = 64;
    return Table::create(dir_ / name, options);
  }
  const std::filesystem::path& path() const { return dir_; }
  std::string arg() const { return " --dir " + dir_.string(); }

 private:
  std::filesystem::path dir_;
};

TEST(TimerDumpCli, ListShowsEveryTableInTheDirectoryWithItsArmedTimersAndServer) {
  TableDirectory dir;
  EXPECT_EQ(run_dump("--list" + dir.arg()).out, "no tables in " + dir.path().string() + "\n");
  auto job = dir.add("job-train-0123456789abcdef.table");
  dir.add("table");
  std::ofstream(dir.path() / "notes.txt") << "not a table";
  ShmTimerClient client(job, SIGKILL, kArmWithoutServer);
  client.acquire("step", SteadyClock::now() + 1h);
  TimerServer server(job);  // a live server of its own process, with a fresh heartbeat
  server.run_once();
  const auto listed = run_dump("--list" + dir.arg());
  ASSERT_EQ(listed.exit_code, 0) << listed.out;
  const std::string p = dir.path().string() + "/";
  const std::string& out = listed.out;
  const auto job_line = out.find(p + "job-train-0123456789abcdef.table  capacity 64  armed 1  served by pid " +
                                 std::to_string(::getpid()) + "\n");
  const auto junk_line = out.find(p + "notes.txt  not a table: ");
  const auto idle_line = out.find(p + "table  capacity 64  armed 0  not served\n");
  EXPECT_EQ(job_line, 0u) << out;  // sorted by name
  EXPECT_TRUE(junk_line != std::string::npos && junk_line > job_line) << out;
  EXPECT_TRUE(idle_line != std::string::npos && idle_line > junk_line) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3) << out;
  EXPECT_EQ(run_dump("--list --json" + dir.arg(), true).exit_code, 1);  // --list takes only --dir
}

TEST(TimerDumpCli, JobPicksTheTableMadeUpForThatRunIdAndNoOther) {
  TableDirectory dir;
  auto alpha = dir.add("job-alpha-0123456789abcdef.table");
  dir.add("job-alpha-beta-0123456789abcdef.table");  // "alpha" is a prefix of its run id
  dir.add("job-a_b-0123456789abcdef.table");         // "a/b" sanitized, as the Python module does
  ShmTimerClient(alpha, SIGKILL, kArmWithoutServer).acquire("only-in-alpha", SteadyClock::now() + 1h);
  const auto picked = run_dump("--job alpha --json" + dir.arg());
  ASSERT_EQ(picked.exit_code, 0) << picked.out;
  EXPECT_EQ(json::parse(picked.out)["table"]["path"], (dir.path() / "job-alpha-0123456789abcdef.table").string());
  EXPECT_EQ(json::parse(run_dump("--job alpha-beta --json" + dir.arg()).out)["table"]["path"],
            (dir.path() / "job-alpha-beta-0123456789abcdef.table").string());
  EXPECT_EQ(json::parse(run_dump("--job a/b --json" + dir.arg()).out)["table"]["path"],
            (dir.path() / "job-a_b-0123456789abcdef.table").string());
  const auto none = run_dump("--job gamma" + dir.arg(), true);
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.out.find("no table of job 'gamma'"), std::string::npos) << none.out;
  dir.add("job-alpha-fedcba9876543210.table");  // a second agent of the same run id
  const auto two = run_dump("--job alpha" + dir.arg(), true);
  EXPECT_EQ(two.exit_code, 2);
  EXPECT_NE(two.out.find("2 tables of job 'alpha'"), std::string::npos) << two.out;
  EXPECT_EQ(run_dump("--job alpha --table /dev/shm/x" + dir.arg(), true).exit_code, 1);
}

// --watch into a pipe: one JSON document per line per refresh, until SIGINT, then exit 0.
TEST(TimerDumpCli, WatchRefreshesUntilSigint) {
  KnownTable k;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    const std::string table = k.t.file.path().string();
    ::execl(TIMER_DUMP_PATH, TIMER_DUMP_PATH, "--table", table.c_str(), "--json", "--watch", "0.01",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  FILE* in = ::fdopen(fds[0], "r");
  char* line = nullptr;
  std::size_t capacity = 0;
  for (int refresh = 0; refresh < 3; ++refresh) {
    ASSERT_GT(::getline(&line, &capacity, in), 0);
    EXPECT_EQ(scopes_of(json::parse(line)), (std::vector<std::string>{"overdue-job", "alpha/step", "beta/step"}));
  }
  ::free(line);
  ::kill(pid, SIGINT);
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(pid)));
  std::fclose(in);
}

}  // namespace
}  // namespace shmtimer
