// The stacks of one process, taken by outside tools (py-spy, eu-stack, gdb) one after
// another, since two tracers cannot attach to a process at once. Each tool writes its
// output to a file of its own in the incident directory. Nothing here ever waits: the
// watchdog thread calls advance() each round, and abandon() when the bound is reached.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "incident_directory.hpp"
#include "shmtimer/incident.hpp"

namespace shmtimer::detail {

struct CaptureStep {
  enum class Status { kPending, kRunning, kOk, kFailed, kTimedOut, kSkipped };
  std::string method;  // "py-spy", "eu-stack", "gdb"
  std::vector<std::string> argv;
  std::string file;       // its output (stdout and stderr), in the incident directory
  bool native = false;    // native frames (eu-stack, gdb), not Python ones
  std::string dump_file;  // a cooperative dump (faulthandler): the worker's own file; argv is empty
  bool fallback = false;  // runs only when no native step before it succeeded
  Status status = Status::kPending;
  std::string why;          // for kFailed, kTimedOut and kSkipped
  double milliseconds = 0;  // how long it ran
};
const char* to_string(CaptureStep::Status status);

// The steps for `pid`: its own faulthandler dump where it registered one in
// `stacks_directory`, py-spy where it runs Python, then eu-stack, then gdb where eu-stack
// fails. Tools given an empty name in the options are left out.
std::vector<CaptureStep> capture_steps_for(pid_t pid, const IncidentOptions& options);
// Whether /proc/<pid>/exe names a Python interpreter (readlink takes no lock of the
// target's memory map, which a hung process may hold).
bool runs_python(pid_t pid);

// Reaps the tools abandon() killed that have exited since; never waits.
void reap_killed_tools();

class StackCapture {
 public:
  StackCapture(pid_t target, std::vector<CaptureStep> steps) : target_(target), steps_(std::move(steps)) {}
  // A moved-from capture owns no child and no file (its destructor then abandons nothing).
  StackCapture(StackCapture&& other) noexcept { *this = std::move(other); }
  StackCapture& operator=(StackCapture&& other) noexcept;
  ~StackCapture();  // abandons a running step

  // Reaps the running step if it ended and starts the next; true once every step ended.
  bool advance(const DirFd& dir);
  // Kills the running step's process group (SIGKILL) and marks it and the pending ones.
  void abandon(std::string_view why);
  // A tool was killed while attached: the target may be left stopped (SIGCONT it if it
  // is to live on).
  bool interrupted_a_tracer() const { return interrupted_; }
  pid_t target() const { return target_; }
  const std::vector<CaptureStep>& steps() const { return steps_; }

 private:
  void start(const DirFd& dir, CaptureStep& step);
  void finish(const DirFd& dir, CaptureStep& step, int wait_status);
  // A cooperative dump: SIGURG to the target, then its file watched until it stops growing.
  void start_dump(CaptureStep& step);
  bool dump_ended(const DirFd& dir, CaptureStep& step);

  pid_t target_ = 0;
  std::vector<CaptureStep> steps_;
  std::size_t current_ = 0;
  pid_t child_ = -1;
  std::uint64_t started_ns_ = 0;
  bool interrupted_ = false;
  int dump_fd_ = -1;  // the cooperative dump's file while it is being written
  off_t dump_from_ = 0, dump_size_ = 0;
  std::uint64_t dump_grew_ns_ = 0;
};

}  // namespace shmtimer::detail
