// The Prometheus text exposition format (version 0.0.4), as the node_exporter textfile
// collector and a Prometheus scrape read it: for each metric a HELP line, a TYPE line and
// its samples, each labelled with the table's path so that several tables on one host
// stay apart.
#include <charconv>

#include "format.hpp"

namespace timer_dump {

namespace {

std::string number(std::uint64_t value) { return std::to_string(value); }

void server_metrics(ExpositionWriter& out, const shmtimer::HeaderInfo& h) {
  const std::string version = std::to_string(h.version_major) + "." + std::to_string(h.version_minor);
  out.gauge("shmtimer_table_info", "Always 1; the version label is the table's format version.", "1",
            "version=\"" + version + '"');
  out.gauge("shmtimer_server_alive", "1 when a live server (shmtimerd) holds the table, else 0.",
            h.server_alive ? "1" : "0");
  out.gauge("shmtimer_server_pid", "Pid of the server recorded in the table; 0 when none.",
            std::to_string(h.server_pid));
  // No sample when no server ever wrote a heartbeat: an age of "never" has no number.
  out.gauge("shmtimer_heartbeat_age_seconds", "Seconds since the server's last scan round.",
            h.heartbeat_age_ns < 0 ? "" : ExpositionWriter::number(static_cast<double>(h.heartbeat_age_ns) / 1e9));
  out.counter("shmtimer_heartbeats_total", "Scan rounds done by the table's servers.", number(h.heartbeat_count));
  out.counter("shmtimer_server_starts_total", "Servers that started on the table (a restart counts one).",
              number(h.server_starts));
  out.counter("shmtimer_server_takeovers_total",
              "Server starts that took the table over from a server that died holding it.", number(h.server_takeovers));
}

void slot_metrics(ExpositionWriter& out, const shmtimer::HeaderInfo& h, const SlotCounts& s) {
  out.gauge("shmtimer_capacity_slots", "Slots in the table.", number(h.capacity));
  out.gauge("shmtimer_used_slots", "Slots claimed or being claimed.", number(h.used_slots));
  out.gauge("shmtimer_live_timers", "Armed timers.", number(s.armed));
  out.gauge("shmtimer_idle_timers", "Claimed slots whose timer is not armed (released, kept for reuse).",
            number(s.idle));
  out.gauge("shmtimer_overdue_timers", "Armed timers at or past their deadline, not yet reaped.", number(s.overdue));
  out.gauge("shmtimer_reclaimable_slots", "Slots whose owner process is gone (the server frees them).",
            number(s.reclaimable));
}

void counter_metrics(ExpositionWriter& out, const shmtimer::TableCounters& c) {
  out.counter("shmtimer_acquires_total", "Timer acquires (arms).", number(c.acquires));
  out.counter("shmtimer_releases_total", "Timer releases (disarms).", number(c.releases));
  out.counter("shmtimer_reaps_total", "Processes signalled because a timer expired.", number(c.reaps));
  out.counter("shmtimer_full_failures_total", "Acquires refused because the table was full.", number(c.full_failures));
  out.counter("shmtimer_fifo_requests_total", "Requests received through the FIFO shim.", number(c.fifo_requests));
  out.counter("shmtimer_failed_kills_total", "Signals the kernel refused to deliver (each retry counts).",
              number(c.failed_kills));
  out.family("shmtimer_liveness_unknown_total", "counter",
             "Looks at a process that could not tell whether it runs or may be signalled (it was kept as alive).");
  for (std::size_t reason = 0; reason < c.liveness_unknown.size(); ++reason)
    out.sample("shmtimer_liveness_unknown_total", number(c.liveness_unknown[reason]),
               std::string("reason=\"") + shmtimer::liveness_unknown_label(reason) + '"');
}

}  // namespace

ExpositionWriter::ExpositionWriter(const std::string& table_path)
    : table_label_("table=\"" + escape_label_value(table_path) + '"') {}

std::string ExpositionWriter::number(double value) {
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof buf, value);  // shortest exact form
  return std::string(buf, result.ptr);
}

void ExpositionWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  text_.append("# HELP ").append(name).append(" ").append(help).append("\n");
  text_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void ExpositionWriter::sample(std::string_view name, std::string_view value, std::string_view labels) {
  text_.append(name).append("{").append(table_label_);
  if (!labels.empty()) text_.append(",").append(labels);
  text_.append("} ").append(value).append("\n");
}

void ExpositionWriter::gauge(std::string_view name, std::string_view help, std::string_view value,
                             std::string_view labels) {
  family(name, "gauge", help);
  if (!value.empty()) sample(name, value, labels);
}

void ExpositionWriter::counter(std::string_view name, std::string_view help, std::string_view value) {
  family(name, "counter", help);
  sample(name, value);
}

void ExpositionWriter::histogram(std::string_view name, std::string_view help,
                                 const shmtimer::Histogram::Counts& counts) {
  family(name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < counts.buckets.size(); ++i) {
    cumulative += counts.buckets[i];
    const bool last = i == shmtimer::Histogram::kBoundsSeconds.size();
    const std::string le = last ? "+Inf" : number(shmtimer::Histogram::kBoundsSeconds[i]);
    sample(bucket, std::to_string(cumulative), "le=\"" + le + '"');
  }
  sample(std::string(name) + "_sum", number(counts.sum_seconds));
  sample(std::string(name) + "_count", std::to_string(counts.count));
}

void write_table_metrics(ExpositionWriter& out, const Snapshot& snapshot) {
  server_metrics(out, snapshot.header);
  slot_metrics(out, snapshot.header, snapshot.slots);
  counter_metrics(out, snapshot.header.counters);
}

std::string escape_label_value(const std::string& value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string format_prometheus(const Snapshot& snapshot) {
  ExpositionWriter out(snapshot.header.path.string());
  write_table_metrics(out, snapshot);
  return out.take();
}

}  // namespace timer_dump
