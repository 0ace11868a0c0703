#include "event_log.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "format.hpp"
#include "shmtimer/printable.hpp"

namespace shmtimerd {

namespace {

// A text-format value in single quotes: printable(), then \ and ' escaped, so no value
// can end its quotes early and forge a field after them.
std::string single_quoted(std::string_view printable_text) {
  std::string out = "'";
  for (const char c : printable_text) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

bool is_reaping(std::string_view name) { return name == "timer expired" || name == "kill worker process"; }

}  // namespace

void EventLog::operator()(std::string_view name, const shmtimer::TimerEvent* event) noexcept {
  try {
    if (event == nullptr)
      spdlog::info("{}", name);
    else
      log(name, *event);
  } catch (...) {
    // Out of memory while formatting, at worst: the line is lost, the reap goes on.
  }
}

void EventLog::log(std::string_view name, const shmtimer::TimerEvent& event) {
  const auto level = is_reaping(name) ? spdlog::level::info : spdlog::level::debug;
  if (!spdlog::should_log(level)) return;
  const shmtimer::ProcessLabels& job = event.labels;
  const std::string scope = shmtimer::printable(event.scope);
  const bool has_deadline = event.deadline_ns != 0;
  // at_ns is set for the reaping events only, which happen at or after the deadline.
  const bool has_lateness = has_deadline && event.at_ns >= event.deadline_ns;
  const double lateness_ms = has_lateness ? static_cast<double>(event.at_ns - event.deadline_ns) / 1e6 : 0;
  const char* origin = timer_dump::origin_name(event.origin);

  if (json_events_) {
    nlohmann::json fields{
        {"msg", std::string(name)}, {"event", std::string(name)}, {"pid", event.pid}, {"scope", scope},
        {"signal", event.signal},   {"slot", event.slot},         {"origin", origin}, {"table", table_}};
    fields["deadline"] = has_deadline ? nlohmann::json(event.expiration_time()) : nlohmann::json(nullptr);
    if (has_lateness) fields["lateness_ms"] = lateness_ms;
    if (job.command) fields["command"] = *job.command;
    if (job.run_id) fields["run_id"] = *job.run_id;
    if (job.rank) fields["rank"] = *job.rank;
    if (job.local_rank) fields["local_rank"] = *job.local_rank;
    if (!event.incident.empty()) fields["incident"] = event.incident;
    json_events_->log(level, "{}", fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  std::string line = fmt::format("{} pid={} scope={} signal={} slot={} origin={}", name, event.pid,
                                 single_quoted(scope), event.signal, event.slot, origin);
  if (has_deadline) line += fmt::format(" deadline={:.6f}", event.expiration_time());
  if (has_lateness) line += fmt::format(" lateness_ms={:.3f}", lateness_ms);
  if (job.command) line += " command=" + single_quoted(*job.command);
  if (job.run_id) line += " run_id=" + single_quoted(*job.run_id);
  if (job.rank) line += " rank=" + single_quoted(*job.rank);
  if (job.local_rank) line += " local_rank=" + single_quoted(*job.local_rank);
  if (!event.incident.empty()) line += " incident=" + single_quoted(shmtimer::printable(event.incident));
  line += " table=" + single_quoted(shmtimer::printable(table_));
  spdlog::log(level, "{}", line);
}

}  // namespace shmtimerd
