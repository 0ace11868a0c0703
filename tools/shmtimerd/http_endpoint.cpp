#include "http_endpoint.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <limits>
#include <list>
#include <stdexcept>
#include <thread>

#include "shmtimer/printable.hpp"

namespace shmtimerd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

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

namespace {

using Response = http::response<http::string_body>;

Response plain(unsigned status, std::string body, const char* content_type = "text/plain; charset=utf-8") {
  Response response{static_cast<http::status>(status), 11};
  response.set(http::field::content_type, content_type);
  response.keep_alive(false);  // one request per connection: a place is never held idle
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

std::string health_text(const MetricsPage::Health& health) {
  if (health.table_file_change != nullptr)
    return fmt::format("table file {}: new workers cannot reach this server\n", health.table_file_change);
  if (health.last_round_age_s < 0) return "stalled: no watchdog round yet\n";
  return fmt::format("{}: last watchdog round {:.3f} s ago\n", health.fresh ? "ok" : "stalled",
                     health.last_round_age_s);
}

// The answer to one request. A page that throws (the table truncated under it, say) is a
// plain 500 and a log line, never the exception's text in the answer.
Response answer(const http::request<http::empty_body>& request, MetricsPage& page) {
  if (request.method() != http::verb::get) return plain(405, "only GET\n");
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  try {
    if (path == "/metrics") return plain(200, page.render(), "text/plain; version=0.0.4; charset=utf-8");
    if (path == "/healthz") {
      const auto health = page.health();
      return plain(health.fresh ? 200 : 503, health_text(health));
    }
  } catch (const std::exception& e) {
    spdlog::error("serving an HTTP request failed: {}", shmtimer::printable(e.what()));
    return plain(500, "internal error; see shmtimerd's log\n");
  }
  return plain(404, "");
}

}  // namespace

// The io_context, its thread, the listener and the open connections. Everything but the
// constructor and the destructor runs on the one thread, so nothing here is shared.
class HttpEndpoint::Server {
 public:
  Server(const ListenAddress& address, MetricsPage& page, HttpLimits limits)
      : page_(page), limits_(limits), acceptor_(io_), backoff_(io_) {
    try {
      tcp::resolver resolver(io_);
      const tcp::endpoint endpoint = *resolver.resolve(address.host, std::to_string(address.port)).begin();
      acceptor_.open(endpoint.protocol());
      // SO_REUSEADDR only, never SO_REUSEPORT: a second daemon on the same port must fail
      // to bind, not answer every other scrape.
      acceptor_.set_option(tcp::acceptor::reuse_address(true));
      acceptor_.bind(endpoint);
      // A long queue in the kernel, which costs the daemon nothing: connections waiting
      // there are taken (or make room) at once, and a probe's is never dropped for a full
      // queue and left to the client's SYN retries, a second and more.
      acceptor_.listen(asio::socket_base::max_listen_connections);
    } catch (const std::exception&) {
      throw std::runtime_error(fmt::format(
          "cannot listen on {}:{} for metrics (in use, or not an address of this host)", address.host, address.port));
    }
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Server() {
    io_.stop();
    thread_.join();
  }

  int port() const { return acceptor_.local_endpoint().port(); }

 private:
  class Connection;
  using Connections = std::list<std::shared_ptr<Connection>>;

  void accept() {
    acceptor_.async_accept([this](beast::error_code error, tcp::socket socket) {
      if (error == asio::error::operation_aborted) return;
      if (error) {
        // Out of descriptors, say: try again a little later, so the loop never spins.
        backoff_.expires_after(std::chrono::milliseconds(50));
        backoff_.async_wait([this](beast::error_code waited) {
          if (!waited) accept();
        });
        return;
      }
      admit(std::move(socket));
      accept();
    });
  }
  void admit(tcp::socket socket);
  void forget(Connections::iterator place) { connections_.erase(place); }

  MetricsPage& page_;
  const HttpLimits limits_;
  asio::io_context io_;  // first: the sockets below are destroyed before it
  tcp::acceptor acceptor_;
  asio::steady_timer backoff_;
  Connections connections_;  // oldest first
  std::thread thread_;
};

class HttpEndpoint::Server::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, Server& server)
      : server_(server), stream_(std::move(socket)), buffer_(server.limits_.max_header_bytes) {}

  void start(Connections::iterator place) {
    place_ = place;
    parser_.header_limit(static_cast<std::uint32_t>(server_.limits_.max_header_bytes));
    stream_.expires_after(server_.limits_.request_deadline);  // the read and the write
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code error, std::size_t) { self->on_read(error); });
  }
  bool reading() const { return reading_; }
  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    release();
  }

 private:
  void on_read(beast::error_code error) {
    reading_ = false;
    if (error) {  // the deadline, a header over the limit, a body, a client gone
      close();
      return;
    }
    response_ = answer(parser_.get(), server_.page_);
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code, std::size_t) { self->close(); });
  }
  void release() {
    if (listed_) server_.forget(place_);
    listed_ = false;
  }

  Server& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;                      // at most max_header_bytes
  http::request_parser<http::empty_body> parser_;  // a request with a body is refused
  Response response_;
  Connections::iterator place_;
  bool listed_ = true;
  bool reading_ = true;
};

void HttpEndpoint::Server::admit(tcp::socket socket) {
  if (connections_.size() >= limits_.max_connections) {
    const auto longest = std::find_if(connections_.begin(), connections_.end(),
                                      [](const auto& connection) { return connection->reading(); });
    if (longest == connections_.end()) return;  // every place is answering: the newcomer's socket closes
    (*longest)->close();                        // leaves connections_
  }
  connections_.push_back(std::make_shared<Connection>(std::move(socket), *this));
  connections_.back()->start(std::prev(connections_.end()));
}

HttpEndpoint::HttpEndpoint(const ListenAddress& address, MetricsPage& page, HttpLimits limits)
    : server_(std::make_unique<Server>(address, page, limits)) {}

HttpEndpoint::~HttpEndpoint() = default;

int HttpEndpoint::port() const { return server_->port(); }

}  // namespace shmtimerd
