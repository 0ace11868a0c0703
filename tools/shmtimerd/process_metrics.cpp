#include "process_metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace shmtimerd {

namespace {

std::string number(double value) {
  std::ostringstream text;
  text.precision(15);
  text << value;
  return text.str();
}

// Fields 14-15 (utime, stime) and 22 (starttime) of /proc/self/stat, in clock ticks;
// false when unreadable. The command (field 2) may hold spaces: fields count after ')'.
bool read_stat(double& cpu_ticks, double& start_ticks) {
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(text.substr(close + 2));  // field 3 onwards
  std::string field;
  for (int n = 3; fields >> field; ++n) {
    if (n == 14 || n == 15) cpu_ticks += std::stod(field);
    if (n == 22) {
      start_ticks = std::stod(field);
      return true;
    }
  }
  return false;
}

// Seconds since the epoch at which the system booted (btime of /proc/stat); 0 when unknown.
double boot_time() {
  std::ifstream in("/proc/stat");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("btime ", 0) == 0) return std::stod(line.substr(6));
  return 0;
}

}  // namespace

void write_process_metrics(timer_dump::ExpositionWriter& out, const char* version) {
  out.gauge("shmtimer_build_info", "The build of shmtimerd serving this page.", "1",
            std::string("version=\"") + version + '"');
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  double cpu_ticks = 0, start_ticks = 0;
  if (read_stat(cpu_ticks, start_ticks) && ticks > 0) {
    out.counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.", number(cpu_ticks / ticks));
    if (const double booted = boot_time(); booted > 0)
      out.gauge("process_start_time_seconds", "Start time of the process since the epoch, in seconds.",
                number(booted + start_ticks / ticks));
  }
  std::ifstream statm("/proc/self/statm");
  if (double pages_total = 0, pages_resident = 0; statm >> pages_total >> pages_resident) {
    const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
    out.gauge("process_resident_memory_bytes", "Resident memory size, in bytes.", number(pages_resident * page));
    out.gauge("process_virtual_memory_bytes", "Virtual memory size, in bytes.", number(pages_total * page));
  }
  std::error_code error;
  std::size_t open = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error))
    ++open;
  if (!error) out.gauge("process_open_fds", "Open file descriptors.", std::to_string(open));
  if (rlimit limit{}; ::getrlimit(RLIMIT_NOFILE, &limit) == 0)
    out.gauge("process_max_fds", "The soft limit on open file descriptors.", std::to_string(limit.rlim_cur));
}

}  // namespace shmtimerd
