// shmtimerd as a process: flags, exit codes, clean shutdown, and a reap end to end.
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "daemon_support.hpp"

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

using testing::spawn_daemon;
using testing::wait_for_server;

TEST(Shmtimerd, HelpAndVersion) {
  const auto help = run("--help");
  EXPECT_EQ(WEXITSTATUS(help.status), 0);
  for (const char* flag : {"--table", "--capacity", "--spin-us", "--max-interval-ms", "--max-wake-lead-us",
                           "--log-format", "--signal-self-after-reap", "--pure-spin"})
    EXPECT_NE(help.text.find(flag), std::string::npos) << flag;
  const auto version = run("--version");
  EXPECT_EQ(WEXITSTATUS(version.status), 0);
  EXPECT_NE(version.text.find("1.0.0"), std::string::npos);
}

TEST(Shmtimerd, UsageErrorsExitOne) {
  EXPECT_EQ(WEXITSTATUS(run("--no-such-flag").status), 1);
  EXPECT_EQ(WEXITSTATUS(run("--log-format xml").status), 1);
  EXPECT_EQ(WEXITSTATUS(run("--capacity 0").status), 1);
  // Every number has a range; NaN, infinities and absurd values are refused.
  for (const char* bad :
       {"--max-interval-ms nan", "--max-interval-ms 1e300", "--max-interval-ms inf", "--max-interval-ms 0",
        "--spin-us nan", "--spin-us -1", "--spin-us 1e12", "--sweep-interval-ms nan", "--sweep-interval-ms 0",
        "--max-wake-lead-us -1", "--max-wake-lead-us nan", "--max-wake-lead-us 1e7"})
    EXPECT_EQ(WEXITSTATUS(run(bad).status), 1) << bad;
}

TEST(Shmtimerd, AnyUidWithoutRootIsRefusedAtStart) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  testing::TempPath table;
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(126);
    ::execl(SHMTIMERD_PATH, SHMTIMERD_PATH, "--any-uid", "--table", table.path().c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const int status = testing::wait_child(child, 10s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  EXPECT_FALSE(std::filesystem::exists(table.path()));  // refused before touching anything
}

// Runs shmtimerd as uid 65534 with the default table (no --table, no $SHMTIMER_TABLE)
// until it exits or `stop_after` passes (then SIGTERM); returns its status and output.
Output run_as_nobody_with_default_table(std::chrono::milliseconds stop_after) {
  int out[2];
  EXPECT_EQ(::pipe(out), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::unsetenv("SHMTIMER_TABLE");
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(126);
    ::execl(SHMTIMERD_PATH, SHMTIMERD_PATH, static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::this_thread::sleep_for(stop_after);
  ::kill(child, SIGTERM);
  Output result{testing::wait_child(child, 10s), ""};
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) result.text.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  return result;
}

TEST(Shmtimerd, TheDefaultTableLivesInADirectoryOnlyItsUserCanWrite) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  const std::filesystem::path dir = "/dev/shm/shmtimer-65534";
  std::filesystem::remove_all(dir);
  // Another user squats the default directory: a clear error that names it, its owner and
  // the fix, and nothing is created in it.
  ASSERT_EQ(::mkdir(dir.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  ASSERT_EQ(::chown(dir.c_str(), 12345, 12345), 0);
  const auto squatted = run_as_nobody_with_default_table(300ms);
  EXPECT_TRUE(WIFEXITED(squatted.status) && WEXITSTATUS(squatted.status) == 2) << squatted.text;
  EXPECT_NE(squatted.text.find("/dev/shm/shmtimer-65534 belongs to uid 12345"), std::string::npos) << squatted.text;
  EXPECT_NE(squatted.text.find("SHMTIMER_TABLE"), std::string::npos) << squatted.text;
  EXPECT_FALSE(std::filesystem::exists(dir / "table"));
  std::filesystem::remove_all(dir);
  // Unsquatted: it makes the directory, 0700 and its own, and serves the table in it.
  const auto served = run_as_nobody_with_default_table(500ms);
  EXPECT_TRUE(WIFEXITED(served.status) && WEXITSTATUS(served.status) == 0) << served.text;
  struct stat st{};
  ASSERT_EQ(::lstat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_TRUE(std::filesystem::exists(dir / "table"));
  std::filesystem::remove_all(dir);
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

// Serving on after another server took the FIFO's path would look healthy and serve no
// one: shmtimerd says so and exits with status 1.
TEST(Shmtimerd, ExitsOneWhenAnotherServerTakesItsFifoPath) {
  TempPath table;
  TempPath fifo("shmtimerd-fifo");
  testing::LoggedDaemon daemon(table.path(), {"--fifo", fifo.path().string()});
  ASSERT_TRUE(wait_for_server(table.path()));
  ASSERT_EQ(::unlink(fifo.path().c_str()), 0);
  ASSERT_EQ(::mkfifo(fifo.path().c_str(), 0600), 0);
  const int status = daemon.wait_exit(30s);
  ASSERT_TRUE(WIFEXITED(status)) << daemon.log();
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(daemon.log().find("was replaced by another file"), std::string::npos) << daemon.log();
  struct stat st{};
  EXPECT_EQ(::lstat(fifo.path().c_str(), &st), 0) << "the other server's FIFO was removed";
}

// systemd's PrivateUsers= as the kernel sees it: shmtimerd in a user namespace of its own
// whose parent, of the same uid and without capabilities, is outside it (as a user's
// service manager is). There it could signal its workers but never read their maps, and
// so would refuse every kill: it must refuse to start instead, saying why.
TEST(Shmtimerd, RefusesToStartInAUserNamespaceItsWorkersAreNotIn) {
  TempPath p;
  int log[2];
  ASSERT_EQ(::pipe2(log, O_CLOEXEC), 0);
  const pid_t manager = ::fork();
  if (manager == 0) {
    ::close(log[0]);
    // Without capabilities, as a user's service manager is. Root becomes nobody: a process
    // without CAP_SETFCAP may not map uid 0 into a namespace (Linux 5.12+).
    if (::geteuid() == 0 && (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
                             ::setresuid(65534, 65534, 65534) != 0))
      ::_exit(19);
    // Changing uid made it not dumpable: dumpable again, so that the namespace is the only
    // reason its maps are hidden from the daemon (and so that the daemon may write its own
    // /proc/self/uid_map, which would otherwise be root's).
    if (::prctl(PR_SET_DUMPABLE, 1) != 0) ::_exit(18);
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct none[2]{};
    if (::syscall(SYS_capset, &header, none) != 0) ::_exit(20);
    const uid_t uid = ::getuid();
    const gid_t gid = ::getgid();
    const pid_t daemon = ::fork();
    if (daemon == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a daemon that starts dies with the test's manager
      ::dup2(log[1], STDERR_FILENO);
      // util-linux's unshare makes the namespace and maps the uid and gid to themselves, then
      // runs the daemon: a single-threaded program (unshare(CLONE_NEWUSER) refuses a process
      // with threads, as a sanitizer's runtime may give this test's children).
      std::vector<std::string> args{"unshare",
                                    "--map-user=" + std::to_string(uid),
                                    "--map-group=" + std::to_string(gid),
                                    "--",
                                    SHMTIMERD_PATH,
                                    "--table",
                                    p.path().string(),
                                    "--capacity",
                                    "256"};
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log[1]);
    int status = 0;
    while (::waitpid(daemon, &status, 0) < 0 && errno == EINTR) {
    }
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status));
  }
  ::close(log[1]);
  std::string text;
  char buf[4096];
  for (pollfd pfd{log[0], POLLIN, 0}; ::poll(&pfd, 1, 20000) > 0;) {
    const ssize_t n = ::read(log[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(log[0]);
  const int status = testing::wait_child(manager, 5s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << status << "\n" << text;
  EXPECT_NE(text.find("user namespace of its own"), std::string::npos) << text;
  EXPECT_NE(text.find("PrivateUsers="), std::string::npos) << text;
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
    client.acquire("punctual", SteadyClock::now() + 500ms);
    std::this_thread::sleep_for(50ms);
    client.release("punctual");
    std::this_thread::sleep_for(1s);  // alive past the released deadline: a release that did nothing is seen
  });
  EXPECT_TRUE(testing::killed_by(testing::wait_child(hung), SIGKILL));
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(punctual)));
  ::kill(daemon, SIGTERM);
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(daemon)));
}

}  // namespace
}  // namespace shmtimer
