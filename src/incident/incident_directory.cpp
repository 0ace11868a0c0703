#include "incident_directory.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <fmt/format.h>

#include "shmtimer/error.hpp"

namespace shmtimer::detail {

DirFd& DirFd::operator=(DirFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

DirFd::~DirFd() {
  if (fd_ >= 0) ::close(fd_);
}

DirFd open_incident_root(const std::filesystem::path& directory) {
  if (::mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST)
    throw_errno("cannot make the incident directory " + directory.string());
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP || errno == ENOTDIR)
      throw Error(ErrorCode::kUnsafeFile,
                  "refusing the incident directory " + directory.string() + ": it is a symlink or not a directory");
    throw_errno("cannot open the incident directory " + directory.string());
  }
  DirFd dir(fd);
  struct stat st{};
  if (::fstat(fd, &st) != 0) throw_errno("cannot stat the incident directory " + directory.string());
  if (st.st_uid != ::geteuid())
    throw Error(ErrorCode::kUnsafeFile, fmt::format("refusing the incident directory {}: it belongs to uid {}, not {}",
                                                    directory.string(), st.st_uid, ::geteuid()));
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    throw Error(ErrorCode::kUnsafeFile,
                fmt::format("refusing the incident directory {}: mode {:o} lets others write it", directory.string(),
                            st.st_mode & 07777));
  return dir;
}

DirFd make_incident_directory(const DirFd& root, pid_t pid, std::string& name) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &utc);
  const std::string base = fmt::format("{}.{:03}Z-pid{}", stamp, millis, pid);
  for (int attempt = 1; attempt < 1000; ++attempt) {
    name = attempt == 1 ? base : fmt::format("{}-{}", base, attempt);
    if (::mkdirat(root.get(), name.c_str(), 0700) == 0) {
      const int fd = ::openat(root.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) throw_errno("cannot open the new incident directory " + name);
      return DirFd(fd);
    }
    if (errno != EEXIST) throw_errno("cannot make the incident directory " + name);
  }
  throw Error(ErrorCode::kIo, "cannot make an incident directory: every name for " + base + " is taken");
}

int create_report_file(const DirFd& dir, const std::string& name) {
  const int fd = ::openat(dir.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) throw_errno("cannot create the report file " + name);
  return fd;
}

void write_report_file(const DirFd& dir, const std::string& name, std::string_view content) {
  const int fd = create_report_file(dir, name);
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      ::close(fd);
      errno = error;
      throw_errno("cannot write the report file " + name);
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

std::string read_report_file(const DirFd& dir, const std::string& name, std::size_t limit) {
  const int fd = ::openat(dir.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return {};
  std::string text;
  char buffer[8192];
  while (text.size() < limit) {
    const ssize_t n = ::read(fd, buffer, std::min(sizeof buffer, limit - text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

}  // namespace shmtimer::detail
