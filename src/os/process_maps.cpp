#include "process_maps.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <new>
#include <string>
#include <string_view>

namespace shmtimer {
namespace detail {

namespace {

// struct procmap_query of <linux/fs.h> (Linux 6.11), which Debian 12's kernel headers
// predate; the layout is kernel ABI, pinned by the ioctl number's size field.
struct ProcmapQuery {
  std::uint64_t size;
  std::uint64_t query_flags;
  std::uint64_t query_addr;
  std::uint64_t vma_start;
  std::uint64_t vma_end;
  std::uint64_t vma_flags;
  std::uint64_t vma_page_size;
  std::uint64_t vma_offset;
  std::uint64_t inode;
  std::uint32_t dev_major;
  std::uint32_t dev_minor;
  std::uint32_t vma_name_size;
  std::uint32_t build_id_size;
  std::uint64_t vma_name_addr;
  std::uint64_t build_id_addr;
};
static_assert(sizeof(ProcmapQuery) == 104);
constexpr unsigned long kProcmapQuery = _IOWR('f', 17, ProcmapQuery);
static_assert(kProcmapQuery == 0xC0686611);
constexpr std::uint64_t kCoveringOrNextVma = 0x10;
constexpr std::uint64_t kFileBackedVma = 0x20;

}  // namespace

namespace {

// The first file-backed mapping covering `addr` or after it; 0, or the errno.
int query_from(int maps_fd, std::uint64_t addr, ProcmapQuery& q) noexcept {
  for (;;) {
    q = {};
    q.size = sizeof q;
    q.query_flags = kCoveringOrNextVma | kFileBackedVma;
    q.query_addr = addr;
    if (::ioctl(maps_fd, kProcmapQuery, &q) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

bool maps(const ProcmapQuery& q, const FileId& file) {
  return q.inode == file.ino && ::makedev(q.dev_major, q.dev_minor) == file.dev;
}

}  // namespace

MapsAnswer query_maps_for(int maps_fd, const FileId& file, std::uint64_t* near) noexcept {
  ProcmapQuery q;
  if (near != nullptr && *near != 0 && query_from(maps_fd, *near, q) == 0 && q.vma_start <= *near && maps(q, file))
    return MapsAnswer::kListed;
  for (std::uint64_t addr = 0;;) {
    if (const int error = query_from(maps_fd, addr, q); error != 0) {
      // ENOENT: no file-backed mapping at or after addr; ESRCH: no memory map (the main
      // thread exited, the caller asks its other threads; or the process exec()ed since
      // the file was opened). Anything else (ENOTTY before 6.11, EINVAL from a kernel
      // that wants another structure): read the text.
      return error == ENOENT || error == ESRCH ? MapsAnswer::kNotListed : MapsAnswer::kUnsupported;
    }
    if (maps(q, file)) {
      if (near != nullptr) *near = q.vma_start;
      return MapsAnswer::kListed;
    }
    if (q.vma_end <= addr) return MapsAnswer::kUnsupported;  // not moving on: trust the text instead
    addr = q.vma_end;
  }
}

// Each line is "start-end perms offset major:minor inode path". Both parsing every line
// and having the kernel generate every line of a process with hundreds of mappings cost
// more than the rest of the kill. So the text is read in pages and the search stops at
// the first match (the kernel generates lines as they are read), and only lines whose
// inode field is the file's (found as text) are parsed.
Mapping search_maps_text_for(int maps_fd, const FileId& file, int& error) {
  if (::lseek(maps_fd, 0, SEEK_SET) != 0) {
    error = errno;
    return Mapping::kUnknown;
  }
  const std::string inode = " " + std::to_string(file.ino) + " ";
  const auto line_matches = [&](std::string_view line) {
    if (line.find(inode) == std::string_view::npos) return false;
    const std::string copy(line);
    unsigned major = 0, minor = 0;
    unsigned long long ino = 0;
    return std::sscanf(copy.c_str(), "%*s %*s %*s %x:%x %llu", &major, &minor, &ino) == 3 && ino == file.ino &&
           ::makedev(major, minor) == file.dev;
  };
  std::string pending;  // the text read but not yet searched: whole lines and one partial
  char chunk[4096];
  bool found = false;
  ssize_t n = 0;
  while (!found && ((n = ::read(maps_fd, chunk, sizeof chunk)) > 0 || (n < 0 && errno == EINTR))) {
    if (n < 0) continue;
    pending.append(chunk, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t end; !found && (end = pending.find('\n', start)) != std::string::npos; start = end + 1)
      found = line_matches(std::string_view(pending).substr(start, end - start));
    pending.erase(0, start);
  }
  // A read that failed is no proof that the file is not mapped, except for ESRCH: the
  // address space is gone.
  if (!found && n < 0 && errno != ESRCH) {
    error = errno;
    return Mapping::kUnknown;
  }
  if (!found && !pending.empty()) found = line_matches(pending);  // a last line without a newline
  return found ? Mapping::kMapped : Mapping::kNotMapped;
}

Mapping search_open_maps(int maps_fd, const FileId& file, int& error, std::uint64_t* near) {
  const auto listed = query_maps_for(maps_fd, file, near);
  if (listed != MapsAnswer::kUnsupported) return listed == MapsAnswer::kListed ? Mapping::kMapped : Mapping::kNotMapped;
  return search_maps_text_for(maps_fd, file, error);
}

}  // namespace detail

namespace {

// Does the maps file at `path` (a process's or one of its threads') list `file`?
Mapping search_maps_at(const std::string& path, const FileId& file, int& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = errno;
    // Gone (the liveness check after it says so) or, for a thread, exited: not here.
    return error == ENOENT || error == ESRCH ? Mapping::kNotMapped : Mapping::kUnknown;
  }
  const Mapping mapping = detail::search_open_maps(fd, file, error);
  ::close(fd);
  return mapping;
}

}  // namespace

Mapping process_has_mapped(pid_t pid, const FileId& file, int& error) noexcept {
  error = 0;
  try {
    const std::string dir = "/proc/" + std::to_string(pid);
    Mapping answer = search_maps_at(dir + "/maps", file, error);
    if (answer != Mapping::kNotMapped) return answer;
    DIR* tasks = ::opendir((dir + "/task").c_str());
    if (tasks == nullptr) {
      error = errno;
      return error == ENOENT || error == ESRCH ? Mapping::kNotMapped : Mapping::kUnknown;
    }
    errno = 0;
    while (const dirent* entry = answer == Mapping::kNotMapped ? ::readdir(tasks) : nullptr)
      if (entry->d_name[0] != '.') answer = search_maps_at(dir + "/task/" + entry->d_name + "/maps", file, error);
    ::closedir(tasks);
    return answer;
  } catch (const std::bad_alloc&) {
    error = ENOMEM;
    return Mapping::kUnknown;
  }
}

}  // namespace shmtimer
