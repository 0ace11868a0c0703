// timer-dump against a table that threads and processes keep writing: every document it
// prints parses, and no row combines fields of two keys. Writers arm deadlines that end
// in their scope's number (as in concurrency_test.cpp), so a torn (scope, deadline) pair
// or a row with another process's pid is visible.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "shmtimer/shm_timer_client.hpp"
#include "test_support.hpp"

namespace shmtimer {
namespace {

using shmtimer::testing::kArmWithoutServer;

using testing::TempTable;

constexpr int kScopes = 12;
constexpr int kProcesses = 2;
constexpr int kThreads = 2;
constexpr int kDumps = 20;

// A deadline that names its scope: its whole microseconds modulo 1000 are the scope
// number (deadlines are stored in whole microseconds).
std::uint64_t tagged_deadline(int scope, std::uint64_t counter) {
  return ((counter + 1) * 1000 + static_cast<std::uint64_t>(scope)) * 1000;
}

// "p1-7": process writer 1, scope 7 (padded so scopes span several cache lines).
std::string scope_name(char kind, int writer, int scope) {
  return std::string(1, kind) + std::to_string(writer) + "-" + std::to_string(scope) + "-" +
         std::string(static_cast<std::size_t>(scope * 13), '.');
}

// Process writers claim, arm, disarm and give back slots, so slots change keys under
// the reader (forget frees the slot; the next acquire claims one, often another).
void process_writer(const std::shared_ptr<Table>& table, int writer, const std::atomic<int>& stop) {
  ShmTimerClient client(table, SIGKILL, kArmWithoutServer);
  std::mt19937 rng(static_cast<unsigned>(writer));
  for (std::uint64_t op = 0; stop.load(std::memory_order_relaxed) == 0; ++op) {
    const int s = static_cast<int>(rng() % kScopes);
    const std::string scope = scope_name('p', writer, s);
    switch (rng() % 3) {
      case 0: client.acquire(scope, from_table_ns(tagged_deadline(s, op))); break;
      case 1: client.release(scope); break;
      default: client.forget(scope); break;
    }
  }
}

// Thread writers use bound Timer handles (the hot path) and the scope API.
void thread_writer(ShmTimerClient& client, int writer, const std::atomic<bool>& stop) {
  std::mt19937 rng(static_cast<unsigned>(100 + writer));
  std::vector<Timer> timers;
  for (int s = 0; s < kScopes; ++s) timers.push_back(client.timer(scope_name('t', writer, s)));
  for (std::uint64_t op = 0; !stop.load(std::memory_order_relaxed); ++op) {
    const int s = static_cast<int>(rng() % kScopes);
    switch (rng() % 4) {
      case 0: timers[s].arm(from_table_ns(tagged_deadline(s, op))); break;
      case 1: timers[s].disarm(); break;
      case 2: client.acquire(timers[s].scope(), from_table_ns(tagged_deadline(s, op))); break;
      default: client.release(timers[s].scope()); break;
    }
  }
}

std::string run_dump(const std::string& args) {
  const std::string command = std::string(TIMER_DUMP_PATH) + " " + args;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe)) out += buf.data();
  EXPECT_EQ(::pclose(pipe), 0);
  return out;
}

struct RowCheck {
  int armed = 0;
  int idle = 0;
  std::vector<std::string> problems;
};

// Checks one row against what its writer could have written.
void check_row(const nlohmann::json& row, const std::vector<pid_t>& process_pids, RowCheck& check) {
  const std::string state = row["state"];
  if (state != "armed" && state != "idle") return;  // claiming rows carry no key yet
  const std::string scope = row["scope"];
  const char kind = scope.empty() ? '?' : scope[0];
  const int writer = kind == '?' ? -1 : std::atoi(scope.c_str() + 1);
  const int s = std::atoi(scope.c_str() + scope.find('-') + 1);
  const pid_t expected_pid = kind == 'p' && writer >= 0 && writer < kProcesses ? process_pids[writer] : ::getpid();
  if ((kind != 'p' && kind != 't') || scope != scope_name(kind, writer, s) || row["pid"] != expected_pid)
    check.problems.push_back("foreign key: " + row.dump());
  if (state == "idle") {
    ++check.idle;
    return;
  }
  ++check.armed;
  if (row["deadline_mono_ns"].get<std::uint64_t>() / 1000 % 1000 != static_cast<std::uint64_t>(s))
    check.problems.push_back("torn deadline: " + row.dump());
}

TEST(TimerDumpStress, DumpsOfATableBeingWrittenNeverShowATornRow) {
  TempTable t(2048);
  auto* stop_processes = static_cast<std::atomic<int>*>(
      ::mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(stop_processes, MAP_FAILED);
  new (stop_processes) std::atomic<int>(0);
  // Fork before starting threads, so that no child inherits a thread-held lock.
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcesses; ++p)
    pids.push_back(testing::fork_child([&, p] { process_writer(t.table, p, *stop_processes); }));
  ShmTimerClient client(t.table, SIGKILL, kArmWithoutServer);
  std::atomic<bool> stop_threads{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < kThreads; ++w) threads.emplace_back([&, w] { thread_writer(client, w, stop_threads); });

  RowCheck check;
  int documents = 0;
  for (int i = 0; i < kDumps; ++i) {
    const std::string out = run_dump("--table " + t.file.path().string() + " --json --all");
    nlohmann::json doc;
    ASSERT_NO_THROW(doc = nlohmann::json::parse(out)) << out;
    ++documents;
    for (const auto& row : doc["timers"]) check_row(row, pids, check);
    // The text form of the same table must come out whole too.
    EXPECT_NE(run_dump("--table " + t.file.path().string() + " --all").find("\nSTATE "), std::string::npos);
  }

  stop_threads.store(true);
  for (auto& th : threads) th.join();
  stop_processes->store(1);
  for (pid_t pid : pids) EXPECT_TRUE(testing::exited_ok(testing::wait_child(pid)));
  ::munmap(stop_processes, sizeof(std::atomic<int>));

  EXPECT_EQ(documents, kDumps);
  EXPECT_TRUE(check.problems.empty()) << check.problems.size() << " bad rows, first: " << check.problems.front();
  EXPECT_GT(check.armed, 0);  // the check looked at something
  EXPECT_GT(check.idle, 0);
}

}  // namespace
}  // namespace shmtimer
