// The table format and every open/refuse case.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "shmtimer/error.hpp"
#include "shmtimer/table.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

using testing::TempPath;
using testing::TempTable;

ErrorCode open_error(const std::filesystem::path& path, OpenOptions options = {}) {
  options.init_wait_ms = 0;
  try {
    Table::open(path, options);
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "opening " << path << " did not fail";
  return ErrorCode::kIo;
}

std::string open_message(const std::filesystem::path& path) {
  try {
    Table::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void write_bytes(const std::filesystem::path& path, std::uint64_t offset, const void* data, std::size_t n) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, data, n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
  ::close(fd);
}

TEST(TableFormat, CreateWritesAValidHeader) {
  TempTable t(1000);
  const auto& h = t.table->header();
  EXPECT_EQ(h.magic.load(), layout::kMagic);
  EXPECT_EQ(h.version_major, 3);
  EXPECT_EQ(h.version_minor, layout::kVersionMinor);
  EXPECT_EQ(h.capacity, 1000u);
  EXPECT_EQ(h.slot_bytes, sizeof(layout::Slot));
  EXPECT_EQ(h.max_scope_bytes, 256u);
  EXPECT_EQ(h.creator_uid, ::geteuid());
  EXPECT_GT(h.created_unix_ns, 1'600'000'000'000'000'000ULL);
  EXPECT_EQ(h.file_bytes, layout::geometry_for(1000).file_bytes);
  EXPECT_EQ(std::filesystem::file_size(t.file.path()), h.file_bytes);
  EXPECT_EQ(h.server_pid.load(), 0);
}

TEST(TableFormat, SlotsAreCacheLineAlignedInTheMapping) {
  TempTable t(64);
  for (std::uint64_t i = 0; i < 64; ++i)
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&t.table->slot(i)) % layout::kCacheLineBytes, 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&t.table->slot(1)) - reinterpret_cast<std::uintptr_t>(&t.table->slot(0)),
            320u);
}

TEST(TableFormat, ControlWordRoundTrips) {
  const auto word = layout::Control::pack(layout::SlotState::kReady, 0xabcdef, 4194304);
  const auto c = layout::Control::unpack(word);
  EXPECT_EQ(c.state, layout::SlotState::kReady);
  EXPECT_EQ(c.generation, 0xabcdefu);
  EXPECT_EQ(c.pid, 4194304);
  EXPECT_EQ(layout::Control::unpack(layout::Control::pack(layout::SlotState::kFree, 0x1000000, 7)).generation, 0u);
}

TEST(TableFormat, DefaultModeIs0600WhateverTheUmask) {
  const mode_t old = ::umask(0);
  TempTable t(8);
  ::umask(old);
  struct stat st{};
  ASSERT_EQ(::stat(t.file.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(TableFormat, OpenSeesWhatCreateWrote) {
  TempTable t(77);
  t.table->slot(5).armed.store(42);
  auto again = Table::open(t.file.path());
  EXPECT_EQ(again->capacity(), 77u);
  EXPECT_EQ(again->slot(5).armed.load(), 42u);
}

TEST(TableFormat, CreateRefusesAnExistingPath) {
  TempTable t(8);
  try {
    Table::create(t.file.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.sys_errno(), EEXIST);
  }
}

TEST(TableFormat, CreateRefusesABadCapacity) {
  TempPath p;
  CreateOptions zero;
  zero.capacity = 0;
  EXPECT_EQ(testing::thrown_by([&] { Table::create(p.path(), zero); }).code, ErrorCode::kInvalidArgument);
  CreateOptions huge;
  huge.capacity = layout::kMaxCapacity + 1;
  EXPECT_EQ(testing::thrown_by([&] { Table::create(p.path(), huge); }).code, ErrorCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(p.path()));
}

TEST(TableFormat, OpenOrCreateCreatesThenOpens) {
  TempPath p;
  CreateOptions options;
  options.capacity = 16;
  auto first = Table::open_or_create(p.path(), options);
  first->slot(3).armed.store(9);
  options.capacity = 999;  // ignored: the table exists
  auto second = Table::open_or_create(p.path(), options);
  EXPECT_EQ(second->capacity(), 16u);
  EXPECT_EQ(second->slot(3).armed.load(), 9u);
}

TEST(TableRefuse, MissingFile) {
  TempPath p;
  EXPECT_EQ(open_error(p.path()), ErrorCode::kIo);
  EXPECT_NE(open_message(p.path()).find("No such file"), std::string::npos);
}

TEST(TableRefuse, FileThatIsNotATable) {
  TempPath p;
  std::ofstream(p.path()) << std::string(10000, 'x');
  ::chmod(p.path().c_str(), 0600);
  EXPECT_EQ(open_error(p.path()), ErrorCode::kNotATable);
  EXPECT_NE(open_message(p.path()).find("magic"), std::string::npos);
}

TEST(TableRefuse, FileSmallerThanAHeader) {
  TempPath p;
  std::ofstream(p.path()) << "tiny";
  ::chmod(p.path().c_str(), 0600);
  EXPECT_EQ(open_error(p.path()), ErrorCode::kNotATable);
}

TEST(TableRefuse, EmptyFileAfterWaitingForACreator) {
  TempPath p;
  std::ofstream(p.path()).flush();
  ::chmod(p.path().c_str(), 0600);
  OpenOptions options;
  options.init_wait_ms = 30;
  try {
    Table::open(p.path(), options);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotATable);
  }
}

TEST(TableRefuse, Directory) {
  TempPath p;
  std::filesystem::create_directory(p.path());
  EXPECT_EQ(open_error(p.path()), ErrorCode::kNotATable);
  std::filesystem::remove(p.path());
}

TEST(TableRefuse, WrongMagic) {
  TempTable t(8);
  const std::uint64_t bad = 0x1234;
  write_bytes(t.file.path(), 0, &bad, 8);
  EXPECT_EQ(open_error(t.file.path()), ErrorCode::kNotATable);
}

TEST(TableRefuse, AnotherMajorVersionNamesBothVersions) {
  TempTable t(8);
  const std::uint16_t v[2] = {2, 1};  // a table of the format before this one (start-time identities)
  write_bytes(t.file.path(), offsetof(layout::TableHeader, version_major), v, 4);
  EXPECT_EQ(open_error(t.file.path()), ErrorCode::kVersionMismatch);
  const std::string message = open_message(t.file.path());
  EXPECT_NE(message.find("version 2.1"), std::string::npos) << message;
  EXPECT_NE(message.find("reads 3.x"), std::string::npos) << message;
}

TEST(TableRefuse, AnotherMinorVersionIsAccepted) {
  TempTable t(8);
  const std::uint16_t minor = 7;
  write_bytes(t.file.path(), offsetof(layout::TableHeader, version_minor), &minor, 2);
  EXPECT_EQ(Table::open(t.file.path())->header().version_minor, 7);
}

TEST(TableRefuse, TruncatedFile) {
  TempTable t(100);
  ASSERT_EQ(::truncate(t.file.path().c_str(), static_cast<off_t>(layout::geometry_for(100).file_bytes - 320)), 0);
  EXPECT_EQ(open_error(t.file.path()), ErrorCode::kSizeMismatch);
}

TEST(TableRefuse, OversizedFile) {
  TempTable t(100);
  ASSERT_EQ(::truncate(t.file.path().c_str(), static_cast<off_t>(layout::geometry_for(100).file_bytes + 4096)), 0);
  EXPECT_EQ(open_error(t.file.path()), ErrorCode::kSizeMismatch);
}

TEST(TableRefuse, HeaderCapacityThatDisagreesWithTheFile) {
  TempTable t(100);
  const std::uint64_t capacity = 200;  // the same layout, a bigger file
  ASSERT_EQ(layout::geometry_for(capacity).slots_offset, layout::geometry_for(100).slots_offset);
  write_bytes(t.file.path(), offsetof(layout::TableHeader, capacity), &capacity, 8);
  EXPECT_EQ(open_error(t.file.path()), ErrorCode::kSizeMismatch);
  EXPECT_NE(open_message(t.file.path()).find("a table of capacity 200 is"), std::string::npos);
}

TEST(TableRefuse, HeaderCapacityWhoseSlotsLieElsewhereIsNotATable) {
  TempTable t(100);
  const std::uint64_t capacity = 1u << 20;  // its occupancy bitmap would push the slots further
  ASSERT_NE(layout::geometry_for(capacity).slots_offset, layout::geometry_for(100).slots_offset);
  write_bytes(t.file.path(), offsetof(layout::TableHeader, capacity), &capacity, 8);
  EXPECT_EQ(open_error(t.file.path()), ErrorCode::kNotATable);
  EXPECT_NE(open_message(t.file.path()).find("header geometry"), std::string::npos);
}

TEST(TableRefuse, AbsurdCapacity) {
  TempTable t(100);
  const std::uint64_t capacity = ~std::uint64_t{0};
  write_bytes(t.file.path(), offsetof(layout::TableHeader, capacity), &capacity, 8);
  EXPECT_EQ(open_error(t.file.path()), ErrorCode::kNotATable);
}

TEST(TableRefuse, Symlink) {
  TempTable t(8);
  TempPath link("shmtimer-link");
  std::filesystem::create_symlink(t.file.path(), link.path());
  EXPECT_EQ(open_error(link.path()), ErrorCode::kUnsafeFile);
  EXPECT_NE(open_message(link.path()).find("symlink"), std::string::npos);
}

TEST(TableRefuse, WorldWritableForWritersOnly) {
  TempTable t(8);
  ASSERT_EQ(::chmod(t.file.path().c_str(), 0666), 0);
  EXPECT_EQ(open_error(t.file.path()), ErrorCode::kUnsafeFile);
  OpenOptions read_only;
  read_only.read_only = true;
  EXPECT_NO_THROW(Table::open(t.file.path(), read_only));
}

TEST(TableRefuse, GroupWritableForWritersOnly) {
  TempTable t(8);
  ASSERT_EQ(::chmod(t.file.path().c_str(), 0660), 0);
  EXPECT_EQ(open_error(t.file.path()), ErrorCode::kUnsafeFile);
  EXPECT_NE(open_message(t.file.path()).find("group-writable"), std::string::npos);
  OpenOptions read_only;
  read_only.read_only = true;
  EXPECT_NO_THROW(Table::open(t.file.path(), read_only));
}

TEST(TableRefuse, OwnedByAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  TempTable t(8);
  ASSERT_EQ(::chown(t.file.path().c_str(), 12345, 12345), 0);
  EXPECT_EQ(open_error(t.file.path()), ErrorCode::kUnsafeFile);
  OpenOptions inspector;
  inspector.read_only = true;
  inspector.allow_foreign_owner = true;
  EXPECT_NO_THROW(Table::open(t.file.path(), inspector));
}

TEST(TableRefuse, ValidateHeaderRejectsGarbagePages) {
  std::mt19937_64 rng(7);
  unsigned char page[layout::kHeaderBytes];
  for (int i = 0; i < 1000; ++i) {
    for (auto& b : page) b = static_cast<unsigned char>(rng());
    EXPECT_EQ(testing::thrown_by([&] { validate_header(page, sizeof page, rng() % (1u << 30)); }).code,
              ErrorCode::kNotATable);
  }
}

}  // namespace
}  // namespace shmtimer
