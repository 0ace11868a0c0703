// What shmtimerd serves at /metrics and /healthz: the table's metrics, as
// `timer-dump --prometheus` writes them, then the server's own (signals refused by
// reason, kill lateness, round durations, FIFO parse errors and refusals by reason).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "shmtimer/fifo_shim.hpp"
#include "shmtimer/table_reader.hpp"
#include "shmtimer/timer_server.hpp"

namespace shmtimerd {

class MetricsPage {
 public:
  // `fifo` may be null (no FIFO served). Both must outlive the page.
  MetricsPage(const shmtimer::TimerServer& server, const shmtimer::FifoShim* fifo);

  std::string render();  // thread-safe

  // Healthy when rounds are fresh, the last one having ended at most a sleep plus one
  // second ago (a watchdog thread that is stuck, or a server that never started a round,
  // is not), and the table's file is still the one served.
  struct Health {
    bool fresh = false;
    double last_round_age_s = -1;             // -1: no round yet
    const char* table_file_change = nullptr;  // "deleted", ...: the table is no longer reachable
  };
  Health health() const;

 private:
  // The table's counters are a sum over the header and the live slots, read one at a
  // time: a slot freed during the read can be counted twice or not at all, and a sum may
  // dip below the one before. Prometheus reads a dip as a counter reset, so the page
  // never reports a counter below what it reported before.
  void never_decrease(shmtimer::TableCounters& counters);

  const shmtimer::TimerServer& server_;
  const shmtimer::FifoShim* fifo_;
  shmtimer::TableReader reader_;
  std::mutex mutex_;  // the HTTP server may render on several threads at once
  shmtimer::TableCounters reported_;
};

}  // namespace shmtimerd
