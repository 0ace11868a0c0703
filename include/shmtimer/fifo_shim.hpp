// The server side of PyTorch's FileTimer protocol: a FIFO whose JSON lines become timers
// in the same table the shared-memory clients write. TimerServer drains it every round.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <cstdint>
#include <optional>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "shmtimer/fifo_protocol.hpp"
#include "shmtimer/fifo_stats.hpp"
#include "shmtimer/table.hpp"
#include "shmtimer/timer_server.hpp"

namespace shmtimer {

namespace detail {
class FifoSenders;
}

struct FifoShimOptions {
  mode_t mode = 0600;  // the reference uses 0666 & ~umask; workers run as the server's user
  // Bytes read, and time spent, per drain before the round goes on to scan and reap: a
  // flood of requests never starves the watchdog (the rest is read in the next round, at
  // once).
  std::size_t max_bytes_per_drain = 1 << 20;
  std::chrono::nanoseconds max_drain_time{std::chrono::milliseconds(5)};
  // Accept requests for processes of any uid (a root server with --any-uid); otherwise a
  // request for another user's process is refused at receipt, as its kill would be.
  bool any_uid = false;
  // Pipe capacity to ask for (the default is 64 KiB, about 600 requests).
  int pipe_bytes = 1 << 20;
};

class FifoShim final : public RequestSource {
 public:
  // Creates the FIFO at `path` (refusing a regular file, a directory or a symlink there;
  // an old FIFO is replaced, as the reference does) and opens it without blocking.
  FifoShim(std::shared_ptr<Table> table, std::filesystem::path path, EventCallback log_event = {},
           FifoShimOptions options = {});
  ~FifoShim() override;  // closes and removes the FIFO
  FifoShim(const FifoShim&) = delete;
  FifoShim& operator=(const FifoShim&) = delete;

  int poll_fd() const override { return read_fd_; }
  DrainResult drain() override;

  // Valid requests applied so far (the reference's _request_count); also counted in the
  // table header's fifo_requests.
  std::uint64_t request_count() const { return stats_.requests.load(std::memory_order_relaxed); }
  std::uint64_t malformed_count() const { return total(stats_.malformed); }
  std::uint64_t refused_count() const { return total(stats_.refused); }  // pids the server would never signal
  std::uint64_t recovered_count() const { return stats_.recovered.load(std::memory_order_relaxed); }
  // The same by reason, readable from any thread (the metrics endpoint).
  const FifoStats& stats() const { return stats_; }
  const std::filesystem::path& path() const { return path_; }
  // The FIFO at path() was replaced by another file (another server took the path), or
  // could not be made again after it was removed: requests no longer reach this shim.
  // Readable from any thread (shmtimerd checks after each round).
  bool lost() const { return lost_.load(std::memory_order_relaxed); }
  // Times the FIFO was made again after someone removed it; readable from any thread.
  std::uint64_t recreations() const { return recreations_.load(std::memory_order_relaxed); }

  // FileTimerServer's register_timers, for a server hosted in Python: each request is
  // taken exactly as its line would be from the FIFO (the same checks, refusals and
  // events). Safe to call while the server thread drains. Throws Error(kInvalidArgument)
  // for a scope that is not UTF-8 (no Python string is), before applying any request.
  void register_requests(const std::vector<fifo::Request>& requests);
  // FileTimerServer's clear_timers: disarms every armed timer of these processes, from
  // the FIFO and from the table alike, emitting "clear timer" for each, and gives their
  // FIFO slots back. A table client keeps its slot (it may arm it again). Returns the
  // timers disarmed.
  std::uint64_t disarm_timers_of(const std::set<pid_t>& pids);

 private:
  static constexpr std::uint64_t kPathCheckNs = 100'000'000;
  void open_fifo(bool replace_old);       // makes the FIFO at path_ and opens both ends
  void check_path(std::uint64_t now_ns);  // notices a FIFO removed or replaced at path_
  void on_line(std::string_view line);
  void recover(std::string_view line);
  void remove_fifo_if_ours() const;  // only the FIFO this shim made, by inode
  void apply(const fifo::Request& request);
  // Judges the sender and applies the request, or defers it (see deferred_).
  void act(const fifo::Request& request);
  void retry_deferred();
  void acquire(const fifo::Request& request, std::uint64_t identity);
  void release(const fifo::Request& request, std::uint64_t identity);
  void emit(std::string_view name, const fifo::Request& request, std::uint64_t slot) const;
  fifo::LineAssembler make_line_assembler();  // lines go to on_line(), overlong ones are counted
  template <std::size_t N>
  static std::uint64_t total(const std::array<std::atomic<std::uint64_t>, N>& counters) {
    std::uint64_t sum = 0;
    for (const auto& c : counters) sum += c.load(std::memory_order_relaxed);
    return sum;
  }

  std::shared_ptr<Table> table_;
  std::filesystem::path path_;
  EventCallback log_event_;
  FifoShimOptions options_;
  int read_fd_ = -1;
  int keepalive_fd_ = -1;  // our own writer, so the reader never sees end-of-file
  ino_t inode_ = 0;
  dev_t dev_ = 0;
  std::uint64_t next_path_check_ns_ = 0;
  std::atomic<bool> lost_{false};  // relaxed: a standalone flag, set once
  std::atomic<std::uint64_t> recreations_{0};
  fifo::LineAssembler lines_;
  FifoStats stats_;
  std::unique_ptr<detail::FifoSenders> senders_;  // who sent requests: identity, verdict
  bool table_full_ = false;                       // an insert failed in this drain
  // Requests whose sender could not be looked at (no descriptor left, say: unknown is not
  // gone, and not refused), in order of receipt, tried again before anything new at each
  // drain. A later request of a pid waiting here waits behind it, so an acquire and its
  // release keep their order. Bounded: past kMaxDeferred a request is dropped, and logged.
  static constexpr std::size_t kMaxDeferred = 4096;
  std::deque<fifo::Request> deferred_;
  std::uint64_t unknown_in_episode_ = 0;  // looks that could not tell since deferred_ was last empty
  // drain() against register_requests() and disarm_timers_of() from another thread: the
  // line assembler, the sender cache and table_full_ have one user at a time.
  std::mutex mutex_;
};

}  // namespace shmtimer
