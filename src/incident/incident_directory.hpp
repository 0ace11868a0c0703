// The directories incidents are written to. Every byte of a report comes from processes
// the server does not trust (scopes, command lines, their stacks), and the server may run
// as root: so the root directory is checked before use, each incident is a new directory
// made inside it by descriptor, and each file is created new (O_EXCL, O_NOFOLLOW, 0600):
// nothing is ever written through a path another user could have placed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

namespace shmtimer::detail {

// An open directory descriptor, closed with its owner.
class DirFd {
 public:
  DirFd() = default;
  explicit DirFd(int fd) : fd_(fd) {}
  DirFd(DirFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  DirFd& operator=(DirFd&& other) noexcept;
  DirFd(const DirFd&) = delete;
  DirFd& operator=(const DirFd&) = delete;
  ~DirFd();
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Opens the directory incidents go to, creating it (0700) when it is missing. Throws
// Error(kUnsafeFile) for a symlink, a non-directory, another user's directory or one that
// group or others may write; Error(kIo) when it cannot be made or opened.
DirFd open_incident_root(const std::filesystem::path& directory);

// Makes a new incident directory (0700) in `root`, named after the wall-clock time (UTC,
// to the millisecond, so that names sort by time) and the pid: "20261204T193501.123Z-pid4242".
// A name taken already gets "-2", "-3"... Returns its descriptor and sets `name`.
DirFd make_incident_directory(const DirFd& root, pid_t pid, std::string& name);

// Creates `name` in `dir` (it must not exist: O_EXCL, O_NOFOLLOW, 0600) and returns its
// descriptor (O_CLOEXEC), or throws Error(kIo).
int create_report_file(const DirFd& dir, const std::string& name);
// Creates `name` in `dir` with `content`, whole; throws Error(kIo).
void write_report_file(const DirFd& dir, const std::string& name, std::string_view content);
// Reads `name` from `dir`, at most `limit` bytes ("" when it cannot be read).
std::string read_report_file(const DirFd& dir, const std::string& name, std::size_t limit = 1 << 20);

}  // namespace shmtimer::detail
