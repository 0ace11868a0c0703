// A table file truncated under its mappings (by its owner, or a fault) makes every access
// past the new end raise SIGBUS, which kills the process. A process that must outlive that
// (the watchdog, an inspector) installs this guard once: a SIGBUS inside a mapped table
// replaces the lost pages with zero pages, marks the table (Table::file_change() then says
// kResized), and lets the access go on. A SIGBUS anywhere else goes to the handler that was
// installed before, or kills as it would have. docs/server.md, "When the table file changes".
#pragma once

#include <cstdint>

namespace shmtimer {

// Installs the process-wide SIGBUS handler; idempotent and thread-safe. Up to
// kGuardedTables tables mapped at once are guarded; more stay unguarded (they work, but a
// fault in them kills). A handler installed later that does not pass faults on replaces it.
void guard_table_faults();
inline constexpr int kGuardedTables = 256;

// Faults the guard has absorbed in this process, in every table.
std::uint64_t table_fault_count();

namespace detail {
// For Table: every mapping is registered, whether or not the guard is installed, so that
// installing it later covers tables mapped before. Returns a registration to pass back,
// or -1 when all kGuardedTables places are taken.
int register_table_mapping(void* begin, std::uint64_t bytes, bool writable);
void unregister_table_mapping(int registration);
bool table_mapping_faulted(int registration);  // since it was registered
}  // namespace detail

}  // namespace shmtimer
