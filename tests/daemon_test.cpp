// shmtimerd as a process: flags, exit codes, clean shutdown, and a reap end to end.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;
using testing::TempPath;

struct Output {
  int status;
  std::string text;  // stdout and stderr
};

Output run(const std::string& args) {
  const std::string command = std::string(SHMTIMERD_PATH) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  Output out{-1, ""};
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe)) out.text += buf.data();
  out.status = ::pclose(pipe);
  return out;
}

pid_t spawn_daemon(const std::filesystem::path& table, const std::vector<std::string>& extra = {}) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<std::string> args{SHMTIMERD_PATH, "--table", table.string(), "--capacity", "256"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

bool wait_for_server(const std::filesystem::path& table) {
  for (int i = 0; i < 500; ++i) {
    try {
      if (TableReader::open(table).header().server_alive) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

TEST(Shmtimerd, HelpAndVersion) {
  const auto help = run("--help");
  EXPECT_EQ(WEXITSTATUS(help.status), 0);
  for (const char* flag : {"--table", "--capacity", "--spin-us", "--max-interval-ms", "--log-format",
                           "--signal-self-after-reap", "--pure-spin"})
    EXPECT_NE(help.text.find(flag), std::string::npos) << flag;
  const auto version = run("--version");
  EXPECT_EQ(WEXITSTATUS(version.status), 0);
  EXPECT_NE(version.text.find("1.0.0"), std::string::npos);
}

TEST(Shmtimerd, UsageErrorsExitOne) {
  EXPECT_EQ(WEXITSTATUS(run("--no-such-flag").status), 1);
  EXPECT_EQ(WEXITSTATUS(run("--log-format xml").status), 1);
  EXPECT_EQ(WEXITSTATUS(run("--capacity 0").status), 1);
}

TEST(Shmtimerd, AFileThatIsNotATableIsAClearError) {
  TempPath p;
  std::ofstream(p.path()) << std::string(8192, 'z');
  ::chmod(p.path().c_str(), 0600);
  const auto out = run("--table " + p.path().string());
  EXPECT_EQ(WEXITSTATUS(out.status), 2);
  EXPECT_NE(out.text.find("not a shmtimer table"), std::string::npos) << out.text;
}

TEST(Shmtimerd, TakesTheTableFromTheEnvironment) {
  TempPath p;
  ::setenv("SHMTIMER_TABLE", p.path().c_str(), 1);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(SHMTIMERD_PATH, SHMTIMERD_PATH, static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::unsetenv("SHMTIMER_TABLE");
  EXPECT_TRUE(wait_for_server(p.path()));
  ::kill(pid, SIGTERM);
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(pid)));
}

TEST(Shmtimerd, SigtermAndSigintStopItWithExitCodeZero) {
  for (int signal : {SIGTERM, SIGINT}) {
    TempPath p;
    const pid_t pid = spawn_daemon(p.path());
    ASSERT_TRUE(wait_for_server(p.path()));
    ::kill(pid, signal);
    EXPECT_TRUE(testing::exited_ok(testing::wait_child(pid))) << signal;
    EXPECT_FALSE(TableReader::open(p.path()).header().server_alive);
  }
}

TEST(Shmtimerd, ASecondDaemonOnTheSameTableIsRefused) {
  TempPath p;
  const pid_t first = spawn_daemon(p.path());
  ASSERT_TRUE(wait_for_server(p.path()));
  const auto second = run("--table " + p.path().string());
  EXPECT_EQ(WEXITSTATUS(second.status), 3);
  EXPECT_NE(second.text.find("already served"), std::string::npos) << second.text;
  ::kill(first, SIGTERM);
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(first)));
}

TEST(Shmtimerd, ReapsAHungWorkerAndSparesAPunctualOne) {
  TempPath p;
  const pid_t daemon = spawn_daemon(p.path(), {"--log-format", "json"});
  ASSERT_TRUE(wait_for_server(p.path()));
  auto table = Table::open(p.path());
  const pid_t hung = testing::fork_child([&] {
    ShmTimerClient client(table);
    client.acquire("hung", SteadyClock::now() + 100ms);
    std::this_thread::sleep_for(20s);
  });
  const pid_t punctual = testing::fork_child([&] {
    ShmTimerClient client(table);
    client.acquire("punctual", SteadyClock::now() + 2s);
    std::this_thread::sleep_for(50ms);
    client.release("punctual");
  });
  EXPECT_TRUE(testing::killed_by(testing::wait_child(hung), SIGKILL));
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(punctual)));
  ::kill(daemon, SIGTERM);
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(daemon)));
}

}  // namespace
}  // namespace shmtimer
