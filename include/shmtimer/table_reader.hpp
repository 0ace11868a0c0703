// The read API over a live table, for inspectors (timer-dump), scripts and tests. It only
// reads: it never writes the table and never waits on a writer. Rows are consistent
// snapshots (seqlock on each slot's control word), never torn.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "shmtimer/table.hpp"

namespace shmtimer {

// The table that shmtimerd, timer-dump and the clients use when given no path:
// $SHMTIMER_TABLE, else /dev/shm/shmtimer.<uid>.table.
std::filesystem::path default_table_path();

struct TableCounters {
  std::uint64_t acquires = 0;  // retired (freed slots) + live slots
  std::uint64_t releases = 0;
  std::uint64_t reaps = 0;
  std::uint64_t full_failures = 0;
  std::uint64_t fifo_requests = 0;
};

struct HeaderInfo {
  std::filesystem::path path;
  unsigned version_major = 0;
  unsigned version_minor = 0;
  std::uint64_t capacity = 0;
  std::uint64_t used_slots = 0;  // claimed or being claimed
  std::uint32_t creator_uid = 0;
  std::uint64_t created_unix_ns = 0;
  pid_t server_pid = 0;
  bool server_alive = false;  // server_pid is the live process that wrote it
  std::uint64_t heartbeat_count = 0;
  std::int64_t heartbeat_age_ns = -1;  // -1: never
  TableCounters counters;
};

enum class RowState { kArmed, kIdle, kClaiming, kFree };
const char* to_string(RowState state);

struct TimerRow {
  std::uint64_t slot = 0;
  RowState state = RowState::kFree;
  pid_t pid = 0;
  bool pid_alive = false;  // the pid exists, is not a zombie, and has the recorded start time
  std::uint64_t start_time = 0;
  std::string scope;
  std::uint64_t deadline_ns = 0;   // CLOCK_MONOTONIC; 0 when not armed
  std::int64_t remaining_ns = 0;   // deadline - now; negative when overdue
  int signal = 0;
  layout::Origin origin = layout::Origin::kTable;
  std::uint64_t acquires = 0;
  std::uint64_t releases = 0;
  bool reclaimable() const { return state != RowState::kFree && !pid_alive; }
};

class TableReader {
 public:
  explicit TableReader(std::shared_ptr<Table> table);
  // Opens read-only; tables of other users may be inspected.
  static TableReader open(const std::filesystem::path& path);

  HeaderInfo header() const;
  // Armed timers sorted by deadline; with `all`, also idle, claiming and free slots
  // (sorted by slot index after the armed ones).
  std::vector<TimerRow> rows(bool all = false) const;
  // Every slot that is not free (armed, idle or claiming), sorted as rows(true), found
  // through the occupancy bitmap: the cost follows the occupancy, not the capacity, and
  // the free slots of a large sparse table are never touched.
  std::vector<TimerRow> occupied_rows() const;

 private:
  std::vector<TimerRow> collect(bool all, bool scan_every_slot) const;

  std::shared_ptr<Table> table_;
};

}  // namespace shmtimer
