// A daemon's metrics endpoint, as the tests reach it: its port from the log, and GETs.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "daemon_support.hpp"

namespace shmtimer::testing {

// The port shmtimerd logged for --metrics-address 127.0.0.1:0; -1 when it did not.
// (No std::regex here: GCC 12 warns inside it under ASan, and -Werror fails.)
inline int metrics_port(LoggedDaemon& daemon) {
  EXPECT_TRUE(daemon.read_until("/metrics and /healthz")) << daemon.log();
  const std::string prefix = "serving metrics on http://127.0.0.1:";
  const std::size_t at = daemon.log().find(prefix);
  return at == std::string::npos ? -1 : std::atoi(daemon.log().c_str() + at + prefix.size());
}

// GET on 127.0.0.1:port; the body, or "no response" when none came within `timeout`.
inline std::string get(int port, const std::string& path, int* status = nullptr,
                       std::chrono::seconds timeout = std::chrono::seconds(10)) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(timeout.count(), 0);
  client.set_read_timeout(timeout.count(), 0);
  client.set_write_timeout(timeout.count(), 0);
  const auto response = client.Get(path.c_str());
  if (!response) return "no response";
  if (status != nullptr) *status = response->status;
  return response->body;
}

}  // namespace shmtimer::testing
