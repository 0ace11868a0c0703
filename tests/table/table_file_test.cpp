// The table's file as a neighbour that can change under the processes mapping it: tables
// that appear whole and allocated, a watch that finds a file deleted, resized or replaced,
// and the fault guard that keeps a truncation from killing the watchdog (SIGBUS).
// A filesystem that is full is tested in full_filesystem_test.cpp, in a mount namespace.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include "shmtimer/table.hpp"
#include "shmtimer/table_fault_guard.hpp"
#include "shmtimer/timer_server.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

using testing::TempPath;
using testing::TempTable;

std::uint64_t allocated_bytes(const std::filesystem::path& path) {
  struct stat st{};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

void truncate_file(const std::filesystem::path& path, std::uint64_t bytes) {
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(bytes)), 0) << std::strerror(errno);
}

// Reads the last byte of the mapping: past the end of a truncated file.
std::uint64_t read_last_slot(const Table& table) {
  return table.slot(table.capacity() - 1).control.load(std::memory_order_relaxed);
}

TEST(TableCreate, ANewTableHasAllItsStorageAllocatedNotSparse) {
  TempTable t(4096);
  EXPECT_GE(allocated_bytes(t.file.path()), t.table->geometry().file_bytes);
}

TEST(TableOpen, AWriterAllocatesASparseTableBeforeUsingIt) {
  TempTable t(4096);
  const auto& g = t.table->geometry();
  {  // what an older build's ftruncate-only table looks like: the slot pages have no storage
    const int fd = ::open(t.file.path().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(g.slots_offset),
                          static_cast<off_t>(g.file_bytes - g.slots_offset)),
              0);
    ::close(fd);
  }
  ASSERT_LT(allocated_bytes(t.file.path()), g.file_bytes);
  Table::open(t.file.path());
  EXPECT_GE(allocated_bytes(t.file.path()), g.file_bytes);
}

TEST(TableFile, AnUntouchedTableHasNotChanged) {
  TempTable t;
  EXPECT_EQ(t.table->file_change(), FileChange::kNone);
}

TEST(TableFile, AnUnlinkedTableIsDeleted) {
  TempTable t;
  std::filesystem::remove(t.file.path());
  EXPECT_EQ(t.table->file_change(), FileChange::kDeleted);
}

TEST(TableFile, ATruncatedOrGrownTableIsResized) {
  TempTable t;
  truncate_file(t.file.path(), t.table->geometry().file_bytes + 4096);
  EXPECT_EQ(t.table->file_change(), FileChange::kResized);
  truncate_file(t.file.path(), layout::kHeaderBytes);
  EXPECT_EQ(t.table->file_change(), FileChange::kResized);
}

TEST(TableFile, ATableRenamedAwayIsReplaced) {
  TempTable t;
  TempPath elsewhere;
  std::filesystem::rename(t.file.path(), elsewhere.path());
  EXPECT_EQ(t.table->file_change(), FileChange::kReplaced);
}

TEST(TableFile, ATableAnotherFileWasRenamedOverIsDeleted) {
  TempTable t;
  TempPath other;
  Table::create(other.path());
  std::filesystem::rename(other.path(), t.file.path());  // the served file loses its only link
  EXPECT_EQ(t.table->file_change(), FileChange::kDeleted);
}

TEST(TableFile, ATableStillLinkedElsewhereWhosePathNamesAnotherFileIsReplaced) {
  TempTable t;
  TempPath keep;
  std::filesystem::create_hard_link(t.file.path(), keep.path());
  std::filesystem::remove(t.file.path());
  Table::create(t.file.path());
  EXPECT_EQ(t.table->file_change(), FileChange::kReplaced);
}

TEST(TableFaultGuard, AReadPastATruncationReadsZerosInsteadOfKillingTheProcess) {
  guard_table_faults();
  TempTable t(256);
  t.table->slot(255).control.store(42, std::memory_order_relaxed);
  const std::uint64_t faults = table_fault_count();
  truncate_file(t.file.path(), t.table->geometry().slots_offset);
  EXPECT_EQ(read_last_slot(*t.table), 0u);
  EXPECT_EQ(table_fault_count(), faults + 1);
  t.table->slot(255).control.store(7, std::memory_order_relaxed);  // a writer's zero page is private and writable
  EXPECT_EQ(read_last_slot(*t.table), 7u);
}

TEST(TableFaultGuard, AMappingThatLostPagesStaysResizedAfterTheFileGrowsBack) {
  guard_table_faults();
  TempTable t(256);
  truncate_file(t.file.path(), t.table->geometry().slots_offset);
  (void)read_last_slot(*t.table);
  truncate_file(t.file.path(), t.table->geometry().file_bytes);  // the right size, but not these pages
  EXPECT_EQ(t.table->file_change(), FileChange::kResized);
}

// In a child with the guard installed: first a fault inside a table, which it survives
// (so the guard is the handler in front), then one outside every table, which it must not.
void absorb_a_table_fault() {
  TempTable t(256);
  truncate_file(t.file.path(), t.table->geometry().slots_offset);
  if (read_last_slot(*t.table) != 0 || !t.table->lost_pages()) ::_exit(12);
}

// A SIGBUS outside every table is none of the guard's business: the process dies of it,
// or a handler installed before the guard gets it.
void fault_outside_tables() {
  TempPath file;
  const int fd = ::open(file.path().c_str(), O_RDWR | O_CREAT, 0600);
  if (fd < 0 || ::ftruncate(fd, 8192) != 0) ::_exit(10);
  auto* page = static_cast<volatile char*>(::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (page == MAP_FAILED || ::ftruncate(fd, 0) != 0) ::_exit(11);
  std::filesystem::remove(file.path());
  (void)page[4096];
  ::_exit(0);  // survived: the guard swallowed a fault that was not its own
}

TEST(TableFaultGuard, AFaultOutsideEveryTableStillKillsTheProcess) {
  TempTable t;  // a guarded table elsewhere in the process
  const pid_t child = testing::fork_child([] {
    guard_table_faults();
    absorb_a_table_fault();
    fault_outside_tables();
  });
  const int status = testing::wait_child(child);
  // A sanitizer's own SIGBUS handler, installed before the guard, reports and exits instead
  // (but never with 12: the fault inside the table was survived).
  EXPECT_TRUE(testing::kSanitized
                  ? status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 12
                  : testing::killed_by(status, SIGBUS))
      << status;
}

TEST(TableFaultGuard, AFaultOutsideEveryTableGoesToTheHandlerInstalledBefore) {
  const pid_t child = testing::fork_child([] {
    struct sigaction earlier{};
    earlier.sa_handler = [](int) { ::_exit(42); };
    sigemptyset(&earlier.sa_mask);
    ::sigaction(SIGBUS, &earlier, nullptr);
    guard_table_faults();  // in front of `earlier`, even where an earlier test installed it
    absorb_a_table_fault();
    fault_outside_tables();
  });
  const int status = testing::wait_child(child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42) << status;  // 12: the table fault killed
}

// The server's watch, through its hook and its statistics.
struct Watched {
  explicit Watched(std::chrono::nanoseconds check_interval) {
    ServerOptions options;
    options.dead_owner_sweep_interval = check_interval;
    options.on_table_file_change = [this](FileChange change) { told.push_back(change); };
    server = std::make_unique<TimerServer>(t.table, options);
  }
  TempTable t{256};
  std::vector<FileChange> told;
  std::unique_ptr<TimerServer> server;
};

TEST(TableWatch, AServerTellsOnceThatItsTableWasDeleted) {
  Watched w(std::chrono::nanoseconds(0));
  w.server->run_once();
  EXPECT_TRUE(w.told.empty());
  std::filesystem::remove(w.t.file.path());
  w.server->run_once();
  w.server->run_once();
  EXPECT_EQ(w.told, std::vector<FileChange>{FileChange::kDeleted});
  EXPECT_EQ(w.server->stats().table_file_change.load(), FileChange::kDeleted);
}

TEST(TableWatch, AServerFindsItsTableTruncatedWithinOneCheckInterval) {
  guard_table_faults();  // the round's sweep reads slots past the new end
  Watched w(std::chrono::milliseconds(1));
  w.server->run_once_at(1'000'000'000);
  truncate_file(w.t.file.path(), w.t.table->geometry().slots_offset);
  w.server->run_once_at(1'000'500'000);  // within the interval: not looked at yet
  EXPECT_TRUE(w.told.empty());
  w.server->run_once_at(1'001'000'000);
  EXPECT_EQ(w.told, std::vector<FileChange>{FileChange::kResized});
}

TEST(TableWatch, AFaultTheGuardAbsorbedMakesTheServerLookAtOnce) {
  guard_table_faults();
  Watched w(std::chrono::hours(1));
  w.server->run_once();
  truncate_file(w.t.file.path(), w.t.table->geometry().file_bytes - 4096);
  (void)read_last_slot(*w.t.table);  // as a round would, on a slot past the new end
  w.server->run_once();
  EXPECT_EQ(w.told, std::vector<FileChange>{FileChange::kResized});
}

}  // namespace
}  // namespace shmtimer
