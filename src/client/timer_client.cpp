#include "shmtimer/timer_client.hpp"

#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "shmtimer/error.hpp"

namespace shmtimer {

namespace {

// Every client ever configured, kept until the process exits (never destroyed, not even
// at exit, when guards in other threads may still use one).
struct Configured {
  std::mutex mutex;
  std::vector<std::shared_ptr<TimerClient>> kept;
  // Acquire/release: a guard that loads the pointer sees the client it points to built.
  std::atomic<TimerClient*> current{nullptr};
};

Configured& configured() {
  static auto* state = new Configured;
  return *state;
}

TimerClient& configured_or_throw() {
  TimerClient* client = configured().current.load(std::memory_order_acquire);
  if (client == nullptr) [[unlikely]]
    throw Error(ErrorCode::kNotConfigured,
                "no timer client: pass one to Expires or call shmtimer::configure(client) first");
  return *client;
}

// "<file>#<line>" of a call site, built once per process and kept: a call site is code,
// so there are finitely many. Each thread remembers its last few by the address of the
// file name (a literal) and the line, without a lock.
std::string_view default_scope(const std::source_location& where) {
  struct Seen {
    const char* file;
    std::uint_least32_t line;
    const char* scope;
    std::size_t size;
  };
  __attribute__((tls_model("initial-exec"))) static thread_local Seen seen[4];  // 128 bytes, zeroed
  Seen& s = seen[where.line() % 4];
  if (s.file == where.file_name() && s.line == where.line()) [[likely]]
    return {s.scope, s.size};
  static std::mutex mutex;
  static auto* interned = new std::unordered_set<std::string>;  // node-based: elements never move
  std::lock_guard lock(mutex);
  const std::string& scope =
      *interned->insert(std::string(where.file_name()) + "#" + std::to_string(where.line())).first;
  s = {where.file_name(), where.line(), scope.data(), scope.size()};
  return scope;
}

// Copies n <= Expires::kInlineScopeBytes bytes without a call to memcpy: whole 8-byte
// words, the last one overlapping the one before (a guard is on every step's path).
void copy_short(char* to, const char* from, std::size_t n) noexcept {
  if (n < 8) {
    for (std::size_t i = 0; i < n; ++i) to[i] = from[i];
    return;
  }
  for (std::size_t off = 0; off + 8 < n; off += 8) __builtin_memcpy(to + off, from + off, 8);
  __builtin_memcpy(to + n - 8, from + n - 8, 8);
}

}  // namespace

void configure(std::shared_ptr<TimerClient> client) {
  auto& state = configured();
  std::lock_guard lock(state.mutex);
  TimerClient* raw = client.get();
  if (client) state.kept.push_back(std::move(client));
  state.current.store(raw, std::memory_order_release);
}

std::shared_ptr<TimerClient> configured_client() {
  auto& state = configured();
  TimerClient& client = configured_or_throw();
  std::lock_guard lock(state.mutex);
  for (const auto& kept : state.kept)
    if (kept.get() == &client) return kept;
  return {std::shared_ptr<TimerClient>{}, &client};  // unreachable: every configured client is kept
}

[[gnu::always_inline]] inline void Expires::acquire(std::chrono::nanoseconds after, std::string_view scope,
                                                    const std::source_location& where) {
  if (scope.empty()) {
    scope_ = default_scope(where);
  } else if (scope.size() <= kInlineScopeBytes) {
    copy_short(inline_scope_, scope.data(), scope.size());
    scope_ = {inline_scope_, scope.size()};
  } else {
    long_scope_ = scope;
    scope_ = long_scope_;
  }
  client_->acquire(scope_, SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(after));
}

Expires::Expires(std::chrono::nanoseconds after, std::string_view scope, std::source_location where)
    : client_(&configured_or_throw()) {
  acquire(after, scope, where);
}

Expires::Expires(std::chrono::nanoseconds after, std::string_view scope, TimerClient& client,
                 std::source_location where)
    : client_(&client) {
  acquire(after, scope, where);
}

Expires::Expires(std::chrono::nanoseconds after, std::string_view scope, std::shared_ptr<TimerClient> client,
                 std::source_location where)
    : client_(client ? client.get() : &configured_or_throw()), owned_(std::move(client)) {
  acquire(after, scope, where);
}

Expires::~Expires() {
  try {
    client_->release(scope_);
  } catch (...) {
    // A destructor must not throw; the server clears the timer when this process exits.
  }
}

}  // namespace shmtimer
