#include "shmtimer/timer_client.hpp"

#include <atomic>

#include "shmtimer/error.hpp"

namespace shmtimer {

namespace {
std::atomic<std::shared_ptr<TimerClient>>& global_client() {
  static std::atomic<std::shared_ptr<TimerClient>> client;
  return client;
}
}  // namespace

void configure(std::shared_ptr<TimerClient> client) {
  global_client().store(std::move(client), std::memory_order_release);
}

std::shared_ptr<TimerClient> configured_client() {
  auto client = global_client().load(std::memory_order_acquire);
  if (!client)
    throw Error(ErrorCode::kNotConfigured,
                "no timer client: pass one to Expires or call shmtimer::configure(client) first");
  return client;
}

Expires::Expires(std::chrono::nanoseconds after, std::string_view scope, std::shared_ptr<TimerClient> client,
                 std::source_location where)
    : client_(client ? std::move(client) : configured_client()),
      scope_(scope.empty() ? std::string(where.file_name()) + "#" + std::to_string(where.line())
                           : std::string(scope)) {
  client_->acquire(scope_, SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(after));
}

Expires::~Expires() {
  try {
    client_->release(scope_);
  } catch (...) {
    // A destructor must not throw; the server clears the timer when this process exits.
  }
}

}  // namespace shmtimer
