// libFuzzer target: the FIFO shim's line reassembler and request parser
// (include/shmtimer/fifo_protocol.hpp), fed arbitrary bytes in arbitrary chunks.
//
// Input layout. Byte 0 chooses the split: its low 4 bits are a count n (0..15) of split
// bytes that follow it; each split byte b is a chunk size (b < 128: b + 1 bytes, else
// (b - 127) * 64 bytes, so both tiny and PIPE_BUF-sized chunks are reachable), used in
// turn and cycled. The rest of the input is the byte stream a FIFO would deliver. So a
// seed file reads as text: "0" + lines feeds nothing but the lines.
//
// Checked on every input (a violation is __builtin_trap(), i.e. a crash libFuzzer keeps):
//  - the same stream fed in the chosen chunks, in one piece and (up to 1 KiB) one byte
//    at a time yields the same events, and they are exactly those of a reference model computed
//    from the whole stream: every non-empty complete line of at most kMaxLineBytes, in
//    order, and one overlong report (with the exact length) for each longer line;
//  - no emitted line holds '\n' or exceeds kMaxLineBytes; buffered() is the unterminated
//    tail (0 when that tail is already overlong);
//  - a parsed Request holds exactly the line's values (read again independently), and
//    has 0 < pid <= 2^31-1, a scope of at most 256 bytes, a finite
//    expiration time and signal <= SIGRTMAX;
//  - round trip: format_request(r) is one line of at most kMaxLineBytes that parses back
//    to r (an acquire keeps every field bit for bit; a release keeps pid and scope and
//    comes back as expiration -1, signal 0), and formatting that again gives the same
//    bytes. A parsed scope is valid UTF-8 but for lone surrogates (a "\udcff" escape,
//    as Python's json writes one), each as its 3 "surrogatepass" bytes, never a high
//    surrogate's bytes before a low one's (that escape pair is one 4-byte character):
//    what format_request takes; any other scope is itself a violation.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "shmtimer/error.hpp"
#include "shmtimer/fifo_protocol.hpp"
#include "shmtimer/table_layout.hpp"

namespace {

namespace fifo = shmtimer::fifo;

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

// One assembler callback: a line (overlong == 0) or an overlong report of `overlong` bytes.
struct Event {
  std::string line;
  std::size_t overlong = 0;
  bool operator==(const Event&) const = default;
};

// What any chunking must produce: split the whole stream at '\n'.
std::vector<Event> model_events(std::string_view stream, std::size_t& tail_buffered) {
  std::vector<Event> events;
  for (;;) {
    const auto newline = stream.find('\n');
    if (newline == std::string_view::npos) break;
    const std::string_view line = stream.substr(0, newline);
    if (line.size() > fifo::kMaxLineBytes)
      events.push_back({"", line.size()});
    else if (!line.empty())
      events.push_back({std::string(line), 0});
    stream.remove_prefix(newline + 1);
  }
  tail_buffered = stream.size() > fifo::kMaxLineBytes ? 0 : stream.size();
  return events;
}

std::vector<Event> assemble(std::string_view stream, const std::vector<std::size_t>& chunks, std::size_t& buffered) {
  std::vector<Event> events;
  fifo::LineAssembler assembler(
      [&](std::string_view line) {
        FUZZ_CHECK(!line.empty());
        FUZZ_CHECK(line.size() <= fifo::kMaxLineBytes);
        FUZZ_CHECK(line.find('\n') == std::string_view::npos);
        events.push_back({std::string(line), 0});
      },
      [&](std::size_t dropped, std::string_view tail) {
        FUZZ_CHECK(dropped > fifo::kMaxLineBytes);
        FUZZ_CHECK(tail.size() == fifo::kMaxLineBytes);
        FUZZ_CHECK(tail.find('\n') == std::string_view::npos);
        if (auto recovered = fifo::recover_request(tail)) FUZZ_CHECK(recovered->pid > 0);
        events.push_back({"", dropped});
      });
  std::size_t i = 0;
  while (!stream.empty()) {
    const std::size_t n = std::min(stream.size(), chunks[i++ % chunks.size()]);
    assembler.feed(stream.substr(0, n));
    FUZZ_CHECK(assembler.buffered() <= fifo::kMaxLineBytes);
    stream.remove_prefix(n);
  }
  assembler.feed({});  // an empty read changes nothing
  buffered = assembler.buffered();
  return events;
}

// UTF-8, except that a surrogate U+D800..U+DFFF may stand alone as its 3 bytes (but
// never a high one's right before a low one's): generalized UTF-8 (WTF-8).
bool valid_utf8_with_lone_surrogates(std::string_view s) {
  std::size_t i = 0;
  bool after_high_surrogate = false;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      after_high_surrogate = false;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff) return false;
    if (after_high_surrogate && cp >= 0xdc00 && cp <= 0xdfff) return false;
    after_high_surrogate = cp >= 0xd800 && cp <= 0xdbff;
    i += n + 1;
  }
  return true;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void check_request(const fifo::Request& r) {
  FUZZ_CHECK(r.pid > 0);
  FUZZ_CHECK(r.scope_id.size() <= shmtimer::layout::kMaxScopeBytes);
  FUZZ_CHECK(std::isfinite(r.expiration_time));
  FUZZ_CHECK(r.signal <= SIGRTMAX);
  FUZZ_CHECK(valid_utf8_with_lone_surrogates(r.scope_id));

  std::string formatted;
  try {
    formatted = fifo::format_request(r);
  } catch (const shmtimer::Error&) {
    __builtin_trap();  // only scopes that are not the above are refused
  }
  // One line, newline-terminated, short enough to be written atomically.
  FUZZ_CHECK(!formatted.empty() && formatted.back() == '\n');
  const std::string_view line(formatted.data(), formatted.size() - 1);
  FUZZ_CHECK(line.find('\n') == std::string_view::npos);
  FUZZ_CHECK(line.size() <= fifo::kMaxLineBytes);

  const auto again = fifo::parse_request(line);
  FUZZ_CHECK(std::holds_alternative<fifo::Request>(again));
  const auto& back = std::get<fifo::Request>(again);
  FUZZ_CHECK(back.pid == r.pid);
  FUZZ_CHECK(back.scope_id == r.scope_id);
  FUZZ_CHECK(back.is_release() == r.is_release());
  if (r.is_release()) {
    FUZZ_CHECK(back.expiration_time == -1.0);  // the reference writes a release as -1, signal 0
    FUZZ_CHECK(back.signal == 0);
  } else {
    FUZZ_CHECK(same_bits(back.expiration_time, r.expiration_time));
    FUZZ_CHECK(back.signal == r.signal);
  }
  FUZZ_CHECK(fifo::format_request(back) == formatted);
}

// Is the JSON integer `value` exactly `expected`? (nlohmann's own == converts an
// unsigned value to signed, so 2^64 - 1 would "equal" -1.)
bool same_integer(const nlohmann::json& value, std::int64_t expected) {
  if (value.is_number_unsigned())
    return expected >= 0 && value.get<std::uint64_t>() == static_cast<std::uint64_t>(expected);
  return value.is_number_integer() && value.get<std::int64_t>() == expected;
}

// The line with the 4 hex digits of every "\\u" + surrogate (D800..DFFF, either case)
// made "0020": valid JSON for nlohmann_json if the line is valid for Python's json, and
// the same numbers. (After an escaped backslash, "\\ud800" is text, and stays text.)
std::string without_surrogate_escapes(std::string_view line) {
  std::string out(line);
  for (std::size_t i = 0; i + 6 <= out.size(); ++i) {
    if (out[i] != '\\' || out[i + 1] != 'u' || (out[i + 2] | 0x20) != 'd') continue;
    const char third = static_cast<char>(out[i + 3] | 0x20);
    const bool hex = [&] {
      for (std::size_t k = 4; k < 6; ++k)
        if (!std::isxdigit(static_cast<unsigned char>(out[i + k]))) return false;
      return true;
    }();
    if (hex && ((third >= '8' && third <= '9') || (third >= 'a' && third <= 'f'))) out.replace(i + 2, 4, "0020");
  }
  return out;
}

// An accepted request says what the line says: each field equals the line's own value,
// read independently (the parser may refuse a value, never change it). A line with a
// lone surrogate escape, which nlohmann_json refuses, is read with its surrogate escapes
// made spaces; its scope's bytes are checked by round trip (check_request) and, against
// Python's json, by ParseRequest.AgreesWithPythonOnScopesMadeOfSurrogateEscapeTokens.
void check_meaning(std::string_view line, const fifo::Request& r) {
  auto doc = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  const bool lone_surrogates = doc.is_discarded();
  if (lone_surrogates) {
    const std::string plain = without_surrogate_escapes(line);
    doc = nlohmann::json::parse(plain.begin(), plain.end(), nullptr, /*allow_exceptions=*/false);
  }
  FUZZ_CHECK(doc.is_object());
  FUZZ_CHECK(same_integer(doc["pid"], r.pid));
  FUZZ_CHECK(same_integer(doc["signal"], r.signal));
  FUZZ_CHECK(doc["scope_id"].is_string());
  if (!lone_surrogates) FUZZ_CHECK(doc["scope_id"].get_ref<const std::string&>() == r.scope_id);
  FUZZ_CHECK(doc["expiration_time"].is_number() && same_bits(doc["expiration_time"].get<double>(), r.expiration_time));
}

void parse_and_check(std::string_view line) {
  const auto parsed = fifo::parse_request(line);
  if (const auto* request = std::get_if<fifo::Request>(&parsed)) {
    FUZZ_CHECK(line.size() <= fifo::kMaxLineBytes);
    check_meaning(line, *request);
    check_request(*request);
  } else {
    FUZZ_CHECK(!std::get<fifo::ParseError>(parsed).message.empty());  // a refusal always says why
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t split_bytes = std::min<std::size_t>(data[0] & 0x0f, size - 1);
  std::vector<std::size_t> chunks;
  for (std::size_t i = 0; i < split_bytes; ++i) {
    const std::uint8_t b = data[1 + i];
    chunks.push_back(b < 128 ? std::size_t{b} + 1 : (std::size_t{b} - 127) * 64);
  }
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1 + split_bytes, size - 1 - split_bytes);

  std::size_t model_tail = 0;
  const auto expected = model_events(stream, model_tail);

  std::size_t buffered = 0;
  if (!chunks.empty()) {
    FUZZ_CHECK(assemble(stream, chunks, buffered) == expected);
    FUZZ_CHECK(buffered == model_tail);
  }
  FUZZ_CHECK(assemble(stream, {stream.size() + 1}, buffered) == expected);
  FUZZ_CHECK(buffered == model_tail);
  if (stream.size() <= 1024) {  // one feed per byte costs too much on long inputs
    FUZZ_CHECK(assemble(stream, {1}, buffered) == expected);
    FUZZ_CHECK(buffered == model_tail);
  }

  for (const auto& event : expected)
    if (event.overlong == 0) parse_and_check(event.line);
  // The parser on its own, on bytes no assembler would hand it (newlines, any length).
  parse_and_check(stream);
  return 0;
}
