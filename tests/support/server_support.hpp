// Helpers for the tests of the watchdog: recorded events, a scripted ProcessControl,
// timers planted for arbitrary processes, and hung child processes.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "process_control.hpp"
#include "process_liveness.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "shmtimer/timer_server.hpp"
#include "slot_ops.hpp"
#include "test_support.hpp"

namespace shmtimer::testing {

using namespace std::chrono_literals;
inline constexpr std::uint64_t kSecond = 1'000'000'000;
inline constexpr std::uint64_t kMs = 1'000'000;
inline constexpr std::uint64_t kMicro = 1000;  // deadlines are kept in whole microseconds, rounded up

struct Events {
  std::mutex mutex;
  std::vector<std::pair<std::string, TimerEvent>> seen;
  EventCallback callback() {
    return [this](std::string_view name, const TimerEvent* e) {
      std::lock_guard lock(mutex);
      seen.emplace_back(std::string(name), e ? *e : TimerEvent{});
    };
  }
  std::vector<std::string> names() {
    std::lock_guard lock(mutex);
    std::vector<std::string> out;
    for (auto& [n, e] : seen) out.push_back(n);
    return out;
  }
  int count(const std::string& name) {
    auto n = names();
    return static_cast<int>(std::count(n.begin(), n.end(), name));
  }
};

// A ProcessControl whose processes and answers the test decides.
struct FakeProcesses final : ProcessControl {
  std::map<pid_t, ProcessInfo> alive;
  std::function<void(const SignalRequest&)> on_send;  // runs inside send(), e.g. to act as the target
  std::deque<SignalOutcome> scripted;
  std::vector<std::tuple<pid_t, int, std::optional<uid_t>>> sends;
  std::vector<SignalRequest> requests;  // every send(), whole
  std::vector<SignalRequest> prepared;  // every prepare() call
  int drops = 0;                        // drop_unprepared() calls
  std::uint64_t issued_ns = 0;          // what last_signal_ns() answers
  std::function<void()> on_prepare;     // runs inside prepare(), e.g. to take time
  std::uint64_t last_signal_ns() const override { return issued_ns; }
  void prepare(const SignalRequest& request) override {
    prepared.push_back(request);
    if (on_prepare) on_prepare();
  }
  void drop_unprepared() override { ++drops; }
  Probe running(pid_t pid, std::optional<std::uint64_t> identity) override {
    auto it = alive.find(pid);
    return answer(it != alive.end() && (!identity || it->second.identity == *identity));
  }
  SignalOutcome send(const SignalRequest& request, int& error) override {
    const pid_t pid = request.pid;
    sends.emplace_back(pid, request.signal, request.required_uid);
    requests.push_back(request);
    if (on_send) on_send(request);
    error = EPERM;
    if (!scripted.empty()) {
      auto outcome = scripted.front();
      scripted.pop_front();
      return outcome;
    }
    return alive.count(pid) ? SignalOutcome::kSent : SignalOutcome::kNoProcess;
  }
};

// Writes a timer for an arbitrary (pid, identity) straight into the table, as a client
// of that process would (or, with Origin::kFifo, as the FIFO shim arms for a sender).
inline std::uint64_t plant(Table& table, pid_t pid, std::string_view scope, std::uint64_t deadline_ns, int signal,
                           std::uint64_t identity = 77, layout::Origin origin = layout::Origin::kTable) {
  const detail::ScopeKey key(scope);
  const auto claimed = detail::insert_slot(table, {pid, identity, signal, origin}, key);
  EXPECT_TRUE(claimed.ok());
  EXPECT_TRUE(detail::arm_slot(table.slot(claimed.index), {claimed.control, identity}, deadline_ns, signal));
  return claimed.index;
}

inline std::vector<TimerRow> rows_of(const std::shared_ptr<Table>& table, pid_t pid) {
  std::vector<TimerRow> out;
  for (auto& row : TableReader(table).rows(true))
    if (row.pid == pid && row.state != RowState::kFree) out.push_back(row);
  return out;
}

// A pipe the child writes one byte to when its timers are set.
struct Ready {
  int fds[2];
  Ready() { EXPECT_EQ(::pipe(fds), 0); }
  ~Ready() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  void signal() {
    char c = 1;
    EXPECT_EQ(::write(fds[1], &c, 1), 1);
  }
  // Fails (rather than hangs) when the child died before it signalled.
  void wait() {
    pollfd p{fds[0], POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 30'000), 1) << "the child never signalled";
    char c;
    EXPECT_EQ(::read(fds[0], &c, 1), 1);
  }
};

// A child that arms `scope` to expire after `timeout`, reports that it did, and hangs.
inline pid_t fork_hung_worker(const std::shared_ptr<Table>& table, const char* scope,
                              std::chrono::milliseconds timeout) {
  Ready ready;
  const pid_t pid = fork_child([&] {
    ShmTimerClient client(table, SIGKILL, kArmWithoutServer);
    client.acquire(scope, SteadyClock::now() + timeout);
    ready.signal();
    std::this_thread::sleep_for(20s);
  });
  ready.wait();
  return pid;
}

// fork_hung_worker's child, forked now and set going by go(): for tests that start a
// server's threads after it (see HeldChild).
inline std::unique_ptr<HeldChild> held_hung_worker(const std::shared_ptr<Table>& table, const char* scope,
                                                   std::chrono::milliseconds timeout) {
  return std::make_unique<HeldChild>([table, scope, timeout] {
    ShmTimerClient client(table, SIGKILL, kArmWithoutServer);
    client.acquire(scope, SteadyClock::now() + timeout);
    std::this_thread::sleep_for(20s);
  });
}

// LinuxProcessControl::inspect for a process the test expects to run.
inline std::optional<ProcessInfo> inspect(LinuxProcessControl& processes, pid_t pid) {
  ProcessInfo info;
  if (!processes.inspect(pid, std::nullopt, info).running()) return std::nullopt;
  return info;
}

inline ServerOptions fake_options(const std::shared_ptr<FakeProcesses>& fake, Events* events = nullptr) {
  ServerOptions options;
  options.processes = fake;
  if (events) options.log_event = events->callback();
  return options;
}

}  // namespace shmtimer::testing
