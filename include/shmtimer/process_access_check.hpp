// What a server's process does at start (shmtimerd does all three). The self-test: can it
// do to a worker of its own uid what the kill path does? A sandbox can take that away
// without an error at start (a system call filter, a hidden /proc, a user namespace from
// systemd's PrivateUsers=), and then every kill fails or is refused while the server looks
// healthy. docs/server.md, "Self-test".
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace shmtimer {

// Forks a child that waits, opens a pidfd to it, reads its /proc/<pid>/maps and kills it
// through the pidfd. Then, in a user namespace other than the initial one, reads the maps
// of its parent when that is of its uid and holds no capability. Returns what failed,
// with the cause and the fix; empty when every check passed or could not tell. Call it
// before starting threads: it forks.
std::string why_workers_cannot_be_watched();

// Why the kernel refused this server a worker's /proc/<pid>/maps (EACCES): a user
// namespace the worker is not in, capabilities the worker holds, or a worker that is not
// dumpable; for the log line of the refusal. Reads /proc/<pid>/status, which is always
// readable.
std::string why_maps_are_unreadable(pid_t pid);

// Raises the soft RLIMIT_NOFILE to the hard limit, so the server's own work is never what
// runs it out of descriptors. Returns the soft limit in force after (0: unknown).
std::uint64_t raise_open_file_limit() noexcept;

}  // namespace shmtimer
