#include "shmtimer/fifo_stats.hpp"

namespace shmtimer {

const char* refusal_label(FifoRefusal refusal) {
  switch (refusal) {
    case FifoRefusal::kNotAWorker: return "not_a_worker";
    case FifoRefusal::kNoProcess: return "no_process";
    case FifoRefusal::kOtherUser: return "other_user";
  }
  return "unknown";
}

}  // namespace shmtimer
