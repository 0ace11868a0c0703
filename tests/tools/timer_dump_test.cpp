// timer-dump's formats and filters as functions: a hand-made Snapshot with known values
// gives exact text, JSON and Prometheus output, in a fixed time zone. The binary itself
// (flags, exit codes, live tables) is tested in timer_dump_cli_test.cpp.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <ctime>
#include <set>
#include <sstream>

#include "format.hpp"
#include "incident_list.hpp"
#include "json_format.hpp"
#include "snapshot.hpp"
#include "test_support.hpp"

namespace timer_dump {
namespace {

using shmtimer::RowState;
using shmtimer::TimerRow;
using shmtimer::layout::Origin;

constexpr double kT0 = 1'700'000'000;  // 2023-11-14 22:13:20 UTC

void use_time_zone(const char* tz) {
  ::setenv("TZ", tz, 1);
  ::tzset();
}

DumpRow make_row(std::uint64_t slot, RowState state, pid_t pid, bool alive, std::string scope,
                 std::int64_t remaining_ns = 0, int signal = 9, Origin origin = Origin::kTable) {
  TimerRow t;
  t.slot = slot;
  t.state = state;
  t.pid = pid;
  t.pid_alive = alive;
  t.scope = std::move(scope);
  t.signal = signal;
  t.origin = origin;
  DumpRow row{t, 0};
  if (state == RowState::kArmed) {
    row.timer.deadline_ns = 5'000'000'000'000 + static_cast<std::uint64_t>(remaining_ns + 1'000'000'000);
    row.timer.remaining_ns = remaining_ns;
    row.deadline_unix_s = kT0 + 100 + static_cast<double>(remaining_ns) / 1e9;
  }
  return row;
}

// A table at kT0 + 100 s: an overdue timer, a punctual one from the FIFO shim, an idle
// slot, and a slot left mid-claim by a dead process.
std::vector<DumpRow> sample_rows() {
  return {make_row(58, RowState::kArmed, 6285, true, "demo/hung-step", -250'000'000),
          make_row(192, RowState::kArmed, 6286, true, "demo/punctual-step", 1'949'600'000, 15, Origin::kFifo),
          make_row(7, RowState::kIdle, 6286, true, "demo/idle"), make_row(9, RowState::kClaiming, 4242, false, "")};
}

Snapshot sample_snapshot(Filter filter = {}) {
  Snapshot s;
  s.header.path = "/dev/shm/shmtimer.1000.table";
  s.header.version_major = 1;
  s.header.capacity = 4096;
  s.header.used_slots = 4;
  s.header.creator_uid = 1000;
  s.header.created_unix_ns = static_cast<std::uint64_t>(kT0) * 1'000'000'000;
  s.header.server_pid = 6281;
  s.header.server_alive = true;
  s.header.heartbeat_count = 1234;
  s.header.server_starts = 3;
  s.header.server_takeovers = 1;
  s.header.heartbeat_age_ns = 12'000'000;
  s.header.counters = {5, 2, 1, 0, 3};
  s.filter = filter;
  const auto rows = sample_rows();
  s.slots = count_slots(rows, s.header.capacity);
  for (const auto& row : rows)
    if (selects(filter, row)) s.rows.push_back(row);
  s.taken_unix_s = kT0 + 100;
  return s;
}

TEST(TimerDumpFormat, Durations) {
  EXPECT_EQ(format_duration(0), "0.0ms");
  EXPECT_EQ(format_duration(249'300'000), "249.3ms");
  EXPECT_EQ(format_duration(-250'000'000), "-250.0ms");
  EXPECT_EQ(format_duration(-1'250'000'000), "-1.250s");
  EXPECT_EQ(format_duration(303'000'000'000), "5m03s");
  EXPECT_EQ(format_duration(7'500'000'000'000), "2h05m");
  EXPECT_EQ(format_duration(-273'600'000'000'000), "-3d04h");
  EXPECT_FALSE(format_duration(INT64_MIN).empty());
}

TEST(TimerDumpFormat, LocalTimeInTheProcessTimeZone) {
  use_time_zone("UTC");
  EXPECT_EQ(format_local_time(kT0 + 0.25), "2023-11-14 22:13:20.250");
  EXPECT_EQ(format_local_time(kT0 + 0.25, true), "2023-11-14T22:13:20.250+00:00");
  use_time_zone("XYZ-02:00");  // POSIX: two hours east of UTC
  EXPECT_EQ(format_local_time(kT0, true), "2023-11-15T00:13:20.000+02:00");
  EXPECT_EQ(format_local_time(-1), "?");
  EXPECT_EQ(format_local_time(1e300), "?");
  use_time_zone("UTC");
}

TEST(TimerDumpFormat, SignalsAndOrigins) {
  EXPECT_EQ(signal_name(9).value_or(""), "SIGKILL");
  EXPECT_EQ(signal_label(15), "SIGTERM");
  EXPECT_EQ(signal_label(0), "none");
  EXPECT_EQ(signal_label(-1), "none");
  EXPECT_FALSE(signal_name(0).has_value());
  EXPECT_STREQ(origin_name(Origin::kFifo), "fifo");
  EXPECT_STREQ(origin_name(Origin::kTable), "table");
}

TEST(TimerDumpFormat, TextForKnownTimers) {
  use_time_zone("UTC");
  EXPECT_EQ(format_text(sample_snapshot()),
            "table      /dev/shm/shmtimer.1000.table\n"
            "format     1.0, created 2023-11-14 22:13:20.000 by uid 1000\n"
            "capacity   4096 slots, 4 used\n"
            "server     pid 6281 (alive), last heartbeat 12.0ms ago, 1234 rounds\n"
            "counters   acquires 5, releases 2, reaps 1, full failures 0, fifo requests 3, failed kills 0, liveness "
            "unknown 0\n"
            "timers     2 live, 1 overdue\n"
            "\n"
            "PID     ALIVE DEADLINE                REMAINING  SIGNAL   ORIGIN SLOT     SCOPE\n"
            "6285    yes   2023-11-14 22:14:59.750 -250.0ms   SIGKILL  table  58       demo/hung-step\n"
            "6286    yes   2023-11-14 22:15:01.949 1.950s     SIGTERM  fifo   192      demo/punctual-step\n");
}

TEST(TimerDumpFormat, TextWithAllListsIdleAndClaimingSlotsAndCountsFreeOnes) {
  use_time_zone("UTC");
  Filter all;
  all.all = true;
  const std::string text = format_text(sample_snapshot(all));
  EXPECT_NE(text.find("slots      2 armed, 1 idle, 1 claiming, 1 reclaimable, 4092 free"), std::string::npos) << text;
  EXPECT_NE(text.find("STATE    PID"), std::string::npos) << text;
  EXPECT_NE(text.find("idle     6286    yes   -                       -          SIGKILL  table  7        demo/idle\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("claiming 4242    no    -                       -          -        -      9        \n"),
            std::string::npos)
      << text;
}

TEST(TimerDumpFormat, TextOfAnEmptyOrFilteredTable) {
  Filter by_pid;
  by_pid.pid = 1;
  const std::string text = format_text(sample_snapshot(by_pid));
  EXPECT_NE(text.find("filter     pid 1: 0 shown\n"), std::string::npos) << text;
  EXPECT_NE(text.find("no slot matches the filter\n"), std::string::npos) << text;
  Snapshot empty = sample_snapshot();
  empty.rows.clear();
  empty.header.server_pid = 0;
  empty.header.server_alive = false;
  empty.header.heartbeat_age_ns = -1;
  const std::string empty_text = format_text(empty);
  EXPECT_NE(empty_text.find("server     none, no heartbeat yet\n"), std::string::npos) << empty_text;
  EXPECT_NE(empty_text.find("no armed timers\n"), std::string::npos) << empty_text;
}

TEST(TimerDumpFormat, ControlCharactersInAScopeCannotBreakARow) {
  Snapshot s = sample_snapshot();
  s.rows[0].timer.scope = "evil\nscope\x1b[2J";
  const std::string text = format_text(s);
  EXPECT_NE(text.find("evil\\x0ascope\\x1b[2J\n"), std::string::npos) << text;
}

TEST(TimerDumpFormat, CheckLine) {
  Snapshot s = sample_snapshot();
  EXPECT_EQ(format_check_line(s),
            "/dev/shm/shmtimer.1000.table: served; server pid 6281 (alive), last heartbeat 12.0ms ago, 1234 rounds\n");
  s.header.server_alive = false;
  EXPECT_NE(format_check_line(s).find(": not served; server pid 6281 (not running)"), std::string::npos);
}

TEST(TimerDumpFormat, JsonForKnownTimers) {
  use_time_zone("UTC");
  const auto doc = nlohmann::json::parse(format_json(sample_snapshot(), true));
  EXPECT_EQ(doc["schema"], 2);
  EXPECT_EQ(doc["table"]["path"], "/dev/shm/shmtimer.1000.table");
  EXPECT_EQ(doc["table"]["format_version"], "1.0");
  EXPECT_EQ(doc["table"]["capacity"], 4096);
  EXPECT_EQ(doc["table"]["used_slots"], 4);
  EXPECT_EQ(doc["table"]["creator_uid"], 1000);
  EXPECT_DOUBLE_EQ(doc["table"]["created_unix_s"].get<double>(), kT0);
  EXPECT_EQ(doc["server"], nlohmann::json::parse(R"({"pid":6281,"alive":true,"heartbeat_age_s":0.012,
                                                     "heartbeat_count":1234,"starts":3,"takeovers":1})"));
  EXPECT_EQ(doc["counters"], nlohmann::json::parse(R"({"acquires":5,"releases":2,"reaps":1,"full_failures":0,
                                                       "fifo_requests":3,"failed_kills":0,"liveness_unknown":{"descriptors":0,"memory":0,"access":0,"other":0}})"));
  EXPECT_EQ(doc["slots"], nlohmann::json::parse(R"({"live_timers":2,"overdue_timers":1,"idle":1,"claiming":1,
                                                    "reclaimable":1,"free":4092})"));
  EXPECT_EQ(doc["filter"], nlohmann::json::parse(R"({"pid":null,"scope":null,"expired":false,"all":false})"));
  ASSERT_EQ(doc["timers"].size(), 2u);
  const auto& first = doc["timers"][0];
  EXPECT_EQ(first["slot"], 58);
  EXPECT_EQ(first["state"], "armed");
  EXPECT_EQ(first["pid"], 6285);
  EXPECT_EQ(first["pid_alive"], true);
  EXPECT_EQ(first["reclaimable"], false);
  EXPECT_EQ(first["scope"], "demo/hung-step");
  EXPECT_DOUBLE_EQ(first["deadline_unix_s"].get<double>(), kT0 + 99.75);
  EXPECT_EQ(first["deadline_local"], "2023-11-14T22:14:59.750+00:00");
  EXPECT_EQ(first["deadline_mono_ns"], 5'000'750'000'000u);
  EXPECT_DOUBLE_EQ(first["remaining_s"].get<double>(), -0.25);
  EXPECT_EQ(first["overdue"], true);
  EXPECT_EQ(first["signal"], 9);
  EXPECT_EQ(first["signal_name"], "SIGKILL");
  EXPECT_EQ(first["origin"], "table");
  EXPECT_EQ(doc["timers"][1]["origin"], "fifo");
  EXPECT_EQ(doc["timers"][1]["overdue"], false);
  // One line when not pretty (JSON Lines under --watch into a pipe).
  const std::string line = format_json(sample_snapshot(), false);
  EXPECT_EQ(line.find('\n'), line.size() - 1);
}

TEST(TimerDumpFormat, JsonFieldsThatDoNotApplyAreNull) {
  Filter all;
  all.all = true;
  const auto doc = nlohmann::json::parse(format_json(sample_snapshot(all), true));
  ASSERT_EQ(doc["timers"].size(), 4u);
  const auto& claiming = doc["timers"][3];
  EXPECT_EQ(claiming["state"], "claiming");
  EXPECT_EQ(claiming["reclaimable"], true);
  for (const char* key :
       {"deadline_unix_s", "deadline_local", "deadline_mono_ns", "remaining_s", "signal_name", "origin"})
    EXPECT_TRUE(claiming[key].is_null()) << key;
  // Every row has the same keys, in the same order.
  std::set<std::vector<std::string>> shapes;
  const auto ordered = nlohmann::ordered_json::parse(format_json(sample_snapshot(all), true));
  for (const auto& row : ordered["timers"]) {
    std::vector<std::string> keys;
    for (const auto& item : row.items()) keys.push_back(item.key());
    shapes.insert(keys);
  }
  EXPECT_EQ(shapes.size(), 1u);
}

TEST(TimerDumpFormat, JsonReplacesInvalidUtf8InAScope) {
  Snapshot s = sample_snapshot();
  s.rows[0].timer.scope = "bad\xff\xfe";
  const auto doc = nlohmann::json::parse(format_json(s, false));
  EXPECT_EQ(doc["timers"][0]["scope"], "bad\xEF\xBF\xBD\xEF\xBF\xBD");
}

struct Sample {
  std::string name, labels, value;
};

// `name{labels} value`, or nullopt. (No std::regex: GCC 12 warns inside it under ASan.)
std::optional<Sample> parse_sample(const std::string& line) {
  const auto open = line.find('{'), close = line.rfind("} ");
  if (open == std::string::npos || close == std::string::npos || close < open) return std::nullopt;
  Sample sample{line.substr(0, open), line.substr(open + 1, close - open - 1), line.substr(close + 2)};
  const bool name_ok = sample.name.rfind("shmtimer_", 0) == 0 &&
                       sample.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos;
  if (!name_ok || sample.value.empty() || sample.value.find(' ') != std::string::npos) return std::nullopt;
  return sample;
}

// Each sample follows HELP and TYPE lines for its name, and carries the table label.
TEST(TimerDumpFormat, PrometheusExposition) {
  Snapshot s = sample_snapshot();
  s.header.path = "/dev/shm/odd \"name\"\\.table";
  const std::string text = format_prometheus(s);
  const std::string label = R"(table="/dev/shm/odd \"name\"\\.table")";
  std::istringstream in(text);
  std::string line, helped, typed;
  std::map<std::string, std::string> samples;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      helped = line.substr(7, line.find(' ', 7) - 7);
    } else if (line.rfind("# TYPE ", 0) == 0) {
      typed = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_EQ(typed, helped);
      const std::string type = line.substr(line.rfind(' ') + 1);
      EXPECT_TRUE(type == "gauge" || type == "counter") << line;
      EXPECT_EQ(type == "counter", typed.size() > 6 && typed.substr(typed.size() - 6) == "_total") << line;
    } else {
      const auto sample = parse_sample(line);
      ASSERT_TRUE(sample.has_value()) << line;
      EXPECT_EQ(sample->name, typed) << line;
      EXPECT_EQ(sample->labels.rfind(label, 0), 0u) << line;
      samples[sample->name] = sample->value;
    }
  }
  EXPECT_EQ(samples["shmtimer_server_alive"], "1");
  EXPECT_EQ(samples["shmtimer_server_pid"], "6281");
  EXPECT_EQ(samples["shmtimer_heartbeat_age_seconds"], "0.012");
  EXPECT_EQ(samples["shmtimer_heartbeats_total"], "1234");
  EXPECT_EQ(samples["shmtimer_server_starts_total"], "3");
  EXPECT_EQ(samples["shmtimer_server_takeovers_total"], "1");
  EXPECT_EQ(samples["shmtimer_capacity_slots"], "4096");
  EXPECT_EQ(samples["shmtimer_used_slots"], "4");
  EXPECT_EQ(samples["shmtimer_live_timers"], "2");
  EXPECT_EQ(samples["shmtimer_overdue_timers"], "1");
  EXPECT_EQ(samples["shmtimer_reclaimable_slots"], "1");
  EXPECT_EQ(samples["shmtimer_acquires_total"], "5");
  EXPECT_EQ(samples["shmtimer_releases_total"], "2");
  EXPECT_EQ(samples["shmtimer_reaps_total"], "1");
  EXPECT_EQ(samples["shmtimer_full_failures_total"], "0");
  EXPECT_EQ(samples["shmtimer_fifo_requests_total"], "3");
  EXPECT_EQ(samples["shmtimer_table_info"], "1");
  EXPECT_NE(text.find(label + R"(,version="1.0"} 1)"), std::string::npos);
}

TEST(TimerDumpFormat, PrometheusWithoutAServer) {
  Snapshot s = sample_snapshot();
  s.header.server_pid = 0;
  s.header.server_alive = false;
  s.header.heartbeat_age_ns = -1;
  const std::string text = format_prometheus(s);
  EXPECT_NE(text.find("shmtimer_server_alive{table=\"/dev/shm/shmtimer.1000.table\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE shmtimer_heartbeat_age_seconds gauge\n"), std::string::npos);
  EXPECT_EQ(text.find("shmtimer_heartbeat_age_seconds{"), std::string::npos);  // no number for "never"
}

TEST(TimerDumpFormat, LabelEscaping) {
  EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(escape_label_value("/dev/shm/x.table"), "/dev/shm/x.table");
}

std::vector<std::uint64_t> selected_slots(const Filter& filter) {
  std::vector<std::uint64_t> slots;
  for (const auto& row : sample_snapshot(filter).rows) slots.push_back(row.timer.slot);
  return slots;
}

Filter make_filter(std::optional<pid_t> pid, std::optional<std::string> scope, bool expired, bool all) {
  Filter filter;
  filter.pid = pid;
  filter.scope = std::move(scope);
  filter.expired_only = expired;
  filter.all = all;
  return filter;
}

TEST(TimerDumpFilter, EachFilterAloneAndCombined) {
  using Slots = std::vector<std::uint64_t>;
  const auto none = std::nullopt;
  EXPECT_EQ(selected_slots(make_filter(none, none, false, false)), (Slots{58, 192}));
  EXPECT_EQ(selected_slots(make_filter(6286, none, false, false)), (Slots{192}));
  EXPECT_EQ(selected_slots(make_filter(6286, none, false, true)), (Slots{192, 7}));
  EXPECT_EQ(selected_slots(make_filter(none, "punctual", false, false)), (Slots{192}));
  EXPECT_EQ(selected_slots(make_filter(none, "demo/", false, true)), (Slots{58, 192, 7}));
  EXPECT_EQ(selected_slots(make_filter(none, "nothing", false, false)), (Slots{}));
  EXPECT_EQ(selected_slots(make_filter(none, none, true, false)), (Slots{58}));
  EXPECT_EQ(selected_slots(make_filter(none, none, true, true)), (Slots{58}));
  EXPECT_EQ(selected_slots(make_filter(6285, "punctual", false, false)), (Slots{}));
  EXPECT_EQ(selected_slots(make_filter(none, none, false, true)), (Slots{58, 192, 7, 9}));
}

TEST(TimerDumpFilter, OverdueIncludesADeadlineOfExactlyNow) {
  EXPECT_TRUE(make_row(1, RowState::kArmed, 1, true, "s", 0).overdue());
  EXPECT_FALSE(make_row(1, RowState::kArmed, 1, true, "s", 1).overdue());
  EXPECT_FALSE(make_row(1, RowState::kIdle, 1, true, "s").overdue());
}

TEST(TimerDumpFilter, CountsCoverTheWholeTableWhateverTheFilter) {
  Filter by_pid;
  by_pid.pid = 6286;
  const Snapshot s = sample_snapshot(by_pid);
  EXPECT_EQ(s.slots.armed, 2u);
  EXPECT_EQ(s.slots.overdue, 1u);
  EXPECT_EQ(s.slots.idle, 1u);
  EXPECT_EQ(s.slots.claiming, 1u);
  EXPECT_EQ(s.slots.reclaimable, 1u);
  EXPECT_EQ(s.slots.free, 4092u);
}

}  // namespace
}  // namespace timer_dump

namespace {

void write_incident(const std::filesystem::path& dir, const std::string& name, const std::string& event,
                    const std::string& summary) {
  std::filesystem::create_directories(dir / name);
  std::ofstream(dir / name / "event.json") << event;
  std::ofstream(dir / name / "summary.txt") << summary;
}

}  // namespace

TEST(IncidentList, ListsEachReportOldestFirstWithWhoExpiredAndTheVerdict) {
  const auto dir = shmtimer::testing::TempPath("incidents").path();
  write_incident(
      dir, "20261204T200000.000Z-pid20",
      R"({"capture_ms": 41.5, "expired": [{"pid": 20, "scope_id": "step\u001b[2J", "labels": {"rank": "1"}}]})",
      "headline\n\nrows\n\ndiffers: rank 1 (pid 20); 1 of 2 wait in a collective call; the others do not\n");
  write_incident(dir, "20261204T190000.000Z-pid10", "not json", "headline\n\nno process stands out: too few\n");
  const auto listed = timer_dump::list_incidents(dir);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].name, "20261204T190000.000Z-pid10");
  EXPECT_EQ(listed[0].expired, "(no readable event.json)");
  EXPECT_EQ(listed[0].verdict, "no process stands out: too few");
  EXPECT_EQ(listed[1].expired.find('\x1b'), std::string::npos) << listed[1].expired;
  EXPECT_EQ(listed[1].expired.rfind("rank 1 pid 20 'step", 0), 0u) << listed[1].expired;
  EXPECT_DOUBLE_EQ(listed[1].capture_ms, 41.5);
  const std::string text = timer_dump::format_incident_list(listed, dir);
  EXPECT_NE(text.find("captured in 41 ms\n      differs: rank 1 (pid 20)"), std::string::npos) << text;
  EXPECT_EQ(timer_dump::format_incident_list({}, dir), "no incidents in " + dir.string() + "\n");
  std::filesystem::remove_all(dir);
}

TEST(IncidentList, TheLatestSummaryIsTheNewestAndAnUnknownNameIsAnError) {
  const auto dir = shmtimer::testing::TempPath("incidents").path();
  write_incident(dir, "20261204T190000.000Z-pid10", "{}", "old\n");
  write_incident(dir, "20261204T200000.000Z-pid20", "{}", "new\n");
  EXPECT_EQ(timer_dump::incident_summary(dir, "latest"), "new\n");
  EXPECT_EQ(timer_dump::incident_summary(dir, "20261204T190000.000Z-pid10"), "old\n");
  EXPECT_THROW(timer_dump::incident_summary(dir, "../etc"), shmtimer::Error);
  std::filesystem::remove_all(dir);
}
