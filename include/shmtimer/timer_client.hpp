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

// Sets the process-global client that Expires uses when it is given none. A configured
// client lives until the process exits, also after another one is configured: guards
// hold it by pointer (no reference count on the hot path), and one may outlive the
// configure() that replaced its client. nullptr unsets it.
void configure(std::shared_ptr<TimerClient> client);
// The configured client; throws Error(kNotConfigured) when configure() was never called.
std::shared_ptr<TimerClient> configured_client();

// Acquires on construction, releases on destruction, like `with expires(after=...)`.
// The default scope is "<file>#<line>" of the caller, as the reference's is, so a
// recursive use of the same line re-acquires the same scope. A guard allocates nothing
// for the default scope (built once per call site, then kept) nor for a scope of up to
// kInlineScopeBytes bytes, which it copies: the caller's string may be a temporary.
class Expires {
 public:
  static constexpr std::size_t kInlineScopeBytes = 64;

  // The configured client.
  explicit Expires(std::chrono::nanoseconds after, std::string_view scope = {},
                   std::source_location where = std::source_location::current());
  // `client`, which must outlive the guard.
  Expires(std::chrono::nanoseconds after, std::string_view scope, TimerClient& client,
          std::source_location where = std::source_location::current());
  // `client`, kept alive by the guard (a reference count taken here); nullptr: the
  // configured client.
  Expires(std::chrono::nanoseconds after, std::string_view scope, std::shared_ptr<TimerClient> client,
          std::source_location where = std::source_location::current());
  ~Expires();
  Expires(const Expires&) = delete;
  Expires& operator=(const Expires&) = delete;

  std::string_view scope() const { return scope_; }

 private:
  void acquire(std::chrono::nanoseconds after, std::string_view scope, const std::source_location& where);

  TimerClient* client_;
  std::shared_ptr<TimerClient> owned_;  // only for the shared_ptr constructor
  std::string_view scope_;              // into inline_scope_, long_scope_ or the default scopes
  char inline_scope_[kInlineScopeBytes];
  std::string long_scope_;
};

}  // namespace shmtimer
