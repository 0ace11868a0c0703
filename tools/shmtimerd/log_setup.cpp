#include "log_setup.hpp"

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

#include "json_log_sink.hpp"

namespace shmtimerd {

namespace {
// Lines queued at most: about 2 MiB of log at 256 bytes a line, minutes of a busy server's
// info lines. A burst of kills logs a few lines each.
constexpr std::size_t kQueuedLines = 8192;

// The sink the loggers write to, counting the flushes the log thread has done: a flush
// queued behind a line is done once the line is written (drain_logs).
class TrackedSink final : public spdlog::sinks::sink {
 public:
  explicit TrackedSink(spdlog::sink_ptr inner) : inner_(std::move(inner)) {}
  void log(const spdlog::details::log_msg& msg) override { inner_->log(msg); }
  void flush() override {
    inner_->flush();
    // Release: drain_logs's acquire load sees the lines written before the flush.
    flushes_.fetch_add(1, std::memory_order_release);
  }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    inner_->set_formatter(std::move(formatter));
  }
  std::uint64_t flushes() const { return flushes_.load(std::memory_order_acquire); }

 private:
  spdlog::sink_ptr inner_;
  std::atomic<std::uint64_t> flushes_{0};
};

std::shared_ptr<TrackedSink> g_sink;  // set once, before any thread logs
}  // namespace

Loggers setup_logging(const std::string& format, const std::string& level) {
  // One log thread: lines are written in the order they were queued, whichever logger.
  spdlog::init_thread_pool(kQueuedLines, 1);
  // Both sinks write each line to stderr, which is unbuffered: no flush per line is asked
  // for (one would take a place in the queue for every line).
  spdlog::sink_ptr inner;
  if (format == "json")
    inner = std::make_shared<JsonLogSink>();
  else
    inner = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto sink = g_sink = std::make_shared<TrackedSink>(std::move(inner));
  const auto make = [&](const char* name) {
    auto logger = std::make_shared<spdlog::async_logger>(name, sink, spdlog::thread_pool(),
                                                         spdlog::async_overflow_policy::overrun_oldest);
    logger->set_level(spdlog::level::from_str(level));
    return logger;
  };
  spdlog::set_default_logger(make("shmtimerd"));
  Loggers loggers;
  if (format == "json") loggers.json_events = make(JsonLogSink::kEventLogger);
  return loggers;
}

std::uint64_t log_lines_dropped() {
  const auto pool = spdlog::thread_pool();
  return pool ? pool->overrun_counter() : 0;
}

bool drain_logs(std::chrono::milliseconds limit) {
  if (!g_sink) return true;
  const std::uint64_t before = g_sink->flushes();
  spdlog::default_logger()->flush();  // queued behind every line logged so far
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (g_sink->flushes() == before) {
    if (std::chrono::steady_clock::now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace shmtimerd
