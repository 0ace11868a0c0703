#include "shmtimer/printable.hpp"

#include <cstdint>

namespace shmtimer {

namespace {

// The length of the well-formed UTF-8 sequence of 2..4 bytes at the start of `s`, or 0
// (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence(std::string_view s) {
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = at(0);
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    n = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    n = 3;
    if (lead == 0xe0) lo = 0xa0;
    if (lead == 0xed) hi = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    n = 4;
    if (lead == 0xf0) lo = 0x90;
    if (lead == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (s.size() < n || at(1) < lo || at(1) > hi) return 0;
  for (std::size_t i = 2; i < n; ++i)
    if (at(i) < 0x80 || at(i) > 0xbf) return 0;
  return n;
}

// Well-formed, but a control to a terminal or a log viewer: C1 controls (U+0080..U+009F,
// an 8-bit CSI among them) and the line and paragraph separators U+2028, U+2029.
bool is_control_character(std::string_view sequence) {
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(sequence[i]); };
  if (sequence.size() == 2) return at(0) == 0xc2 && at(1) <= 0x9f;
  return sequence.size() == 3 && at(0) == 0xe2 && at(1) == 0x80 && (at(2) == 0xa8 || at(2) == 0xa9);
}

void append_escaped(std::string& out, unsigned char byte) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[byte >> 4];
  out += kHex[byte & 0xf];
}

}  // namespace

std::string printable(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    const auto byte = static_cast<unsigned char>(bytes[i]);
    if (byte == '\\') {
      out += "\\\\";
      ++i;
    } else if (byte >= 0x20 && byte < 0x7f) {
      out += static_cast<char>(byte);
      ++i;
    } else if (const std::size_t n = byte >= 0x80 ? utf8_sequence(bytes.substr(i)) : 0;
               n > 0 && !is_control_character(bytes.substr(i, n))) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      append_escaped(out, byte);
      ++i;
    }
  }
  return out;
}

}  // namespace shmtimer
