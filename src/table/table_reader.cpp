#include "shmtimer/table_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include <algorithm>
#include <cstdlib>

#include "shmtimer/clock.hpp"
#include "shmtimer/error.hpp"
#include "process_liveness.hpp"
#include "process_maps.hpp"
#include "slot_ops.hpp"

namespace shmtimer {
namespace {

// Only a process known to be gone is reclaimable: one that could not be looked at is not.
void set_liveness(TimerRow& row, const Probe& probe) {
  row.pid_alive = probe.running();
  row.pid_known = !probe.unknown();
  row.pid_error = probe.unknown() ? probe.error : 0;
}

}  // namespace

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

// Before a read, so that a truncated table is not touched; and after it, so that what a
// read found on the guard's zero pages (table_fault_guard.hpp) is never shown as the table.
void TableReader::check_not_truncated() const {
  struct stat st{};
  if (::fstat(table_->fd(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) < table_->geometry().file_bytes)
    throw Error(ErrorCode::kSizeMismatch, "table " + table_->path().string() + " was truncated to " +
                                              std::to_string(st.st_size) + " bytes while it was being read");
  if (table_->lost_pages())
    throw Error(ErrorCode::kSizeMismatch, "table " + table_->path().string() +
                                              " lost pages while it was being read (truncated, or its filesystem is "
                                              "full); what was read there is not the table");
}

const char* liveness_unknown_label(std::size_t reason) {
  static constexpr const char* kLabels[] = {"descriptors", "memory", "access", "other"};
  static_assert(std::size(kLabels) == std::size(layout::TableHeader{}.liveness_unknown));
  return reason < std::size(kLabels) ? kLabels[reason] : "other";
}

bool TableReader::verify_server(pid_t pid, std::uint64_t identity) const {
  struct stat table_st{}, proc_st{};
  const std::string proc = "/proc/" + std::to_string(pid);
  int error = 0;
  return pid > 0 && ::fstat(table_->fd(), &table_st) == 0 && ::stat(proc.c_str(), &proc_st) == 0 &&
         proc_st.st_uid == table_st.st_uid &&
         process_has_mapped(pid, {table_st.st_dev, table_st.st_ino}, error) == Mapping::kMapped &&
         probe_process(pid, identity).running();  // last: the reads above were of this very process
}

HeaderInfo TableReader::header() const {
  check_not_truncated();
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
  info.server_alive = verify_server(info.server_pid, h.server_identity.load(std::memory_order_relaxed));
  info.server_starts = h.server_starts.load(std::memory_order_relaxed);
  info.server_takeovers = h.server_takeovers.load(std::memory_order_relaxed);
  info.server_max_interval_ms = h.server_max_interval_ms.load(std::memory_order_relaxed);
  info.heartbeat_count = h.heartbeat_count.load(std::memory_order_relaxed);
  const std::uint64_t beat = h.heartbeat_mono_ns.load(std::memory_order_relaxed);
  if (beat != 0) info.heartbeat_age_ns = static_cast<std::int64_t>(monotonic_now_ns() - beat);
  info.counters.acquires = h.retired_acquires.load(std::memory_order_relaxed);
  info.counters.releases = h.retired_releases.load(std::memory_order_relaxed);
  info.counters.reaps = h.reaps.load(std::memory_order_relaxed);
  info.counters.full_failures = h.full_failures.load(std::memory_order_relaxed);
  info.counters.fifo_requests = h.fifo_requests.load(std::memory_order_relaxed);
  info.counters.failed_kills = h.failed_kills.load(std::memory_order_relaxed);
  for (std::size_t reason = 0; reason < info.counters.liveness_unknown.size(); ++reason)
    info.counters.liveness_unknown[reason] = h.liveness_unknown[reason].load(std::memory_order_relaxed);
  detail::for_each_occupied(*table_, [&](std::uint64_t index) {
    const auto& slot = table_->slot(index);
    if (detail::state_of(slot.control.load(std::memory_order_relaxed)) == layout::SlotState::kFree) return;
    ++info.used_slots;
    info.counters.acquires += slot.acquires.load(std::memory_order_relaxed);
    info.counters.releases += slot.releases.load(std::memory_order_relaxed);
  });
  check_not_truncated();
  return info;
}

std::vector<TimerRow> TableReader::rows(bool all) const { return collect(all, all); }

std::vector<TimerRow> TableReader::occupied_rows() const {
  auto rows = collect(true, false);
  std::erase_if(rows, [](const TimerRow& row) { return row.state == RowState::kFree; });  // stale bits
  return rows;
}

std::vector<TimerRow> TableReader::collect(bool all, bool scan_every_slot) const {
  check_not_truncated();
  std::vector<TimerRow> rows;
  const std::uint64_t now = monotonic_now_ns();
  detail::SlotSnapshot snap;
  auto add = [&](std::uint64_t index) {
    TimerRow row;
    row.slot = index;
    if (detail::read_slot(*table_, index, snap) == detail::ReadResult::kReady) {
      row.state = snap.deadline_ns == layout::kDisarmed ? RowState::kIdle : RowState::kArmed;
      row.pid = snap.pid;
      row.identity = snap.identity;
      set_liveness(row, probe_process(snap.pid, snap.identity));
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
      if (row.state == RowState::kClaiming) set_liveness(row, probe_process(c.pid, std::nullopt));
    }
    if (row.state == RowState::kArmed || all) rows.push_back(std::move(row));
  };
  if (scan_every_slot) {
    for (std::uint64_t i = 0; i < table_->capacity(); ++i) add(i);
  } else {
    detail::for_each_occupied(*table_, add);
  }
  check_not_truncated();
  std::stable_sort(rows.begin(), rows.end(), [](const TimerRow& a, const TimerRow& b) {
    const bool a_armed = a.state == RowState::kArmed, b_armed = b.state == RowState::kArmed;
    if (a_armed != b_armed) return a_armed;
    return a_armed ? a.deadline_ns < b.deadline_ns : a.slot < b.slot;
  });
  return rows;
}

}  // namespace shmtimer
