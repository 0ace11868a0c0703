// Path races: a swapper thread replaces the path that a table or FIFO operation works on,
// for a bounded number of iterations. Every operation must act on the descriptor it
// checked, so nothing swapped in is ever written, chmod-ed or blocked on.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "shmtimer/error.hpp"
#include "shmtimer/fifo_shim.hpp"
#include "shmtimer/table_reader.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;
using testing::TempPath;

constexpr int kIterations = 400;  // operations that take a millisecond or more

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// Runs `swap` over and over on another thread while `operate` runs `iterations` times.
void race(const std::function<void()>& swap, const std::function<void()>& operate, int iterations = kIterations) {
  std::atomic<bool> stop{false};
  std::thread swapper([&] {
    while (!stop.load(std::memory_order_relaxed)) swap();
  });
  for (int i = 0; i < iterations; ++i) operate();
  stop = true;
  swapper.join();
}

// Another user's file, as far as this test can tell: its bytes and mode must not change.
struct Victim {
  TempPath file{"shmtimer-victim"};
  std::string content = std::string(8192, 'V');
  Victim() {
    std::ofstream(file.path(), std::ios::binary) << content;
    ::chmod(file.path().c_str(), 0644);
  }
  bool untouched() const {
    struct stat st{};
    return read_all(file.path()) == content && ::stat(file.path().c_str(), &st) == 0 && (st.st_mode & 0777) == 0644;
  }
};

// Empties `path` for a moment (so an operation that creates it can succeed), then puts a
// symlink to `target` there in one rename, replacing whatever was just made.
void swap_in_symlink(const std::filesystem::path& path, const std::filesystem::path& target,
                     const std::filesystem::path& staged) {
  ::unlink(path.c_str());
  ::symlink(target.c_str(), staged.c_str());
  ::rename(staged.c_str(), path.c_str());
}

TEST(FileRace, CreatingATableNeverWritesAFileSwappedInAtThePath) {
  Victim victim;
  TempPath path, staged{"shmtimer-staged-link"};
  // The path is empty for a moment (so a create succeeds), then a symlink to the victim
  // replaces whatever is there in one rename: the new table, if it was just made.
  race([&] { swap_in_symlink(path.path(), victim.file.path(), staged.path()); },
       [&] {
         try {
           CreateOptions options;
           options.capacity = 8;
           Table::create(path.path(), options);
         } catch (const Error&) {
         }
       },
       20000);  // a refused create takes microseconds
  EXPECT_TRUE(victim.untouched());
}

TEST(FileRace, OpeningATableNeverBlocksOnAFifoSwappedInAtThePath) {
  testing::TempTable t(8);
  TempPath path, staged_table{"shmtimer-staged"}, staged_fifo{"shmtimer-staged-fifo"};
  // In a child, so that an open that blocks forever fails the test instead of hanging it.
  const pid_t child = testing::fork_child([&] {
    race(
        [&] {
          ::link(t.file.path().c_str(), staged_table.path().c_str());
          ::rename(staged_table.path().c_str(), path.path().c_str());
          ::mkfifo(staged_fifo.path().c_str(), 0600);
          ::rename(staged_fifo.path().c_str(), path.path().c_str());
        },
        [&] {
          try {
            TableReader::open(path.path());
          } catch (const Error&) {
          }
        });
  });
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(child, 60s))) << "an open blocked on the FIFO";
}

// The same guard without a race, so that it is caught every time: a FIFO that no one
// writes to sits at the path, and every open of it is refused at once.
TEST(FileRace, AFifoAtTheTablesPathIsRefusedAtOnceNeverWaitedOn) {
  TempPath path;
  ASSERT_EQ(::mkfifo(path.path().c_str(), 0600), 0);
  // In a child, so that an open that blocks fails the test instead of hanging it.
  const pid_t child = testing::fork_child([&] {
    OpenOptions read_only;
    read_only.read_only = true;
    for (const OpenOptions& options : {OpenOptions{}, read_only})
      if (testing::thrown_by([&] { Table::open(path.path(), options); }).code != ErrorCode::kNotATable) ::_exit(2);
  });
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(child, 10s))) << "an open blocked on the FIFO, or was not refused";
}

TEST(FileRace, ServingAFifoNeverChangesTheModeOfAFileSwappedInAtThePath) {
  Victim victim;
  testing::TempTable t(8);
  TempPath path{"shmtimer-fifo"}, staged{"shmtimer-staged-link"};
  // The path is empty for a moment (so the shim makes its FIFO), then a symlink to the
  // victim replaces whatever is there in one rename: the FIFO, if the shim just made it.
  race([&] { swap_in_symlink(path.path(), victim.file.path(), staged.path()); },
       [&] {
         try {
           FifoShim shim(t.table, path.path());
         } catch (const Error&) {
         }
       },
       20000);  // a refusal takes microseconds
  EXPECT_TRUE(victim.untouched());
}

}  // namespace
}  // namespace shmtimer
