#include "systemd_notify.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>

#include "shmtimer/clock.hpp"
#include "shmtimer/printable.hpp"

namespace shmtimerd {

SystemdNotifier::SystemdNotifier(std::shared_ptr<shmtimer::Table> table) : table_(std::move(table)) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  std::uint64_t usec = 0;
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec);
    ping_interval_ns_ = usec * 1000 / kPingFraction;
  }
}

void SystemdNotifier::after_round(const shmtimer::RoundResult& round) {
  if (!enabled_) return;
  expired_ += round.expired;
  const std::uint64_t now = shmtimer::monotonic_now_ns();
  if (!ready_sent_) {
    sd_notify(0, "READY=1");
    ready_sent_ = true;
  } else if (now < next_ping_ns_) {
    return;
  }
  next_ping_ns_ = now + ping_interval_ns_;
  // Relaxed: statistics, each word on its own.
  const auto& h = table_->header();
  const std::string message =
      fmt::format("{}STATUS=serving {} ({} slots): {} expired timers seen, {} reaps, {} failed kills",
                  watchdog_ ? "WATCHDOG=1\n" : "", shmtimer::printable(table_->path().string()), table_->capacity(),
                  expired_, h.reaps.load(std::memory_order_relaxed), h.failed_kills.load(std::memory_order_relaxed));
  if (sd_notify(0, message.c_str()) < 0) spdlog::debug("sd_notify failed");
}

void SystemdNotifier::stopping() {
  if (enabled_) sd_notify(0, "STOPPING=1");
}

}  // namespace shmtimerd
