// A mapped timer table: creating, validating and mapping the file. Everything that reads
// or writes slots goes through the pointers this class hands out.
#pragma once

#include <sys/types.h>

#include <boost/interprocess/mapped_region.hpp>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <utility>

#include "shmtimer/table_layout.hpp"

namespace shmtimer {

struct CreateOptions {
  std::uint64_t capacity = 4096;
  mode_t mode = 0600;  // applied with fchmod, so the umask cannot widen or narrow it
};

struct OpenOptions {
  bool read_only = false;
  // A table owned by another uid is refused unless this is set. Read-only inspectors may
  // set it; a server or client that would write should not (docs/security.md).
  bool allow_foreign_owner = false;
  // How long to wait for a creator that has made the file but not yet published the header.
  int init_wait_ms = 1000;
};

// What became of a table's file since it was mapped (Table::file_change()).
enum class FileChange : std::uint8_t {
  kNone,
  kDeleted,   // unlinked: no new process can open it (systemd's RemoveIPC=, a stray rm)
  kResized,   // truncated or grown, or a page of the mapping was lost to a truncation
  kReplaced,  // the path names another file now, or nothing while the file still has a link
};
inline constexpr std::size_t kFileChanges = 4;
const char* to_string(FileChange change);  // "none", "deleted", "resized", "replaced"

// The table that shmtimerd, timer-dump and the clients use when given no path:
// $SHMTIMER_TABLE, else /dev/shm/shmtimer-<uid>/table, in a directory private to the user.
std::filesystem::path default_table_path();

// /dev/shm/shmtimer-<uid>: the directory of the default table and of the tables that the
// Python module's hosted servers make up for their jobs.
std::filesystem::path private_directory();

// Makes sure the private directory exists and is this user's alone (owner, mode 0700, not
// a symlink), checked on its descriptor, so no other user can squat a table's name in it
// or swap the table under the server. Throws Error(kUnsafeFile) naming the owner and the
// fix when it is not. A no-op for a table outside that directory.
void prepare_private_directory(const std::filesystem::path& table_path);

class Table {
 public:
  // Creates a new table file; fails with kIo (EEXIST) when the path exists, and with kIo
  // (ENOSPC) when its filesystem cannot hold it. The table appears at the path whole or not
  // at all: it is made without a name, allocated, filled in, and only then linked.
  static std::shared_ptr<Table> create(const std::filesystem::path& path, const CreateOptions& options = {});
  // Opens and validates an existing table, refusing anything that is not a table of this
  // major format. A writer also allocates whatever the file lacks (a sparse table is made
  // by ftruncate alone), failing with kIo (ENOSPC) instead of dying of SIGBUS later.
  static std::shared_ptr<Table> open(const std::filesystem::path& path, const OpenOptions& options = {});
  // Opens the table at path, creating it first when no file is there.
  static std::shared_ptr<Table> open_or_create(const std::filesystem::path& path, const CreateOptions& options = {});

  ~Table();
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::uint64_t capacity() const { return geometry_.capacity; }
  const layout::Geometry& geometry() const { return geometry_; }
  bool read_only() const { return read_only_; }
  // Unique among the Tables this process has opened (never 0), for per-thread caches.
  std::uint64_t id() const { return id_; }
  int fd() const { return file_.fd(); }  // the descriptor that was mapped (for flock by the server)
  // Looks at the mapped file (fstat) and at the path (lstat). An error that shows nothing
  // (anything but ENOENT at the path) is kNone: only what is seen counts as a change.
  FileChange file_change() const;
  // Removes the file at path() if it is still the one mapped (a damaged table, so that the
  // next server makes a new one); false when the path names another file or nothing.
  bool unlink_if_still_named() const;
  // Whether the fault guard replaced pages of this mapping (table_fault_guard.hpp): what
  // is read there now is zeros, not the file.
  bool lost_pages() const;

  // The shared words. A const Table reads them (loads are const); writing a slot, the
  // header or the bitmap takes a Table& (so a mutation is visible in a signature, and the
  // read-only mapping of a tool, held const, cannot be written by mistake).
  const layout::TableHeader& header() const { return *header_; }
  layout::TableHeader& header() { return *header_; }
  const layout::Slot& slot(std::uint64_t index) const { return slots_[index]; }
  layout::Slot& slot(std::uint64_t index) { return slots_[index]; }
  const std::atomic<std::uint64_t>& bitmap_word(std::uint64_t word) const { return bitmap_[word]; }
  std::atomic<std::uint64_t>& bitmap_word(std::uint64_t word) { return bitmap_[word]; }

 private:
  // An open descriptor that Boost.Interprocess maps: every check is made on the very
  // descriptor that is mapped, never on the path again.
  class File {
   public:
    explicit File(int fd) : fd_(fd) {}
    File(File&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    File& operator=(File&&) = delete;
    ~File();
    int fd() const { return fd_; }
    boost::interprocess::mapping_handle_t get_mapping_handle() const {
      return boost::interprocess::ipcdetail::mapping_handle_from_file_handle(fd_);
    }

   private:
    int fd_;
  };

  Table(std::filesystem::path path, File file, bool read_only);
  void map(const layout::Geometry& g);

  std::filesystem::path path_;
  File file_;
  boost::interprocess::mapped_region region_;
  layout::Geometry geometry_{};
  bool read_only_ = false;
  std::uint64_t id_;
  int fault_registration_ = -1;  // table_fault_guard.hpp
  layout::TableHeader* header_ = nullptr;
  std::atomic<std::uint64_t>* bitmap_ = nullptr;
  layout::Slot* slots_ = nullptr;
};

// Validates a header image against the size of the file it came from and returns the
// table's geometry, or throws the Error that names what is wrong. Used by open() on a
// copy of the first page, so a bad file is never mapped.
layout::Geometry validate_header(const void* page, std::size_t page_bytes, std::uint64_t file_bytes);

}  // namespace shmtimer
