// The calling thread's scheduling class. A watchdog shares its host with the workers it
// watches, and in a collective hang those workers can hold every CPU: at a normal
// priority its wake-up at a deadline waits behind them, and every worker it kills
// preempts it to die on its CPU (a plain loop of kill() over 1,000 hung processes took
// tens of milliseconds here, against 3 to 4 ms for a SCHED_FIFO one: docs/benchmarks.md,
// section 6).
#pragma once

#include <string>

namespace shmtimer {

// Moves the calling thread to SCHED_FIFO at `priority` (1..99), with SCHED_RESET_ON_FORK,
// so that no thread or process it starts inherits the class (a stack capture tool, the
// label reader). Returns an empty string on success, or why it could not (EPERM without
// CAP_SYS_NICE or an RLIMIT_RTPRIO that allows it, say); the thread then keeps its class.
std::string run_at_realtime_priority(int priority);

// The calling thread's SCHED_FIFO/SCHED_RR priority; 0 when it runs in a normal class.
int current_realtime_priority();

}  // namespace shmtimer
