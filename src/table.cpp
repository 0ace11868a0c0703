#include "shmtimer/table.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "shmtimer/error.hpp"

namespace shmtimer {

namespace bip = boost::interprocess;
using layout::Geometry;
using layout::TableHeader;

namespace {

std::string quoted(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

// Refuses what must never be mapped: a symlink, a non-regular file, and (for writers) a
// world-writable file or one owned by another uid. `fd` is the descriptor that will be
// mapped; comparing it with lstat() of the path also catches a swap between the two.
void check_file_safety(const std::filesystem::path& path, int fd, const OpenOptions& options) {
  struct stat link_stat {};
  struct stat fd_stat {};
  if (::lstat(path.c_str(), &link_stat) != 0) throw_errno("cannot stat table " + quoted(path));
  if (S_ISLNK(link_stat.st_mode))
    throw Error(ErrorCode::kUnsafeFile, "table " + quoted(path) + " is a symlink; refusing to follow it");
  if (::fstat(fd, &fd_stat) != 0) throw_errno("cannot stat table " + quoted(path));
  if (fd_stat.st_dev != link_stat.st_dev || fd_stat.st_ino != link_stat.st_ino)
    throw Error(ErrorCode::kUnsafeFile, "table " + quoted(path) + " was replaced while it was being opened");
  if (!S_ISREG(fd_stat.st_mode))
    throw Error(ErrorCode::kNotATable, quoted(path) + " is not a regular file, so not a shmtimer table");
  if (!options.read_only && (fd_stat.st_mode & S_IWOTH))
    throw Error(ErrorCode::kUnsafeFile, "table " + quoted(path) +
                                            " is world-writable; any user could make the server signal "
                                            "your processes (chmod 600 it)");
  if (!options.allow_foreign_owner && fd_stat.st_uid != ::geteuid())
    throw Error(ErrorCode::kUnsafeFile, "table " + quoted(path) + " is owned by uid " +
                                            std::to_string(fd_stat.st_uid) + ", not by this user (uid " +
                                            std::to_string(::geteuid()) + ")");
}

std::uint64_t file_size(int fd) {
  struct stat st {};
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
                "table format version " + std::to_string(major) + "." + std::to_string(minor) +
                    ", this build reads " + std::to_string(layout::kVersionMajor) + ".x (it writes " +
                    std::to_string(layout::kVersionMajor) + "." + std::to_string(layout::kVersionMinor) + ")");
  if (capacity == 0 || capacity > layout::kMaxCapacity)
    throw Error(ErrorCode::kNotATable, "header capacity " + std::to_string(capacity) + " is out of range 1.." +
                                           std::to_string(layout::kMaxCapacity));
  const Geometry g = layout::geometry_for(capacity);
  if (header_bytes != layout::kHeaderBytes || slot_bytes != sizeof(layout::Slot) ||
      max_scope != layout::kMaxScopeBytes || slots_offset != g.slots_offset)
    throw Error(ErrorCode::kNotATable, "header geometry (header " + std::to_string(header_bytes) + ", slot " +
                                           std::to_string(slot_bytes) + ", scope " + std::to_string(max_scope) +
                                           " bytes) does not match format 1.x");
  if (file_bytes_field != g.file_bytes || file_bytes != g.file_bytes)
    throw Error(ErrorCode::kSizeMismatch, "a table of capacity " + std::to_string(capacity) + " is " +
                                              std::to_string(g.file_bytes) + " bytes; the header says " +
                                              std::to_string(file_bytes_field) + " and the file is " +
                                              std::to_string(file_bytes));
  return g;
}

Table::Table(std::filesystem::path path, bip::file_mapping file, bool read_only)
    : path_(std::move(path)), file_(std::move(file)), read_only_(read_only) {
  static std::atomic<std::uint64_t> next_id{1};
  id_ = next_id.fetch_add(1, std::memory_order_relaxed);  // uniqueness only
}

int Table::fd() const { return file_.get_mapping_handle().handle; }

std::shared_ptr<Table> Table::create(const std::filesystem::path& path, const CreateOptions& options) {
  if (options.capacity == 0 || options.capacity > layout::kMaxCapacity)
    throw Error(ErrorCode::kInvalidArgument, "capacity " + std::to_string(options.capacity) +
                                                 " is out of range 1.." + std::to_string(layout::kMaxCapacity));
  const Geometry g = layout::geometry_for(options.capacity);
  // O_EXCL|O_NOFOLLOW: never adopt or follow something another user placed at the path.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, options.mode);
  if (fd < 0) throw_errno("cannot create table " + quoted(path));
  if (::fchmod(fd, options.mode) != 0 || ::ftruncate(fd, static_cast<off_t>(g.file_bytes)) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    ::close(fd);
    errno = err;
    throw_errno("cannot size table " + quoted(path));
  }
  ::close(fd);

  std::shared_ptr<Table> table(new Table(path, bip::file_mapping(path.c_str(), bip::read_write), false));
  table->region_ = bip::mapped_region(table->file_, bip::read_write, 0, g.file_bytes);
  auto* base = static_cast<unsigned char*>(table->region_.get_address());
  auto* h = reinterpret_cast<TableHeader*>(base);
  // The file is fresh from ftruncate, so every byte is zero: all slots are Free and every
  // atomic already holds 0. Fill the geometry, then publish the magic last.
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
  table->geometry_ = g;
  table->header_ = h;
  table->bitmap_ = reinterpret_cast<std::atomic<std::uint64_t>*>(base + g.bitmap_offset);
  table->slots_ = reinterpret_cast<layout::Slot*>(base + g.slots_offset);
  return table;
}

std::shared_ptr<Table> Table::open(const std::filesystem::path& path, const OpenOptions& options) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw_errno("cannot open table " + quoted(path));
  if (S_ISLNK(st.st_mode))
    throw Error(ErrorCode::kUnsafeFile, "table " + quoted(path) + " is a symlink; refusing to follow it");
  if (!S_ISREG(st.st_mode))
    throw Error(ErrorCode::kNotATable, quoted(path) + " is not a regular file, so not a shmtimer table");
  const auto mode = options.read_only ? bip::read_only : bip::read_write;
  std::shared_ptr<Table> table;
  try {
    table.reset(new Table(path, bip::file_mapping(path.c_str(), mode), options.read_only));
  } catch (const bip::interprocess_exception& e) {
    throw Error(ErrorCode::kIo, "cannot open table " + quoted(path) + ": " + e.what());
  }
  const int fd = table->fd();
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
  try {
    table->region_ = bip::mapped_region(table->file_, mode, 0, g.file_bytes);
  } catch (const bip::interprocess_exception& e) {
    throw Error(ErrorCode::kIo, "cannot map table " + quoted(path) + ": " + e.what());
  }
  auto* base = static_cast<unsigned char*>(table->region_.get_address());
  table->header_ = reinterpret_cast<TableHeader*>(base);
  // Pairs with the creator's release store: geometry fields are complete once seen.
  if (table->header_->magic.load(std::memory_order_acquire) != layout::kMagic)
    throw Error(ErrorCode::kNotATable, "cannot open table " + quoted(path) + ": magic changed while mapping");
  table->geometry_ = g;  // validated copy: later writes to the header's geometry are ignored
  table->bitmap_ = reinterpret_cast<std::atomic<std::uint64_t>*>(base + g.bitmap_offset);
  table->slots_ = reinterpret_cast<layout::Slot*>(base + g.slots_offset);
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
