// The summary a person reads first: one line per process of the job, where its main
// thread was (the innermost Python frame, else the innermost native frame outside the C
// library), and which rank differs from the rest. Frames come from the tools' output,
// which the hung processes control (function and file names): every one is escaped.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shmtimer::detail {

struct Frame {
  std::string function;  // "all_reduce"
  std::string where;     // "torch/distributed/distributed_c10d.py:2501", or a module's file name
  std::string kind;      // "python" or "native"
  // Where, for telling ranks apart: the function and its file, without the line.
  std::string place() const;
  std::string text() const;  // "all_reduce (torch/distributed/distributed_c10d.py:2501)"
};

// The innermost frame of the main thread ("MainThread", else the first listed) in the
// output of `py-spy dump`.
std::optional<Frame> innermost_python_frame(std::string_view py_spy_dump);
// The innermost frame of the main thread in a cooperative dump: shmtimer's first line
// names the main thread ("shmtimer: main thread 0x..."), then faulthandler's blocks
// ("Thread 0x... (most recent call first):", '  File "f.py", line 6 in function').
std::optional<Frame> innermost_faulthandler_frame(std::string_view dump);
// The innermost frame of thread `pid` (the main thread) outside the C library and the
// dynamic loader, in the output of `eu-stack -m` or of gdb's `thread apply all bt`
// (whose threads gdb numbers: its last thread, the first one, is the main one).
std::optional<Frame> innermost_native_frame(std::string_view output, pid_t pid);

struct ProcessPlace {
  std::string who;  // "rank 1" (or "pid 4242" without a rank)
  pid_t pid = 0;
  bool expired = false;  // its timer expired (else a peer, captured to show where it was)
  std::optional<Frame> frame;
  std::string missing;  // why there is no frame
};

// Which processes differ from the rest: those outside the one place most of them share;
// with no majority, those not in a collective call (all_reduce, barrier, ...) while the
// others are. Empty when none stands out. Sets `reason` to say which rule decided.
std::vector<std::size_t> odd_ones_out(const std::vector<ProcessPlace>& places, std::string& reason);

std::string summary_text(std::string_view headline, const std::vector<ProcessPlace>& places);

}  // namespace shmtimer::detail
