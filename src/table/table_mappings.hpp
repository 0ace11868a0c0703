// The registry of mapped tables that the SIGBUS guard (table_fault_guard.hpp) consults.
// Table registers every mapping, whether or not the guard is installed, so that
// installing it later covers tables mapped before.
#pragma once

#include <cstdint>

namespace shmtimer::detail {

// Returns a registration to pass back, or -1 when all kGuardedTables places are taken.
int register_table_mapping(void* begin, std::uint64_t bytes, int fd, bool writable);
void unregister_table_mapping(int registration);
bool table_mapping_faulted(int registration);  // since it was registered

}  // namespace shmtimer::detail
