// The client API, mirroring torch.distributed.elastic.timer.api: an abstract TimerClient,
// a process-global configure(), and the RAII Expires guard (the reference's expires()).
#pragma once

#include <chrono>
#include <memory>
#include <source_location>
#include <string>
#include <string_view>

#include "shmtimer/clock.hpp"

namespace shmtimer {

class TimerClient {
 public:
  virtual ~TimerClient() = default;
  // Arms the timer of (this process, scope_id) to expire at `deadline`; a second acquire
  // of the same scope replaces its deadline.
  virtual void acquire(std::string_view scope_id, Deadline deadline) = 0;
  // Disarms it; releasing a scope that holds no timer does nothing.
  virtual void release(std::string_view scope_id) = 0;
};

// Sets the process-global client that Expires uses when it is given none.
void configure(std::shared_ptr<TimerClient> client);
// The configured client; throws Error(kNotConfigured) when configure() was never called.
std::shared_ptr<TimerClient> configured_client();

// Acquires on construction, releases on destruction, like `with expires(after=...)`.
// The default scope is "<file>#<line>" of the caller, as the reference's is, so a
// recursive use of the same line re-acquires the same scope.
class Expires {
 public:
  explicit Expires(std::chrono::nanoseconds after, std::string_view scope = {},
                   std::shared_ptr<TimerClient> client = nullptr,
                   std::source_location where = std::source_location::current());
  ~Expires();
  Expires(const Expires&) = delete;
  Expires& operator=(const Expires&) = delete;

  const std::string& scope() const { return scope_; }

 private:
  std::shared_ptr<TimerClient> client_;
  std::string scope_;
};

}  // namespace shmtimer
