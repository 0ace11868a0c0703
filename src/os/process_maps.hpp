// Searching a process's memory map for one file: the check that a process could have
// armed a table timer before the server signals it (docs/security.md). It runs before
// every signal, so its cost is part of how late a hung worker is killed.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace shmtimer {

// A file, as the kernel names it: what /proc/<pid>/maps shows for a mapping of it.
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
};

// Does process `pid` have `file` mapped? Its threads share one address space, but once its
// main thread has exited /proc/<pid>/maps reads empty, so the other threads' are read.
// kUnknown (errno in `error`) when its maps could not be read: EACCES for a process that
// is not dumpable (PR_SET_DUMPABLE 0, or one that changed credentials) and a server
// without CAP_SYS_PTRACE, EMFILE, ENOMEM, ...
enum class Mapping : std::uint8_t { kMapped, kNotMapped, kUnknown };
Mapping process_has_mapped(pid_t pid, const FileId& file, int& error) noexcept;

namespace detail {

enum class MapsAnswer { kListed, kNotListed, kUnsupported };

// Through the PROCMAP_QUERY ioctl of an open /proc/<pid>/maps (Linux 6.11+): one
// file-backed mapping per call, in binary, with no text to generate or parse.
// kUnsupported on older kernels (the ioctl does not exist there). The search walks the
// file-backed mappings from the lowest address, one call each. `near`, when given, is
// where to look first (0: nowhere), and receives where the file was found: a caller that
// asks again about the same process then usually makes one call.
MapsAnswer query_maps_for(int maps_fd, const FileId& file, std::uint64_t* near = nullptr) noexcept;

// Through the text of an open /proc/<pid>/maps, read from its start: any kernel.
// kUnknown, errno in `error`, when it could not be read through.
Mapping search_maps_text_for(int maps_fd, const FileId& file, int& error);

// The query where the kernel has it, else the text. An open maps file keeps answering for
// the address space it was opened on: for a process that has since called exec() it
// answers "not mapped", as that address space is gone.
Mapping search_open_maps(int maps_fd, const FileId& file, int& error, std::uint64_t* near = nullptr);

}  // namespace detail
}  // namespace shmtimer
