// The summary's reading of the tools' output, and its verdict on which rank differs.
#include "stack_summary.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace shmtimer::detail {
namespace {

constexpr std::string_view kPySpy = R"x(Process 4242: /usr/bin/python3 worker.py
Python v3.11.2 (/usr/bin/python3.11)

Thread 4250 (idle): "Thread-1 (holder)"
    holder (worker.py:4)
    Thread.run (threading.py:982)
Thread 4242 (idle): "MainThread"
    wait_for_lock (worker.py:6)
    <module> (worker.py:9)
)x";

constexpr std::string_view kEuStack = R"x(PID 4242 - process
TID 4243:
#0  0x00007f93d72a3f16 __futex_abstimed_wait_common - /usr/lib/x86_64-linux-gnu/libc.so.6
#1  0x00005570267f6081 helper_thread_loop - /opt/app/worker
TID 4242:
#0  0x00007f93d72a3f16 __futex_abstimed_wait_common - /usr/lib/x86_64-linux-gnu/libc.so.6
#1  0x00007f93d72aed90 syscall - /usr/lib/x86_64-linux-gnu/libc.so.6
#2  0x00007f93d72aed99
#3  0x00005570267f6081 worker_blocked_on_futex - /opt/app/worker
#4  0x00005570267f6099 main - /opt/app/worker
)x";

constexpr std::string_view kGdb = R"x([New LWP 4243]
Thread 2 (Thread 0x7f00 (LWP 4243) "helper"):
#0  0x00007f93d72a3f16 in helper_thread_loop () from /opt/app/worker
Thread 1 (Thread 0x7f01 (LWP 4242) "worker"):
#0  __futex_abstimed_wait_common (futex_word=0x7f00, expected=0) at ./nptl/futex-internal.c:57
#1  0x00007f44f6e29e53 in syscall () at ../sysdeps/unix/sysv/linux/x86_64/syscall.S:38
#2  0x00005570267f6081 in worker_blocked_on_futex () at worker.cpp:12
#3  0x00005570267f6099 in main () at worker.cpp:20
)x";

constexpr std::string_view kFaulthandler = R"x(shmtimer: main thread 0x00007f0b50089b80
Thread 0x00007f0b4f24b6c0 (most recent call first):
  File "/tmp/fh.py", line 5 in holder
  File "/usr/lib/python3.11/threading.py", line 982 in run

Thread 0x00007f0b50089b80 (most recent call first):
  File "/tmp/fh.py", line 7 in sleeping_in_c
  File "/tmp/fh.py", line 9 in <module>

Current thread 0x00007f0b4f24b6c1 (most recent call first):
  File "/tmp/fh.py", line 12 in other
)x";

TEST(StackSummary, TheCooperativeDumpsFrameIsTheThreadItsFirstLineNamesMain) {
  const auto frame = innermost_faulthandler_frame(kFaulthandler);
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->text(), "sleeping_in_c (/tmp/fh.py:7)");
}

TEST(StackSummary, ThePythonFrameIsTheMainThreadsInnermostWhereverItIsListed) {
  const auto frame = innermost_python_frame(kPySpy);
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->text(), "wait_for_lock (worker.py:6)");
  EXPECT_EQ(frame->place(), "wait_for_lock (worker.py)");
}

TEST(StackSummary, TheNativeFrameIsTheMainThreadsInnermostOutsideTheCLibrary) {
  const auto eu = innermost_native_frame(kEuStack, 4242);
  ASSERT_TRUE(eu);
  EXPECT_EQ(eu->function, "worker_blocked_on_futex");
  EXPECT_EQ(eu->where, "worker");
  const auto gdb = innermost_native_frame(kGdb, 4242);
  ASSERT_TRUE(gdb);
  EXPECT_EQ(gdb->function, "worker_blocked_on_futex");
  EXPECT_EQ(gdb->where, "worker.cpp:12");
}

// A traced process controls its function and file names: control characters (a
// terminal's escapes, a carriage return over the line) come out escaped, and a line of
// the tool's output is at most one line of the summary.
TEST(StackSummary, AFrameNameCannotForgeALineOfTheSummary) {
  const std::string dump = "Thread 1 (idle): \"MainThread\"\n    evil\x1b[2J\x07\x7f (x\x1b.py:1)\n";
  const auto frame = innermost_python_frame(dump);
  ASSERT_TRUE(frame);
  const std::string text = summary_text("headline", {{"rank 0", 1, true, frame, ""}});
  for (char c : {'\x1b', '\x07', '\x7f', '\r'}) EXPECT_EQ(text.find(c), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 5) << text;  // headline, blank, one rank, blank, verdict
}

ProcessPlace at(std::string who, std::string function, std::string file) {
  return {std::move(who), 1, true, Frame{std::move(function), std::move(file) + ":1", "python"}, ""};
}

TEST(StackSummary, TheRankOutsideThePlaceMostShareIsTheOneThatDiffers) {
  std::string reason;
  const auto odd = odd_ones_out({at("rank 0", "all_reduce", "c10d.py"), at("rank 1", "other_work", "train.py"),
                                 at("rank 2", "all_reduce", "c10d.py")},
                                reason);
  EXPECT_EQ(odd, std::vector<std::size_t>{1}) << reason;
}

TEST(StackSummary, WithNoMajorityTheRankOutsideACollectiveDiffers) {
  std::string reason;
  const auto odd =
      odd_ones_out({at("rank 0", "all_reduce", "c10d.py"), at("rank 1", "other_work", "train.py")}, reason);
  EXPECT_EQ(odd, std::vector<std::size_t>{1}) << reason;
  const auto none = odd_ones_out({at("rank 0", "step", "a.py"), at("rank 1", "step", "a.py")}, reason);
  EXPECT_TRUE(none.empty());
  const std::string text =
      summary_text("h", {at("rank 0", "all_reduce", "c10d.py"), at("rank 1", "other_work", "t.py")});
  EXPECT_NE(text.find("differs: rank 1 (pid 1)"), std::string::npos) << text;
}

}  // namespace
}  // namespace shmtimer::detail
