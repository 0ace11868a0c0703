// Shared by the benchmarks: a table in /dev/shm that removes itself at exit, and
// percentile helpers (medians and tails, not means).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "shmtimer/table.hpp"

namespace shmtimer::bench {

class BenchTable {
 public:
  explicit BenchTable(std::uint64_t capacity, const std::string& name = "bench") {
    path_ = "/dev/shm/shmtimer-" + name + "-" + std::to_string(::getpid()) + ".table";
    std::filesystem::remove(path_);
    CreateOptions options;
    options.capacity = capacity;
    table_ = Table::create(path_, options);
  }
  ~BenchTable() { std::filesystem::remove(path_); }
  const std::shared_ptr<Table>& table() const { return table_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::shared_ptr<Table> table_;
};

// The q-quantile (0..1) of samples, nearest-rank.
inline double quantile(std::vector<double> samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const auto rank = static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1) + 0.5);
  return samples[std::min(rank, samples.size() - 1)];
}

}  // namespace shmtimer::bench
