#include "event_log.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <condition_variable>
#include <thread>

#include "format.hpp"
#include "shmtimer/printable.hpp"
#include "shmtimer/process_identity.hpp"

namespace shmtimerd {

namespace {

constexpr std::size_t kMaxEnvironBytes = 1 << 20;
constexpr std::size_t kMaxLabelBytes = 256;
constexpr std::size_t kMaxRememberedJobs = 1024;  // one per expired, not yet killed process
// How long the watchdog thread waits for a target's job labels before it goes on without.
constexpr std::chrono::milliseconds kLabelWait{50};

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

std::string label_value(std::string_view raw) { return shmtimer::printable(raw.substr(0, kMaxLabelBytes)); }

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

JobLabels read_job_labels(pid_t pid, std::uint64_t identity) {
  JobLabels labels;
  const std::string environ = read_environ(pid);
  std::string_view rest(environ);
  while (!rest.empty()) {
    const std::string_view entry = rest.substr(0, rest.find('\0'));
    rest.remove_prefix(std::min(rest.size(), entry.size() + 1));
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = entry.substr(0, eq);
    if (key == "TORCHELASTIC_RUN_ID") labels.run_id = label_value(entry.substr(eq + 1));
    else if (key == "RANK") labels.rank = label_value(entry.substr(eq + 1));
    else if (key == "LOCAL_RANK") labels.local_rank = label_value(entry.substr(eq + 1));
  }
  // Read after the environment: if the pid now names another process, the labels may be
  // that process's.
  if (identity != 0 && !shmtimer::probe_process(pid, identity).running()) return {};
  return labels;
}

struct JobLabelReader::State {
  std::mutex mutex;
  std::condition_variable changed;
  bool stop = false;
  bool busy = false;                  // a read is in progress (perhaps stuck)
  std::optional<std::pair<pid_t, std::uint64_t>> request;
  std::uint64_t requests = 0;         // numbers the requests, so a late answer is never taken
  std::uint64_t answered = 0;
  JobLabels answer;
};

JobLabelReader::JobLabelReader() : state_(std::make_shared<State>()) {
  std::thread([state = state_] {
    std::unique_lock lock(state->mutex);
    for (;;) {
      state->changed.wait(lock, [&] { return state->stop || state->request; });
      if (state->stop) return;
      const auto [pid, identity] = *state->request;
      state->request.reset();
      const std::uint64_t number = state->requests;
      state->busy = true;
      lock.unlock();
      JobLabels labels = read_job_labels(pid, identity);
      lock.lock();
      state->busy = false;
      state->answer = std::move(labels);
      state->answered = number;
      state->changed.notify_all();
    }
  }).detach();
}

JobLabelReader::~JobLabelReader() {
  const std::lock_guard lock(state_->mutex);
  state_->stop = true;
  state_->changed.notify_all();
}

JobLabels JobLabelReader::read(pid_t pid, std::uint64_t identity, std::chrono::milliseconds wait) {
  std::unique_lock lock(state_->mutex);
  if (state_->busy || state_->request) return {};  // an earlier read is stuck: go on without
  state_->request = {pid, identity};
  const std::uint64_t number = ++state_->requests;
  state_->changed.notify_all();
  if (!state_->changed.wait_for(lock, wait, [&] { return state_->answered == number; })) return {};
  return std::move(state_->answer);
}

JobLabels EventLog::job_of(std::string_view name, const shmtimer::TimerEvent& event) {
  if (name == "timer expired") {
    JobLabels labels = reader_.read(event.pid, event.identity, kLabelWait);
    if (jobs_.size() >= kMaxRememberedJobs) jobs_.clear();
    jobs_[event.pid] = labels;
    return labels;
  }
  const auto known = jobs_.find(event.pid);
  if (known == jobs_.end()) return {};  // after the kill the environment is gone: no read
  JobLabels labels = std::move(known->second);
  jobs_.erase(known);
  return labels;
}

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
  const std::lock_guard lock(mutex_);
  const JobLabels job = is_reaping(name) ? job_of(name, event) : JobLabels{};
  const std::string scope = shmtimer::printable(event.scope);
  const bool has_deadline = event.deadline_ns != 0;
  // at_ns is set for the reaping events only, which happen at or after the deadline.
  const bool has_lateness = has_deadline && event.at_ns >= event.deadline_ns;
  const double lateness_ms = has_lateness ? static_cast<double>(event.at_ns - event.deadline_ns) / 1e6 : 0;
  const char* origin = timer_dump::origin_name(event.origin);

  if (json_) {
    nlohmann::json fields{{"msg", std::string(name)}, {"event", std::string(name)}, {"pid", event.pid},
                          {"scope", scope},           {"signal", event.signal},    {"slot", event.slot},
                          {"origin", origin}};
    fields["deadline"] = has_deadline ? nlohmann::json(event.expiration_time()) : nlohmann::json(nullptr);
    if (has_lateness) fields["lateness_ms"] = lateness_ms;
    if (job.run_id) fields["run_id"] = *job.run_id;
    if (job.rank) fields["rank"] = *job.rank;
    if (job.local_rank) fields["local_rank"] = *job.local_rank;
    json_->write_object(level, std::move(fields));
    return;
  }
  std::string line = fmt::format("{} pid={} scope={} signal={} slot={} origin={}", name, event.pid, single_quoted(scope),
                                 event.signal, event.slot, origin);
  if (has_deadline) line += fmt::format(" deadline={:.6f}", event.expiration_time());
  if (has_lateness) line += fmt::format(" lateness_ms={:.3f}", lateness_ms);
  if (job.run_id) line += " run_id=" + single_quoted(*job.run_id);
  if (job.rank) line += " rank=" + single_quoted(*job.rank);
  if (job.local_rank) line += " local_rank=" + single_quoted(*job.local_rank);
  spdlog::log(level, "{}", line);
}

}  // namespace shmtimerd
