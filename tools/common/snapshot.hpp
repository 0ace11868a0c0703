// timer-dump's view of a table at one instant: the header, the rows the filters select,
// and counts over the whole table. Everything comes from shmtimer::TableReader; this file
// only selects, counts and converts deadlines to wall-clock time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shmtimer/table_reader.hpp"

namespace timer_dump {

// Which rows are listed. Counts (Snapshot::slots) always cover the whole table.
struct Filter {
  std::optional<pid_t> pid;          // --pid: only this owner
  std::optional<std::string> scope;  // --scope: scopes containing this substring
  bool expired_only = false;         // --expired: armed timers at or past their deadline
  bool all = false;                  // --all: also idle and claiming slots (free ones are counted)

  bool narrows() const { return pid || scope || expired_only; }
};

struct DumpRow {
  shmtimer::TimerRow timer;
  double deadline_unix_s = 0;  // the deadline as wall-clock epoch seconds; 0 when not armed

  bool armed() const { return timer.state == shmtimer::RowState::kArmed; }
  // The server reaps a timer once deadline <= now, so "overdue" includes remaining == 0.
  bool overdue() const { return armed() && timer.remaining_ns <= 0; }
};

// Slots by state over the whole table, whatever the filters.
struct SlotCounts {
  std::uint64_t armed = 0;        // live timers
  std::uint64_t overdue = 0;      // armed timers at or past their deadline
  std::uint64_t idle = 0;         // claimed, disarmed
  std::uint64_t claiming = 0;     // being claimed (or left mid-claim by a dead process)
  std::uint64_t reclaimable = 0;  // not free, and the owner is gone: the server will free it
  std::uint64_t free = 0;         // capacity minus the slots above
};

struct Snapshot {
  shmtimer::HeaderInfo header;
  Filter filter;
  SlotCounts slots;
  std::vector<DumpRow> rows;  // selected: armed by deadline, then (with --all) the rest by slot
  double taken_unix_s = 0;    // when the snapshot was taken, wall clock
};

// Does the filter select this row?
bool selects(const Filter& filter, const DumpRow& row);

// Counts the rows by state; `capacity` gives the free count.
SlotCounts count_slots(const std::vector<DumpRow>& rows, std::uint64_t capacity);

// Reads the header and every occupied slot once (cost follows occupancy, not capacity).
Snapshot take_snapshot(const shmtimer::TableReader& reader, const Filter& filter);

}  // namespace timer_dump
