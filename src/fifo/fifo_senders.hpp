// What the FIFO shim knows of the processes that send it requests: each one's identity
// and whether the server would signal it, learned from /proc once and kept while the
// process runs. Reading /proc for every request cost the shim most of its time.
//
// Each known process is held by a pidfd, and every pidfd is in one epoll set, which turns
// readable when one of them exits. The shim calls forget_exited() after each read from
// the FIFO and before applying what it read: a request from a process that reuses an
// exited process's pid was written after that exit, so its entry is gone by then and the
// newcomer is judged afresh, never with the old process's identity or verdict.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <unordered_map>

#include "shmtimer/fifo_stats.hpp"

namespace shmtimer::detail {

class FifoSenders {
 public:
  // `any_uid`: processes of every user may be served; otherwise only the server's uid.
  explicit FifoSenders(bool any_uid);
  ~FifoSenders();
  FifoSenders(const FifoSenders&) = delete;
  FifoSenders& operator=(const FifoSenders&) = delete;

  struct Verdict {
    std::uint64_t identity = 0;
    std::optional<FifoRefusal> refusal;  // set: no slot, no timer
    // Not 0: the sender could not be looked at (this errno); neither refused nor judged,
    // so its request waits to be judged again (FifoShim).
    int unknown_error = 0;
  };
  // From the cache, or learned now (and cached while the process runs; never an unknown).
  Verdict judge(pid_t pid);
  // Drops every process that has exited since the last call. One epoll_wait.
  void forget_exited();

  std::size_t known() const { return known_.size(); }
  std::uint64_t lookups_from_proc() const { return from_proc_; }  // judge() calls that read /proc

 private:
  struct Known {
    int pidfd;
    Verdict verdict;
  };
  Verdict learn(pid_t pid);  // from /proc, uncached
  void forget(pid_t pid);
  void forget_all();

  bool any_uid_;
  int epoll_fd_ = -1;
  std::unordered_map<pid_t, Known> known_;
  std::uint64_t from_proc_ = 0;
};

}  // namespace shmtimer::detail
