// timer-dump --incidents and --incident: the incident reports a server wrote (one
// directory each, docs/diagnosis.md), listed oldest first, and one report's summary.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace timer_dump {

struct ListedIncident {
  std::string name;        // the directory's name: UTC time and pid, so it sorts by time
  std::string expired;     // "rank 0 pid 4242 'step'", ... (escaped)
  double capture_ms = -1;  // -1: no event.json (a report being written, or cut short)
  std::string verdict;     // the summary's "differs: ..." or "no process stands out: ..." line
};

// The incidents in `dir`, oldest first; a missing directory lists none.
std::vector<ListedIncident> list_incidents(const std::filesystem::path& dir);
std::string format_incident_list(const std::vector<ListedIncident>& incidents, const std::filesystem::path& dir);
// The summary of incident `name` in `dir` ("latest": the newest one). Throws
// shmtimer::Error(kInvalidArgument) when there is no such incident.
std::string incident_summary(const std::filesystem::path& dir, const std::string& name);

}  // namespace timer_dump
