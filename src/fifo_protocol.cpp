#include "shmtimer/fifo_protocol.hpp"

#include <charconv>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "shmtimer/error.hpp"
#include "shmtimer/table_layout.hpp"

namespace shmtimer::fifo {

using nlohmann::json;

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "NaN";  // what json.dumps writes (allow_nan=True)
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  // Shortest round-trip digits in exponent form, then laid out as Python's repr does.
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  const std::string sci(buf, result.ptr);
  const auto e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::stoi(sci.substr(e + 1));
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  const int decpt = exponent + 1;  // position of the decimal point after the first digit
  std::string out;
  if (decpt > 16 || decpt < -3) {  // repr switches to exponent form here
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  } else if (decpt <= 0) {
    out = "0." + std::string(static_cast<std::size_t>(-decpt), '0') + digits;
  } else if (static_cast<std::size_t>(decpt) >= digits.size()) {
    out = digits + std::string(static_cast<std::size_t>(decpt) - digits.size(), '0') + ".0";
  } else {
    out = digits.substr(0, static_cast<std::size_t>(decpt)) + "." + digits.substr(static_cast<std::size_t>(decpt));
  }
  return negative ? "-" + out : out;
}

namespace {

std::string json_string(std::string_view text) {
  try {
    // ensure_ascii = true: \uXXXX for every non-ASCII code point, as json.dumps does.
    return json(std::string(text)).dump(-1, ' ', true, json::error_handler_t::strict);
  } catch (const json::type_error&) {
    throw Error(ErrorCode::kInvalidArgument, "scope is not valid UTF-8, so it cannot be sent to a FileTimerServer");
  }
}

std::string format_line(pid_t pid, std::string_view scope_id, const std::string& expiration, int signal) {
  return "{\"version\": " + std::to_string(kProtocolVersion) + ", \"pid\": " + std::to_string(pid) +
         ", \"scope_id\": " + json_string(scope_id) + ", \"expiration_time\": " + expiration +
         ", \"signal\": " + std::to_string(signal) + "}\n";
}

// A JSON integer in [lo, hi], or nullopt. Integers of 2^63 and above are stored unsigned
// by the JSON library; reading one as int64_t would wrap it to a small negative number
// (found by fifo_parser_fuzz).
std::optional<std::int64_t> integer_in(const json& value, std::int64_t lo, std::int64_t hi) {
  if (!value.is_number_integer()) return std::nullopt;
  if (value.is_number_unsigned() && value.get<std::uint64_t>() > static_cast<std::uint64_t>(hi)) return std::nullopt;
  const auto v = value.get<std::int64_t>();
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

}  // namespace

std::string format_acquire(pid_t pid, std::string_view scope_id, double expiration_time, int signal) {
  return format_line(pid, scope_id, python_float_repr(expiration_time), signal);
}

std::string format_release(pid_t pid, std::string_view scope_id) { return format_line(pid, scope_id, "-1", 0); }

std::string format_request(const Request& request) {
  return request.is_release() ? format_release(request.pid, request.scope_id)
                              : format_acquire(request.pid, request.scope_id, request.expiration_time,
                                               request.signal);
}

const char* reason_label(ParseErrorReason reason) {
  switch (reason) {
    case ParseErrorReason::kLineTooLong: return "line_too_long";
    case ParseErrorReason::kNotJson: return "not_json";
    case ParseErrorReason::kNotAnObject: return "not_an_object";
    case ParseErrorReason::kMissingField: return "missing_field";
    case ParseErrorReason::kVersion: return "version";
    case ParseErrorReason::kPid: return "pid";
    case ParseErrorReason::kScope: return "scope_id";
    case ParseErrorReason::kExpirationTime: return "expiration_time";
    case ParseErrorReason::kSignal: return "signal";
  }
  return "unknown";
}

std::variant<Request, ParseError> parse_request(std::string_view line) {
  if (line.size() > kMaxLineBytes)
    return ParseError{ParseErrorReason::kLineTooLong, "line is " + std::to_string(line.size()) + " bytes, longer than PIPE_BUF (" +
           std::to_string(kMaxLineBytes) + ")"};
  const json doc = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return ParseError{ParseErrorReason::kNotJson, "not valid JSON"};
  if (!doc.is_object()) return ParseError{ParseErrorReason::kNotAnObject, "expected a JSON object, found " + std::string(doc.type_name())};
  for (const char* field : {"pid", "scope_id", "expiration_time", "signal"})
    if (!doc.contains(field)) return ParseError{ParseErrorReason::kMissingField, std::string("missing field \"") + field + "\""};
  if (doc.contains("version") && !(doc["version"].is_number_integer() && doc["version"] == kProtocolVersion))
    return ParseError{ParseErrorReason::kVersion, "unsupported version " + doc["version"].dump() + " (expected 1)"};
  const json& pid = doc["pid"];
  if (!pid.is_number_integer()) return ParseError{ParseErrorReason::kPid, "\"pid\" must be an integer, found " + pid.dump()};
  const auto pid_value = integer_in(pid, 1, INT32_MAX);
  if (!pid_value) return ParseError{ParseErrorReason::kPid, "\"pid\" " + pid.dump() + " is not a process id (must be 1..2^31-1)"};
  const json& scope = doc["scope_id"];
  if (!scope.is_string()) return ParseError{ParseErrorReason::kScope, "\"scope_id\" must be a string, found " + std::string(scope.type_name())};
  if (scope.get_ref<const std::string&>().size() > layout::kMaxScopeBytes)
    return ParseError{ParseErrorReason::kScope, "\"scope_id\" is " + std::to_string(scope.get_ref<const std::string&>().size()) +
           " bytes; the limit is " + std::to_string(layout::kMaxScopeBytes)};
  const json& expiration = doc["expiration_time"];
  if (!expiration.is_number()) return ParseError{ParseErrorReason::kExpirationTime, "\"expiration_time\" must be a number, found " + expiration.dump()};
  if (!std::isfinite(expiration.get<double>())) return ParseError{ParseErrorReason::kExpirationTime, "\"expiration_time\" must be finite"};
  const json& signal = doc["signal"];
  if (!signal.is_number_integer()) return ParseError{ParseErrorReason::kSignal, "\"signal\" must be an integer, found " + signal.dump()};
  const auto sig = integer_in(signal, INT32_MIN, SIGRTMAX);
  if (!sig)
    return ParseError{ParseErrorReason::kSignal, "\"signal\" " + signal.dump() + " is out of range (<= 0: never kill; 1.." + std::to_string(SIGRTMAX) + ")"};
  Request request;
  request.pid = static_cast<pid_t>(*pid_value);
  request.scope_id = scope.get<std::string>();
  request.expiration_time = expiration.get<double>();
  request.signal = static_cast<int>(*sig);
  return request;
}

void LineAssembler::feed(std::string_view chunk) {
  while (!chunk.empty()) {
    const auto newline = chunk.find('\n');
    const std::string_view piece = chunk.substr(0, newline);
    if (discarding_) {
      discarded_ += piece.size();
      keep_tail(piece);
    } else if (partial_.size() + piece.size() > kMaxLineBytes) {
      discarding_ = true;  // too long already: drop it whole, never a truncated line
      discarded_ = partial_.size() + piece.size();
      tail_ = std::move(partial_);
      partial_.clear();
      keep_tail(piece);
    } else {
      partial_.append(piece);
    }
    if (newline == std::string_view::npos) return;
    if (discarding_) {
      on_overlong_(discarded_, tail());
      discarding_ = false;
      discarded_ = 0;
      tail_.clear();
    } else {
      emit_partial_as_line();
    }
    chunk.remove_prefix(newline + 1);
  }
}

void LineAssembler::keep_tail(std::string_view piece) {
  tail_.append(piece);
  if (tail_.size() > 2 * kMaxLineBytes) tail_.erase(0, tail_.size() - kMaxLineBytes);  // amortized
}

std::string_view LineAssembler::tail() const {
  const std::string_view all(tail_);
  return all.substr(all.size() > kMaxLineBytes ? all.size() - kMaxLineBytes : 0);
}

std::optional<Request> recover_request(std::string_view line) {
  const std::size_t start = line.rfind("{\"version\"");
  if (start == std::string_view::npos || start == 0) return std::nullopt;
  auto parsed = parse_request(line.substr(start));
  if (auto* request = std::get_if<Request>(&parsed)) return *request;
  return std::nullopt;
}

void LineAssembler::emit_partial_as_line() {
  if (!partial_.empty()) on_line_(partial_);
  partial_.clear();
}

}  // namespace shmtimer::fifo
