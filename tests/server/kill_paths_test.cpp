// The paths by which a watchdog kills an innocent process or spares a hung one, each
// driven the way it was found: with real processes where processes are the point, and a
// scripted ProcessControl where the kernel cannot be made to misbehave on demand.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <barrier>
#include <functional>
#include <iostream>
#include <sstream>

#include "process_control.hpp"
#include "server_support.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/printable.hpp"
#include "process_liveness.hpp"
#include "self_identity.hpp"
#include "process_maps.hpp"

namespace shmtimer {
namespace {

using namespace testing;

// A child whose main thread arms `scopes` and then exits while a second
// thread runs on: the kernel's /proc shows it Z, yet it is alive (and hung, if armed).
pid_t fork_with_exited_main_thread(const std::shared_ptr<Table>& table, std::vector<std::string> scopes,
                                   std::chrono::milliseconds timeout) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ShmTimerClient client(table, SIGKILL, kArmWithoutServer);
    for (const auto& scope : scopes) client.acquire(scope, SteadyClock::now() + timeout);
    std::thread([] {
      std::this_thread::sleep_for(20s);
      ::_exit(0);
    }).detach();
    // The exit system call ends this thread alone, with no unwinding (pthread_exit would
    // unwind through GoogleTest's handlers in this forked copy of the test).
    ::syscall(SYS_exit, 0);
  }
  // Wait until the main thread is gone (state Z) and only the second thread runs.
  for (int i = 0; i < 5000; ++i) {
    ProcessStat stat;
    if (read_process_stat(pid, stat).running() && stat.state == 'Z') break;
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(stat_of(pid).state, 'Z');
  return pid;
}

bool still_running(pid_t child) { return ::waitpid(child, nullptr, WNOHANG) == 0; }

TEST(Liveness, AProcessWhoseMainThreadExitedIsAliveWhileAThreadRuns) {
  TempTable t;
  const pid_t child = fork_with_exited_main_thread(t.table, {}, 0ms);
  EXPECT_TRUE(is_running(child, identity_of(child)));
  ::kill(child, SIGKILL);
  wait_child(child);
  EXPECT_FALSE(is_running(child, std::nullopt));
}

TEST(Liveness, AZombieWithNoThreadLeftIsNotRunning) {
  const pid_t child = fork_child([] {});
  // Its main thread shows Z as soon as it exits; a runtime's helper thread (a sanitizer's)
  // may take a moment longer. Not yet waited for, it stays a zombie throughout.
  for (int i = 0; i < 5000 && is_running(child, std::nullopt); ++i) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(is_running(child, std::nullopt));
  EXPECT_EQ(stat_of(child).state, 'Z');
  wait_child(child);
}

TEST(Liveness, AThreadIdIsNotAProcess) {
  LiveThread thread;
  EXPECT_FALSE(is_running(thread.tid(), std::nullopt));  // /proc answers for it, but it is a thread
  EXPECT_TRUE(is_running(::getpid(), std::nullopt));
}

TEST(Liveness, WithoutPidfdsAThreadIdIsNeverTakenForAProcess) {
  {
    LiveThread thread;
    EXPECT_FALSE(running_without_pidfd(thread.tid(), std::nullopt));
    EXPECT_FALSE(running_without_pidfd(thread.tid(), stat_of(thread.tid()).start_time));
    EXPECT_TRUE(running_without_pidfd(::getpid(), stat_of(::getpid()).start_time));
  }
  TempTable t;
  const pid_t child = fork_with_exited_main_thread(t.table, {}, 0ms);
  EXPECT_TRUE(running_without_pidfd(child, std::nullopt));  // its main thread exited; it lives
  ::kill(child, SIGKILL);
  wait_child(child);
  EXPECT_FALSE(running_without_pidfd(child, std::nullopt));
}

// The two ways the kill path searches a memory map for the table (the PROCMAP_QUERY
// ioctl, on Linux 6.11 and later, and the text) find exactly the files mapped: the
// device counts as well as the inode.
TEST(ProcessMaps, TheQueryAndTheTextFindExactlyTheMappedFiles) {
  TempTable t;  // mapped by this process
  struct stat table{};
  ASSERT_EQ(::fstat(t.table->fd(), &table), 0);
  const FileId mapped{table.st_dev, table.st_ino};
  const FileId other_device{table.st_dev + 1, table.st_ino};
  const TempPath unmapped_file("shmtimer-unmapped");
  const int unmapped_fd = ::open(unmapped_file.path().c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(unmapped_fd, 0);
  struct stat other{};
  ASSERT_EQ(::fstat(unmapped_fd, &other), 0);
  const FileId unmapped{other.st_dev, other.st_ino};
  const int maps = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(maps, 0);
  if (const auto answer = detail::query_maps_for(maps, mapped); answer != detail::MapsAnswer::kUnsupported) {
    EXPECT_EQ(answer, detail::MapsAnswer::kListed);
    EXPECT_EQ(detail::query_maps_for(maps, other_device), detail::MapsAnswer::kNotListed);
    EXPECT_EQ(detail::query_maps_for(maps, unmapped), detail::MapsAnswer::kNotListed);
  } else {
    std::cout << "PROCMAP_QUERY is not supported here (Linux before 6.11): the text search alone is checked\n";
  }
  int error = 0;
  EXPECT_EQ(detail::search_maps_text_for(maps, mapped, error), Mapping::kMapped);
  EXPECT_EQ(detail::search_maps_text_for(maps, other_device, error), Mapping::kNotMapped);
  EXPECT_EQ(detail::search_maps_text_for(maps, unmapped, error), Mapping::kNotMapped);
  EXPECT_TRUE(maps_file(::getpid(), mapped));
  EXPECT_FALSE(maps_file(::getpid(), unmapped));
  ::close(maps);
  ::close(unmapped_fd);
}

// A prepared process's mapping is looked for first where it was found before (one query
// instead of a walk over every file mapping). Where it is looked for first never decides
// the answer: a file that moved is still found, and one that is gone is not.
TEST(ProcessMaps, TheQueryLooksFirstWhereTheFileWasFoundButAnswersForTheWholeMap) {
  const TempPath path("shmtimer-moving");
  const int fd = ::open(path.path().c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  struct stat st{};
  ASSERT_EQ(::fstat(fd, &st), 0);
  const FileId file{st.st_dev, st.st_ino};
  const TempPath other_path("shmtimer-other");
  const int other_fd = ::open(other_path.path().c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(other_fd, 0);
  ASSERT_EQ(::ftruncate(other_fd, 4096), 0);
  void* first = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(first, MAP_FAILED);
  const int maps = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(maps, 0);
  std::uint64_t near = 0;
  if (detail::query_maps_for(maps, file, &near) == detail::MapsAnswer::kUnsupported) {
    std::cout << "PROCMAP_QUERY is not supported here (Linux before 6.11)\n";
  } else {
    EXPECT_EQ(near, reinterpret_cast<std::uint64_t>(first));
    // Another file where this one was; this one elsewhere: found, and where it is now.
    ASSERT_NE(::mmap(first, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, other_fd, 0), MAP_FAILED);
    void* second = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
    ASSERT_NE(second, MAP_FAILED);
    EXPECT_EQ(detail::query_maps_for(maps, file, &near), detail::MapsAnswer::kListed);
    EXPECT_EQ(near, reinterpret_cast<std::uint64_t>(second));
    // Gone altogether: not found, wherever it was looked for first.
    ASSERT_EQ(::munmap(second, 4096), 0);
    EXPECT_EQ(detail::query_maps_for(maps, file, &near), detail::MapsAnswer::kNotListed);
  }
  ::munmap(first, 4096);
  ::close(maps);
  ::close(fd);
  ::close(other_fd);
}

TEST(Liveness, AHungProcessWhoseMainThreadExitedIsKilled) {
  TempTable t;
  const pid_t child = fork_with_exited_main_thread(t.table, {"hung"}, 50ms);
  TimerServer server(t.table);
  server.run_once_at(monotonic_now_ns() + kSecond);
  EXPECT_TRUE(killed_by(wait_child(child, 5s), SIGKILL));
  EXPECT_EQ(t.table->header().reaps.load(), 1u);
}

TEST(Liveness, TheSweepKeepsTheSlotsOfAProcessWhoseMainThreadExited) {
  TempTable t;
  const pid_t child = fork_with_exited_main_thread(t.table, {"idle-a", "idle-b"}, 1h);
  TimerServer server(t.table);
  for (int round = 0; round < 3; ++round) server.run_once_at(monotonic_now_ns() + round * 2 * kSecond);
  EXPECT_EQ(rows_of(t.table, child).size(), 2u);
  ::kill(child, SIGKILL);
  wait_child(child);
  server.run_once_at(monotonic_now_ns() + 10 * kSecond);  // now it is gone: freed
  EXPECT_TRUE(rows_of(t.table, child).empty());
}

TEST(Liveness, AFullTableNeverReclaimsTheSlotsOfALiveProcessWhoseMainThreadExited) {
  TempTable t(2);
  const pid_t child = fork_with_exited_main_thread(t.table, {"a", "b"}, 1h);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  try {
    client.acquire("mine", SteadyClock::now() + 1h);
    ADD_FAILURE() << "took a slot of a live process";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTableFull);
  }
  EXPECT_EQ(rows_of(t.table, child).size(), 2u);
  ::kill(child, SIGKILL);
  wait_child(child);
  EXPECT_NO_THROW(client.acquire("mine", SteadyClock::now() + 1h));  // a dead one's slot is reclaimed
}

// A second process that holds one armed timer, far in the future, and sleeps.
pid_t fork_bystander(const std::shared_ptr<Table>& table) { return fork_hung_worker(table, "bystander", 1h); }

TEST(StaleWriters, AHandleWhoseSlotWentToAnotherProcessNeverArmsThatProcess) {
  TempTable t(1);  // one slot: the bystander lands in the one the handle was bound to
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  Timer timer = client.timer("mine");
  ASSERT_TRUE(client.forget("mine"));  // the slot is given back while the handle lives
  const pid_t bystander = fork_bystander(t.table);
  const auto before = rows_of(t.table, bystander).at(0);
  try {
    timer.arm(SteadyClock::now() - 1s);  // an expired deadline, from the stale handle
    ADD_FAILURE() << "armed without a slot of its own";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTableFull);  // rebinding found no slot of its own
  }
  TimerServer server(t.table);
  server.run_once_at(monotonic_now_ns() + kSecond);
  EXPECT_TRUE(still_running(bystander));
  const auto after = rows_of(t.table, bystander).at(0);
  EXPECT_EQ(after.deadline_ns, before.deadline_ns);
  EXPECT_EQ(t.table->header().reaps.load(), 0u);
  ::kill(bystander, SIGKILL);
  wait_child(bystander);
}

TEST(StaleWriters, AHandleWhoseSlotWasTakenRebindsToASlotOfItsOwn) {
  TempTable t(2);
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  Timer timer = client.timer("mine");
  const auto bound = rows_of(t.table, ::getpid()).at(0).slot;
  client.acquire("filler", SteadyClock::now() + 1h);  // the other slot, for now
  ASSERT_TRUE(client.forget("mine"));
  const pid_t bystander = fork_bystander(t.table);  // takes the handle's slot, the only free one
  ASSERT_EQ(rows_of(t.table, bystander).at(0).slot, bound);
  ASSERT_TRUE(client.forget("filler"));
  timer.arm(SteadyClock::now() + 2h);
  const auto mine = rows_of(t.table, ::getpid()).at(0);
  EXPECT_NE(mine.slot, bound);
  EXPECT_EQ(mine.state, RowState::kArmed);
  EXPECT_LT(rows_of(t.table, bystander).at(0).deadline_ns, mine.deadline_ns);  // its own 1 h, not our 2 h
  ::kill(bystander, SIGKILL);
  wait_child(bystander);
}

TEST(StaleWriters, AnArmWrittenUnderAnotherIdentityNeverVerifies) {
  TempTable t;
  const detail::ScopeKey key("k");
  const auto claimed = detail::insert_slot(*t.table, {4242, 77, SIGKILL, layout::Origin::kTable}, key);
  auto& slot = t.table->slot(claimed.index);
  // A writer that believes it owns an earlier claim of this slot (older generation) or is
  // another process: its word lands (the test bypasses the ownership check) but never verifies.
  const auto older =
      layout::Control::pack(layout::SlotState::kReady, layout::Control::unpack(claimed.control).generation - 1, 4242);
  for (const layout::Ownership stale : {layout::Ownership{older, 77}, layout::Ownership{claimed.control, 78}}) {
    slot.armed.store(layout::ArmWord::make(1000, stale.control, stale.identity));
    detail::SlotSnapshot snap;
    ASSERT_EQ(detail::read_slot(*t.table, claimed.index, snap), detail::ReadResult::kReady);
    EXPECT_FALSE(snap.deadline_verified());
  }
  // And the ownership check refuses the stale writer before it writes anything.
  slot.armed.store(layout::kDisarmed);
  EXPECT_FALSE(detail::arm_slot(slot, {older, 77}, 1000, SIGKILL));
  EXPECT_EQ(slot.armed.load(), layout::kDisarmed);
}

// A ProcessControl on which one pid is reused by a new process right after it is first
// asked about: the moment a sweep that remembered answers per pid went wrong.
struct PidReusedDuringSweep final : ProcessControl {
  pid_t pid = 4242;
  std::uint64_t identity = 77;  // the first process; then 88
  Probe running(pid_t p, std::optional<std::uint64_t> expected) override {
    const bool answer = p == pid && (!expected || *expected == identity);
    identity = 88;
    return testing::answer(answer);
  }
  SignalOutcome send(const SignalRequest&, int&) override { return SignalOutcome::kFailed; }
};

TEST(Sweep, APidReusedDuringASweepNeverCostsTheNewcomerItsSlot) {
  TempTable t(8);
  auto processes = std::make_shared<PidReusedDuringSweep>();
  ServerOptions options;
  options.processes = processes;
  TimerServer server(t.table, options);
  // Slot 0: the first process (start 77), visited first; slot 1: the newcomer (start 88).
  ASSERT_NE(detail::try_claim(*t.table, 0, 0, {4242, 77, SIGKILL, layout::Origin::kTable}, detail::ScopeKey("a")), 0u);
  ASSERT_NE(detail::try_claim(*t.table, 1, 0, {4242, 88, SIGKILL, layout::Origin::kTable}, detail::ScopeKey("b")), 0u);
  const auto now = monotonic_now_ns();
  server.run_once_at(now);  // the newcomer takes pid 4242 right after the first question
  const auto newcomer_kept = [&] {
    const auto rows = rows_of(t.table, 4242);
    return std::any_of(rows.begin(), rows.end(), [](const TimerRow& row) { return row.identity == 88; });
  };
  EXPECT_TRUE(newcomer_kept());
  server.run_once_at(now + 2 * kSecond);  // the next sweep: the first process is gone now
  EXPECT_TRUE(newcomer_kept());
  EXPECT_EQ(rows_of(t.table, 4242).size(), 1u);
}

// A ProcessControl on which one process (pid 5151) has exited, and whose slot is freed and
// claimed by a live newcomer (pid 6161) right after the sweep judged it: the free the
// sweep decided then lands on the newcomer's claim, as it would with a claim racing a
// sweep's long pass over a large table.
struct SlotClaimedAgainAfterTheSweepJudgedIt final : ProcessControl {
  std::function<void()> claim_again;
  Probe running(pid_t p, std::optional<std::uint64_t>) override {
    if (p != 5151) return testing::answer(true);
    if (claim_again) std::exchange(claim_again, nullptr)();
    return testing::answer(false);
  }
  SignalOutcome send(const SignalRequest&, int&) override { return SignalOutcome::kFailed; }
};

TEST(Sweep, ASlotClaimedAgainAfterTheSweepJudgedItIsLeftAlone) {
  TempTable t(4);
  auto processes = std::make_shared<SlotClaimedAgainAfterTheSweepJudgedIt>();
  ServerOptions options;
  options.processes = processes;
  TimerServer server(t.table, options);
  const auto gone =
      detail::try_claim(*t.table, 0, 0, {5151, 77, SIGKILL, layout::Origin::kTable}, detail::ScopeKey("a"));
  ASSERT_NE(gone, 0u);
  processes->claim_again = [&] {
    ASSERT_TRUE(detail::free_slot(*t.table, 0, gone));
    ASSERT_NE(detail::try_claim(*t.table, 0, 0, {6161, 99, SIGKILL, layout::Origin::kTable}, detail::ScopeKey("b")),
              0u);
  };
  server.run_once_at(monotonic_now_ns());
  ASSERT_FALSE(processes->claim_again) << "the sweep never asked about the gone owner";
  EXPECT_TRUE(rows_of(t.table, 5151).empty());
  EXPECT_EQ(rows_of(t.table, 6161).size(), 1u) << "the sweep freed the newcomer's claim";
}

TEST(ConcurrentArms, EveryRaceOfTwoArmsLeavesOneWholeVerifiableArm) {
  TempTable t;
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  Timer first = client.timer("shared"), second = client.timer("shared");
  const std::uint64_t index = rows_of(t.table, ::getpid()).at(0).slot;
  constexpr int kRounds = 20000;
  const std::uint64_t base = (monotonic_now_ns() / kMicro + 3600'000'000) * kMicro;  // whole microseconds
  const auto deadline = [&](int round, int thread) {
    return base + (static_cast<std::uint64_t>(round) * 2 + thread) * kMicro;
  };
  std::barrier sync(3);
  const auto racer = [&](Timer& timer, int thread) {
    for (int round = 0; round < kRounds; ++round) {
      sync.arrive_and_wait();
      if (round % 8 == 7 && thread == 1)
        timer.disarm();
      else
        timer.arm(from_table_ns(deadline(round, thread)));
      sync.arrive_and_wait();
    }
  };
  std::thread a(racer, std::ref(first), 0), b(racer, std::ref(second), 1);
  int unverifiable = 0, foreign = 0;
  for (int round = 0; round < kRounds; ++round) {
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    detail::SlotSnapshot snap;
    ASSERT_EQ(detail::read_slot(*t.table, index, snap), detail::ReadResult::kReady);
    unverifiable += !snap.deadline_verified();
    const bool disarm_raced = round % 8 == 7;
    foreign += !(snap.deadline_ns == deadline(round, 0) || snap.deadline_ns == deadline(round, 1) ||
                 (disarm_raced && snap.armed == layout::kDisarmed));
  }
  a.join();
  b.join();
  EXPECT_EQ(unverifiable, 0);
  EXPECT_EQ(foreign, 0);
}

TEST(Cleanup, ATimerReArmedWhileItsOwnerWasBeingSignalledStands) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  TimerServer server(t.table, fake_options(fake));
  const auto now = monotonic_now_ns();
  const auto index = plant(*t.table, 4242, "step", now - kMicro, SIGUSR1);
  const auto other = plant(*t.table, 4242, "other", now + kSecond, SIGUSR1);
  // The owner survives the signal (SIGUSR1 is handled) and re-arms both timers before
  // the server clears what it judged: the re-arms are newer and must stand.
  fake->on_send = [&](const SignalRequest&) {
    detail::arm_as_current_owner(*t.table, index, now + 100 * kSecond, SIGUSR1);
    detail::arm_as_current_owner(*t.table, other, now + 200 * kSecond, SIGUSR1);
  };
  server.run_once_at(now);
  ASSERT_EQ(fake->sends.size(), 1u);
  const auto rows = rows_of(t.table, 4242);
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& row : rows) EXPECT_EQ(row.state, RowState::kArmed) << row.scope;
}

TEST(Cleanup, TheTimersTheScanSawAreClearedWhenNothingReArmed) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  TimerServer server(t.table, fake_options(fake));
  const auto now = monotonic_now_ns();
  plant(*t.table, 4242, "step", now - kMicro, SIGUSR1);
  plant(*t.table, 4242, "other", now + kSecond, SIGUSR1);
  server.run_once_at(now);
  for (const auto& row : rows_of(t.table, 4242)) EXPECT_EQ(row.state, RowState::kIdle) << row.scope;
}

// Captures the default logger's output for the test's life.
struct CapturedLog {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  CapturedLog() {
    auto logger = std::make_shared<spdlog::logger>("captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::debug);
  }
  ~CapturedLog() {
    spdlog::set_default_logger(previous);
    spdlog::set_level(spdlog::level::off);
  }
};

TEST(Scopes, NoByteSequenceInAScopeStopsTheWatchdogOrForgesALogLine) {
  TempTable t;
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[4242] = {77, ::getuid()};
  Events events;
  TimerServer server(t.table, fake_options(fake, &events));
  const std::string hostile = std::string("\xff\xfe\xc3(") + "\n{\"level\":\"error\",\"forged\":1}\r\x1b[2J";
  const auto now = monotonic_now_ns();
  plant(*t.table, 4242, hostile, now - kMicro, SIGKILL);
  CapturedLog log;
  EXPECT_NO_THROW(server.run_once_at(now));
  EXPECT_EQ(fake->sends.size(), 1u);  // reaped like any timer
  std::istringstream lines(log.out.str());
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    EXPECT_NE(line.rfind("{", 0), 0u) << "a scope began a log line: " << line;
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
  }
  EXPECT_GT(count, 0);
  EXPECT_NE(log.out.str().find("\\xff\\xfe\\xc3(\\x0a{"), std::string::npos) << log.out.str();
}

TEST(Scopes, PrintableEscapesExactlyWhatIsNotPrintableUtf8) {
  EXPECT_EQ(printable("plain/scope#12"), "plain/scope#12");
  EXPECT_EQ(printable("\xc3\xa9tape \xe2\x98\x83"), "\xc3\xa9tape \xe2\x98\x83");  // UTF-8 kept
  EXPECT_EQ(printable("a\nb\tc\x7f"), "a\\x0ab\\x09c\\x7f");
  EXPECT_EQ(printable("\xff\xc3"), "\\xff\\xc3");           // invalid and truncated
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a UTF-16 surrogate
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");           // overlong
  EXPECT_EQ(printable("back\\x0a"), "back\\\\x0a");         // so escapes stay unambiguous
  EXPECT_EQ(printable(std::string("\0", 1)), "\\x00");
  EXPECT_EQ(printable("\xc2\x9b"
                      "2J"),
            "\\xc2\\x9b2J");  // C1 CSI
  EXPECT_EQ(printable("a\xe2\x80\xa8"
                      "b"),
            "a\\xe2\\x80\\xa8b");                // line separator
  EXPECT_EQ(printable("\xc2\xa0"), "\xc2\xa0");  // a no-break space stays
}

TEST(Occupancy, AClaimingSlotWhoseBitWasLostIsFoundAndFreedOnceItsClaimantIsGone) {
  TempTable t(64);
  auto fake = std::make_shared<FakeProcesses>();    // nobody alive: pid 4242 is gone
  TimerServer server(t.table, fake_options(fake));  // its start-up rebuild is over
  // A claimant took slot 5 just after the server cleared its bit, and was killed before
  // setting the bit again.
  t.table->slot(5).control.store(layout::Control::pack(layout::SlotState::kClaiming, 1, 4242));
  ASSERT_EQ(t.table->bitmap_word(0).load() & (1u << 5), 0u);
  for (int round = 0; round < 3; ++round) server.run_once_at(monotonic_now_ns() + round * 2 * kSecond);
  EXPECT_EQ(detail::state_of(t.table->slot(5).control.load()), layout::SlotState::kFree);
}

TEST(Occupancy, AScanRacingNewClaimsNeverLeavesAClaimedSlotWithoutItsBit) {
  TempTable t(4);  // few slots: claims land in slots the server is clearing right now
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  auto fake = std::make_shared<FakeProcesses>();
  fake->alive[::getpid()] = {current_identity(), ::getuid()};
  TimerServer server(t.table, fake_options(fake));
  std::atomic<bool> stop{false};
  std::thread scanner([&] {
    while (!stop.load(std::memory_order_relaxed)) server.run_once_at(1);  // scan only: nothing is due
  });
  // After each claim the slot's bit must be set, or set again within moments by the scan
  // that cleared it; a bit that stays clear hides the slot from every later scan.
  const auto bit_of = [&](std::uint64_t index) { return t.table->bitmap_word(index / 64).load() >> (index % 64) & 1; };
  int lost = 0;
  for (std::uint64_t i = 0; i < 200'000 && lost == 0; ++i) {
    const std::string scope = "k" + std::to_string(i % 64);
    client.acquire(scope, SteadyClock::now() + 1h);
    std::uint64_t control = 0;
    const auto index = detail::find_slot(*t.table, ::getpid(), current_identity(), layout::Origin::kTable,
                                         detail::ScopeKey(scope), &control);
    if (index == detail::kNoSlot) {
      ADD_FAILURE() << "the scope just acquired is not in the table";
      break;
    }
    if (bit_of(index) == 0) {
      std::this_thread::sleep_for(2ms);  // dozens of scans
      lost += bit_of(index) == 0;
    }
    client.forget(scope);  // the slot goes Free with its bit set: the scan clears it
  }
  stop = true;
  scanner.join();
  EXPECT_EQ(lost, 0);
}

}  // namespace
}  // namespace shmtimer
