#include "process_labels.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "shmtimer/printable.hpp"
#include "process_liveness.hpp"

namespace shmtimer::detail {

namespace {

constexpr std::size_t kMaxEnvironBytes = 1 << 20;
constexpr std::size_t kMaxLabelBytes = 256;
// Processes remembered at most: more than a host runs workers with timers due together.
constexpr std::size_t kMaxRemembered = 8192;

std::string read_proc_file(pid_t pid, const char* name, std::size_t limit) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string bytes;
  char buf[8192];
  ssize_t n = 0;
  while (bytes.size() < limit && (n = ::read(fd, buf, sizeof buf)) > 0) bytes.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return bytes;
}

std::string label_value(std::string_view raw) { return printable(raw.substr(0, kMaxLabelBytes)); }

}  // namespace

ProcessLabels read_process_labels(pid_t pid, std::uint64_t identity) {
  ProcessLabels labels;
  const std::string environ = read_proc_file(pid, "environ", kMaxEnvironBytes);
  std::string_view rest(environ);
  while (!rest.empty()) {
    const std::string_view entry = rest.substr(0, rest.find('\0'));
    rest.remove_prefix(std::min(rest.size(), entry.size() + 1));
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = entry.substr(0, eq);
    if (key == "TORCHELASTIC_RUN_ID")
      labels.run_id = label_value(entry.substr(eq + 1));
    else if (key == "RANK")
      labels.rank = label_value(entry.substr(eq + 1));
    else if (key == "LOCAL_RANK")
      labels.local_rank = label_value(entry.substr(eq + 1));
  }
  std::string comm = read_proc_file(pid, "comm", 64);
  if (!comm.empty() && comm.back() == '\n') comm.pop_back();
  if (!comm.empty()) labels.command = label_value(comm);
  // Read after the files: if the pid now names another process, they may be its.
  if (identity != 0 && !probe_process(pid, identity).running()) return {};
  return labels;
}

struct ProcessLabelReader::State {
  using Key = std::pair<pid_t, std::uint64_t>;
  struct Entry {
    std::optional<ProcessLabels> labels;  // set once read
    bool requested = true;                // since the last forget_unrequested()
  };
  mutable std::mutex mutex;  // never held across a read
  std::condition_variable queued;
  bool stop = false;
  bool started = false;  // the thread
  std::deque<Key> queue;
  std::map<Key, Entry> entries;
};

ProcessLabelReader::ProcessLabelReader() : state_(std::make_shared<State>()) {}

// Started at the first request, not with the server: a server that never prepares a kill
// (a test that forks after building one, say) keeps a single thread.
void ProcessLabelReader::start_thread() {
  std::thread([state = state_] {
    ::pthread_setname_np(::pthread_self(), "shmtimer-labels");
    std::unique_lock lock(state->mutex);
    for (;;) {
      state->queued.wait(lock, [&] { return state->stop || !state->queue.empty(); });
      if (state->stop) return;
      const State::Key key = state->queue.front();
      state->queue.pop_front();
      lock.unlock();
      ProcessLabels labels = read_process_labels(key.first, key.second);
      lock.lock();
      if (const auto it = state->entries.find(key); it != state->entries.end()) it->second.labels = std::move(labels);
    }
  }).detach();
}

ProcessLabelReader::~ProcessLabelReader() {
  const std::lock_guard lock(state_->mutex);
  state_->stop = true;
  state_->queued.notify_all();
}

void ProcessLabelReader::request(pid_t pid, std::uint64_t identity) {
  const std::lock_guard lock(state_->mutex);
  if (const auto it = state_->entries.find({pid, identity}); it != state_->entries.end()) {
    it->second.requested = true;
    return;
  }
  // Reads are stuck (or the host has more due processes than that): go on without.
  if (state_->entries.size() >= kMaxRemembered || state_->queue.size() >= kMaxRemembered) return;
  state_->entries.emplace(State::Key{pid, identity}, State::Entry{});
  state_->queue.emplace_back(pid, identity);
  if (!std::exchange(state_->started, true)) start_thread();
  state_->queued.notify_one();
}

std::optional<ProcessLabels> ProcessLabelReader::find(pid_t pid, std::uint64_t identity) const {
  const std::lock_guard lock(state_->mutex);
  const auto it = state_->entries.find({pid, identity});
  if (it == state_->entries.end()) return std::nullopt;
  return it->second.labels;
}

void ProcessLabelReader::forget_unrequested() {
  const std::lock_guard lock(state_->mutex);
  for (auto it = state_->entries.begin(); it != state_->entries.end();)
    it = std::exchange(it->second.requested, false) ? std::next(it) : state_->entries.erase(it);
  // A queued read of a forgotten process finds no entry to fill, and is only wasted.
}

}  // namespace shmtimer::detail
