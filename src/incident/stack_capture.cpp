#include "stack_capture.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fmt/format.h>
#include <mutex>

#include "process_liveness.hpp"
#include "shmtimer/clock.hpp"

extern char** environ;

namespace shmtimer::detail {

const char* to_string(CaptureStep::Status status) {
  switch (status) {
    case CaptureStep::Status::kPending: return "pending";
    case CaptureStep::Status::kRunning: return "running";
    case CaptureStep::Status::kOk: return "ok";
    case CaptureStep::Status::kFailed: return "failed";
    case CaptureStep::Status::kTimedOut: return "timed out";
    case CaptureStep::Status::kSkipped: return "skipped";
  }
  return "?";
}

bool runs_python(pid_t pid) {
  char exe[4096];
  const std::string link = fmt::format("/proc/{}/exe", pid);
  const ssize_t n = ::readlink(link.c_str(), exe, sizeof exe - 1);
  if (n <= 0) return false;
  const std::string_view path(exe, static_cast<std::size_t>(n));
  const std::string_view base = path.substr(path.rfind('/') + 1);
  return base.starts_with("python");
}

std::vector<CaptureStep> capture_steps_for(pid_t pid, const IncidentOptions& options) {
  std::vector<CaptureStep> steps;
  const std::string p = std::to_string(pid);
  ProcessStat stat;
  if (!options.stacks_directory.empty() && read_process_stat(pid, stat).running()) {
    const auto dump = options.stacks_directory / fmt::format("{}-{}.stacks", pid, stat.start_time);
    struct stat st{};
    if (::lstat(dump.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      CaptureStep s;
      s.method = "faulthandler";
      s.file = "pid" + p + ".faulthandler.txt";
      s.dump_file = dump.string();
      steps.push_back(std::move(s));
    }
  }
  const auto step = [&](std::string method, std::vector<std::string> argv, bool native, bool fallback) {
    CaptureStep s;
    s.file = "pid" + p + "." + method + ".txt";
    s.method = std::move(method);
    s.argv = std::move(argv);
    s.native = native;
    s.fallback = fallback;
    steps.push_back(std::move(s));
  };
  if (!options.py_spy.empty() && runs_python(pid)) step("py-spy", {options.py_spy, "dump", "--pid", p}, false, false);
  // -m: each frame's module, so that the summary can pass over the C library's frames.
  if (!options.eu_stack.empty()) step("eu-stack", {options.eu_stack, "-m", "-p", p}, true, false);
  if (!options.gdb.empty())
    step("gdb", {options.gdb, "-batch", "-nx", "-p", p, "-ex", "thread apply all bt"}, true, !options.eu_stack.empty());
  return steps;
}

namespace {

// Tools killed and not reaped yet, reaped by later calls (reap_killed_tools).
std::mutex killed_tools_mutex;
std::vector<pid_t> killed_tools;

void remember_killed_tool(pid_t child) {
  std::lock_guard lock(killed_tools_mutex);
  killed_tools.push_back(child);
}

}  // namespace

void reap_killed_tools() {
  std::lock_guard lock(killed_tools_mutex);
  std::erase_if(killed_tools, [](pid_t child) {
    int ignored = 0;
    const pid_t done = ::waitpid(child, &ignored, WNOHANG);
    return done == child || (done < 0 && errno == ECHILD);
  });
}

StackCapture& StackCapture::operator=(StackCapture&& other) noexcept {
  if (this != &other) {
    if (child_ > 0 || dump_fd_ >= 0) abandon("the capture was replaced");
    target_ = other.target_;
    steps_ = std::move(other.steps_);
    current_ = other.current_;
    child_ = std::exchange(other.child_, -1);
    started_ns_ = other.started_ns_;
    interrupted_ = other.interrupted_;
    dump_fd_ = std::exchange(other.dump_fd_, -1);
    dump_from_ = other.dump_from_;
    dump_size_ = other.dump_size_;
    dump_grew_ns_ = other.dump_grew_ns_;
  }
  return *this;
}

StackCapture::~StackCapture() {
  if (child_ > 0 || dump_fd_ >= 0) abandon("the incident was dropped");
}

bool StackCapture::advance(const DirFd& dir) {
  while (current_ < steps_.size()) {
    CaptureStep& step = steps_[current_];
    if (step.status == CaptureStep::Status::kRunning && !step.dump_file.empty()) {
      if (!dump_ended(dir, step)) return false;
      ++current_;
      continue;
    }
    if (step.status == CaptureStep::Status::kRunning) {
      int wait_status = 0;
      const pid_t done = ::waitpid(child_, &wait_status, WNOHANG);
      if (done == 0) return false;
      finish(dir, step, done == child_ ? wait_status : -1);
      ++current_;
      continue;
    }
    const bool native_done =
        std::any_of(steps_.begin(), steps_.begin() + static_cast<std::ptrdiff_t>(current_),
                    [](const CaptureStep& s) { return s.native && s.status == CaptureStep::Status::kOk; });
    if (step.fallback && native_done) {
      step.status = CaptureStep::Status::kSkipped;
      step.why = "an earlier native capture succeeded";
      ++current_;
      continue;
    }
    if (step.dump_file.empty())
      start(dir, step);
    else
      start_dump(step);
    if (step.status == CaptureStep::Status::kRunning) return false;
    ++current_;
  }
  return true;
}

void StackCapture::start(const DirFd& dir, CaptureStep& step) {
  int out = -1;
  try {
    out = create_report_file(dir, step.file);
  } catch (const std::exception& e) {
    step.status = CaptureStep::Status::kFailed;
    step.why = e.what();
    return;
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out, 1);
  posix_spawn_file_actions_adddup2(&actions, out, 2);
  posix_spawnattr_init(&attr);
  // Its own process group, so that abandon() kills what it started too; default signal
  // dispositions and an empty mask, whatever the server's threads block.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> argv;
  for (auto& arg : step.argv) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t child = -1;
  const int error = posix_spawnp(&child, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out);
  if (error != 0) {
    step.status = CaptureStep::Status::kFailed;
    step.why = error == ENOENT ? fmt::format("{} is not installed (not found on PATH)", step.argv[0])
                               : fmt::format("cannot run {}: {}", step.argv[0], std::strerror(error));
    return;
  }
  child_ = child;
  started_ns_ = monotonic_now_ns();
  step.status = CaptureStep::Status::kRunning;
}

namespace {

// A dump is done when its file has grown and then not grown for this long; one that has
// not grown within kDumpPatienceNs is taken as never coming.
constexpr std::uint64_t kDumpQuietNs = 3'000'000;
constexpr std::uint64_t kDumpPatienceNs = 1'000'000'000;

}  // namespace

void StackCapture::start_dump(CaptureStep& step) {
  step.status = CaptureStep::Status::kFailed;
  // The worker's own file, in a directory of its user's: opened without following a
  // link, and only if it belongs to the target's user.
  const int fd = ::open(step.dump_file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat file{}, proc{};
  const std::string proc_dir = fmt::format("/proc/{}", target_);
  if (fd < 0 || ::fstat(fd, &file) != 0 || !S_ISREG(file.st_mode) || ::stat(proc_dir.c_str(), &proc) != 0 ||
      file.st_uid != proc.st_uid) {
    step.why = "its dump file is missing or not its own";
    if (fd >= 0) ::close(fd);
    return;
  }
  // SIGURG's default action is to ignore it: a process that did not register (a reused
  // pid) is not harmed.
  if (::kill(target_, SIGURG) != 0) {
    step.why = fmt::format("cannot signal it: {}", std::strerror(errno));
    ::close(fd);
    return;
  }
  dump_fd_ = fd;
  dump_from_ = dump_size_ = file.st_size;
  started_ns_ = dump_grew_ns_ = monotonic_now_ns();
  step.status = CaptureStep::Status::kRunning;
}

bool StackCapture::dump_ended(const DirFd& dir, CaptureStep& step) {
  struct stat file{};
  const std::uint64_t now = monotonic_now_ns();
  if (::fstat(dump_fd_, &file) == 0 && file.st_size > dump_size_) {
    dump_size_ = file.st_size;
    dump_grew_ns_ = now;
  }
  const bool grew = dump_size_ > dump_from_;
  if (grew ? now - dump_grew_ns_ < kDumpQuietNs : now - started_ns_ < kDumpPatienceNs) return false;
  step.milliseconds = static_cast<double>(now - started_ns_) / 1e6;
  if (!grew) {
    step.status = CaptureStep::Status::kFailed;
    step.why = "no dump within 1 s (the process is stopped, or not a Python process of shmtimer's client)";
  } else {
    // The file's first line (which thread is the main one), then this dump.
    std::string header(256, '\0');
    const ssize_t head = ::pread(dump_fd_, header.data(), header.size(), 0);
    header.resize(head > 0 ? static_cast<std::size_t>(head) : 0);
    header.resize(std::min(header.size(), header.find('\n') + 1));
    std::string dump(static_cast<std::size_t>(std::min<off_t>(dump_size_ - dump_from_, 1 << 20)), '\0');
    const ssize_t got = ::pread(dump_fd_, dump.data(), dump.size(), dump_from_);
    dump.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
    try {
      write_report_file(dir, step.file, header + dump);
      step.status = CaptureStep::Status::kOk;
    } catch (const std::exception& e) {
      step.status = CaptureStep::Status::kFailed;
      step.why = e.what();
    }
  }
  ::close(dump_fd_);
  dump_fd_ = -1;
  return true;
}

void StackCapture::finish(const DirFd& dir, CaptureStep& step, int wait_status) {
  child_ = -1;
  step.milliseconds = static_cast<double>(monotonic_now_ns() - started_ns_) / 1e6;
  if (wait_status != -1 && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) {
    step.status = CaptureStep::Status::kOk;
    return;
  }
  step.status = CaptureStep::Status::kFailed;
  // The tool's own last words say why (permissions, not a Python process, no such pid).
  std::string output = read_report_file(dir, step.file, 1 << 16);
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  const std::string last = output.substr(output.rfind('\n') == std::string::npos ? 0 : output.rfind('\n') + 1);
  const std::string how = wait_status == -1          ? "was lost"
                          : WIFEXITED(wait_status)   ? fmt::format("exited {}", WEXITSTATUS(wait_status))
                          : WIFSIGNALED(wait_status) ? fmt::format("was killed by signal {}", WTERMSIG(wait_status))
                                                     : "ended";
  step.why = fmt::format("{} {}{}{}", step.method, how, last.empty() ? "" : ": ", last.substr(0, 300));
}

void StackCapture::abandon(std::string_view why) {
  if (dump_fd_ >= 0) {
    ::close(dump_fd_);
    dump_fd_ = -1;
    steps_[current_].status = CaptureStep::Status::kTimedOut;
    steps_[current_].why = std::string(why);
    ++current_;
  }
  if (child_ > 0) {
    ::kill(-child_, SIGKILL);
    // Not waited for here: a tool stuck in the kernel (reading a hung process's memory)
    // dies only when it leaves it, and the watchdog thread must not wait for that.
    remember_killed_tool(child_);
    CaptureStep& step = steps_[current_];
    step.status = CaptureStep::Status::kTimedOut;
    step.milliseconds = static_cast<double>(monotonic_now_ns() - started_ns_) / 1e6;
    step.why = std::string(why);
    interrupted_ = true;
    child_ = -1;
    ++current_;
  }
  for (; current_ < steps_.size(); ++current_) {
    steps_[current_].status = CaptureStep::Status::kSkipped;
    steps_[current_].why = std::string(why);
  }
}

}  // namespace shmtimer::detail
