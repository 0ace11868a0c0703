#include "http_endpoint.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <charconv>
#include <chrono>
#include <stdexcept>

#include "shmtimer/printable.hpp"

namespace shmtimerd {

std::optional<ListenAddress> parse_listen_address(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return std::nullopt;
  std::string host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return std::nullopt;  // an IPv6 address needs its brackets
  }
  int port = -1;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data() + colon + 1, end, port);
  if (ec != std::errc() || ptr != end || port < 0 || port > 65535) return std::nullopt;
  return ListenAddress{host, port};
}

HttpEndpoint::HttpEndpoint(const ListenAddress& address, MetricsPage& page)
    : server_(std::make_unique<httplib::Server>()) {
  // SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, with which a second
  // daemon on the same port would bind too and answer every other scrape.
  server_->set_socket_options([](int socket) {
    const int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Scrapers and probes send small GETs: no body is read, idle connections are closed
  // soon, so a few clients that connect and wait cannot take every worker thread (and
  // with them /healthz) for long.
  server_->set_payload_max_length(1024);
  server_->set_keep_alive_max_count(10);
  server_->set_keep_alive_timeout(1);
  server_->set_read_timeout(2, 0);
  server_->set_write_timeout(2, 0);
  // A handler that throws (the table truncated under the page, say) answers a plain
  // 500: cpp-httplib's default would put the exception's text in a response header.
  server_->set_exception_handler([](const httplib::Request&, httplib::Response& response, std::exception_ptr error) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      spdlog::error("serving an HTTP request failed: {}", shmtimer::printable(e.what()));
    } catch (...) {
      spdlog::error("serving an HTTP request failed");
    }
    response.status = 500;
    response.set_content("internal error; see shmtimerd's log\n", "text/plain; charset=utf-8");
  });
  server_->Get("/metrics", [&page](const httplib::Request&, httplib::Response& response) {
    response.set_content(page.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/healthz", [&page](const httplib::Request&, httplib::Response& response) {
    const auto health = page.health();
    response.status = health.fresh ? 200 : 503;
    response.set_content(health.table_file_change != nullptr
                             ? fmt::format("table file {}: new workers cannot reach this server\n",
                                           health.table_file_change)
                         : health.last_round_age_s < 0
                             ? std::string("stalled: no watchdog round yet\n")
                             : fmt::format("{}: last watchdog round {:.3f} s ago\n", health.fresh ? "ok" : "stalled",
                                           health.last_round_age_s),
                         "text/plain; charset=utf-8");
  });
  port_ = address.port == 0 ? server_->bind_to_any_port(address.host)
                            : (server_->bind_to_port(address.host, address.port) ? address.port : -1);
  if (port_ <= 0)
    throw std::runtime_error(fmt::format("cannot listen on {}:{} for metrics (in use, or not an address of this host)",
                                         address.host, address.port));
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listening_ended_.store(true, std::memory_order_release);  // pairs with the wait below
  });
  // stop() is a no-op until the server runs: wait for it, so that destruction never hangs.
  while (!server_->is_running() && !listening_ended_.load(std::memory_order_acquire))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (listening_ended_.load(std::memory_order_acquire)) {
    thread_.join();
    throw std::runtime_error(fmt::format("the metrics listener on {}:{} stopped at once", address.host, port_));
  }
}

HttpEndpoint::~HttpEndpoint() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace shmtimerd
