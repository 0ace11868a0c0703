// The JSON output: one document per snapshot. Field names are documented in
// docs/timer-dump.md; a value that does not apply is null rather than absent, so every
// document has the same shape.
#include "json_format.hpp"

#include "format.hpp"

namespace timer_dump {

namespace {

using json = nlohmann::ordered_json;
using shmtimer::RowState;

json nullable(const std::optional<std::string>& value) { return value ? json(*value) : json(nullptr); }

json table_json(const shmtimer::HeaderInfo& h) {
  return {{"path", h.path.string()},
          {"format_version", std::to_string(h.version_major) + "." + std::to_string(h.version_minor)},
          {"capacity", h.capacity},
          {"used_slots", h.used_slots},
          {"creator_uid", h.creator_uid},
          {"created_unix_s", static_cast<double>(h.created_unix_ns) / 1e9}};
}

json server_json(const shmtimer::HeaderInfo& h) {
  return {
      {"pid", h.server_pid},
      {"alive", h.server_alive},
      {"heartbeat_age_s", h.heartbeat_age_ns < 0 ? json(nullptr) : json(static_cast<double>(h.heartbeat_age_ns) / 1e9)},
      {"heartbeat_count", h.heartbeat_count},
      {"starts", h.server_starts},
      {"takeovers", h.server_takeovers}};
}

json counters_json(const shmtimer::TableCounters& c) {
  json unknown = json::object();
  for (std::size_t reason = 0; reason < c.liveness_unknown.size(); ++reason)
    unknown[shmtimer::liveness_unknown_label(reason)] = c.liveness_unknown[reason];
  return {{"acquires", c.acquires},           {"releases", c.releases},           {"reaps", c.reaps},
          {"full_failures", c.full_failures}, {"fifo_requests", c.fifo_requests}, {"failed_kills", c.failed_kills},
          {"liveness_unknown", unknown}};
}

json slots_json(const SlotCounts& s) {
  return {{"live_timers", s.armed}, {"overdue_timers", s.overdue},  {"idle", s.idle},
          {"claiming", s.claiming}, {"reclaimable", s.reclaimable}, {"free", s.free}};
}

json filter_json(const Filter& f) {
  return {{"pid", f.pid ? json(*f.pid) : json(nullptr)},
          {"scope", nullable(f.scope)},
          {"expired", f.expired_only},
          {"all", f.all}};
}

json row_json(const DumpRow& row) {
  const auto& t = row.timer;
  const bool armed = row.armed();
  const bool has_key = t.state == RowState::kArmed || t.state == RowState::kIdle;
  return {{"slot", t.slot},
          {"state", shmtimer::to_string(t.state)},
          {"pid", t.pid},
          {"pid_alive", t.pid_known ? nlohmann::json(t.pid_alive) : nlohmann::json(nullptr)},
          {"reclaimable", t.reclaimable()},
          {"scope", t.scope},
          {"deadline_unix_s", armed ? json(row.deadline_unix_s) : json(nullptr)},
          {"deadline_local", armed ? json(format_local_time(row.deadline_unix_s, true)) : json(nullptr)},
          {"deadline_mono_ns", armed ? json(t.deadline_ns) : json(nullptr)},
          {"remaining_s", armed ? json(static_cast<double>(t.remaining_ns) / 1e9) : json(nullptr)},
          {"overdue", row.overdue()},
          {"signal", t.signal},
          {"signal_name", has_key ? nullable(signal_name(t.signal)) : json(nullptr)},
          {"origin", has_key ? json(origin_name(t.origin)) : json(nullptr)},
          {"acquires", t.acquires},
          {"releases", t.releases}};
}

}  // namespace

nlohmann::ordered_json to_json(const Snapshot& snapshot) {
  json timers = json::array();
  for (const auto& row : snapshot.rows) timers.push_back(row_json(row));
  return {{"schema", kJsonSchema},
          {"taken_unix_s", snapshot.taken_unix_s},
          {"table", table_json(snapshot.header)},
          {"server", server_json(snapshot.header)},
          {"counters", counters_json(snapshot.header.counters)},
          {"slots", slots_json(snapshot.slots)},
          {"filter", filter_json(snapshot.filter)},
          {"timers", std::move(timers)}};
}

std::string format_json(const Snapshot& snapshot, bool pretty) {
  // Scopes are arbitrary bytes: invalid UTF-8 is replaced (U+FFFD) rather than thrown on.
  return to_json(snapshot).dump(pretty ? 2 : -1, ' ', false, nlohmann::json::error_handler_t::replace) + '\n';
}

}  // namespace timer_dump
