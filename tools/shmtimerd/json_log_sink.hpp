// An spdlog sink that writes one JSON object per line, so log shippers need no parsing
// rules: {"ts": ..., "level": "info", "msg": "..."}. Events add their own fields to the
// object, so a shipper can filter on "event" or "pid" directly: the logger kEventLogger's
// lines are JSON objects of those fields, merged in here, on the log thread.
#pragma once

#include <spdlog/details/log_msg.h>
#include <spdlog/sinks/base_sink.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace shmtimerd {

class JsonLogSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  static constexpr const char* kEventLogger = "shmtimerd-events";

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string payload(msg.payload.data(), msg.payload.size());
    if (msg.logger_name == kEventLogger) {
      nlohmann::json fields = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
      if (fields.is_object()) return write_line(msg.time, msg.level, std::move(fields));
    }
    write_line(msg.time, msg.level, {{"msg", payload}});
  }
  void flush_() override { std::fflush(stderr); }

 private:
  static void write_line(spdlog::log_clock::time_point time, spdlog::level::level_enum level, nlohmann::json fields) {
    const auto level_name = spdlog::level::to_string_view(level);
    nlohmann::json line{{"ts", std::chrono::duration<double>(time.time_since_epoch()).count()},
                        {"level", std::string(level_name.data(), level_name.size())}};
    line.update(fields);
    const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::fwrite(text.data(), 1, text.size(), stderr);
  }
};

}  // namespace shmtimerd
