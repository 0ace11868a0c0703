#include "metrics_page.hpp"

#include <algorithm>
#include <optional>

#include "format.hpp"
#include "log_setup.hpp"
#include "process_metrics.hpp"
#include "shmtimer/clock.hpp"
#include "shmtimer/error.hpp"

namespace shmtimerd {

namespace {

using timer_dump::ExpositionWriter;

// One counter family with a sample per reason.
template <std::size_t N>
void labelled_counter(ExpositionWriter& out, const char* name, const char* help,
                      const std::array<std::atomic<std::uint64_t>, N>& counters, const char* (*label)(std::size_t)) {
  out.family(name, "counter", help);
  for (std::size_t i = 0; i < N; ++i)
    out.sample(name, std::to_string(counters[i].load(std::memory_order_relaxed)),
               std::string("reason=\"") + label(i) + '"');
}

const char* server_refusal(std::size_t i) { return shmtimer::refusal_label(static_cast<shmtimer::Refusal>(i)); }
const char* fifo_refusal(std::size_t i) { return shmtimer::refusal_label(static_cast<shmtimer::FifoRefusal>(i)); }
const char* parse_error(std::size_t i) {
  return shmtimer::fifo::reason_label(static_cast<shmtimer::fifo::ParseErrorReason>(i));
}

void server_metrics(ExpositionWriter& out, const shmtimer::ServerStats& stats) {
  labelled_counter(out, "shmtimer_signals_refused_total",
                   "Expired timers whose owner was not signalled, by reason (see docs/security.md).",
                   stats.signals_refused, server_refusal);
  out.histogram("shmtimer_kill_lateness_seconds", "From a timer's deadline to its owner's signal being sent.",
                stats.kill_lateness.counts());
  out.counter("shmtimer_incidents_total",
              "Incident reports started (stacks captured before a kill; docs/diagnosis.md).",
              ExpositionWriter::number(static_cast<double>(stats.incidents.load(std::memory_order_relaxed))));
  out.counter("shmtimer_capture_failures_total",
              "Stack captures that failed or overran their bound, and incident reports that could not be made.",
              ExpositionWriter::number(static_cast<double>(stats.capture_failures.load(std::memory_order_relaxed))));
  out.histogram("shmtimer_round_duration_seconds", "One watchdog round: drain the FIFO, scan, reap.",
                stats.round_duration.counts());
  out.gauge("shmtimer_watchdog_realtime_priority",
            "The watchdog thread's SCHED_FIFO priority; 0 when it runs at a normal one (--realtime-priority).",
            std::to_string(stats.realtime_priority.load(std::memory_order_relaxed)));
  const shmtimer::FileChange found = stats.table_file_change.load(std::memory_order_relaxed);
  out.family("shmtimer_table_file_changed", "gauge",
             "1 when the served table's file was deleted, resized or replaced (the server then stops).");
  for (std::size_t i = 1; i < shmtimer::kFileChanges; ++i) {
    const auto change = static_cast<shmtimer::FileChange>(i);
    out.sample("shmtimer_table_file_changed", found == change ? "1" : "0",
               std::string("change=\"") + shmtimer::to_string(change) + '"');
  }
}

void fifo_metrics(ExpositionWriter& out, const shmtimer::FifoStats& stats) {
  labelled_counter(out, "shmtimer_fifo_parse_errors_total", "FIFO lines that were not a valid request, by reason.",
                   stats.malformed, parse_error);
  labelled_counter(out, "shmtimer_fifo_refused_total",
                   "FIFO requests refused at receipt (they take no slot), by reason.", stats.refused, fifo_refusal);
  out.counter("shmtimer_fifo_recovered_total", "Requests saved from the tail of a malformed FIFO line.",
              std::to_string(stats.recovered.load(std::memory_order_relaxed)));
}

}  // namespace

MetricsPage::MetricsPage(const shmtimer::TimerServer& server, const shmtimer::FifoShim* fifo)
    : server_(server), fifo_(fifo), reader_(server.table()) {}

void MetricsPage::never_decrease(shmtimer::TableCounters& c) {
  for (auto [now, before] :
       {std::pair{&c.acquires, &reported_.acquires}, std::pair{&c.releases, &reported_.releases},
        std::pair{&c.reaps, &reported_.reaps}, std::pair{&c.full_failures, &reported_.full_failures},
        std::pair{&c.fifo_requests, &reported_.fifo_requests}, std::pair{&c.failed_kills, &reported_.failed_kills}}) {
    *now = std::max(*now, *before);
    *before = *now;
  }
  for (std::size_t reason = 0; reason < c.liveness_unknown.size(); ++reason) {
    c.liveness_unknown[reason] = std::max(c.liveness_unknown[reason], reported_.liveness_unknown[reason]);
    reported_.liveness_unknown[reason] = c.liveness_unknown[reason];
  }
}

std::string MetricsPage::render() {
  const std::lock_guard lock(mutex_);
  // A table that lost pages cannot be read, but the server's own metrics (among them what
  // became of the table's file) are what a scrape then needs most.
  std::optional<timer_dump::Snapshot> snapshot;
  try {
    snapshot = timer_dump::take_snapshot(reader_, {});
  } catch (const shmtimer::Error&) {
  }
  ExpositionWriter out(server_.table()->path().string());
  if (snapshot) {
    never_decrease(snapshot->header.counters);
    timer_dump::write_table_metrics(out, *snapshot);
  }
  server_metrics(out, server_.stats());
  if (fifo_ != nullptr) fifo_metrics(out, fifo_->stats());
  write_process_metrics(out, SHMTIMER_VERSION);
  out.counter("shmtimer_log_lines_dropped_total",
              "Log lines dropped because the log's sink did not drain (the watchdog never waits on it).",
              std::to_string(log_lines_dropped()));
  return out.take();
}

MetricsPage::Health MetricsPage::health() const {
  const std::uint64_t last = server_.stats().last_round_end_ns.load(std::memory_order_relaxed);
  const shmtimer::FileChange change = server_.stats().table_file_change.load(std::memory_order_relaxed);
  if (change != shmtimer::FileChange::kNone) return {false, -1, shmtimer::to_string(change)};
  if (last == 0) return {};
  const std::uint64_t now = server_.options().clock->now_ns();
  const std::uint64_t age = now > last ? now - last : 0;
  const auto allowed = static_cast<std::uint64_t>(server_.options().policy.max_interval.count()) + 1'000'000'000;
  return {age <= allowed, static_cast<double>(age) / 1e9, nullptr};
}

}  // namespace shmtimerd
