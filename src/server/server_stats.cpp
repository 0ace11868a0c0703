#include "shmtimer/server_stats.hpp"

#include <algorithm>

namespace shmtimer {

void Histogram::observe_ns(std::uint64_t ns) {
  const double seconds = static_cast<double>(ns) / 1e9;
  const auto bound =
      std::lower_bound(kBoundsSeconds.begin(), kBoundsSeconds.end(), seconds);  // le: upper bound included
  buckets_[static_cast<std::size_t>(bound - kBoundsSeconds.begin())].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
}

Histogram::Counts Histogram::counts() const {
  Counts c;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    c.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    c.count += c.buckets[i];
  }
  c.sum_seconds = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  return c;
}

const char* refusal_label(Refusal refusal) {
  switch (refusal) {
    case Refusal::kNotAWorker: return "not_a_worker";
    case Refusal::kServerItself: return "server_itself";
    case Refusal::kSignalOutOfRange: return "signal_out_of_range";
    case Refusal::kOtherUser: return "other_user";
    case Refusal::kNotMapped: return "not_mapped";
    case Refusal::kPidReused: return "pid_reused";
    case Refusal::kUnverifiable: return "maps_unreadable";
  }
  return "unknown";
}

}  // namespace shmtimer
