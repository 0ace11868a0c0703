// systemd's notify protocol (Type=notify, WatchdogSec=), through libsystemd's sd_notify:
// READY=1 once the first watchdog round is done (the table is served), then WATCHDOG=1
// with a STATUS= line of live counts, sent from the watchdog loop itself. A loop that
// stalls stops the pings, and systemd restarts the daemon. Without NOTIFY_SOCKET (not
// started by systemd) every call does nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "shmtimer/table_reader.hpp"

namespace shmtimerd {

class SystemdNotifier {
 public:
  explicit SystemdNotifier(std::shared_ptr<shmtimer::Table> table);

  // WATCHDOG_USEC, when systemd's watchdog is on for this process.
  std::optional<std::chrono::microseconds> watchdog_timeout() const { return watchdog_; }
  // From the watchdog thread, after every round: READY=1 the first time; then WATCHDOG=1
  // and STATUS= at most every watchdog_timeout / 4 (or every second without a watchdog).
  void after_round();
  void stopping();  // STOPPING=1

 private:
  bool enabled_ = false;
  std::optional<std::chrono::microseconds> watchdog_;
  std::uint64_t ping_interval_ns_ = 1'000'000'000;
  std::uint64_t next_ping_ns_ = 0;
  bool ready_sent_ = false;
  shmtimer::TableReader reader_;
};

}  // namespace shmtimerd
