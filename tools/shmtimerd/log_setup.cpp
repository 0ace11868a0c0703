#include "log_setup.hpp"

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "json_log_sink.hpp"

namespace shmtimerd {

namespace {
// Lines queued at most: about 2 MiB of log at 256 bytes a line, minutes of a busy server's
// info lines. A burst of kills logs a few lines each.
constexpr std::size_t kQueuedLines = 8192;
}  // namespace

Loggers setup_logging(const std::string& format, const std::string& level) {
  // One log thread: lines are written in the order they were queued, whichever logger.
  spdlog::init_thread_pool(kQueuedLines, 1);
  spdlog::sink_ptr sink;
  if (format == "json")
    sink = std::make_shared<JsonLogSink>();
  else
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  const auto make = [&](const char* name) {
    auto logger = std::make_shared<spdlog::async_logger>(name, sink, spdlog::thread_pool(),
                                                         spdlog::async_overflow_policy::overrun_oldest);
    logger->set_level(spdlog::level::from_str(level));
    logger->flush_on(spdlog::level::trace);  // each line as it is written: a crash loses none
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
  const auto pool = spdlog::thread_pool();
  if (!pool) return true;
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (pool->queue_size() > 0) {
    if (std::chrono::steady_clock::now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace shmtimerd
