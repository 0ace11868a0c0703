#include "event_log.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

#include "shmtimer/clock.hpp"
#include "shmtimer/printable.hpp"

namespace shmtimerd {

namespace {

constexpr std::size_t kMaxEnvironBytes = 1 << 20;
constexpr std::size_t kMaxRememberedJobs = 1024;  // one per expired, not yet killed process

std::string read_environ(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/environ";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string bytes;
  char buf[8192];
  ssize_t n = 0;
  while (bytes.size() < kMaxEnvironBytes && (n = ::read(fd, buf, sizeof buf)) > 0)
    bytes.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return bytes;
}

const char* origin_name(shmtimer::layout::Origin origin) {
  return origin == shmtimer::layout::Origin::kFifo ? "fifo" : "table";
}

bool is_reaping(std::string_view name) { return name == "timer expired" || name == "kill worker process"; }

}  // namespace

JobLabels read_job_labels(pid_t pid) {
  JobLabels labels;
  const std::string environ = read_environ(pid);
  std::string_view rest(environ);
  while (!rest.empty()) {
    const std::string_view entry = rest.substr(0, rest.find('\0'));
    rest.remove_prefix(std::min(rest.size(), entry.size() + 1));
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = entry.substr(0, eq);
    const std::string value = shmtimer::printable(entry.substr(eq + 1));
    if (key == "TORCHELASTIC_RUN_ID") labels.run_id = value;
    else if (key == "RANK") labels.rank = value;
    else if (key == "LOCAL_RANK") labels.local_rank = value;
  }
  return labels;
}

JobLabels EventLog::job_of(std::string_view name, pid_t pid) {
  if (name == "timer expired") {
    JobLabels labels = read_job_labels(pid);
    if (jobs_.size() >= kMaxRememberedJobs) jobs_.clear();
    jobs_[pid] = labels;
    return labels;
  }
  const auto known = jobs_.find(pid);
  if (known == jobs_.end()) return read_job_labels(pid);
  JobLabels labels = std::move(known->second);
  jobs_.erase(known);
  return labels;
}

void EventLog::operator()(std::string_view name, const shmtimer::TimerEvent* event) {
  if (event == nullptr) {
    spdlog::info("{}", name);
    return;
  }
  const auto level = is_reaping(name) ? spdlog::level::info : spdlog::level::debug;
  if (!spdlog::should_log(level)) return;
  const std::lock_guard lock(mutex_);
  const JobLabels job = is_reaping(name) ? job_of(name, event->pid) : JobLabels{};
  const std::string scope = shmtimer::printable(event->scope);
  const bool has_deadline = event->deadline_ns != 0;
  // at_ns is set for the reaping events only, which happen at or after the deadline.
  const bool has_lateness = has_deadline && event->at_ns >= event->deadline_ns;
  const double lateness_ms = has_lateness ? static_cast<double>(event->at_ns - event->deadline_ns) / 1e6 : 0;

  if (json_) {
    nlohmann::json fields{{"msg", std::string(name)}, {"event", std::string(name)}, {"pid", event->pid},
                          {"scope", scope},           {"signal", event->signal},    {"slot", event->slot},
                          {"origin", origin_name(event->origin)}};
    fields["deadline"] = has_deadline ? nlohmann::json(event->expiration_time()) : nlohmann::json(nullptr);
    if (has_lateness) fields["lateness_ms"] = lateness_ms;
    if (job.run_id) fields["run_id"] = *job.run_id;
    if (job.rank) fields["rank"] = *job.rank;
    if (job.local_rank) fields["local_rank"] = *job.local_rank;
    json_->write_object(level, std::move(fields));
    return;
  }
  std::string line = fmt::format("{} pid={} scope='{}' signal={} slot={} origin={}", name, event->pid, scope,
                                 event->signal, event->slot, origin_name(event->origin));
  if (has_deadline) line += fmt::format(" deadline={:.6f}", event->expiration_time());
  if (has_lateness) line += fmt::format(" lateness_ms={:.3f}", lateness_ms);
  if (job.run_id) line += fmt::format(" run_id='{}'", *job.run_id);
  if (job.rank) line += fmt::format(" rank='{}'", *job.rank);
  if (job.local_rank) line += fmt::format(" local_rank='{}'", *job.local_rank);
  spdlog::log(level, "{}", line);
}

}  // namespace shmtimerd
