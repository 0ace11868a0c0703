// shmtimerd's HTTP endpoint (--metrics-address): GET /metrics in the Prometheus text
// exposition format, GET /healthz 200 while watchdog rounds are fresh and 503 when not.
//
// Anyone who can reach the port is a client, so no client may take from the watchdog what
// its kill path needs, or keep the endpoint from answering a probe. Boost.Beast serves it
// on one thread of its own (a slow scraper never delays a round), within hard limits
// (HttpLimits): a bounded number of connections, and so of descriptors; a bounded request
// header and no body, so bounded memory; and a deadline for a whole request, from accept
// to the last byte of the answer, so a client that trickles its request cannot hold a
// place. When every place is taken, the connection that has been reading its request the
// longest makes room for the new one: a real scrape or probe takes a millisecond.
// docs/server.md, "/metrics and /healthz".
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "metrics_page.hpp"

namespace shmtimerd {

struct ListenAddress {
  std::string host;  // an IPv4 address, a bracketed IPv6 address's contents, or a name
  int port = 0;      // 0: any free port
};
// "127.0.0.1:9464", "[::1]:9464", "localhost:0"; nullopt when it is not HOST:PORT.
std::optional<ListenAddress> parse_listen_address(const std::string& text);

struct HttpLimits {
  std::size_t max_connections = 32;     // open at once; the descriptors the endpoint may hold, with the listener
  std::size_t max_header_bytes = 8192;  // a request's whole header
  std::chrono::milliseconds request_deadline{2000};  // accept to the answer's last byte
};

class HttpEndpoint {
 public:
  // Binds at once (throws std::runtime_error naming the address when it cannot), then
  // serves on a thread of its own until destroyed.
  HttpEndpoint(const ListenAddress& address, MetricsPage& page, HttpLimits limits = {});
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  int port() const;  // the bound port (the chosen one for port 0)

 private:
  class Server;
  std::unique_ptr<Server> server_;
};

}  // namespace shmtimerd
