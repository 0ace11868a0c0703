// The metrics endpoint under attack, on loopback against the real daemon: clients that
// hold a thousand idle connections, send a header that never ends, or trickle their
// requests a byte at a time. None of them may delay or stop a kill, exhaust the daemon's
// descriptors or memory, or keep /healthz from answering. Each attack is bounded in count
// and time.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "daemon_support.hpp"
#include "metrics_support.hpp"
#include "shmtimer/shm_timer_client.hpp"

namespace shmtimer {
namespace {

using namespace std::chrono_literals;
using testing::HungWorker;
using testing::LoggedDaemon;
using testing::TempPath;

constexpr auto kSlow = testing::kSanitized ? 4 : 1;  // sanitizer builds run several times slower

int connect_to(int port, bool blocking = false) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK), 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);  // non-blocking: in progress
  return fd;
}

// The daemon's open sockets: the endpoint's listener and connections (the kill path's
// descriptors, pidfds and /proc files, are not sockets).
std::size_t open_sockets(pid_t pid) {
  std::size_t n = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    if (std::filesystem::read_symlink(entry.path(), error).string().rfind("socket:", 0) == 0) ++n;
  return n;
}

std::size_t resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
  return 0;
}

class EndpointUnderAttack : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_.emplace(table_.path(), std::vector<std::string>{"--metrics-address", "127.0.0.1:0"});
    port_ = testing::metrics_port(*daemon_);
    ASSERT_GT(port_, 0);
    ASSERT_TRUE(testing::wait_for_server(table_.path()));
    baseline_sockets_ = open_sockets(daemon_->pid());
    baseline_kib_ = resident_kib(daemon_->pid());
  }
  void TearDown() override {
    EXPECT_TRUE(testing::exited_ok(daemon_->stop())) << daemon_->log();  // it lived through the attack
  }
  // /healthz answers 200 within 2 s.
  ::testing::AssertionResult healthy() {
    int status = 0;
    const std::string body = testing::get(port_, "/healthz", &status, std::chrono::seconds(2 * kSlow));
    if (status == 200) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "/healthz: " << status << " " << body;
  }

  TempPath table_;
  std::optional<LoggedDaemon> daemon_;
  int port_ = -1;
  std::size_t baseline_sockets_ = 0;
  std::size_t baseline_kib_ = 0;
};

TEST_F(EndpointUnderAttack, AThousandIdleConnectionsNeitherTakeTheDaemonsDescriptorsNorDelayAKill) {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0);
  ASSERT_GE(limit.rlim_cur, 1100u) << "the test needs 1000 descriptors of its own";
  HungWorker worker(table_.path());
  std::vector<int> idle;
  for (int i = 0; i < 1000; ++i) idle.push_back(connect_to(port_));
  std::this_thread::sleep_for(300ms);  // let the daemon accept what it will
  const std::size_t held = open_sockets(daemon_->pid());
  EXPECT_TRUE(healthy());
  EXPECT_TRUE(worker.killed_on_time());
  for (const int fd : idle) ::close(fd);
  EXPECT_LE(held, baseline_sockets_ + 32) << "the endpoint holds at most 32 connections besides its listener";
  EXPECT_TRUE(healthy());
}

TEST_F(EndpointUnderAttack, AHeaderThatNeverEndsIsCutOffWithoutTheDaemonGrowing) {
  HungWorker worker(table_.path());
  const int fd = connect_to(port_, true);
  const timeval timeout{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  const std::string start = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
  const std::string line = "X-Filler: " + std::string(8000, 'a') + "\r\n";
  std::size_t sent = 0;
  bool cut_off = ::send(fd, start.data(), start.size(), MSG_NOSIGNAL) < 0;
  const auto until = SteadyClock::now() + 10s;
  while (!cut_off && sent < (64u << 20) && SteadyClock::now() < until) {
    const ssize_t n = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;  // the server stopped reading: try on
    if (n <= 0)
      cut_off = true;
    else
      sent += static_cast<std::size_t>(n);
  }
  ::close(fd);
  EXPECT_TRUE(cut_off) << sent << " bytes of header were taken";
  EXPECT_LT(sent, 16u << 20) << "the header was read far past its limit";
  EXPECT_LT(resident_kib(daemon_->pid()), baseline_kib_ + 16 * 1024) << "the daemon grew with the header";
  EXPECT_TRUE(healthy());
  EXPECT_TRUE(worker.killed_on_time());
}

TEST_F(EndpointUnderAttack, ClientsThatTrickleTheirRequestsNeitherHoldAPlaceNorKeepHealthzFromAnswering) {
  HungWorker worker(table_.path());
  std::vector<int> slow;
  for (int i = 0; i < 64; ++i) slow.push_back(connect_to(port_));
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n";  // never finished
  int probes = 0, answered = 0;
  const auto start = SteadyClock::now();
  for (std::size_t at = 0; SteadyClock::now() - start < 6s; at = (at + 1) % request.size()) {
    for (const int fd : slow) ::send(fd, &request[at], 1, MSG_NOSIGNAL | MSG_DONTWAIT);  // a byte each 0.5 s
    for (int i = 0; i < 2; ++i) {
      ++probes;
      answered += healthy() ? 1 : 0;
      std::this_thread::sleep_for(250ms);
    }
  }
  EXPECT_EQ(answered, probes) << "/healthz missed " << probes - answered << " of " << probes << " probes";
  std::size_t closed = 0;  // by the server: each was over its 2 s deadline long ago
  for (const int fd : slow) {
    char byte;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) == 1 && ::recv(fd, &byte, 1, MSG_DONTWAIT) <= 0) ++closed;
    ::close(fd);
  }
  EXPECT_EQ(closed, slow.size());
  EXPECT_TRUE(worker.killed_on_time());
}

}  // namespace
}  // namespace shmtimer
