// Pid reuse with real processes. This binary runs as pid 1 of a private pid namespace
// (`unshare --pid --fork --mount-proc`, tests/CMakeLists.txt), where writing
// /proc/sys/kernel/ns_last_pid makes the next fork() take a chosen pid: a dead worker's.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>

#include "process_control.hpp"
#include "server_support.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/fifo_protocol.hpp"
#include "shmtimer/fifo_shim.hpp"
#include "process_liveness.hpp"
#include "self_identity.hpp"

namespace shmtimer {
namespace {

using namespace testing;

// fork() with the child getting `pid`, which must be free. Returns the child's pid (in
// the parent), 0 in the child.
pid_t fork_as(pid_t pid) {
  std::ofstream("/proc/sys/kernel/ns_last_pid") << pid - 1 << std::flush;
  return ::fork();
}

// A process that never opened the table: it replaced its image, as any unrelated program
// that happens to get a recycled pid.
pid_t spawn_bystander_as(pid_t pid) {
  const pid_t child = fork_as(pid);
  if (child == 0) {
    ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return child;
}

// A worker that arms `scope` to expire in 50 ms, then is killed and reaped before any
// server sees the timer: its slot stays, naming a pid that is now free.
pid_t worker_that_dies_armed(const std::shared_ptr<Table>& table) {
  const pid_t worker = fork_hung_worker(table, "work", 50ms);
  ::kill(worker, SIGKILL);
  wait_child(worker);
  return worker;
}

bool wait_until_exec(pid_t pid) {
  for (int i = 0; i < 5000; ++i) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    if (std::getline(comm, name) && name == "sleep") return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

TEST(PidReuse, AProcessGivenADeadWorkersPidIsNeverSignalled) {
  ASSERT_EQ(::getpid(), 1) << "run me through unshare --pid --fork --mount-proc";
  TempTable t;
  const pid_t worker = worker_that_dies_armed(t.table);
  const pid_t bystander = spawn_bystander_as(worker);
  ASSERT_EQ(bystander, worker);
  ASSERT_TRUE(wait_until_exec(bystander));
  TimerServer server(t.table);
  server.run_once_at(monotonic_now_ns() + kSecond);
  EXPECT_EQ(::waitpid(bystander, nullptr, WNOHANG), 0) << "the bystander was signalled";
  EXPECT_EQ(t.table->header().reaps.load(), 0u);
  for (const auto& row : rows_of(t.table, worker)) EXPECT_NE(row.state, RowState::kArmed);  // cleared
  ::kill(bystander, SIGKILL);
  wait_child(bystander);
}

// A worker A armed to expire in 150 ms dies, after `while_alive` ran, and a punctual
// client B of the same table gets its pid within the same clock tick: a sibling forked
// by the same parent, so it has the table mapped as A had, the same uid, and (start times
// count 10 ms ticks) the same start time. Only an identity that never repeats (pidfs)
// tells them apart. A round of a server with `options` after A's deadline must neither
// signal B nor free B's armed slot.
void punctual_client_within_one_tick_keeps_its_timer(
    const ServerOptions& options, const std::function<void(const std::shared_ptr<Table>&)>& while_alive) {
  ASSERT_TRUE(is_pidfs_identity(current_identity()))
      << "this kernel has no pidfs (Linux 6.9+): a pid reused within one tick is then indistinguishable "
         "(docs/security.md), and this test cannot pass";
  TempTable t;
  for (int attempt = 0; attempt < 200; ++attempt) {
    const pid_t a = fork_hung_worker(t.table, "work", 150ms);
    const std::uint64_t a_started = stat_of(a).start_time;
    while_alive(t.table);
    ::kill(a, SIGKILL);
    wait_child(a);
    Ready armed;
    const pid_t b = fork_as(a);
    if (b == 0) {
      ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
      client.acquire("punctual", SteadyClock::now() + 1h);
      armed.signal();
      std::this_thread::sleep_for(30s);
      ::_exit(0);
    }
    ASSERT_EQ(b, a);
    armed.wait();
    if (stat_of(b).start_time != a_started) {  // another tick: not the case under test
      ::kill(b, SIGKILL);
      wait_child(b);
      TimerServer(t.table, options).run_once_at(monotonic_now_ns() + 2 * kSecond);  // frees both
      continue;
    }
    TimerServer(t.table, options).run_once_at(monotonic_now_ns() + kSecond);
    EXPECT_EQ(::waitpid(b, nullptr, WNOHANG), 0) << "the punctual client was signalled for A's timer";
    EXPECT_EQ(t.table->header().reaps.load(), 0u);
    const auto rows = rows_of(t.table, b);
    EXPECT_TRUE(std::any_of(rows.begin(), rows.end(), [](const TimerRow& row) {
      return row.scope == "punctual" && row.state == RowState::kArmed;
    })) << "the punctual client's armed timer was freed with A's";
    EXPECT_FALSE(std::any_of(rows.begin(), rows.end(), [](const TimerRow& row) { return row.scope == "work"; }))
        << "A's expired timer was not cleared";
    ::kill(b, SIGKILL);
    wait_child(b);
    return;
  }
  FAIL() << "no pid was reused within one clock tick in 200 attempts: the case was never tried";
}

// No server saw A alive. Both have the table mapped and one uid: only identity differs.
TEST(PidReuse, APunctualClientGivenADeadWorkersPidWithinOneClockTickIsNeverSignalled) {
  punctual_client_within_one_tick_keeps_its_timer({}, [](const std::shared_ptr<Table>&) {});
}

// The server prepared A ahead of its deadline, holding it by a pidfd, which then says
// "exited": what is freed is A's, and only A's.
TEST(PidReuse, APreparedWorkersPidGivenToAPunctualClientWithinOneClockTickCostsTheClientNothing) {
  auto processes = std::make_shared<LinuxProcessControl>();
  ServerOptions options;
  options.processes = processes;
  punctual_client_within_one_tick_keeps_its_timer(options, [&](const std::shared_ptr<Table>& table) {
    TimerServer(table, options).run_once();  // due within 200 ms: prepared
    ASSERT_EQ(processes->prepared(), 1u);
  });
}

// The process tree of the recycled-pid descendant: P arms through `how`, forks C and
// exits; C forks D as P's pid; D inherited P's per-thread scope cache (or Timer handle)
// and arms an expired timer through it. D is hung: it must be killed. C reports how D
// ended: exit 0 when D was killed by SIGKILL.
enum class Through { kScopeCache, kTimerHandle };

// A pipe of pids.
struct PidPipe {
  int fds[2];
  PidPipe() { EXPECT_EQ(::pipe(fds), 0); }
  ~PidPipe() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  bool put(pid_t pid) { return ::write(fds[1], &pid, sizeof pid) == sizeof pid; }
  pid_t take() {
    pid_t pid = 0;
    return ::read(fds[0], &pid, sizeof pid) == sizeof pid ? pid : -1;
  }
};

void descendant_on_recycled_pid_is_killed(Through how) {
  TempTable t;
  PidPipe to_c, from_tree;  // the pid to reuse goes to C; C's and then D's pids come back
  PidPipe armed;            // D says it has armed, before any server exists
  const pid_t p = ::fork();
  if (p == 0) {
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    Timer timer = client.timer("handle");
    // Claimed by the first acquire, found (and so cached in this thread) by the second,
    // after the handle's claim, so nothing evicts it.
    client.acquire("step", SteadyClock::now() + 1h);
    client.acquire("step", SteadyClock::now() + 1h);
    const pid_t c = ::fork();
    if (c == 0) {
      const pid_t reuse = to_c.take();
      const pid_t d = fork_as(reuse);
      if (d == 0) {  // D: P's pid, P's cache and handle, its own start time
        if (how == Through::kScopeCache)
          client.acquire("step", SteadyClock::now() - 1s);
        else
          timer.arm(SteadyClock::now() - 1s);
        armed.put(1);
        std::this_thread::sleep_for(30s);
        ::_exit(0);
      }
      from_tree.put(d);
      ::_exit(killed_by(wait_child(d, 10s), SIGKILL) ? 0 : 1);
    }
    from_tree.put(c);
    ::_exit(0);
  }
  const pid_t c = from_tree.take();
  wait_child(p);                      // P is gone; C is now a child of this process, the namespace's init
  std::this_thread::sleep_for(30ms);  // so that D's start time is surely not P's
  ASSERT_TRUE(to_c.put(p));
  const pid_t d = from_tree.take();
  ASSERT_EQ(d, p) << "D did not get P's pid";
  // The server is made only now: a sweep before D's arm would free P's slot and so hide
  // an arm that went to it (the catch would be luck).
  ASSERT_EQ(armed.take(), 1) << "D never armed";
  TimerServer server(t.table);
  for (const auto until = SteadyClock::now() + 10s; SteadyClock::now() < until && is_running(d, std::nullopt);) {
    server.run_once_at(monotonic_now_ns() + kSecond);
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(exited_ok(wait_child(c, 15s))) << "the hung descendant was not killed";
}

TEST(PidReuse, ADescendantGivenItsAncestorsPidArmsItsOwnSlotThroughTheScopeCache) {
  descendant_on_recycled_pid_is_killed(Through::kScopeCache);
}

TEST(PidReuse, ADescendantGivenItsAncestorsPidArmsItsOwnSlotThroughATimerHandle) {
  descendant_on_recycled_pid_is_killed(Through::kTimerHandle);
}

// The FIFO shim keeps each sender's start time while the sender runs. A newcomer that
// gets a dead sender's pid must be judged afresh: its hung timer is its own, and it is
// killed (judged with the dead sender's start time, it would be spared).
TEST(PidReuse, AFifoRequestFromADeadSendersRecycledPidIsTheNewcomersTimer) {
  TempTable t;
  TempPath fifo{"shmtimer-fifo"};
  auto shim = std::make_shared<FifoShim>(t.table, fifo.path());
  TimerServer server(t.table);
  server.add_source(shim);
  const auto send = [&](const std::string& line) { write_fifo(fifo.path(), line); };
  const pid_t sender = spawn_bystander_as(4242);
  ASSERT_EQ(sender, 4242);
  send(fifo::format_acquire(sender, "first", epoch_now() + 600, SIGKILL));
  server.run_once();  // the shim now knows the sender
  const auto first_start = identity_of(sender);
  ::kill(sender, SIGKILL);
  wait_child(sender);

  std::this_thread::sleep_for(30ms);  // a later clock tick: another start time
  const pid_t newcomer = spawn_bystander_as(sender);
  ASSERT_EQ(newcomer, sender);
  ASSERT_TRUE(wait_until_exec(newcomer));
  ASSERT_NE(identity_of(newcomer), first_start);
  send(fifo::format_acquire(newcomer, "hung", epoch_now() - 1, SIGKILL));
  server.run_once();  // applies the request
  server.run_once();  // reaps it
  EXPECT_TRUE(killed_by(wait_child(newcomer, 5s), SIGKILL)) << "the newcomer's hung timer was not enforced";
}

TEST(PidNamespaces, AClientInAnotherPidNamespaceThanTheServersIsRefused) {
  TempTable t;
  TimerServer server(t.table);  // serves from this namespace
  const pid_t child = fork_child([&] {
    if (::unshare(CLONE_NEWPID) != 0) throw std::runtime_error("unshare");
    const pid_t inner = ::fork();  // pid 1 of a namespace nested in the server's
    if (inner == 0) {
      try {
        ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
        ::_exit(1);
      } catch (const Error& e) {
        ::_exit(std::string(e.what()).find("another pid namespace") != std::string::npos ? 0 : 2);
      }
    }
    if (!exited_ok(wait_child(inner))) throw std::runtime_error("the client was not refused");
  });
  EXPECT_TRUE(exited_ok(wait_child(child)));
  EXPECT_NO_THROW(
      ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer));  // in the server's own namespace: welcome
}

}  // namespace
}  // namespace shmtimer
