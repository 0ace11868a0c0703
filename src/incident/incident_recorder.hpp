// Incidents, from an expiry to the report: an incident starts when a process's timer
// expires, captures the stacks of that process and of its peers (the other processes of
// the table), and ends when every capture has ended or its bound has passed. Its kills
// wait for its end; nothing here ever blocks the watchdog thread (the captures are child
// processes, polled each round).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "incident_directory.hpp"
#include "shmtimer/incident.hpp"
#include "stack_capture.hpp"

namespace shmtimer::detail {

// A process, as pid and the identity its slot records (two processes that had one pid
// are two keys).
using ProcessKey = std::pair<pid_t, std::uint64_t>;
// Labels, escaped already: {"rank", "1"}, {"run_id", "..."}, {"command", "python3"}.
using Labels = std::vector<std::pair<std::string, std::string>>;

struct ExpiredTimer {
  std::string scope;           // escaped (printable)
  double expiration_time = 0;  // epoch seconds
  double overdue_ms = 0;       // at the incident's start, or when it joined
  int signal = 0;
  std::uint64_t slot = 0;
};

class IncidentRecorder {
 public:
  IncidentRecorder(const IncidentOptions& options, std::filesystem::path directory);

  enum class Phase { kNone, kCapturing, kReported };
  // Where `process` stands: in no incident, in one still capturing (its kill waits), or
  // reported (its kill may go; incident_of() names the directory).
  Phase phase_of(const ProcessKey& process) const;
  // Starts an incident for `process`, whose `timer` expired, capturing `peers` too (the
  // first max_processes). Returns false, having logged why, when no report can be made:
  // the kill then goes ahead as without incidents.
  bool begin(const ProcessKey& process, ExpiredTimer timer, const std::vector<ProcessKey>& peers, std::uint64_t now_ns);
  // A process of a capturing incident whose own timer expired meanwhile.
  void join(const ProcessKey& process, ExpiredTimer timer);
  // Advances the captures; ends each incident whose captures all ended or whose bound has
  // passed (abandoning what still runs), writing its report. `labels_of` gives what is
  // known of a process's labels by then.
  void advance(std::uint64_t now_ns, const std::function<Labels(const ProcessKey&)>& labels_of);
  // The incident directory of a reported process ("" if none).
  std::string incident_of(const ProcessKey& process) const;
  // How long its incident held the process's kill back, in ms (0 if none).
  double capture_ms_of(const ProcessKey& process) const;
  // Forgets reported processes not in `keep` (they no longer expire).
  void forget_except(const std::function<bool(const ProcessKey&)>& keep);
  // When a capturing incident needs looking at next (0: none capturing).
  std::uint64_t next_look_ns(std::uint64_t now_ns) const;

  std::uint64_t incidents() const { return incidents_; }
  std::uint64_t capture_failures() const { return capture_failures_; }

 private:
  struct Member {
    ProcessKey process;
    std::optional<ExpiredTimer> timer;  // set once its timer expired
    StackCapture capture;
  };
  struct Incident {
    std::string name;
    DirFd dir;
    std::uint64_t started_ns = 0;
    std::vector<Member> members;  // the expired first
  };
  void end(Incident& incident, std::uint64_t now_ns, const std::function<Labels(const ProcessKey&)>& labels_of);
  Member* member_of(const ProcessKey& process);

  IncidentOptions options_;
  std::filesystem::path directory_;
  std::vector<Incident> capturing_;
  struct Reported {
    std::string path;
    double capture_ms = 0;
  };
  std::map<ProcessKey, Reported> reported_;
  std::uint64_t incidents_ = 0;
  std::uint64_t capture_failures_ = 0;
};

}  // namespace shmtimer::detail
