// Where a table lives when none is named: the user's private directory in /dev/shm.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "shmtimer/error.hpp"
#include "shmtimer/table.hpp"

namespace shmtimer {

std::filesystem::path private_directory() { return "/dev/shm/shmtimer-" + std::to_string(::geteuid()); }

std::filesystem::path default_table_path() {
  if (const char* env = std::getenv("SHMTIMER_TABLE"); env != nullptr && *env != '\0') return env;
  return private_directory() / "table";
}

void prepare_private_directory(const std::filesystem::path& table_path) {
  const std::filesystem::path dir = private_directory();
  if (table_path.parent_path() != dir) return;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("cannot create " + dir.string());
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && (errno == ELOOP || errno == ENOTDIR))
    throw Error(ErrorCode::kUnsafeFile, dir.string() +
                                            " is not a directory (a symlink or a file is there); "
                                            "remove it, or set SHMTIMER_TABLE to another path");
  if (fd < 0) throw_errno("cannot open " + dir.string());
  struct stat st{};
  const bool ok = ::fstat(fd, &st) == 0 && st.st_uid == ::geteuid() && (st.st_mode & 0077) == 0;
  ::close(fd);
  if (!ok)
    throw Error(
        ErrorCode::kUnsafeFile,
        dir.string() + " belongs to uid " + std::to_string(st.st_uid) + " with mode " +
            [&] {
              char mode[8];
              std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
              return std::string(mode);
            }() +
            ", but must be this user's (uid " + std::to_string(::geteuid()) +
            ") alone: anyone else who can write it could replace the table. Have its owner or root remove "
            "it, or set SHMTIMER_TABLE to another path");
}

}  // namespace shmtimer
