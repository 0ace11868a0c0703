#include "shmtimer/table.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "shmtimer/error.hpp"
#include "shmtimer/table_fault_guard.hpp"
#include "table_mappings.hpp"

namespace shmtimer {

namespace bip = boost::interprocess;
using layout::Geometry;
using layout::TableHeader;

namespace {

std::string quoted(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

// Refuses what must never be mapped, judged on the descriptor that will be mapped: a
// non-regular file, and for writers a file others may write (group or world) or one owned
// by another uid. (A symlink never gets this far: it is opened with O_NOFOLLOW.)
void check_file_safety(const std::filesystem::path& path, int fd, const OpenOptions& options) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) throw_errno("cannot stat table " + quoted(path));
  if (!S_ISREG(st.st_mode))
    throw Error(ErrorCode::kNotATable, quoted(path) + " is not a regular file, so not a shmtimer table");
  if (!options.read_only && (st.st_mode & (S_IWOTH | S_IWGRP)))
    throw Error(ErrorCode::kUnsafeFile, "table " + quoted(path) + " is " +
                                            ((st.st_mode & S_IWOTH) ? "world" : "group") +
                                            "-writable; anyone who can write it could make the server signal "
                                            "your processes (chmod 600 it)");
  if (!options.allow_foreign_owner && st.st_uid != ::geteuid())
    throw Error(ErrorCode::kUnsafeFile, "table " + quoted(path) + " is owned by uid " + std::to_string(st.st_uid) +
                                            ", not by this user (uid " + std::to_string(::geteuid()) + ")");
}

// Where a new table is built before it gets its name: a file with no name (O_TMPFILE) in
// the path's directory, or, where the filesystem cannot make one (overlayfs before Linux
// 6.6, NFS, most FUSE), a hidden name of its own there (O_EXCL), removed whatever happens.
// Either way nothing is at `path` until name() links it there whole.
class Unnamed {
 public:
  Unnamed(const std::filesystem::path& path, mode_t mode) : path_(path) {
    const std::filesystem::path directory = path.has_parent_path() ? path.parent_path() : ".";
    fd_ = ::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    if (fd_ < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
      temp_ = directory / ("." + path.filename().string() + ".creating-" + std::to_string(std::random_device{}()));
      fd_ = ::open(temp_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
      if (fd_ < 0) temp_.clear();
    }
    if (fd_ < 0) throw_errno("cannot create table " + quoted(path));
  }
  ~Unnamed() {
    if (!temp_.empty()) ::unlink(temp_.c_str());
  }
  Unnamed(const Unnamed&) = delete;
  Unnamed& operator=(const Unnamed&) = delete;
  int fd() const { return fd_; }  // owned by the Table's File once made

  // Links the file at the path. link and linkat never replace or follow what is there:
  // EEXIST, as O_EXCL|O_NOFOLLOW would say, for open_or_create to open that file instead.
  void name() const {
    const bool linked = temp_.empty() ? ::linkat(AT_FDCWD, ("/proc/self/fd/" + std::to_string(fd_)).c_str(), AT_FDCWD,
                                                 path_.c_str(), AT_SYMLINK_FOLLOW) == 0
                                      : ::link(temp_.c_str(), path_.c_str()) == 0;
    if (!linked) throw_errno("cannot create table " + quoted(path_));
  }

 private:
  std::filesystem::path path_;
  std::filesystem::path temp_;  // empty: the file has no name
  int fd_ = -1;
};

// Gives every page of the file its memory now. A table sized by ftruncate alone is sparse:
// on a full tmpfs its pages fail only when first touched, and then as a SIGBUS that kills
// whoever touched them (the server, timer-dump, any worker). fallocate(2) itself, not
// posix_fallocate: where a filesystem cannot preallocate, glibc's emulation writes a byte
// into every block, which on a live table could overwrite a concurrent writer's store.
void allocate(const std::filesystem::path& path, int fd, std::uint64_t bytes) {
  int result = 0;
  do result = ::fallocate(fd, 0, 0, static_cast<off_t>(bytes));
  while (result != 0 && errno == EINTR);
  if (result == 0 || errno == EOPNOTSUPP) return;  // a filesystem that cannot: nothing better to do
  const int err = errno;
  throw Error(ErrorCode::kIo,
              "cannot allocate table " + quoted(path) + " (" + std::to_string(bytes) + " bytes): " +
                  std::strerror(err) + (err == ENOSPC ? " (is its filesystem, such as /dev/shm, full?)" : ""),
              err);
}

// Whether a table on tmpfs holds fewer bytes of memory than it is long (ftruncate alone).
// Elsewhere st_blocks can undercount (compression), so only tmpfs, where tables live.
bool sparse_on_tmpfs(int fd, std::uint64_t bytes) {
  struct statfs fs{};
  struct stat st{};
  return ::fstatfs(fd, &fs) == 0 && fs.f_type == TMPFS_MAGIC && ::fstat(fd, &st) == 0 &&
         static_cast<std::uint64_t>(st.st_blocks) * 512 < bytes;
}

std::uint64_t file_size(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) throw_errno("fstat");
  return static_cast<std::uint64_t>(st.st_size);
}

// Reads the first page into `page` and returns how many bytes were read.
std::size_t read_first_page(int fd, unsigned char* page) {
  std::size_t got = 0;
  while (got < layout::kHeaderBytes) {
    const ssize_t n = ::pread(fd, page + got, layout::kHeaderBytes - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read table header");
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

std::uint64_t unix_now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

}  // namespace

Geometry validate_header(const void* page, std::size_t page_bytes, std::uint64_t file_bytes) {
  if (page_bytes < sizeof(TableHeader) || file_bytes < layout::kHeaderBytes)
    throw Error(ErrorCode::kNotATable, "file is " + std::to_string(file_bytes) +
                                           " bytes, smaller than a table header (" +
                                           std::to_string(layout::kHeaderBytes) + "); not a shmtimer table");
  // Plain copies of the header fields: this is a private image, not the live mapping.
  std::uint64_t magic, capacity, file_bytes_field, slots_offset;
  std::uint16_t major, minor;
  std::uint32_t header_bytes, slot_bytes, max_scope;
  const auto* bytes = static_cast<const unsigned char*>(page);
  std::memcpy(&magic, bytes + offsetof(TableHeader, magic), 8);
  std::memcpy(&major, bytes + offsetof(TableHeader, version_major), 2);
  std::memcpy(&minor, bytes + offsetof(TableHeader, version_minor), 2);
  std::memcpy(&header_bytes, bytes + offsetof(TableHeader, header_bytes), 4);
  std::memcpy(&capacity, bytes + offsetof(TableHeader, capacity), 8);
  std::memcpy(&slot_bytes, bytes + offsetof(TableHeader, slot_bytes), 4);
  std::memcpy(&max_scope, bytes + offsetof(TableHeader, max_scope_bytes), 4);
  std::memcpy(&file_bytes_field, bytes + offsetof(TableHeader, file_bytes), 8);
  std::memcpy(&slots_offset, bytes + offsetof(TableHeader, slots_offset), 8);

  if (magic != layout::kMagic) throw Error(ErrorCode::kNotATable, "wrong magic number; not a shmtimer table");
  if (major != layout::kVersionMajor)
    throw Error(ErrorCode::kVersionMismatch,
                "table format version " + std::to_string(major) + "." + std::to_string(minor) + ", this build reads " +
                    std::to_string(layout::kVersionMajor) + ".x (it writes " + std::to_string(layout::kVersionMajor) +
                    "." + std::to_string(layout::kVersionMinor) +
                    "): a server and its clients must be of one format. Stop the other version's server and "
                    "clients, remove the table, and start this version's server, which makes it anew");
  if (capacity == 0 || capacity > layout::kMaxCapacity)
    throw Error(ErrorCode::kNotATable, "header capacity " + std::to_string(capacity) + " is out of range 1.." +
                                           std::to_string(layout::kMaxCapacity));
  const Geometry g = layout::geometry_for(capacity);
  if (header_bytes != layout::kHeaderBytes || slot_bytes != sizeof(layout::Slot) ||
      max_scope != layout::kMaxScopeBytes || slots_offset != g.slots_offset)
    throw Error(ErrorCode::kNotATable, "header geometry (header " + std::to_string(header_bytes) + ", slot " +
                                           std::to_string(slot_bytes) + ", scope " + std::to_string(max_scope) +
                                           " bytes) does not match format " + std::to_string(layout::kVersionMajor) +
                                           ".x");
  if (file_bytes_field != g.file_bytes || file_bytes != g.file_bytes)
    throw Error(ErrorCode::kSizeMismatch, "a table of capacity " + std::to_string(capacity) + " is " +
                                              std::to_string(g.file_bytes) + " bytes; the header says " +
                                              std::to_string(file_bytes_field) + " and the file is " +
                                              std::to_string(file_bytes));
  return g;
}

Table::File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

Table::Table(std::filesystem::path path, File file, bool read_only)
    : path_(std::move(path)), file_(std::move(file)), read_only_(read_only) {
  static std::atomic<std::uint64_t> next_id{1};
  id_ = next_id.fetch_add(1, std::memory_order_relaxed);  // uniqueness only
}

Table::~Table() { detail::unregister_table_mapping(fault_registration_); }  // before the region is unmapped

const char* to_string(FileChange change) {
  static constexpr const char* kNames[] = {"none", "deleted", "resized", "replaced"};
  static_assert(std::size(kNames) == kFileChanges);
  return kNames[static_cast<std::size_t>(change)];
}

bool Table::unlink_if_still_named() const {
  struct stat mapped{}, named{};
  return ::fstat(fd(), &mapped) == 0 && ::lstat(path_.c_str(), &named) == 0 && named.st_ino == mapped.st_ino &&
         named.st_dev == mapped.st_dev && ::unlink(path_.c_str()) == 0;
}

bool Table::lost_pages() const { return detail::table_mapping_faulted(fault_registration_); }

FileChange Table::file_change() const {
  struct stat mapped{}, named{};
  if (::fstat(fd(), &mapped) != 0) return FileChange::kNone;
  if (mapped.st_nlink == 0) return FileChange::kDeleted;
  if (static_cast<std::uint64_t>(mapped.st_size) != geometry_.file_bytes || lost_pages()) return FileChange::kResized;
  if (::lstat(path_.c_str(), &named) != 0) return errno == ENOENT ? FileChange::kReplaced : FileChange::kNone;
  return named.st_ino == mapped.st_ino && named.st_dev == mapped.st_dev ? FileChange::kNone : FileChange::kReplaced;
}

void Table::map(const Geometry& g) {
  try {
    region_ = bip::mapped_region(file_, read_only_ ? bip::read_only : bip::read_write, 0, g.file_bytes);
  } catch (const bip::interprocess_exception& e) {
    throw Error(ErrorCode::kIo, "cannot map table " + quoted(path_) + ": " + e.what());
  }
  auto* base = static_cast<unsigned char*>(region_.get_address());
  geometry_ = g;
  header_ = reinterpret_cast<TableHeader*>(base);
  bitmap_ = reinterpret_cast<std::atomic<std::uint64_t>*>(base + g.bitmap_offset);
  slots_ = reinterpret_cast<layout::Slot*>(base + g.slots_offset);
  fault_registration_ = detail::register_table_mapping(base, g.file_bytes, file_.fd(), !read_only_);
}

std::shared_ptr<Table> Table::create(const std::filesystem::path& path, const CreateOptions& options) {
  if (options.capacity == 0 || options.capacity > layout::kMaxCapacity)
    throw Error(ErrorCode::kInvalidArgument, "capacity " + std::to_string(options.capacity) + " is out of range 1.." +
                                                 std::to_string(layout::kMaxCapacity));
  const Geometry g = layout::geometry_for(options.capacity);
  // A table already there is opened by open_or_create: do not build a whole one to find
  // that out (on a full tmpfs it could not be built). The linkat below is the real guard.
  if (struct stat st{}; ::lstat(path.c_str(), &st) == 0) {
    errno = EEXIST;
    throw_errno("cannot create table " + quoted(path));
  }
  // Nobody can open the file before it is whole, and a failure leaves nothing behind. This
  // very descriptor is the one sized and mapped.
  const Unnamed unnamed(path, options.mode);
  const int fd = unnamed.fd();
  File file(fd);
  if (::fchmod(fd, options.mode) != 0 || ::ftruncate(fd, static_cast<off_t>(g.file_bytes)) != 0)
    throw_errno("cannot size table " + quoted(path));
  try {
    allocate(path, fd, g.file_bytes);
  } catch (const Error& e) {
    // Another creator may have taken the room, and the name, meanwhile: that table is to
    // be opened, not reported as no space.
    if (struct stat st{}; e.sys_errno() == ENOSPC && ::lstat(path.c_str(), &st) == 0) {
      errno = EEXIST;
      throw_errno("cannot create table " + quoted(path));
    }
    throw;
  }
  std::shared_ptr<Table> table(new Table(path, std::move(file), false));
  table->map(g);
  TableHeader* h = table->header_;
  // The file is fresh from ftruncate, so every byte is zero: all slots are Free and every
  // atomic already holds 0. Fill the geometry, then publish the magic last: nobody can
  // open the file before name() links it, but open() still waits for the magic of a table
  // that an older build named before filling it in.
  h->version_major = layout::kVersionMajor;
  h->version_minor = layout::kVersionMinor;
  h->header_bytes = layout::kHeaderBytes;
  h->capacity = g.capacity;
  h->slot_bytes = sizeof(layout::Slot);
  h->max_scope_bytes = layout::kMaxScopeBytes;
  h->file_bytes = g.file_bytes;
  h->creator_uid = ::geteuid();
  h->created_unix_ns = unix_now_ns();
  h->slots_offset = g.slots_offset;
  h->magic.store(layout::kMagic, std::memory_order_release);  // pairs with the acquire in open()
  // The name last: a table is never seen by its name before it is whole.
  unnamed.name();
  return table;
}

std::shared_ptr<Table> Table::open(const std::filesystem::path& path, const OpenOptions& options) {
  // O_NOFOLLOW: a symlink is refused (ELOOP). O_NONBLOCK: a FIFO or a device swapped in at
  // the path opens at once instead of blocking, and is then refused by its type. Every
  // check is made on this descriptor, which is the one mapped.
  const int fd =
      ::open(path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0 && errno == ELOOP)
    throw Error(ErrorCode::kUnsafeFile, "table " + quoted(path) + " is a symlink; refusing to follow it");
  if (fd < 0 && errno == EISDIR)
    throw Error(ErrorCode::kNotATable, quoted(path) + " is a directory, not a shmtimer table");
  if (fd < 0) throw_errno("cannot open table " + quoted(path));
  std::shared_ptr<Table> table(new Table(path, File(fd), options.read_only));
  check_file_safety(path, fd, options);

  // A creator publishes the magic last; give one that is still filling in a moment.
  alignas(layout::kCacheLineBytes) unsigned char page[layout::kHeaderBytes];
  Geometry g{};
  for (int waited_ms = 0;; waited_ms += 10) {
    const std::size_t got = read_first_page(fd, page);
    try {
      g = validate_header(page, got, file_size(fd));
      break;
    } catch (const Error& e) {
      std::uint64_t magic = 0;
      if (got >= 8) std::memcpy(&magic, page, 8);
      if (magic != 0 || waited_ms >= options.init_wait_ms)
        throw Error(e.code(), "cannot open table " + quoted(path) + ": " + e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  if (!options.read_only && sparse_on_tmpfs(fd, g.file_bytes)) allocate(path, fd, g.file_bytes);
  table->map(g);  // the validated copy: later writes to the header's geometry are ignored
  // Pairs with the creator's release store: geometry fields are complete once seen.
  if (table->header_->magic.load(std::memory_order_acquire) != layout::kMagic)
    throw Error(ErrorCode::kNotATable, "cannot open table " + quoted(path) + ": magic changed while mapping");
  return table;
}

std::shared_ptr<Table> Table::open_or_create(const std::filesystem::path& path, const CreateOptions& options) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      return create(path, options);
    } catch (const Error& e) {
      if (e.sys_errno() != EEXIST) throw;
    }
    try {
      return open(path);
    } catch (const Error& e) {
      if (e.sys_errno() != ENOENT) throw;  // removed between the two: retry
    }
  }
  throw Error(ErrorCode::kIo, "cannot open or create table " + quoted(path) + ": it keeps changing");
}

}  // namespace shmtimer
