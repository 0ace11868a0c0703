// The daemon's own process, as Prometheus's client libraries export it (process_cpu_seconds_total,
// process_resident_memory_bytes, process_open_fds, process_max_fds, process_start_time_seconds),
// and the build (shmtimer_build_info): what an SRE pages on besides the watchdog's work.
#pragma once

#include "format.hpp"

namespace shmtimerd {

// From /proc/self; a figure that cannot be read is left out, never made up.
void write_process_metrics(timer_dump::ExpositionWriter& out, const char* version);

}  // namespace shmtimerd
