// shmtimerd when its table's file changes under it: deleted (systemd's RemoveIPC=, a stray
// rm), renamed away, or truncated. New workers could not reach it, so it says which and
// exits 4 for its supervisor to start a server on a fresh table; a truncation is absorbed
// by the fault guard instead of killing it with SIGBUS.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "daemon_support.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;
using testing::LoggedDaemon;
using testing::TempPath;

bool exited_with(int status, int code) { return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == code; }

TEST(ShmtimerdTableFile, ADeletedTableStopsItWithExitFourAndItsMappingSaysNoServer) {
  TempPath p;
  LoggedDaemon daemon(p.path(), {});
  ASSERT_TRUE(testing::wait_for_server(p.path()));
  const auto mapped = Table::open(p.path());  // as a worker that opened it before the rm
  std::filesystem::remove(p.path());
  const int status = daemon.wait_exit(10s);
  EXPECT_TRUE(exited_with(status, 4)) << status << "\n" << daemon.log();
  EXPECT_NE(daemon.log().find("was deleted"), std::string::npos) << daemon.log();
  EXPECT_EQ(mapped->header().server_pid.load(), 0) << "a worker of the old table would think it served";
}

TEST(ShmtimerdTableFile, ATableRenamedAwayStopsItWithExitFour) {
  TempPath p, elsewhere;
  LoggedDaemon daemon(p.path(), {});
  ASSERT_TRUE(testing::wait_for_server(p.path()));
  std::filesystem::rename(p.path(), elsewhere.path());
  const int status = daemon.wait_exit(10s);
  EXPECT_TRUE(exited_with(status, 4)) << status << "\n" << daemon.log();
  EXPECT_NE(daemon.log().find("was replaced"), std::string::npos) << daemon.log();
}

// Every slot armed, so that each round reads slots past the new end. With sweeps an hour
// apart, only a fault the guard absorbed can make the server look at the file so soon.
TEST(ShmtimerdTableFile, ATruncatedTableStopsItWithExitFourNotSigbus) {
  TempPath p;
  LoggedDaemon daemon(p.path(), {"--sweep-interval-ms", "3600000", "--max-interval-ms", "50"});
  ASSERT_TRUE(testing::wait_for_server(p.path()));
  const pid_t worker = testing::fork_child([&] {
    ShmTimerClient client(Table::open(p.path()));
    for (int i = 0; i < 256; ++i) client.acquire("scope-" + std::to_string(i), SteadyClock::now() + 60s);
    std::this_thread::sleep_for(60s);
  });
  for (int i = 0; i < 500 && TableReader::open(p.path()).rows().size() < 256; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(TableReader::open(p.path()).rows().size(), 256u);
  ASSERT_EQ(::truncate(p.path().c_str(), static_cast<off_t>(layout::geometry_for(256).slots_offset)), 0);
  const int status = daemon.wait_exit(10s);
  ::kill(worker, SIGKILL);
  testing::wait_child(worker);
  EXPECT_TRUE(exited_with(status, 4)) << status << "\n" << daemon.log();
  EXPECT_NE(daemon.log().find("was resized"), std::string::npos) << daemon.log();
  EXPECT_FALSE(std::filesystem::exists(p.path())) << "the damaged table was left for the next server to refuse";
}

}  // namespace
}  // namespace shmtimer
