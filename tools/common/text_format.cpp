// The text output: a header block of "label  value" lines, a blank line, then one row per
// selected slot under column titles. Scope goes last because it is the only column of
// unbounded width.
#include <cstdio>
#include <numeric>

#include "format.hpp"

namespace timer_dump {

namespace {

using shmtimer::RowState;

std::string pad(std::string text, std::size_t width) {
  if (text.size() < width) text.append(width - text.size(), ' ');
  return text + ' ';
}

std::string line(const char* label, const std::string& value) { return pad(label, 10) + value + '\n'; }

// Scopes are arbitrary bytes: control characters are shown as \xNN so a row stays a row.
std::string printable(const std::string& scope) {
  std::string out;
  for (const char c : scope) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7f) {
      out += c;
      continue;
    }
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", byte);
    out += buf;
  }
  return out;
}

std::string server_text(const shmtimer::HeaderInfo& h) {
  std::string text = h.server_pid == 0
                         ? std::string("none")
                         : "pid " + std::to_string(h.server_pid) + (h.server_alive ? " (alive)" : " (not running)");
  if (h.heartbeat_age_ns < 0) return text + ", no heartbeat yet";
  return text + ", last heartbeat " + format_duration(h.heartbeat_age_ns) + " ago, " +
         std::to_string(h.heartbeat_count) + " rounds";
}

std::string counters_text(const shmtimer::TableCounters& c) {
  return "acquires " + std::to_string(c.acquires) + ", releases " + std::to_string(c.releases) + ", reaps " +
         std::to_string(c.reaps) + ", full failures " + std::to_string(c.full_failures) + ", fifo requests " +
         std::to_string(c.fifo_requests) + ", failed kills " + std::to_string(c.failed_kills) + ", liveness unknown " +
         std::to_string(std::accumulate(c.liveness_unknown.begin(), c.liveness_unknown.end(), std::uint64_t{0}));
}

std::string slots_text(const SlotCounts& s) {
  return std::to_string(s.armed) + " armed, " + std::to_string(s.idle) + " idle, " + std::to_string(s.claiming) +
         " claiming, " + std::to_string(s.reclaimable) + " reclaimable, " + std::to_string(s.free) +
         " free (free slots are counted, not listed)";
}

std::string filter_text(const Snapshot& snapshot) {
  const Filter& f = snapshot.filter;
  std::string text;
  auto add = [&text](const std::string& part) { text += (text.empty() ? "" : ", ") + part; };
  if (f.pid) add("pid " + std::to_string(*f.pid));
  if (f.scope) add("scope contains \"" + printable(*f.scope) + "\"");
  if (f.expired_only) add("expired");
  return text + ": " + std::to_string(snapshot.rows.size()) + " shown";
}

std::string header_text(const Snapshot& snapshot) {
  const auto& h = snapshot.header;
  std::string text = line("table", h.path.string());
  text += line("format", std::to_string(h.version_major) + "." + std::to_string(h.version_minor) + ", created " +
                             format_local_time(static_cast<double>(h.created_unix_ns) / 1e9) + " by uid " +
                             std::to_string(h.creator_uid));
  text += line("capacity", std::to_string(h.capacity) + " slots, " + std::to_string(h.used_slots) + " used");
  text += line("server", server_text(h));
  text += line("counters", counters_text(h.counters));
  text += line("timers",
               std::to_string(snapshot.slots.armed) + " live, " + std::to_string(snapshot.slots.overdue) + " overdue");
  if (snapshot.filter.all) text += line("slots", slots_text(snapshot.slots));
  if (snapshot.filter.narrows()) text += line("filter", filter_text(snapshot));
  return text;
}

// Column widths; the deadline is "YYYY-MM-DD HH:MM:SS.mmm".
constexpr std::size_t kStateWidth = 8, kPidWidth = 7, kAliveWidth = 5, kDeadlineWidth = 23, kRemainingWidth = 10,
                      kSignalWidth = 8, kOriginWidth = 6, kSlotWidth = 8;

std::string columns_title(bool all) {
  return (all ? pad("STATE", kStateWidth) : "") + pad("PID", kPidWidth) + pad("ALIVE", kAliveWidth) +
         pad("DEADLINE", kDeadlineWidth) + pad("REMAINING", kRemainingWidth) + pad("SIGNAL", kSignalWidth) +
         pad("ORIGIN", kOriginWidth) + pad("SLOT", kSlotWidth) + "SCOPE\n";
}

std::string row_text(const DumpRow& row, bool all) {
  const auto& t = row.timer;
  const bool armed = row.armed();
  const bool has_key = t.state == RowState::kArmed || t.state == RowState::kIdle;
  return (all ? pad(shmtimer::to_string(t.state), kStateWidth) : "") + pad(std::to_string(t.pid), kPidWidth) +
         pad(t.pid_alive   ? "yes"
             : t.pid_known ? "no"
                           : "?",
             kAliveWidth) +
         pad(armed ? format_local_time(row.deadline_unix_s) : "-", kDeadlineWidth) +
         pad(armed ? format_duration(t.remaining_ns) : "-", kRemainingWidth) +
         pad(has_key ? signal_label(t.signal) : "-", kSignalWidth) +
         pad(has_key ? origin_name(t.origin) : "-", kOriginWidth) + pad(std::to_string(t.slot), kSlotWidth) +
         printable(t.scope) + '\n';
}

}  // namespace

std::string format_text(const Snapshot& snapshot) {
  std::string text = header_text(snapshot) + '\n';
  if (snapshot.rows.empty()) {
    const bool narrowed = snapshot.filter.narrows();
    return text + (narrowed              ? "no slot matches the filter\n"
                   : snapshot.filter.all ? "no slot in use\n"
                                         : "no armed timers\n");
  }
  text += columns_title(snapshot.filter.all);
  for (const auto& row : snapshot.rows) text += row_text(row, snapshot.filter.all);
  return text;
}

std::string format_check_line(const Snapshot& snapshot) {
  const auto& h = snapshot.header;
  return h.path.string() + ": " + (h.served() ? "served" : "not served") + "; server " + server_text(h) + '\n';
}

}  // namespace timer_dump
