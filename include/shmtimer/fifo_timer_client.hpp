// A C++ client that speaks PyTorch's FileTimer protocol over its FIFO, byte for byte,
// so it works against PyTorch's FileTimerServer as well as against shmtimerd --fifo.
#pragma once

#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>

#include "shmtimer/timer_client.hpp"

namespace shmtimer {

struct FifoClientOptions {
  // PyTorch 2.x retries the non-blocking open 10 times, 0.1 s apart, before giving up.
  int open_attempts = 10;
  std::chrono::milliseconds open_retry_interval{100};
  // The reference opens the FIFO for every request. Keeping it open saves two system
  // calls per request; the descriptor is reopened if the server goes away.
  bool keep_open = false;
  // How long to wait for room when the pipe is full before failing.
  std::chrono::milliseconds write_timeout{1000};
};

class FifoTimerClient final : public TimerClient {
 public:
  explicit FifoTimerClient(std::filesystem::path fifo_path, int signal = SIGKILL, FifoClientOptions options = {});
  ~FifoTimerClient() override;
  FifoTimerClient(const FifoTimerClient&) = delete;
  FifoTimerClient& operator=(const FifoTimerClient&) = delete;

  // Throws Error(kNoServer) when no server reads the FIFO (the reference's
  // BrokenPipeError), Error(kInvalidArgument) for a request over PIPE_BUF bytes.
  void acquire(std::string_view scope_id, Deadline deadline) override;
  void release(std::string_view scope_id) override;
  // The reference's own call, with a wall-clock epoch deadline.
  void acquire_epoch(std::string_view scope_id, double expiration_time);

 private:
  void send(const std::string& line);
  int open_fifo();
  void write_all(int fd, const std::string& line);

  std::filesystem::path path_;
  int signal_;
  FifoClientOptions options_;
  int fd_ = -1;  // kept open only with keep_open
};

}  // namespace shmtimer
