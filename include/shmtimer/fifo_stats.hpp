// What the FIFO shim counts about the requests it reads, for the server's /metrics
// endpoint: how many it applied, which lines were malformed and why, which requests it
// refused and why. Relaxed atomics, as the server's own statistics (server_stats.hpp).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "shmtimer/fifo_protocol.hpp"

namespace shmtimer {

// Why a FIFO request was refused at receipt (it takes no slot; see FifoShim).
enum class FifoRefusal {
  kNotAWorker,  // pid <= 1
  kNoProcess,   // no such process, or a thread id
  kOtherUser,   // another uid than the server's, without any_uid
};
inline constexpr std::size_t kFifoRefusals = 3;
static_assert(static_cast<std::size_t>(FifoRefusal::kOtherUser) + 1 == kFifoRefusals,
              "a FifoRefusal without a counter");
const char* refusal_label(FifoRefusal refusal);

struct FifoStats {
  std::atomic<std::uint64_t> requests{0};   // valid requests applied (refused ones included)
  std::atomic<std::uint64_t> recovered{0};  // requests saved from the tail of a malformed line
  std::array<std::atomic<std::uint64_t>, fifo::kParseErrorReasons> malformed{};
  std::array<std::atomic<std::uint64_t>, kFifoRefusals> refused{};

  void count(fifo::ParseErrorReason reason) {
    malformed[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  }
  void count(FifoRefusal refusal) {
    refused[static_cast<std::size_t>(refusal)].fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace shmtimer
