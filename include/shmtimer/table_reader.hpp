// The read API over a live table, for inspectors (timer-dump), scripts and tests. It only
// reads: it never writes the table and never waits on a writer. Rows are consistent
// snapshots (seqlock on each slot's control word), never torn.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "shmtimer/table.hpp"

namespace shmtimer {

struct TableCounters {
  std::uint64_t acquires = 0;  // retired (freed slots) + live slots
  std::uint64_t releases = 0;
  std::uint64_t reaps = 0;
  std::uint64_t full_failures = 0;
  std::uint64_t fifo_requests = 0;
  std::uint64_t failed_kills = 0;  // signals the kernel refused (each retry counts)
  // Looks at a process that could not tell (kept as alive), by layout::LivenessUnknown.
  std::array<std::uint64_t, 4> liveness_unknown{};
};
const char* liveness_unknown_label(std::size_t reason);  // "descriptors", "memory", "access", "other"

struct HeaderInfo {
  std::filesystem::path path;
  unsigned version_major = 0;
  unsigned version_minor = 0;
  std::uint64_t capacity = 0;
  std::uint64_t used_slots = 0;  // claimed or being claimed
  std::uint32_t creator_uid = 0;
  std::uint64_t created_unix_ns = 0;
  pid_t server_pid = 0;
  // server_pid is a live server of this table: the process with the recorded identity,
  // of the table owner's uid, with the table mapped. A forged header naming some other
  // live process (init, say) is not taken for a server.
  bool server_alive = false;
  std::uint64_t heartbeat_count = 0;
  std::int64_t heartbeat_age_ns = -1;        // -1: never
  std::uint32_t server_max_interval_ms = 0;  // the server's longest sleep; 0: not said
  std::uint64_t server_starts = 0;           // servers that started on the table, ever (format 3.1)
  std::uint64_t server_takeovers = 0;        // of them, those that found a dead server's pid there
  TableCounters counters;

  // Served: a live server whose last round is recent (a hung one is not serving), by the
  // rule a client applies before it arms (layout::heartbeat_stale_after_ns).
  bool served() const {
    return server_alive && heartbeat_age_ns >= 0 &&
           static_cast<std::uint64_t>(heartbeat_age_ns) <= layout::heartbeat_stale_after_ns(server_max_interval_ms);
  }
};

enum class RowState { kArmed, kIdle, kClaiming, kFree };
const char* to_string(RowState state);

struct TimerRow {
  std::uint64_t slot = 0;
  RowState state = RowState::kFree;
  pid_t pid = 0;
  bool pid_alive = false;  // the pid exists, is not a zombie, and has the recorded identity
  bool pid_known = true;   // false: whether it runs could not be told (errno in pid_error)
  int pid_error = 0;
  std::uint64_t identity = 0;
  std::string scope;
  std::uint64_t deadline_ns = 0;  // CLOCK_MONOTONIC; 0 when not armed
  std::int64_t remaining_ns = 0;  // deadline - now; negative when overdue
  int signal = 0;
  layout::Origin origin = layout::Origin::kTable;
  std::uint64_t acquires = 0;
  std::uint64_t releases = 0;
  // Only a process known to be gone: one that could not be looked at is not.
  bool reclaimable() const { return state != RowState::kFree && !pid_alive && pid_known; }
};

// Readers detect a table truncated under them: before each pass they check the file's
// size on its descriptor and throw Error(kSizeMismatch) rather than touch a page that is
// gone (which would raise SIGBUS). A truncation during a pass, after that check, can
// still raise SIGBUS: it needs the table owner, who can kill the reader's user's
// processes anyway, and a pass takes microseconds.
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
  void check_not_truncated() const;
  bool verify_server(pid_t pid, std::uint64_t identity) const;

  std::shared_ptr<const Table> table_;  // const: a reader never writes the table
};

}  // namespace shmtimer
