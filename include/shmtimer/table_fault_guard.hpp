// A table file truncated under its mappings (by its owner, or a fault) makes every access
// past the new end raise SIGBUS, which kills the process; so does a page that a full tmpfs
// cannot give a sparse table. A process that must outlive that (the watchdog, an
// inspector) installs this guard: a SIGBUS inside a mapped table replaces the lost pages
// with private zero pages, marks the table (Table::lost_pages(); file_change() then says
// kResized), and lets the access go on. A SIGBUS anywhere else goes to the handler that
// was installed before, or kills as it would have. docs/server.md, "When the table file
// changes".
#pragma once

#include <cstdint>

namespace shmtimer {

// Installs the process-wide SIGBUS handler, in front of the one in place (which gets every
// fault outside the tables); a no-op while it is in front. Thread-safe. Up to
// kGuardedTables tables mapped at once are guarded; more stay unguarded (they work, but a
// fault in them kills). A handler installed later takes its place until this is called
// again.
void guard_table_faults();
inline constexpr int kGuardedTables = 256;

// Faults the guard has absorbed in this process, in every table.
std::uint64_t table_fault_count();

}  // namespace shmtimer
