#include "shmtimer/error.hpp"

#include <cerrno>
#include <cstring>

namespace shmtimer {

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kIo: return "io";
    case ErrorCode::kNotATable: return "not-a-table";
    case ErrorCode::kVersionMismatch: return "version-mismatch";
    case ErrorCode::kSizeMismatch: return "size-mismatch";
    case ErrorCode::kUnsafeFile: return "unsafe-file";
    case ErrorCode::kTableFull: return "table-full";
    case ErrorCode::kScopeTooLong: return "scope-too-long";
    case ErrorCode::kInvalidArgument: return "invalid-argument";
    case ErrorCode::kNotConfigured: return "not-configured";
    case ErrorCode::kServerRunning: return "server-running";
    case ErrorCode::kNoServer: return "no-server";
    case ErrorCode::kProtocol: return "protocol";
  }
  return "unknown";
}

void throw_errno(const std::string& what) {
  const int err = errno;
  throw Error(ErrorCode::kIo, what + ": " + std::strerror(err), err);
}

}  // namespace shmtimer
