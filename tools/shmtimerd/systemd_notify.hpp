// systemd's notify protocol (Type=notify, WatchdogSec=), through libsystemd's sd_notify:
// READY=1 once the first watchdog round is done (the table is served), then WATCHDOG=1
// with a STATUS= line of counts, sent from the watchdog loop itself. A loop that
// stalls stops the pings, and systemd restarts the daemon. Without NOTIFY_SOCKET (not
// started by systemd) every call does nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "shmtimer/table.hpp"
#include "shmtimer/timer_server.hpp"

namespace shmtimerd {

class SystemdNotifier {
 public:
  explicit SystemdNotifier(std::shared_ptr<shmtimer::Table> table);

  // WATCHDOG_USEC, when systemd's watchdog is on for this process.
  std::optional<std::chrono::microseconds> watchdog_timeout() const { return watchdog_; }
  // From the watchdog thread, after every round: READY=1 the first time; then WATCHDOG=1
  // and STATUS= at most every kPingFraction of the timeout (every second without a
  // watchdog). Reads only header words: no system call but the send, nothing that throws.
  void after_round(const shmtimer::RoundResult& round);
  void stopping();  // STOPPING=1

  // The daemon also caps its sleep at this fraction of the timeout, so two pings are at
  // most two fractions plus one round apart: a quarter of the timeout, against systemd's
  // half (the largest gap the protocol allows is WATCHDOG_USEC / 2, by convention).
  static constexpr int kPingFraction = 8;

 private:
  bool enabled_ = false;
  std::optional<std::chrono::microseconds> watchdog_;
  std::uint64_t ping_interval_ns_ = 1'000'000'000;
  std::uint64_t next_ping_ns_ = 0;
  bool ready_sent_ = false;
  std::shared_ptr<shmtimer::Table> table_;
  std::uint64_t expired_ = 0;  // expired timers seen by rounds so far
};

}  // namespace shmtimerd
