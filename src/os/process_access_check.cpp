#include "shmtimer/process_access_check.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

#include "process_liveness.hpp"

namespace shmtimer {

namespace {

std::string errno_text(int error) { return std::strerror(error); }

// Opens and reads a byte of /proc/<pid>/maps; 0, or the errno that stopped it.
int read_maps(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/maps";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char byte;
  const int error = ::read(fd, &byte, 1) < 0 ? errno : 0;
  ::close(fd);
  return error;
}

// A child that only waits to be killed, tried as the kill path tries a worker.
std::string try_a_child_of_our_own() {
  const pid_t child = ::fork();
  if (child < 0) return "cannot fork a child to test with: " + errno_text(errno);
  if (child == 0) {
    for (;;) ::pause();
  }
  std::string problem;
  const int pidfd = open_pidfd(child);
  if (pidfd < 0) {
    problem = "cannot open a pidfd to a child of its own (" + errno_text(errno) +
              "): a system call filter that forbids pidfd_open (SystemCallFilter=), or a kernel older than 5.3";
  } else if (const int error = read_maps(child); error != 0) {
    problem = "cannot read /proc/<pid>/maps of a child of its own (" + errno_text(error) +
              "): /proc is hidden (ProtectProc=, hidepid=) or not mounted";
  } else if (::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) != 0) {
    problem = "cannot signal a child of its own through a pidfd (" + errno_text(errno) +
              "): a system call filter that forbids pidfd_send_signal";
  }
  if (pidfd >= 0) ::close(pidfd);
  ::kill(child, SIGKILL);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return problem;
}

// /proc/self/uid_map as one line of text; the initial user namespace maps every uid to
// itself in one line, "0 0 4294967295" (the kernel pads the numbers).
std::string uid_map() {
  std::ifstream in("/proc/self/uid_map");
  std::string text, word;
  while (in >> word) text += (text.empty() ? "" : " ") + word;
  return text;
}

// A status field of /proc/<pid>/status, its first word; empty when missing.
std::string status_field(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + ":", 0) == 0) {
      std::istringstream words(line.substr(name.size() + 1));
      std::string first;
      words >> first;
      return first;
    }
  return "";
}

// In a user namespace of its own, the kernel lets a process read the maps of another of
// its uid only if that one is in the same namespace (security/commoncap.c,
// cap_ptrace_access_check). The parent (systemd's user manager, a shell) is outside it
// when systemd set it up (PrivateUsers=); it tells only if it holds no capability, since a
// process with capabilities is unreadable to one without for another reason.
bool in_the_initial_user_namespace(const std::string& map) { return map.empty() || map == "0 0 4294967295"; }

std::string try_the_parent_across_a_user_namespace() {
  const std::string map = uid_map();
  if (in_the_initial_user_namespace(map)) return "";
  const pid_t parent = ::getppid();
  if (parent <= 1 || status_field(parent, "Uid") != std::to_string(::getuid()) ||
      status_field(parent, "CapPrm") != "0000000000000000")
    return "";  // cannot tell
  const int error = read_maps(parent);
  if (error != EACCES && error != EPERM) return "";
  return "it runs in a user namespace of its own (uid_map '" + map +
         "') that its workers are not in: it can signal them but may not read their /proc/<pid>/maps, so it would "
         "refuse every table timer's kill. Run it without PrivateUsers= (in a systemd user unit, also without the "
         "options that imply it there: PrivateTmp=, ProtectSystem=, ProtectHome=, ProtectKernel*=, "
         "ProtectControlGroups=, ProtectClock=, ProtectHostname=)";
}

}  // namespace

std::string why_maps_are_unreadable(pid_t pid) {
  if (const std::string map = uid_map(); !in_the_initial_user_namespace(map))
    return "this server runs in a user namespace of its own (uid_map '" + map + "') that the worker is not in";
  if (const std::string held = status_field(pid, "CapPrm"); !held.empty() && held != "0000000000000000")
    return "the worker holds capabilities (CapPrm " + held +
           ") and this server not all of them: give the worker none, or the server CAP_SYS_PTRACE";
  return "the worker is not dumpable (PR_SET_DUMPABLE 0, or it changed its credentials), and this server lacks "
         "CAP_SYS_PTRACE";
}

std::string why_workers_cannot_be_watched() {
  if (std::string problem = try_a_child_of_our_own(); !problem.empty()) return problem;
  return try_the_parent_across_a_user_namespace();
}

}  // namespace shmtimer
