// The Prometheus text exposition format (version 0.0.4), as the node_exporter textfile
// collector reads it: for each metric a HELP line, a TYPE line and one sample, labelled
// with the table's path so that several tables on one host stay apart.
#include <charconv>
#include <vector>

#include "format.hpp"

namespace timer_dump {

namespace {

struct Metric {
  const char* name;
  const char* type;  // "gauge" or "counter"
  const char* help;
  std::string value;
  std::string extra_labels = {};  // `,name="value"` pairs after the table label
};

std::string number(std::uint64_t value) { return std::to_string(value); }

std::string number(double value) {
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof buf, value);  // shortest exact form
  return std::string(buf, result.ptr);
}

std::string metric_text(const Metric& m, const std::string& table_label) {
  std::string text = std::string("# HELP ") + m.name + ' ' + m.help + '\n';
  text += std::string("# TYPE ") + m.name + ' ' + m.type + '\n';
  if (!m.value.empty()) text += std::string(m.name) + "{table=\"" + table_label + '"' + m.extra_labels + "} " + m.value + '\n';
  return text;
}

std::vector<Metric> server_metrics(const shmtimer::HeaderInfo& h) {
  const std::string version = std::to_string(h.version_major) + "." + std::to_string(h.version_minor);
  return {
      {"shmtimer_table_info", "gauge", "Always 1; the version label is the table's format version.", "1",
       ",version=\"" + version + '"'},
      {"shmtimer_server_alive", "gauge", "1 when a live server (shmtimerd) holds the table, else 0.",
       h.server_alive ? "1" : "0"},
      {"shmtimer_server_pid", "gauge", "Pid of the server recorded in the table; 0 when none.",
       std::to_string(h.server_pid)},
      // No sample when no server ever wrote a heartbeat: an age of "never" has no number.
      {"shmtimer_heartbeat_age_seconds", "gauge", "Seconds since the server's last scan round.",
       h.heartbeat_age_ns < 0 ? "" : number(static_cast<double>(h.heartbeat_age_ns) / 1e9)},
      {"shmtimer_heartbeats_total", "counter", "Scan rounds done by the table's servers.", number(h.heartbeat_count)},
  };
}

std::vector<Metric> slot_metrics(const shmtimer::HeaderInfo& h, const SlotCounts& s) {
  return {
      {"shmtimer_capacity_slots", "gauge", "Slots in the table.", number(h.capacity)},
      {"shmtimer_used_slots", "gauge", "Slots claimed or being claimed.", number(h.used_slots)},
      {"shmtimer_live_timers", "gauge", "Armed timers.", number(s.armed)},
      {"shmtimer_overdue_timers", "gauge", "Armed timers at or past their deadline, not yet reaped.",
       number(s.overdue)},
      {"shmtimer_reclaimable_slots", "gauge", "Slots whose owner process is gone (the server frees them).",
       number(s.reclaimable)},
  };
}

std::vector<Metric> counter_metrics(const shmtimer::TableCounters& c) {
  return {
      {"shmtimer_acquires_total", "counter", "Timer acquires (arms).", number(c.acquires)},
      {"shmtimer_releases_total", "counter", "Timer releases (disarms).", number(c.releases)},
      {"shmtimer_reaps_total", "counter", "Processes signalled because a timer expired.", number(c.reaps)},
      {"shmtimer_full_failures_total", "counter", "Acquires refused because the table was full.",
       number(c.full_failures)},
      {"shmtimer_fifo_requests_total", "counter", "Requests received through the FIFO shim.",
       number(c.fifo_requests)},
  };
}

}  // namespace

std::string escape_label_value(const std::string& value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_prometheus(const Snapshot& snapshot) {
  const auto& h = snapshot.header;
  const std::string table_label = escape_label_value(h.path.string());
  std::string text;
  for (const auto& group : {server_metrics(h), slot_metrics(h, snapshot.slots), counter_metrics(h.counters)})
    for (const auto& metric : group) text += metric_text(metric, table_label);
  return text;
}

}  // namespace timer_dump
