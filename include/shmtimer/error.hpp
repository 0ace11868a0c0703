// The one error type of shmtimer: a code to branch on and a message that says what was
// expected and what was found.
#pragma once

#include <stdexcept>
#include <string>

namespace shmtimer {

enum class ErrorCode {
  kIo,               // a system call failed; the message carries errno's text
  kNotATable,        // the file is not a shmtimer table (too small, wrong magic, not a regular file)
  kVersionMismatch,  // another major format version
  kSizeMismatch,     // the file's size does not match its header
  kUnsafeFile,       // a symlink, world-writable, or owned by another user
  kTableFull,        // no free slot for a new (pid, scope)
  kScopeTooLong,     // a scope longer than layout::kMaxScopeBytes
  kInvalidArgument,  // a bad capacity, signal, pid or deadline
  kNotConfigured,    // expires() without a client and without configure()
  kServerRunning,    // another live server holds the table
  kNoServer,         // no live server: a FIFO with no reader, or a table no server holds
  kProtocol,         // a malformed FIFO request
};

const char* to_string(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, int sys_errno = 0)
      : std::runtime_error(message), code_(code), sys_errno_(sys_errno) {}
  ErrorCode code() const noexcept { return code_; }
  int sys_errno() const noexcept { return sys_errno_; }  // for kIo: the errno that caused it

 private:
  ErrorCode code_;
  int sys_errno_;
};

// Throws kIo with "<what>: <strerror(errno)>".
[[noreturn]] void throw_errno(const std::string& what);

}  // namespace shmtimer
