#include "shmtimer/fifo_protocol.hpp"

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

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

// UTF-16 surrogates U+D800..U+DFFF, which Python strings may hold alone (a lone surrogate:
// torch's default scope "file#line" for a file name that is not UTF-8, decoded with
// surrogateescape, holds U+DC80..U+DCFF). A scope holding one is kept as its
// "surrogatepass" bytes, the 3-byte sequence ED A0..BF 80..BF (generalized UTF-8, WTF-8),
// as the Python module stores it in a table slot.
constexpr bool is_high_surrogate(std::uint32_t cp) { return cp >= 0xd800 && cp <= 0xdbff; }
constexpr bool is_low_surrogate(std::uint32_t cp) { return cp >= 0xdc00 && cp <= 0xdfff; }

// The surrogate whose surrogatepass bytes start `text` at `at`, or nullopt.
std::optional<std::uint32_t> surrogate_bytes_at(std::string_view text, std::size_t at) {
  if (at > text.size() || text.size() - at < 3) return std::nullopt;
  const auto b0 = static_cast<unsigned char>(text[at]), b1 = static_cast<unsigned char>(text[at + 1]),
             b2 = static_cast<unsigned char>(text[at + 2]);
  if (b0 != 0xed || b1 < 0xa0 || b1 > 0xbf || (b2 & 0xc0) != 0x80) return std::nullopt;
  return 0xd000u | ((b1 & 0x3fu) << 6) | (b2 & 0x3fu);
}

void append_surrogate_bytes(std::string& out, std::uint32_t cp) {
  out += static_cast<char>(0xe0u | (cp >> 12));
  out += static_cast<char>(0x80u | ((cp >> 6) & 0x3fu));
  out += static_cast<char>(0x80u | (cp & 0x3fu));
}

// A JSON string of valid UTF-8 text, without its quotes.
std::string json_string_body(std::string_view text) {
  try {
    // ensure_ascii = true: \uXXXX for every non-ASCII code point, as json.dumps does.
    const std::string quoted = json(std::string(text)).dump(-1, ' ', true, json::error_handler_t::strict);
    return quoted.substr(1, quoted.size() - 2);
  } catch (const json::type_error&) {
    throw Error(ErrorCode::kInvalidArgument, "scope is not valid UTF-8, so it cannot be sent to a FileTimerServer");
  }
}

// The scope as json.dumps writes it. UTF-8 with lone surrogates (as parse_request reads
// them, and as the Python module stores them) is written as json.dumps writes such a str:
// each surrogate as its own "\udcff". A high surrogate's bytes followed by a low one's
// are refused: that escape pair would be read back as one 4-byte character.
std::string json_string(std::string_view text) {
  std::string out = "\"";
  std::size_t segment = 0;  // start of the text not yet written
  for (std::size_t i = 0; i < text.size();) {
    const auto cp = static_cast<unsigned char>(text[i]) == 0xed ? surrogate_bytes_at(text, i) : std::nullopt;
    if (!cp) {
      ++i;
      continue;
    }
    if (const auto next = surrogate_bytes_at(text, i + 3); is_high_surrogate(*cp) && next && is_low_surrogate(*next))
      throw Error(ErrorCode::kInvalidArgument,
                  "scope holds a surrogate pair as two 3-byte sequences, which a FileTimerServer would read as "
                  "one 4-byte character");
    out += json_string_body(text.substr(segment, i - segment));
    char escape[8];
    std::snprintf(escape, sizeof escape, "\\u%04x", static_cast<unsigned>(*cp));
    out += escape;
    i += 3;
    segment = i;
  }
  out += json_string_body(text.substr(segment));
  out += '"';
  return out;
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

// Lone surrogate escapes in a line. Python's json writes a lone surrogate as "\ud800",
// valid JSON that nlohmann_json refuses (3.11 has no option for it). A line that fails to
// parse is therefore looked at again: if it holds such an escape inside a string, each
// string's code points are rewritten, before parsing again, as
//   a lone surrogate U+D800+k (k < 0x800)  ->  U+FDD0 U+E000+k
//   U+FDD0 itself                          ->  U+FDD0 U+FDD0
//   any other code point                   ->  itself
// and the parsed scope is mapped back (unmark), each lone surrogate to its surrogatepass
// bytes. The mapping is exact, not merely unlikely to collide: U+FDD0 (a noncharacter)
// only ever appears as the first of a pair whose second code point says which code point
// the pair stands for, and every other code point stands for itself, so a rewritten
// string reads back in exactly one way. U+FDD0 can be in a JSON string only as its UTF-8
// bytes EF B7 90 (nlohmann_json refuses overlong forms) or as a \u escape (hex in any
// case), and both are doubled. A line that parses as it is has no lone surrogate, so the
// common path neither scans nor rewrites anything.
constexpr std::string_view kMark = "\xef\xb7\x90";  // U+FDD0, UTF-8
constexpr std::uint32_t kMarkCodePoint = 0xfdd0;
constexpr std::uint32_t kSurrogateStandIn = 0xe000;  // U+E000 + k stands for U+D800 + k

// The value of 4 hex digits (either case) at `at`, or nullopt.
std::optional<std::uint32_t> hex4_at(std::string_view text, std::size_t at) {
  if (at > text.size() || text.size() - at < 4) return std::nullopt;
  std::uint32_t value = 0;
  for (std::size_t k = 0; k < 4; ++k) {
    const char c = text[at + k];
    std::uint32_t digit;
    if (c >= '0' && c <= '9')
      digit = static_cast<std::uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      digit = static_cast<std::uint32_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      digit = static_cast<std::uint32_t>(c - 'A' + 10);
    else
      return std::nullopt;
    value = value << 4 | digit;
  }
  return value;
}

// The line with each lone surrogate escape inside a string marked as above, or nullopt
// when it holds none. A JSON string is tracked as the parser reads it: it opens at a '"'
// outside a string and closes at the next '"' that is not escaped; inside one, a
// backslash escapes the byte after it, so in "\\ud800" the escape is the backslash's
// and "ud800" is text. Escapes the parser refuses are copied unchanged: where the line
// holds an error other than a lone surrogate, the rewritten line holds it too, at the
// same place (only complete, valid escapes and characters are rewritten, each into
// valid ones), so the line is still refused. (Outside a string, a backslash or a
// non-ASCII byte is an error already, so tracking strings only keeps the rewrite to them.)
std::optional<std::string> mark_lone_surrogates(std::string_view line) {
  std::string out;
  out.reserve(line.size() + 64);
  bool in_string = false;
  bool marked = false;
  const auto append_mark = [&] { out += "\\ufdd0"; };
  for (std::size_t i = 0; i < line.size();) {
    const char c = line[i];
    if (!in_string || c == '"') {  // a string opens or closes, or a byte outside one
      in_string = !in_string && c == '"';
      out += c;
      ++i;
    } else if (line.compare(i, kMark.size(), kMark) == 0) {
      out.append(kMark).append(kMark);
      i += kMark.size();
    } else if (c != '\\') {
      out += c;
      ++i;
    } else if (i + 1 < line.size() && line[i + 1] == 'u' && hex4_at(line, i + 2)) {
      const std::uint32_t cp = *hex4_at(line, i + 2);
      const bool paired = is_high_surrogate(cp) && line.compare(i + 6, 2, "\\u") == 0 && hex4_at(line, i + 8) &&
                          is_low_surrogate(*hex4_at(line, i + 8));
      if (paired) {
        out.append(line.substr(i, 12));  // a surrogate pair: the parser reads it as one character
        i += 12;
        continue;
      }
      if (is_high_surrogate(cp) || is_low_surrogate(cp)) {
        append_mark();
        char stand_in[8];
        std::snprintf(stand_in, sizeof stand_in, "\\u%04x", static_cast<unsigned>(kSurrogateStandIn + (cp - 0xd800)));
        out += stand_in;
        marked = true;
      } else if (cp == kMarkCodePoint) {
        append_mark();
        append_mark();
      } else {
        out.append(line.substr(i, 6));
      }
      i += 6;
    } else {
      out.append(line.substr(i, 2));  // \" \\ \n ..., or one the parser will refuse
      i += 2;
    }
  }
  if (!marked) return std::nullopt;
  return out;
}

// A string of the marked line's document as the line meant it: each U+FDD0 pair back to
// the code point it stands for, a lone surrogate as its surrogatepass bytes.
std::string unmark(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (text.compare(i, kMark.size(), kMark) == 0 && text.size() - i >= 6) {
      const std::string_view partner = text.substr(i + 3, 3);
      const auto b1 = static_cast<unsigned char>(partner[1]);
      if (partner == kMark) {
        out.append(kMark);
        i += 6;
        continue;
      }
      if (static_cast<unsigned char>(partner[0]) == 0xee && b1 >= 0x80 && b1 <= 0x9f) {  // U+E000..U+E7FF
        const std::uint32_t stand_in = 0xe000u | ((b1 & 0x3fu) << 6) | (static_cast<unsigned char>(partner[2]) & 0x3fu);
        append_surrogate_bytes(out, 0xd800 + (stand_in - kSurrogateStandIn));
        i += 6;
        continue;
      }
    }
    out += text[i++];  // (a mark is always followed by one of the above: see mark_lone_surrogates)
  }
  return out;
}

}  // namespace

std::string format_acquire(pid_t pid, std::string_view scope_id, double expiration_time, int signal) {
  return format_line(pid, scope_id, python_float_repr(expiration_time), signal);
}

std::string format_release(pid_t pid, std::string_view scope_id) { return format_line(pid, scope_id, "-1", 0); }

std::string format_request(const Request& request) {
  return request.is_release() ? format_release(request.pid, request.scope_id)
                              : format_acquire(request.pid, request.scope_id, request.expiration_time, request.signal);
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
    return ParseError{ParseErrorReason::kLineTooLong, "line is " + std::to_string(line.size()) +
                                                          " bytes, longer than PIPE_BUF (" +
                                                          std::to_string(kMaxLineBytes) + ")"};
  json parsed = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  bool marked = false;  // lone surrogates were marked: strings are read through unmark()
  if (parsed.is_discarded()) {
    if (const auto rewritten = mark_lone_surrogates(line)) {
      parsed = json::parse(rewritten->begin(), rewritten->end(), nullptr, /*allow_exceptions=*/false);
      marked = true;
    }
  }
  const json& doc = parsed;
  if (doc.is_discarded()) return ParseError{ParseErrorReason::kNotJson, "not valid JSON"};
  // A value as the line wrote it, for messages (its lone surrogates as surrogatepass bytes).
  const auto shown = [marked](const json& value) { return marked ? unmark(value.dump()) : value.dump(); };
  if (!doc.is_object())
    return ParseError{ParseErrorReason::kNotAnObject, "expected a JSON object, found " + std::string(doc.type_name())};
  for (const char* field : {"pid", "scope_id", "expiration_time", "signal"})
    if (!doc.contains(field))
      return ParseError{ParseErrorReason::kMissingField, std::string("missing field \"") + field + "\""};
  if (doc.contains("version") && !(doc["version"].is_number_integer() && doc["version"] == kProtocolVersion))
    return ParseError{ParseErrorReason::kVersion, "unsupported version " + shown(doc["version"]) + " (expected 1)"};
  const json& pid = doc["pid"];
  if (!pid.is_number_integer())
    return ParseError{ParseErrorReason::kPid, "\"pid\" must be an integer, found " + shown(pid)};
  const auto pid_value = integer_in(pid, 1, INT32_MAX);
  if (!pid_value)
    return ParseError{ParseErrorReason::kPid, "\"pid\" " + shown(pid) + " is not a process id (must be 1..2^31-1)"};
  const json& scope = doc["scope_id"];
  if (!scope.is_string())
    return ParseError{ParseErrorReason::kScope,
                      "\"scope_id\" must be a string, found " + std::string(scope.type_name())};
  std::string scope_id = marked ? unmark(scope.get_ref<const std::string&>()) : scope.get<std::string>();
  if (scope_id.size() > layout::kMaxScopeBytes)  // the bytes kept, surrogates at 3 bytes each
    return ParseError{ParseErrorReason::kScope, "\"scope_id\" is " + std::to_string(scope_id.size()) +
                                                    " bytes; the limit is " + std::to_string(layout::kMaxScopeBytes)};
  const json& expiration = doc["expiration_time"];
  if (!expiration.is_number())
    return ParseError{ParseErrorReason::kExpirationTime,
                      "\"expiration_time\" must be a number, found " + shown(expiration)};
  if (!std::isfinite(expiration.get<double>()))
    return ParseError{ParseErrorReason::kExpirationTime, "\"expiration_time\" must be finite"};
  const json& signal = doc["signal"];
  if (!signal.is_number_integer())
    return ParseError{ParseErrorReason::kSignal, "\"signal\" must be an integer, found " + shown(signal)};
  const auto sig = integer_in(signal, INT32_MIN, SIGRTMAX);
  if (!sig)
    return ParseError{
        ParseErrorReason::kSignal,
        "\"signal\" " + shown(signal) + " is out of range (<= 0: never kill; 1.." + std::to_string(SIGRTMAX) + ")"};
  Request request;
  request.pid = static_cast<pid_t>(*pid_value);
  request.scope_id = std::move(scope_id);
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
