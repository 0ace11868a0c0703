#include "snapshot.hpp"

#include <chrono>

#include "shmtimer/clock.hpp"

namespace timer_dump {

using shmtimer::RowState;

bool selects(const Filter& filter, const DumpRow& row) {
  if (!filter.all && !row.armed()) return false;
  if (filter.pid && row.timer.pid != *filter.pid) return false;
  if (filter.scope && row.timer.scope.find(*filter.scope) == std::string::npos) return false;
  if (filter.expired_only && !row.overdue()) return false;
  return true;
}

SlotCounts count_slots(const std::vector<DumpRow>& rows, std::uint64_t capacity) {
  SlotCounts counts;
  std::uint64_t used = 0;
  for (const auto& row : rows) {
    switch (row.timer.state) {
      case RowState::kArmed: ++counts.armed; break;
      case RowState::kIdle: ++counts.idle; break;
      case RowState::kClaiming: ++counts.claiming; break;
      case RowState::kFree: continue;
    }
    ++used;
    if (row.overdue()) ++counts.overdue;
    if (row.timer.reclaimable()) ++counts.reclaimable;
  }
  counts.free = capacity > used ? capacity - used : 0;
  return counts;
}

namespace {

DumpRow to_dump_row(shmtimer::TimerRow timer) {
  DumpRow row{std::move(timer), 0};
  if (row.armed())
    row.deadline_unix_s = shmtimer::epoch_seconds_from_deadline(shmtimer::from_table_ns(row.timer.deadline_ns));
  return row;
}

double unix_now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

Snapshot take_snapshot(const shmtimer::TableReader& reader, const Filter& filter) {
  Snapshot snapshot;
  snapshot.filter = filter;
  snapshot.taken_unix_s = unix_now_s();
  snapshot.header = reader.header();
  std::vector<DumpRow> rows;
  for (auto& timer : reader.occupied_rows()) rows.push_back(to_dump_row(std::move(timer)));
  snapshot.slots = count_slots(rows, snapshot.header.capacity);
  for (auto& row : rows)
    if (selects(filter, row)) snapshot.rows.push_back(std::move(row));
  return snapshot;
}

}  // namespace timer_dump
