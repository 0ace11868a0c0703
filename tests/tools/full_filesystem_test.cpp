// A full tmpfs, as /dev/shm is when a job fills it: the table is allocated when it is made,
// so creating one fails cleanly with ENOSPC instead of leaving a sparse table that kills
// with SIGBUS whoever touches its pages later. Runs in a private mount namespace
// (`unshare --mount`, tests/CMakeLists.txt; root, as in CI), where it mounts small tmpfs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "daemon_support.hpp"
#include "shmtimer/table.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

// A tmpfs of `bytes` at a fresh directory, unmounted when the test ends.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(std::uint64_t bytes) {
    char dir[] = "/tmp/shmtimer-full-XXXXXX";
    if (::mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = dir;
    const std::string options = "size=" + std::to_string(bytes) + ",mode=0700";
    if (::mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0)
      throw std::runtime_error(std::string("cannot mount a tmpfs (run me through unshare --mount, as root): ") +
                               std::strerror(errno));
  }
  ~SmallTmpfs() {
    ::umount2(dir_.c_str(), MNT_DETACH);
    ::rmdir(dir_.c_str());
  }
  const std::filesystem::path& dir() const { return dir_; }
  // Fills what is left with a file, so that the next allocation fails.
  void fill() const {
    const int fd = ::open((dir_ / "filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    static const char page[4096] = {};
    while (::write(fd, page, sizeof page) > 0) {
    }
    EXPECT_EQ(errno, ENOSPC);
    ::close(fd);
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) names.push_back(entry.path().filename());
    return names;
  }

 private:
  std::filesystem::path dir_;
};

CreateOptions capacity(std::uint64_t slots) {
  CreateOptions options;
  options.capacity = slots;
  return options;
}

// Run through `unshare --mount --propagation private` (tests/CMakeLists.txt): its mounts
// then vanish with it. Run directly as root, each tmpfs is still unmounted when its test
// ends.
class FullFilesystem : public ::testing::Test {};

TEST_F(FullFilesystem, CreatingATableThatDoesNotFitFailsWithNoSpaceAndLeavesNoFile) {
  SmallTmpfs fs(64 * 1024);
  const auto error = testing::thrown_by([&] { Table::create(fs.dir() / "table", capacity(4096)); });
  EXPECT_EQ(error.code, ErrorCode::kIo);
  EXPECT_NE(error.message.find("No space left on device"), std::string::npos) << error.message;
  EXPECT_TRUE(fs.entries().empty());
}

TEST_F(FullFilesystem, AnExistingTableIsStillOpenedWhenNoNewOneWouldFit) {
  SmallTmpfs fs(256 * 1024);
  Table::create(fs.dir() / "table", capacity(256));
  fs.fill();
  const auto table = Table::open_or_create(fs.dir() / "table", capacity(256));
  table->slot(255).control.store(0, std::memory_order_relaxed);  // its pages are there
}

TEST_F(FullFilesystem, AWriterOfASparseTableGetsNoSpaceInsteadOfDyingOfSigbus) {
  SmallTmpfs fs(256 * 1024);
  const auto path = fs.dir() / "table";
  {  // an older build's table: sized by ftruncate, its slot pages never touched
    const auto table = Table::create(path, capacity(256));
    const auto& g = table->geometry();
    ASSERT_EQ(::fallocate(table->fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(g.slots_offset),
                          static_cast<off_t>(g.file_bytes - g.slots_offset)),
              0);
  }
  fs.fill();
  const auto error = testing::thrown_by([&] {
    const auto table = Table::open(path);
    table->slot(255).control.store(0, std::memory_order_relaxed);  // without the check: SIGBUS here
  });
  EXPECT_EQ(error.code, ErrorCode::kIo);
  EXPECT_NE(error.message.find("No space left on device"), std::string::npos) << error.message;
}

TEST_F(FullFilesystem, ShmtimerdOnAFullShmExitsTwoSaysWhyAndLeavesNoTable) {
  SmallTmpfs fs(64 * 1024);  // a 256-slot table is 90 KiB
  testing::LoggedDaemon daemon(fs.dir() / "table", {});
  const int status = daemon.wait_exit();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << status << "\n" << daemon.log();
  EXPECT_NE(daemon.log().find("No space left on device"), std::string::npos) << daemon.log();
  EXPECT_TRUE(fs.entries().empty());
}

}  // namespace
}  // namespace shmtimer
