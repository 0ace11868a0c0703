#include "incident_list.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shmtimer/error.hpp"
#include "shmtimer/printable.hpp"

namespace timer_dump {

namespace {

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string verdict_of(const std::string& summary) {
  for (const char* start : {"\ndiffers: ", "\nno process stands out: "}) {
    const auto at = summary.find(start);
    if (at != std::string::npos) return summary.substr(at + 1, summary.find('\n', at + 1) - at - 1);
  }
  return "";
}

ListedIncident read_incident(const std::filesystem::path& incident) {
  ListedIncident listed{incident.filename().string(), "", -1, verdict_of(read_file(incident / "summary.txt"))};
  try {
    const auto event = nlohmann::json::parse(read_file(incident / "event.json"));
    listed.capture_ms = event.value("capture_ms", -1.0);
    for (const auto& e : event.value("expired", nlohmann::json::array())) {
      const auto labels = e.value("labels", nlohmann::json::object());
      const std::string rank = labels.contains("rank") ? "rank " + labels["rank"].get<std::string>() + " " : "";
      listed.expired += (listed.expired.empty() ? "" : ", ") + rank + "pid " + std::to_string(e.value("pid", 0)) +
                        " '" + e.value("scope_id", std::string()) + "'";
    }
  } catch (const std::exception&) {
    listed.expired = "(no readable event.json)";
  }
  listed.expired = shmtimer::printable(listed.expired);
  listed.verdict = shmtimer::printable(listed.verdict);
  return listed;
}

}  // namespace

std::vector<ListedIncident> list_incidents(const std::filesystem::path& dir) {
  std::vector<ListedIncident> incidents;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error))
    if (entry.is_directory() && !entry.is_symlink()) incidents.push_back(read_incident(entry.path()));
  std::sort(incidents.begin(), incidents.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return incidents;
}

std::string format_incident_list(const std::vector<ListedIncident>& incidents, const std::filesystem::path& dir) {
  if (incidents.empty()) return "no incidents in " + shmtimer::printable(dir.string()) + "\n";
  std::string text = "incidents in " + shmtimer::printable(dir.string()) + ", oldest first:\n";
  for (const auto& i : incidents) {
    text += "  " + shmtimer::printable(i.name) + "  " + i.expired;
    if (i.capture_ms >= 0) text += "  captured in " + std::to_string(static_cast<long long>(i.capture_ms)) + " ms";
    if (!i.verdict.empty()) text += "\n      " + i.verdict;
    text += "\n";
  }
  return text;
}

std::string incident_summary(const std::filesystem::path& dir, const std::string& name) {
  const auto incidents = list_incidents(dir);
  std::string chosen = name;
  if (name == "latest" && !incidents.empty()) chosen = incidents.back().name;
  const bool known = std::any_of(incidents.begin(), incidents.end(), [&](const auto& i) { return i.name == chosen; });
  if (!known)
    throw shmtimer::Error(shmtimer::ErrorCode::kInvalidArgument,
                          "no incident '" + shmtimer::printable(name) + "' in " + dir.string() + " (see --incidents)");
  return read_file(dir / chosen / "summary.txt");
}

}  // namespace timer_dump
