// A rogue process with write access to the table: whatever bytes it writes, the server
// must not crash and must signal no process but the rogue's own (and only if eligible).
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <mutex>
#include <random>
#include <set>

#include "process_control.hpp"
#include "process_liveness.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "shmtimer/timer_server.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

using shmtimer::testing::kArmWithoutServer;

using namespace std::chrono_literals;
using testing::TempTable;

// The real identity checks, but a signal is only recorded, never sent: whatever the
// table says, this test cannot hurt a process.
struct RecordingProcesses final : ProcessControl {
  LinuxProcessControl real;
  std::mutex mutex;
  std::vector<std::pair<pid_t, int>> signalled;
  Probe running(pid_t pid, std::optional<std::uint64_t> identity) override { return real.running(pid, identity); }
  SignalOutcome send(const SignalRequest& request, int& error) override {
    // The real checks with signal 0, which probes without signalling.
    SignalRequest probe = request;
    probe.signal = 0;
    const SignalOutcome outcome = real.send(probe, error);
    if (outcome != SignalOutcome::kSent) return outcome;
    std::lock_guard lock(mutex);
    signalled.emplace_back(request.pid, request.signal);
    return SignalOutcome::kSent;
  }
};

// Writes random bytes over the bitmap and the slots (and the header's mutable lines) of
// a mapped table, as fast as it can, for `duration`.
void scribble(const std::shared_ptr<Table>& table, unsigned seed, std::chrono::milliseconds duration) {
  std::mt19937_64 rng(seed);
  auto* base = reinterpret_cast<unsigned char*>(&table->header());
  const auto& g = table->geometry();
  const auto until = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < until) {
    std::uint64_t offset;
    switch (rng() % 4) {
      case 0: offset = 64 + rng() % 192; break;                                // header: liveness, max_probe, counters
      case 1: offset = g.bitmap_offset + rng() % (g.bitmap_words * 8); break;  // occupancy bits
      default: offset = g.slots_offset + rng() % (g.capacity * sizeof(layout::Slot)); break;
    }
    const std::uint64_t value = rng() % 3 == 0 ? rng() % 70000 : rng();  // often plausible pids and signals
    const std::size_t n = std::min<std::size_t>(8, g.file_bytes - offset);
    std::memcpy(base + offset, &value, n);  // a rogue writer: deliberately not atomic
  }
}

TEST(HostileInput, RandomBytesFromARogueWriterNeverSignalAnInnocentProcess) {
  TempTable t(256);
  // Innocent workers with timers far in the future.
  testing::TempPath unused;
  std::vector<pid_t> innocents;
  for (int i = 0; i < 3; ++i)
    innocents.push_back(testing::fork_child([&] {
      ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
      client.acquire("innocent", SteadyClock::now() + 1000h);  // far past any round time below
      std::this_thread::sleep_for(30s);
    }));
  auto processes = std::make_shared<RecordingProcesses>();
  ServerOptions options;
  options.processes = processes;
  options.dead_owner_sweep_interval = 1ms;
  options.any_uid = true;  // make the uid rule no help: only identity may save the innocents
  TimerServer server(t.table, options);
  const pid_t rogue = testing::fork_child([&] { scribble(t.table, 7, 2s); });
  const auto until = std::chrono::steady_clock::now() + 2s;
  std::uint64_t rounds = 0;
  while (std::chrono::steady_clock::now() < until) {
    server.run_once_at(monotonic_now_ns() + (rounds % 2 ? 3600ULL * 1'000'000'000 : 0));
    ++rounds;
    // A reader (timer-dump's API) must cope with the same bytes.
    (void)TableReader(t.table).rows(true);
    (void)TableReader(t.table).header();
  }
  EXPECT_TRUE(testing::exited_ok(testing::wait_child(rogue)));
  for (pid_t pid : innocents) {
    ::kill(pid, SIGKILL);
    testing::wait_child(pid);
  }
  EXPECT_GT(rounds, 10u);
  for (const auto& [pid, signal] : processes->signalled) EXPECT_EQ(pid, rogue) << "signalled " << pid;
}

TEST(HostileInput, ExpiredDeadlinesWrittenOverAnotherProcesssTimerNeverKillIt) {
  TempTable t(16);
  testing::TempPath unused;
  const pid_t innocent = testing::fork_child([&] {
    ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
    client.acquire("innocent", SteadyClock::now() + 1000h);
    std::this_thread::sleep_for(30s);
  });
  std::uint64_t slot = ~0ULL;
  for (int i = 0; i < 5000 && slot == ~0ULL; ++i) {
    for (const auto& row : TableReader(t.table).rows()) slot = row.slot;
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_NE(slot, ~0ULL);
  auto processes = std::make_shared<RecordingProcesses>();
  ServerOptions options;
  options.processes = processes;
  TimerServer server(t.table, options);
  // The rogue knows where the timer is and writes expired deadlines over it; only the
  // check tells them from the owner's. Each forged word is the owner's own word for that
  // deadline (as the writer makes it) with its check bits changed, so none is the owner's,
  // and no forged word is left out by asking verifies(), the function under test.
  auto& target = t.table->slot(slot);
  const std::uint64_t control = target.control.load(), identity = target.identity.load();
  std::mt19937_64 rng(11);
  for (int i = 0; i < 2000; ++i) {
    const std::uint64_t owners =
        layout::ArmWord::make(1000 * (1 + rng() % (monotonic_now_ns() / 1000)), control, identity);
    const std::uint64_t flip = 1 + rng() % layout::ArmWord::kCheckMask;  // 1 .. 2^18-1: some check bit differs
    const std::uint64_t forged = owners ^ flip;
    std::memcpy(reinterpret_cast<unsigned char*>(&target) + offsetof(layout::Slot, armed), &forged, sizeof forged);
    server.run_once();
  }
  EXPECT_TRUE(processes->signalled.empty());
  ::kill(innocent, SIGKILL);
  testing::wait_child(innocent);
}

TEST(HostileInput, AForgedSlotNamingAnotherProcessWithoutItsIdentityIsRefused) {
  TempTable t(16);
  testing::TempPath unused;
  const pid_t victim = testing::fork_child([] { std::this_thread::sleep_for(30s); });
  auto processes = std::make_shared<RecordingProcesses>();
  ServerOptions options;
  options.processes = processes;
  TimerServer server(t.table, options);
  // The rogue writes a Ready slot naming the victim, with a valid deadline check (the
  // function is public) and every start time it might guess but the right one.
  const auto real_start = testing::identity_of(victim);
  for (std::uint64_t guess : {std::uint64_t{0}, real_start - 1, real_start + 1}) {
    auto& slot = t.table->slot(3);
    slot.identity.store(guess);
    slot.scope_len.store(1);
    slot.signal.store(SIGKILL);
    const auto control = layout::Control::pack(layout::SlotState::kReady, 5, victim);
    slot.armed.store(layout::ArmWord::make(1, control, guess));
    slot.control.store(control);
    t.table->bitmap_word(0).fetch_or(1u << 3);
    server.run_once();
  }
  EXPECT_TRUE(processes->signalled.empty());
  ::kill(victim, SIGKILL);
  testing::wait_child(victim);
}

}  // namespace
}  // namespace shmtimer
