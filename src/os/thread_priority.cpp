#include "thread_priority.hpp"

#include <sched.h>

#include <cerrno>
#include <cstring>

namespace shmtimer {

std::string run_at_realtime_priority(int priority) {
  const int lowest = ::sched_get_priority_min(SCHED_FIFO), highest = ::sched_get_priority_max(SCHED_FIFO);
  if (priority < lowest || priority > highest)
    return "priority " + std::to_string(priority) + " is not in " + std::to_string(lowest) + ".." +
           std::to_string(highest);
  const sched_param param{priority};
  // pid 0 is the calling thread, not the whole process: only the watchdog thread is moved.
  if (::sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &param) != 0) return std::strerror(errno);
  return {};
}

int current_realtime_priority() {
  const int policy = ::sched_getscheduler(0) & ~SCHED_RESET_ON_FORK;
  if (policy != SCHED_FIFO && policy != SCHED_RR) return 0;
  sched_param param{};
  return ::sched_getparam(0, &param) == 0 ? param.sched_priority : 0;
}

}  // namespace shmtimer
