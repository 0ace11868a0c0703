// "I could not look" is never "it is gone": each place that decides whether a process
// runs, may be signalled, or has the table mapped, driven with real processes into the
// errors that once read as death (no descriptor left, a maps file it may not read). The
// side that runs out of descriptors is always a forked child, so the test process keeps
// its own; the child reports what it saw through ChildReport.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "server_support.hpp"
#include "process_maps.hpp"
#include "process_liveness.hpp"
#include "self_identity.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/fifo_protocol.hpp"
#include "shmtimer/fifo_shim.hpp"
#include "shmtimer/process_access_check.hpp"
#include "process_control.hpp"

namespace shmtimer {
namespace {

using namespace testing;

// Fills this process's descriptor table: the soft limit is lowered to `limit`, and
// /dev/null opened until open() fails with EMFILE. release() gives them all back.
class DescriptorFiller {
 public:
  explicit DescriptorFiller(rlim_t limit = 256) {
    rlimit r{};
    ::getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = limit;
    if (::setrlimit(RLIMIT_NOFILE, &r) != 0) throw std::runtime_error("setrlimit");
    for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fds_.push_back(fd);
    if (errno != EMFILE) throw std::runtime_error(std::string("filling the descriptor table: ") + std::strerror(errno));
  }
  ~DescriptorFiller() { release(); }
  void release() {
    for (const int fd : fds_) ::close(fd);
    fds_.clear();
  }

 private:
  std::vector<int> fds_;
};

// What a forked child found: "" when every check held, else the first that did not.
class ChildReport {
 public:
  ChildReport() {
    if (::pipe(fds_) != 0) throw std::runtime_error("pipe");
  }
  ~ChildReport() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  // Runs fn in a child; fn throws to report a failed check.
  pid_t run(const std::function<void()>& fn) {
    return fork_child([&] {
      try {
        fn();
      } catch (const std::exception& e) {
        const std::string text = e.what();
        (void)!::write(fds_[1], text.data(), text.size());
        ::_exit(1);
      }
    });
  }
  std::string wait(pid_t child, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    const int status = wait_child(child, timeout);
    if (exited_ok(status)) return "";
    char buf[1024] = {};
    pollfd p{fds_[0], POLLIN, 0};
    const ssize_t n = ::poll(&p, 1, 0) == 1 ? ::read(fds_[0], buf, sizeof buf - 1) : 0;
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n))
                 : "the child ended with status " + std::to_string(status);
  }

 private:
  int fds_[2];
};

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

std::uint64_t unknown_looks(const Table& table) {
  std::uint64_t sum = 0;
  for (const auto& counter : table.header().liveness_unknown) sum += counter.load();
  return sum;
}

// A server whose rounds all sweep, with the real process control.
ServerOptions sweeping_options(std::size_t reserved_descriptors) {
  ServerOptions options;
  options.processes = std::make_shared<LinuxProcessControl>(64, reserved_descriptors);
  options.dead_owner_sweep_interval = std::chrono::nanoseconds(0);
  return options;
}

TEST(Liveness, OutOfDescriptorsEveryLookAtAProcessIsUnknownNeverGone) {
  const pid_t parent = ::getpid();
  ChildReport report;
  const pid_t child = report.run([&] {
    DescriptorFiller full;
    const Probe probe = probe_process(parent, std::nullopt);
    check(probe.unknown() && probe.error == EMFILE, "probe_process did not answer unknown (EMFILE)");
    ProcessStat stat;
    check(read_process_stat(parent, stat).unknown(), "read_process_stat did not answer unknown");
    int error = 0;
    check(process_has_mapped(parent, {1, 1}, error) == Mapping::kUnknown && error == EMFILE,
          "process_has_mapped did not answer unknown (EMFILE)");
  });
  EXPECT_EQ(report.wait(child), "");
}

// The sweep once freed a live, hung worker's armed slot when it could not look at it:
// the worker was then never killed. Without a reserve, the server can look at nothing.
TEST(Sweep, AServerOutOfDescriptorsKeepsAHungWorkersTimerAndKillsItOnceItCanLook) {
  TempTable t;
  const pid_t worker = fork_hung_worker(t.table, "hung", 50ms);
  ChildReport report;
  const pid_t server_process = report.run([&] {
    const ServerOptions options = sweeping_options(0);
    TimerServer server(t.table, options);
    DescriptorFiller full;
    for (int round = 0; round < 5; ++round) server.run_once_at(monotonic_now_ns() + kSecond);
    check(::kill(worker, 0) == 0, "the worker was gone while the server could not look");
    const auto rows = rows_of(t.table, worker);
    check(rows.size() == 1 && rows[0].state == RowState::kArmed, "the hung worker's armed slot was not kept");
    check(unknown_looks(*t.table) > 0, "the looks that could not tell were not counted");
    full.release();
    server.run_once_at(monotonic_now_ns() + 60 * kSecond);  // past the back-off of the failed looks
  });
  EXPECT_EQ(report.wait(server_process), "");
  EXPECT_TRUE(killed_by(wait_child(worker, 10s), SIGKILL)) << "the hung worker was never killed";
}

// With the reserve (the default), the kill path works while the rest of the server's
// process is at its descriptor limit.
TEST(TimerServer, KillsAHungWorkerWhileTheRestOfItsProcessIsOutOfDescriptors) {
  TempTable t;
  const pid_t worker = fork_hung_worker(t.table, "hung", 50ms);
  ChildReport report;
  const pid_t server_process = report.run([&] {
    const ServerOptions options = sweeping_options(8);
    TimerServer server(t.table, options);
    DescriptorFiller full;
    const RoundResult result = server.run_once_at(monotonic_now_ns() + kSecond);
    check(result.signalled == 1, "the worker was not signalled while the server was out of descriptors");
  });
  EXPECT_EQ(report.wait(server_process), "");
  EXPECT_TRUE(killed_by(wait_child(worker, 10s), SIGKILL));
}

// A client that finds the table full while out of descriptors once freed a live
// worker's armed slot (its owner "was gone") and took it.
TEST(ClientReclaim, AFullTableOutOfDescriptorsNeverTakesALiveWorkersSlot) {
  TempTable t(1);
  const pid_t worker = fork_hung_worker(t.table, "the-only-slot", 1h);
  ChildReport report;
  const pid_t client_process = report.run([&] {
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    check(current_identity() != 0, "no identity before the descriptors ran out");
    DescriptorFiller full;
    try {
      client.acquire("mine", SteadyClock::now() + 1h);
    } catch (const Error& e) {
      check(e.code() == ErrorCode::kTableFull, std::string("not 'table full': ") + e.what());
      check(unknown_looks(*t.table) > 0, "the look that could not tell was not counted");
      return;
    }
    check(false, "the client took a live worker's slot");
  });
  EXPECT_EQ(report.wait(client_process), "");
  const auto rows = rows_of(t.table, worker);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].state, RowState::kArmed);
  ::kill(worker, SIGKILL);
  wait_child(worker);
}

// A FIFO request whose sender could not be looked at was once refused ("no such
// process"): the timer was lost. It waits, and is applied once the sender can be judged.
TEST(FifoShim, ARequestWhoseSenderCannotBeLookedAtWaitsAndIsAppliedOnceItCan) {
  TempTable t;
  TempPath fifo{"shmtimer-fifo"};
  const pid_t sender = fork_child([] { std::this_thread::sleep_for(30s); });
  ChildReport report;
  const pid_t server_process = report.run([&] {
    auto shim = std::make_shared<FifoShim>(t.table, fifo.path());
    TimerServer server(t.table, sweeping_options(0));
    server.add_source(shim);
    write_fifo(fifo.path(), fifo::format_acquire(sender, "first", epoch_now() + 600, SIGKILL));
    write_fifo(fifo.path(), fifo::format_acquire(sender, "second", epoch_now() + 600, SIGKILL));
    DescriptorFiller full;
    server.run_once();
    check(rows_of(t.table, sender).empty(), "a request was applied without judging its sender");
    check(shim->refused_count() == 0, "a request was refused because its sender could not be looked at");
    check(unknown_looks(*t.table) > 0, "the look that could not tell was not counted");
    full.release();
    server.run_once();
    const auto rows = rows_of(t.table, sender);
    check(rows.size() == 2, "the waiting requests were not applied once the sender could be looked at");
    for (const auto& row : rows) check(row.state == RowState::kArmed, "a waiting request was not armed");
    check(rows[0].identity == identity_of(sender), "the timer is not keyed by the sender's identity");
  });
  EXPECT_EQ(report.wait(server_process), "");
  ::kill(sender, SIGKILL);
  wait_child(sender);
}

// A worker that is not dumpable (PR_SET_DUMPABLE 0, or one that changed credentials)
// hides its maps from a server without CAP_SYS_PTRACE, and its /proc entries say root.
// The server runs as the worker's uid, not root. `table_mode`: the mapped file's mode.
// Returns what send() answered, the worker killed or not (killed when answered kSent).
SignalOutcome send_to_non_dumpable_worker(mode_t table_mode, bool& killed) {
  constexpr uid_t kUser = 65534;
  TempPath file{"shmtimer-nondumpable"};
  std::ofstream(file.path()) << std::string(4096, 'x');
  EXPECT_EQ(::chown(file.path().c_str(), kUser, kUser), 0);
  EXPECT_EQ(::chmod(file.path().c_str(), table_mode), 0);
  struct stat st{};
  EXPECT_EQ(::stat(file.path().c_str(), &st), 0);
  Ready mapped;
  const pid_t worker = fork_child([&] {
    const int fd = ::open(file.path().c_str(), O_RDONLY);
    if (fd < 0 || ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED) ::_exit(2);
    if (::setgid(kUser) != 0 || ::setuid(kUser) != 0 || ::prctl(PR_SET_DUMPABLE, 0) != 0) ::_exit(3);
    mapped.signal();
    std::this_thread::sleep_for(30s);
  });
  mapped.wait();
  // The rule the reaper applies: the table's owner is the sole writer if no one else may write.
  const std::optional<uid_t> sole_writer =
      (st.st_mode & (S_IWGRP | S_IWOTH)) == 0 ? std::optional<uid_t>(st.st_uid) : std::nullopt;
  int answer[2];
  EXPECT_EQ(::pipe(answer), 0);
  const pid_t server_process = fork_child([&] {
    if (::setgid(kUser) != 0 || ::setuid(kUser) != 0) ::_exit(3);
    LinuxProcessControl processes;
    ProcessInfo info;
    if (!processes.inspect(worker, std::nullopt, info).running() || info.uid != kUser) ::_exit(4);
    int error = 0;
    const SignalOutcome outcome =
        processes.send({worker, info.identity, SIGKILL, kUser, FileId{st.st_dev, st.st_ino}, sole_writer}, error);
    (void)!::write(answer[1], &outcome, sizeof outcome);
  });
  EXPECT_TRUE(exited_ok(wait_child(server_process)));
  ::close(answer[1]);  // so that a server process that answered nothing reads as end of file
  SignalOutcome outcome = SignalOutcome::kFailed;
  EXPECT_EQ(::read(answer[0], &outcome, sizeof outcome), static_cast<ssize_t>(sizeof outcome));
  ::close(answer[0]);
  killed = killed_by(wait_child(worker, outcome == SignalOutcome::kSent ? 10s : 200ms), SIGKILL);
  return outcome;
}

TEST(NonDumpable, AWorkerWhoseMapsTheServerMayNotReadIsKilledWhenOnlyItsOwnUidCanWriteTheTable) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root, to run the worker and the server as another user";
  bool killed = false;
  EXPECT_EQ(send_to_non_dumpable_worker(0600, killed), SignalOutcome::kSent);
  EXPECT_TRUE(killed);
}

TEST(NonDumpable, AWorkerWhoseMapsTheServerMayNotReadIsRefusedWhenOthersCouldWriteTheTable) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root, to run the worker and the server as another user";
  bool killed = true;
  EXPECT_EQ(send_to_non_dumpable_worker(0660, killed), SignalOutcome::kUnverifiable);
  EXPECT_FALSE(killed);
}

// The refusal's log line names why the maps could not be read, from /proc/<pid>/status:
// capabilities the worker holds, or a worker that is not dumpable.
TEST(NonDumpable, TheCauseNamedIsTheWorkersCapabilitiesOrThatItIsNotDumpable) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root, for a worker with capabilities";
  Ready ready_with_capabilities, ready_not_dumpable;
  const pid_t privileged = fork_child([&] {  // root's child: all of root's capabilities
    ready_with_capabilities.signal();
    std::this_thread::sleep_for(30s);
  });
  const pid_t not_dumpable = fork_child([&] {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0 || ::prctl(PR_SET_DUMPABLE, 0) != 0) ::_exit(3);
    ready_not_dumpable.signal();
    std::this_thread::sleep_for(30s);
  });
  ready_with_capabilities.wait();
  ready_not_dumpable.wait();
  const std::string with_capabilities = why_maps_are_unreadable(privileged);
  const std::string undumpable = why_maps_are_unreadable(not_dumpable);
  ::kill(privileged, SIGKILL);
  ::kill(not_dumpable, SIGKILL);
  wait_child(privileged);
  wait_child(not_dumpable);
  EXPECT_NE(with_capabilities.find("holds capabilities"), std::string::npos) << with_capabilities;
  EXPECT_NE(undumpable.find("not dumpable"), std::string::npos) << undumpable;
}

// A kill that keeps failing is retried with a back-off; the retry is a time to wake at,
// not a deadline the idle policy spins before (which made 12,000-30,000 rounds a second).
TEST(TimerServer, AKillThatKeepsFailingNeverMakesTheServerSpin) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  fake->scripted.assign(100000, SignalOutcome::kFailed);
  std::atomic<int> rounds{0};  // after the first expiry's spin window (ScanPolicy::spin, 50 us)
  std::atomic<std::uint64_t> counting_from_ns{0};
  ServerOptions options = fake_options(fake);
  options.policy.max_interval = 100ms;
  options.after_round = [&](const RoundResult&) {
    if (monotonic_now_ns() >= counting_from_ns.load()) rounds.fetch_add(1);
  };
  TimerServer server(t.table, options);
  plant(*t.table, 4242, "x", monotonic_now_ns() - kMicro, SIGKILL);
  counting_from_ns = monotonic_now_ns() + 20 * kMs;
  server.start();
  std::this_thread::sleep_for(1s);
  server.stop();
  // About 10 rounds at the longest sleep and one per retry (at 10, 30, 70, 150, 310, 630 ms):
  // a server that took each retry for a deadline spins before it, hundreds of rounds each.
  EXPECT_LT(rounds.load(), 100);
  EXPECT_GE(fake->sends.size(), 5u);  // and the retries still happen
}

}  // namespace
}  // namespace shmtimer
