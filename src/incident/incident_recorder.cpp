#include "incident_recorder.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "stack_summary.hpp"

namespace shmtimer::detail {

namespace {

// A capturing incident is looked at this often at least: a capture usually takes tens to
// hundreds of milliseconds, and the kill waits for the look after it ends.
constexpr std::uint64_t kLookEveryNs = 1'000'000;

std::optional<std::string> label(const Labels& labels, std::string_view key) {
  for (const auto& [k, v] : labels)
    if (k == key) return v;
  return std::nullopt;
}

std::string who_of(const ProcessKey& process, const Labels& labels) {
  if (auto rank = label(labels, "rank")) return "rank " + *rank;
  return "pid " + std::to_string(process.first);
}

// py-spy names the threads; faulthandler's dump has the same frames without names; the
// native frames come last.
int preference(const CaptureStep& step) { return step.method == "py-spy" ? 0 : !step.dump_file.empty() ? 1 : 2; }

std::optional<Frame> frame_from(const DirFd& dir, const StackCapture& capture, std::string& missing) {
  std::vector<const CaptureStep*> steps;
  for (const auto& step : capture.steps()) steps.push_back(&step);
  std::stable_sort(steps.begin(), steps.end(), [](auto* a, auto* b) { return preference(*a) < preference(*b); });
  for (const CaptureStep* each : steps) {
    const CaptureStep& step = *each;
    if (step.status != CaptureStep::Status::kOk) {
      if (step.status != CaptureStep::Status::kSkipped || step.why.find("bound") != std::string::npos)
        missing += (missing.empty() ? "" : "; ") + step.why;
      continue;
    }
    const std::string output = read_report_file(dir, step.file);
    auto frame = step.native              ? innermost_native_frame(output, capture.target())
                 : step.dump_file.empty() ? innermost_python_frame(output)
                                          : innermost_faulthandler_frame(output);
    if (frame) return frame;
    missing += (missing.empty() ? "" : "; ") + step.method + ": no frame of the main thread in its output";
  }
  if (missing.empty())
    missing = capture.steps().empty() ? "no capture (the capture bound is 0)" : "no capture tool ran";
  return std::nullopt;
}

nlohmann::json timer_json(const ExpiredTimer& t) {
  return {{"scope_id", t.scope},
          {"expiration_time", t.expiration_time},
          {"overdue_ms", t.overdue_ms},
          {"signal", t.signal},
          {"slot", t.slot}};
}

}  // namespace

IncidentRecorder::IncidentRecorder(const IncidentOptions& options, std::filesystem::path directory)
    : options_(options), directory_(std::move(directory)) {}

IncidentRecorder::Phase IncidentRecorder::phase_of(const ProcessKey& process) const {
  if (reported_.count(process)) return Phase::kReported;
  for (const auto& incident : capturing_)
    for (const auto& m : incident.members)
      if (m.process == process && m.timer) return Phase::kCapturing;
  return Phase::kNone;
}

IncidentRecorder::Member* IncidentRecorder::member_of(const ProcessKey& process) {
  for (auto& incident : capturing_)
    for (auto& m : incident.members)
      if (m.process == process) return &m;
  return nullptr;
}

bool IncidentRecorder::begin(const ProcessKey& process, ExpiredTimer timer, const std::vector<ProcessKey>& peers,
                             std::uint64_t now_ns) {
  if (Member* m = member_of(process)) {  // a peer of a running incident
    m->timer = std::move(timer);
    return true;
  }
  Incident incident;
  try {
    const DirFd root = open_incident_root(directory_);
    incident.dir = make_incident_directory(root, process.first, incident.name);
  } catch (const std::exception& e) {
    spdlog::error("no incident report for pid {}: {}; it is signalled without one", process.first, e.what());
    ++capture_failures_;
    return false;
  }
  incident.started_ns = now_ns;
  const bool capture = options_.capture_bound.count() > 0;
  const auto member = [&](const ProcessKey& p) {
    return Member{p, std::nullopt,
                  StackCapture(p.first, capture ? capture_steps_for(p.first, options_) : std::vector<CaptureStep>{})};
  };
  incident.members.push_back(member(process));
  incident.members.back().timer = std::move(timer);
  for (const auto& peer : peers) {
    if (incident.members.size() >= options_.max_processes) break;
    if (peer != process && peer.first > 0) incident.members.push_back(member(peer));
  }
  for (auto& m : incident.members) m.capture.advance(incident.dir);
  ++incidents_;
  capturing_.push_back(std::move(incident));
  return true;
}

void IncidentRecorder::join(const ProcessKey& process, ExpiredTimer timer) {
  if (Member* m = member_of(process); m && !m->timer) m->timer = std::move(timer);
}

void IncidentRecorder::advance(std::uint64_t now_ns, const std::function<Labels(const ProcessKey&)>& labels_of) {
  reap_killed_tools();
  const auto bound_ns = static_cast<std::uint64_t>(options_.capture_bound.count()) * 1'000'000;
  for (auto it = capturing_.begin(); it != capturing_.end();) {
    bool all_ended = true;
    for (auto& m : it->members) all_ended = m.capture.advance(it->dir) && all_ended;
    if (all_ended || now_ns >= it->started_ns + bound_ns) {
      end(*it, now_ns, labels_of);
      it = capturing_.erase(it);
    } else {
      ++it;
    }
  }
}

void IncidentRecorder::end(Incident& incident, std::uint64_t now_ns,
                           const std::function<Labels(const ProcessKey&)>& labels_of) {
  const double capture_ms = static_cast<double>(now_ns - incident.started_ns) / 1e6;
  const std::string bound_why = fmt::format("the capture bound ({} ms) was reached", options_.capture_bound.count());
  const std::string path = (directory_ / incident.name).string();
  nlohmann::json processes = nlohmann::json::array();
  nlohmann::json expired = nlohmann::json::array();
  std::vector<ProcessPlace> places;
  std::optional<std::string> job;  // the run id of the first expired process
  for (auto& m : incident.members) {
    m.capture.abandon(bound_why);
    // A tool killed while attached may leave the target stopped: one that is not to be
    // killed (observe-only) must run on.
    if (m.capture.interrupted_a_tracer() && options_.observe_only) ::kill(m.process.first, SIGCONT);
    const Labels labels = labels_of(m.process);
    if (&m == &incident.members.front()) job = label(labels, "run_id");
    nlohmann::json captures = nlohmann::json::array();
    for (const auto& step : m.capture.steps()) {
      const bool failed = step.status == CaptureStep::Status::kFailed || step.status == CaptureStep::Status::kTimedOut;
      if (failed) ++capture_failures_;
      if (failed)
        spdlog::warn("incident {}: capture of pid {} with {} {}: {}", incident.name, m.process.first, step.method,
                     to_string(step.status), step.why);
      captures.push_back({{"method", step.method},
                          {"file", step.file},
                          {"status", to_string(step.status)},
                          {"why", step.why},
                          {"ms", step.milliseconds}});
    }
    nlohmann::json labels_json = nlohmann::json::object();
    for (const auto& [k, v] : labels) labels_json[k] = v;
    const auto run_id = label(labels, "run_id");
    const bool other_job = job && run_id && *run_id != *job;
    processes.push_back({{"pid", m.process.first},
                         {"identity", m.process.second},
                         {"labels", labels_json},
                         {"expired", m.timer.has_value()},
                         {"other_job", other_job},
                         {"captures", captures}});
    if (m.timer) {
      auto e = timer_json(*m.timer);
      e["pid"] = m.process.first;
      e["labels"] = labels_json;
      expired.push_back(e);
      reported_[m.process] = {path, capture_ms};
    }
    if (other_job) continue;  // another job's process: captured, not compared
    ProcessPlace place{who_of(m.process, labels), m.process.first, m.timer.has_value(), std::nullopt, ""};
    place.frame = frame_from(incident.dir, m.capture, place.missing);
    places.push_back(std::move(place));
  }
  const auto& first = incident.members.front();
  const std::string headline = fmt::format(
      "incident {}: timer '{}' of {} (pid {}) expired; {} process(es) captured in {:.0f} ms (bound {} ms){}",
      incident.name, first.timer->scope, places.front().who, first.process.first, places.size(), capture_ms,
      options_.capture_bound.count(), options_.observe_only ? "; observe-only: nothing signalled" : "");
  const std::string summary = summary_text(headline, places);
  const nlohmann::json event = {{"incident", incident.name},
                                {"directory", path},
                                {"capture_ms", capture_ms},
                                {"capture_bound_ms", options_.capture_bound.count()},
                                {"observe_only", options_.observe_only},
                                {"expired", expired},
                                {"processes", processes},
                                {"summary", "summary.txt"}};
  try {
    write_report_file(incident.dir, "event.json",
                      event.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    write_report_file(incident.dir, "summary.txt", summary);
  } catch (const std::exception& e) {
    spdlog::error("incident {}: the report is incomplete: {}", path, e.what());
  }
  const auto differs = summary.find("\ndiffers: ");
  spdlog::warn("incident report {} ({:.0f} ms){}", path, capture_ms,
               differs == std::string::npos
                   ? ""
                   : ": " + summary.substr(differs + 1, summary.find('\n', differs + 1) - differs - 1));
}

std::string IncidentRecorder::incident_of(const ProcessKey& process) const {
  const auto it = reported_.find(process);
  return it == reported_.end() ? std::string() : it->second.path;
}

double IncidentRecorder::capture_ms_of(const ProcessKey& process) const {
  const auto it = reported_.find(process);
  return it == reported_.end() ? 0 : it->second.capture_ms;
}

void IncidentRecorder::forget_except(const std::function<bool(const ProcessKey&)>& keep) {
  std::erase_if(reported_, [&](const auto& entry) { return !keep(entry.first); });
}

std::uint64_t IncidentRecorder::next_look_ns(std::uint64_t now_ns) const {
  return capturing_.empty() ? 0 : now_ns + kLookEveryNs;
}

}  // namespace shmtimer::detail
