// shmtimerd's HTTP endpoint (--metrics-address): GET /metrics in the Prometheus text
// exposition format, GET /healthz 200 while watchdog rounds are fresh and 503 when not.
// cpp-httplib does the HTTP, on its own threads: a slow scraper never delays a round.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "metrics_page.hpp"

namespace httplib {
class Server;
}

namespace shmtimerd {

struct ListenAddress {
  std::string host;  // an IPv4 address, a bracketed IPv6 address's contents, or a name
  int port = 0;      // 0: any free port
};
// "127.0.0.1:9464", "[::1]:9464", "localhost:0"; nullopt when it is not HOST:PORT.
std::optional<ListenAddress> parse_listen_address(const std::string& text);

class HttpEndpoint {
 public:
  // Binds at once (throws std::runtime_error naming the address when it cannot), then
  // serves on a thread of its own until destroyed.
  HttpEndpoint(const ListenAddress& address, MetricsPage& page);
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  int port() const { return port_; }  // the bound port (the chosen one for port 0)

 private:
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::atomic<bool> listening_ended_{false};
  std::thread thread_;
};

}  // namespace shmtimerd
