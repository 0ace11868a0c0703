#include "shmtimer/table_reader.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "shmtimer/clock.hpp"
#include "shmtimer/process_identity.hpp"
#include "slot_ops.hpp"

namespace shmtimer {

std::filesystem::path default_table_path() {
  if (const char* env = std::getenv("SHMTIMER_TABLE"); env != nullptr && *env != '\0') return env;
  return "/dev/shm/shmtimer." + std::to_string(::getuid()) + ".table";
}

const char* to_string(RowState state) {
  switch (state) {
    case RowState::kArmed: return "armed";
    case RowState::kIdle: return "idle";
    case RowState::kClaiming: return "claiming";
    case RowState::kFree: return "free";
  }
  return "?";
}

TableReader::TableReader(std::shared_ptr<Table> table) : table_(std::move(table)) {}

TableReader TableReader::open(const std::filesystem::path& path) {
  OpenOptions options;
  options.read_only = true;
  options.allow_foreign_owner = true;
  return TableReader(Table::open(path, options));
}

HeaderInfo TableReader::header() const {
  const auto& h = table_->header();
  HeaderInfo info;
  info.path = table_->path();
  info.version_major = h.version_major;
  info.version_minor = h.version_minor;
  info.capacity = table_->capacity();
  info.creator_uid = h.creator_uid;
  info.created_unix_ns = h.created_unix_ns;
  // Relaxed loads throughout: each word is a standalone statistic or liveness hint.
  info.server_pid = h.server_pid.load(std::memory_order_relaxed);
  info.server_alive =
      info.server_pid > 0 && process_running(info.server_pid, h.server_start_time.load(std::memory_order_relaxed));
  info.heartbeat_count = h.heartbeat_count.load(std::memory_order_relaxed);
  const std::uint64_t beat = h.heartbeat_mono_ns.load(std::memory_order_relaxed);
  if (beat != 0) info.heartbeat_age_ns = static_cast<std::int64_t>(monotonic_now_ns() - beat);
  info.counters.acquires = h.retired_acquires.load(std::memory_order_relaxed);
  info.counters.releases = h.retired_releases.load(std::memory_order_relaxed);
  info.counters.reaps = h.reaps.load(std::memory_order_relaxed);
  info.counters.full_failures = h.full_failures.load(std::memory_order_relaxed);
  info.counters.fifo_requests = h.fifo_requests.load(std::memory_order_relaxed);
  detail::for_each_occupied(*table_, [&](std::uint64_t index) {
    const auto& slot = table_->slot(index);
    if (detail::state_of(slot.control.load(std::memory_order_relaxed)) == layout::SlotState::kFree) return;
    ++info.used_slots;
    info.counters.acquires += slot.acquires.load(std::memory_order_relaxed);
    info.counters.releases += slot.releases.load(std::memory_order_relaxed);
  });
  return info;
}

std::vector<TimerRow> TableReader::rows(bool all) const { return collect(all, all); }

std::vector<TimerRow> TableReader::occupied_rows() const {
  auto rows = collect(true, false);
  std::erase_if(rows, [](const TimerRow& row) { return row.state == RowState::kFree; });  // stale bits
  return rows;
}

std::vector<TimerRow> TableReader::collect(bool all, bool scan_every_slot) const {
  std::vector<TimerRow> rows;
  const std::uint64_t now = monotonic_now_ns();
  detail::SlotSnapshot snap;
  auto add = [&](std::uint64_t index) {
    TimerRow row;
    row.slot = index;
    if (detail::read_slot(*table_, index, snap) == detail::ReadResult::kReady) {
      row.state = snap.deadline_ns == layout::kDisarmed ? RowState::kIdle : RowState::kArmed;
      row.pid = snap.pid;
      row.start_time = snap.start_time;
      row.pid_alive = process_running(snap.pid, snap.start_time);
      row.scope = snap.scope;
      row.deadline_ns = snap.deadline_ns;
      if (row.state == RowState::kArmed) row.remaining_ns = static_cast<std::int64_t>(snap.deadline_ns - now);
      row.signal = snap.signal;
      row.origin = snap.origin;
      row.acquires = snap.acquires;
      row.releases = snap.releases;
    } else {
      const auto c = layout::Control::unpack(snap.control);
      if (c.state == layout::SlotState::kReady) return;  // unstable: skip rather than show a torn row
      row.state = c.state == layout::SlotState::kClaiming ? RowState::kClaiming : RowState::kFree;
      row.pid = c.pid;
      if (row.state == RowState::kClaiming) row.pid_alive = process_running(c.pid, std::nullopt);
    }
    if (row.state == RowState::kArmed || all) rows.push_back(std::move(row));
  };
  if (scan_every_slot) {
    for (std::uint64_t i = 0; i < table_->capacity(); ++i) add(i);
  } else {
    detail::for_each_occupied(*table_, add);
  }
  std::stable_sort(rows.begin(), rows.end(), [](const TimerRow& a, const TimerRow& b) {
    const bool a_armed = a.state == RowState::kArmed, b_armed = b.state == RowState::kArmed;
    if (a_armed != b_armed) return a_armed;
    return a_armed ? a.deadline_ns < b.deadline_ns : a.slot < b.slot;
  });
  return rows;
}

}  // namespace shmtimer
