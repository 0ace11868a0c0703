// Scopes are arbitrary bytes from untrusted writers (table slots, FIFO lines). Every log
// line, event and message that shows one goes through printable(), so no byte sequence
// can forge a log line (newlines, escape sequences) or make a JSON serializer throw
// (invalid UTF-8).
#pragma once

#include <string>
#include <string_view>

namespace shmtimer {

// `bytes` with control characters (C0, DEL, C1, U+2028 and U+2029), backslash and every
// byte that is not part of a well-formed UTF-8 sequence written as \xNN per byte
// (backslash as \\). The result is valid UTF-8 with no control character, and distinct
// inputs give distinct outputs.
std::string printable(std::string_view bytes);

}  // namespace shmtimer
