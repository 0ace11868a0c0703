// timer-dump's text and Prometheus formats, as pure functions of a Snapshot (so they are
// unit tested without spawning the binary), and the small conversions they share. shmtimerd
// (its /metrics and log lines) and the demo print tables with them too; the JSON format is
// timer-dump's alone (tools/timer-dump/json_format.hpp).
//
// The Prometheus metric names are an interface: they are listed in docs/timer-dump.md, and
// a change to them is a change to that page.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shmtimer/server_stats.hpp"

#include "snapshot.hpp"

namespace timer_dump {

// ---- shared conversions (format_util.cpp)

// A signed duration for people: "249.3ms", "-1.250s", "5m03s", "2h05m", "3d04h".
std::string format_duration(std::int64_t ns);
// Wall-clock epoch seconds as local time, to the millisecond: "2025-06-01 12:00:01.250",
// or with `iso` "2025-06-01T12:00:01.250+02:00". "?" when the time cannot be represented.
std::string format_local_time(double unix_s, bool iso = false);
// "SIGKILL" for a known signal number; nullopt for <= 0 (never kills) or an unknown one.
std::optional<std::string> signal_name(int signal);
// What the text output shows: the name, else the number, or "none" for <= 0.
std::string signal_label(int signal);
const char* origin_name(shmtimer::layout::Origin origin);  // "table" or "fifo"

// ---- text (text_format.cpp)

// The header block, a blank line, then one row per selected slot under column titles.
std::string format_text(const Snapshot& snapshot);
// --check's one line: whether a live server holds the table.
std::string format_check_line(const Snapshot& snapshot);

// ---- Prometheus text exposition format (prometheus_format.cpp)

// Writes metric families, every sample labelled table="<path>" (and any extra labels).
// shmtimerd's /metrics adds its own families to the table's with the same writer.
class ExpositionWriter {
 public:
  explicit ExpositionWriter(const std::string& table_path);
  void family(std::string_view name, std::string_view type, std::string_view help);  // HELP and TYPE
  void sample(std::string_view name, std::string_view value, std::string_view labels = {});
  // A family with one sample; an empty value writes the family without a sample.
  void gauge(std::string_view name, std::string_view help, std::string_view value, std::string_view labels = {});
  void counter(std::string_view name, std::string_view help, std::string_view value);
  void histogram(std::string_view name, std::string_view help, const shmtimer::Histogram::Counts& counts);
  std::string take() { return std::move(text_); }
  static std::string number(double value);  // shortest exact form

 private:
  std::string table_label_;
  std::string text_;
};

// Header counters, timer and slot gauges and the server's liveness. Filters do not
// apply: metrics always describe the whole table.
void write_table_metrics(ExpositionWriter& out, const Snapshot& snapshot);
std::string format_prometheus(const Snapshot& snapshot);
// A label value with \, " and newline escaped as the exposition format requires.
std::string escape_label_value(const std::string& value);

}  // namespace timer_dump
