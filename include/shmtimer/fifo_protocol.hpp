// The PyTorch FileTimer wire protocol: one JSON object per line on a named FIFO.
//   {"version": 1, "pid": 123, "scope_id": "train.py#42", "expiration_time": 1764081234.56, "signal": 9}
// Acquire carries the wall-clock deadline (epoch seconds); release carries -1 and signal 0.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace shmtimer::fifo {

// A line, without its newline, may be at most this long: writes up to PIPE_BUF bytes are
// atomic on a pipe, so longer lines could interleave with other clients' lines.
inline constexpr std::size_t kMaxLineBytes = 4096;  // PIPE_BUF on Linux
inline constexpr int kProtocolVersion = 1;

struct Request {
  pid_t pid = 0;
  std::string scope_id;
  double expiration_time = 0;  // epoch seconds; negative: release
  int signal = 0;
  bool is_release() const { return expiration_time < 0; }
};

// The exact bytes PyTorch's FileTimerClient writes for this request, newline included:
// json.dumps key order and separators, ensure_ascii escapes, Python's float repr, and a
// release's expiration_time as the integer -1. A lone surrogate, held as its 3
// "surrogatepass" bytes, is written as json.dumps writes it ("\udcff"). Throws
// Error(kInvalidArgument) for a scope that is not UTF-8 with at most such lone surrogates
// (no Python string could be written as it).
std::string format_request(const Request& request);
std::string format_acquire(pid_t pid, std::string_view scope_id, double expiration_time, int signal);
std::string format_release(pid_t pid, std::string_view scope_id);

// Python's repr() of a double (shortest round-trip digits, ".0" on integral values,
// exponent form outside 1e-4 <= |x| < 1e16).
std::string python_float_repr(double value);

// What is wrong with a line that is not a request; the server counts them by reason.
enum class ParseErrorReason {
  kLineTooLong,  // longer than kMaxLineBytes
  kNotJson,
  kNotAnObject,
  kMissingField,
  kVersion,         // a "version" other than 1
  kPid,             // not an integer in 1..2^31-1
  kScope,           // not a string, or longer than the table's limit
  kExpirationTime,  // not a finite number
  kSignal,          // not an integer, or above SIGRTMAX
};
inline constexpr std::size_t kParseErrorReasons = 9;
static_assert(static_cast<std::size_t>(ParseErrorReason::kSignal) + 1 == kParseErrorReasons,
              "a ParseErrorReason without a counter");
// "line_too_long", "not_json", ...: the `reason` label of the server's metrics.
const char* reason_label(ParseErrorReason reason);

struct ParseError {
  ParseErrorReason reason;
  std::string message;  // for people: which field, what was found, what is allowed
};

// Parses and validates one line.
std::variant<Request, ParseError> parse_request(std::string_view line);

// Reassembles lines from arbitrary chunks of a byte stream. A line longer than
// kMaxLineBytes is dropped whole (reported once), and the lines around it are kept.
class LineAssembler {
 public:
  using LineHandler = std::function<void(std::string_view line)>;
  // `tail`: the line's last kMaxLineBytes bytes, where a neighbour's whole request may
  // sit after a writer's fragment (see recover_request).
  using OverlongHandler = std::function<void(std::size_t bytes_dropped, std::string_view tail)>;

  LineAssembler(LineHandler on_line, OverlongHandler on_overlong)
      : on_line_(std::move(on_line)), on_overlong_(std::move(on_overlong)) {}

  void feed(std::string_view chunk);
  std::size_t buffered() const { return partial_.size(); }

 private:
  void emit_partial_as_line();
  void keep_tail(std::string_view piece);
  std::string_view tail() const;

  LineHandler on_line_;
  OverlongHandler on_overlong_;
  std::string partial_;
  bool discarding_ = false;  // inside an overlong line: drop until its newline
  std::size_t discarded_ = 0;
  std::string tail_;  // of the line being dropped: its last bytes, kept to kMaxLineBytes
};

// A valid request at the end of a line that is not one as a whole, or nullopt. Every
// client writes each request in one atomic write that ends in a newline, so when a
// writer's fragment without a newline (or an overlong one) runs into the next writer's
// request, that request is the line's last '{"version"' onwards.
std::optional<Request> recover_request(std::string_view line);

}  // namespace shmtimer::fifo
