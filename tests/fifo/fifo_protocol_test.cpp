// The FileTimer wire protocol: exact bytes, strict parsing, line reassembly.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "shmtimer/error.hpp"
#include "shmtimer/fifo_protocol.hpp"
#include "shmtimer/printable.hpp"
#include "test_support.hpp"

namespace shmtimer::fifo {
namespace {

std::string run_python(const std::string& code) {
  const std::string command = "/usr/bin/python3 -c '" + code + "'";
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  ::pclose(pipe);
  return out;
}

TEST(FifoProtocol, PythonFloatRepr) {
  EXPECT_EQ(python_float_repr(1764081234.5678983), "1764081234.5678983");
  EXPECT_EQ(python_float_repr(1764081234.0), "1764081234.0");
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(-1.5), "-1.5");
  EXPECT_EQ(python_float_repr(0.0), "0.0");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(0.00001), "1e-05");
  EXPECT_EQ(python_float_repr(123456789012345678.0), "1.2345678901234568e+17");
}

TEST(FifoProtocol, FloatReprMatchesPythonOnManyValues) {
  // A spread of magnitudes and digit counts, printed by the real Python.
  const std::vector<double> values{
      1.0 / 3, 2.0 / 3 * 1e9,        1764081234.1, 17640812341234.5, 5e-324, 1.7976931348623157e308, 123.456,
      1e-4,    9.999999999999999e15, 42.0};
  std::string list;
  for (double v : values) list += (list.empty() ? "" : ",") + python_float_repr(v);
  const std::string python = run_python("import sys; print(\",\".join(repr(v) for v in [" + list + "]))");
  EXPECT_EQ(python, list + "\n");
}

TEST(FifoProtocol, BytesAreExactlyWhatTheReferenceClientWrites) {
  const std::string scope = "tr\"ain\\.py#42 é ☃ \U0001F600\t\n";
  const std::string ours = format_acquire(1234, scope, 1764081234.5678983, 9) + format_release(1234, scope);
  // The reference's own FileTimerRequest.to_json(), as its client writes it.
  const std::string python = run_python(
      "import sys\n"
      "from torch.distributed.elastic.timer.file_based_local_timer import FileTimerRequest as R\n"
      "s = bytes.fromhex(sys.argv[1]).decode()\n"
      "sys.stdout.write(R(1234, s, 1764081234.5678983, 9).to_json() + chr(10) + R(1234, s, -1, 0).to_json() + "
      "chr(10))\n"
      "' '" +
      [&] {
        std::string hex;
        char b[3];
        for (unsigned char c : scope) {
          std::snprintf(b, sizeof b, "%02x", c);
          hex += b;
        }
        return hex;
      }());
  EXPECT_EQ(ours, python);
}

TEST(FifoProtocol, InvalidUtf8ScopeIsAClearError) {
  const auto thrown = testing::thrown_by([] { format_acquire(1, std::string("\xff\xfe", 2), 1.0, 9); });
  EXPECT_EQ(thrown.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(thrown.message.find("not valid UTF-8"), std::string::npos) << thrown.message;
}

TEST(FifoProtocol, ParsesTheReferenceLine) {
  const auto parsed =
      parse_request(R"({"version": 1, "pid": 77, "scope_id": "a#1", "expiration_time": 12.5, "signal": 9})");
  ASSERT_TRUE(std::holds_alternative<Request>(parsed));
  const auto& r = std::get<Request>(parsed);
  EXPECT_EQ(r.pid, 77);
  EXPECT_EQ(r.scope_id, "a#1");
  EXPECT_EQ(r.expiration_time, 12.5);
  EXPECT_EQ(r.signal, 9);
  EXPECT_FALSE(r.is_release());
  const auto release =
      parse_request(R"({"version": 1, "pid": 77, "scope_id": "a#1", "expiration_time": -1, "signal": 0})");
  ASSERT_TRUE(std::holds_alternative<Request>(release));
  EXPECT_TRUE(std::get<Request>(release).is_release());
}

TEST(FifoProtocol, RefusesEachKindOfMalformedLineSayingWhyAndUnderWhichReason) {
  struct Case {
    std::string line;
    std::string message;  // a part of what the error says
    std::string reason;   // the metrics label it is counted under
  };
  const std::vector<Case> cases{
      {"{not json", "not valid JSON", "not_json"},
      {"[1, 2]", "expected a JSON object", "not_an_object"},
      {R"({"pid": 1, "scope_id": "a", "expiration_time": 1})", "missing field \"signal\"", "missing_field"},
      {R"({"pid": "1", "scope_id": "a", "expiration_time": 1, "signal": 9})", "\"pid\" must be an integer", "pid"},
      {R"({"pid": 1.5, "scope_id": "a", "expiration_time": 1, "signal": 9})", "\"pid\" must be an integer", "pid"},
      {R"({"pid": 0, "scope_id": "a", "expiration_time": 1, "signal": 9})", "is not a process id", "pid"},
      {R"({"pid": -1, "scope_id": "a", "expiration_time": 1, "signal": 9})", "is not a process id", "pid"},
      {R"({"pid": 4294967297, "scope_id": "a", "expiration_time": 1, "signal": 9})", "is not a process id", "pid"},
      {R"({"pid": 1, "scope_id": 5, "expiration_time": 1, "signal": 9})", "\"scope_id\" must be a string", "scope_id"},
      {R"({"pid": 1, "scope_id": "a", "expiration_time": "soon", "signal": 9})", "must be a number", "expiration_time"},
      {R"({"pid": 1, "scope_id": "a", "expiration_time": 1, "signal": 65})", "out of range", "signal"},
      {R"({"pid": 1, "scope_id": "a", "expiration_time": 1, "signal": 9999})", "out of range", "signal"},
      {R"({"pid": 1, "scope_id": "a", "expiration_time": 1, "signal": "KILL"})", "must be an integer", "signal"},
      {R"({"version": 2, "pid": 1, "scope_id": "a", "expiration_time": 1, "signal": 9})", "unsupported version",
       "version"},
      {R"({"pid": 1, "scope_id": ")" + std::string(300, 'x') + R"(", "expiration_time": 1, "signal": 9})",
       "the limit is 256", "scope_id"},
      {std::string(5000, ' '), "longer than PIPE_BUF", "line_too_long"},
  };
  for (const auto& c : cases) {
    const auto parsed = parse_request(c.line);
    ASSERT_TRUE(std::holds_alternative<ParseError>(parsed)) << c.line;
    const auto& error = std::get<ParseError>(parsed);
    EXPECT_NE(error.message.find(c.message), std::string::npos) << c.line.substr(0, 80) << " -> " << error.message;
    EXPECT_EQ(reason_label(error.reason), c.reason) << c.line.substr(0, 80);
  }
}

TEST(FifoProtocol, SignalsZeroAndNegativeAreValidNeverKillTimers) {
  for (const char* sig : {"0", "-1", "-15"}) {
    const auto parsed =
        parse_request(std::string(R"({"pid": 1, "scope_id": "a", "expiration_time": 1, "signal": )") + sig + "}");
    EXPECT_TRUE(std::holds_alternative<Request>(parsed)) << sig;
  }
}

// Lone surrogates. Python's json.dumps (torch's FileTimerClient) writes a str holding a
// lone UTF-16 surrogate as "\ud800": torch's default scope "file#line" holds one for a
// file name that is not UTF-8. Such a scope is taken as its "surrogatepass" bytes, the
// bytes the Python module stores for the same str in a table slot. Every expected value
// below is what /usr/bin/python3 gives for json.loads(line)["scope_id"].encode("utf-8",
// "surrogatepass"); AgreesWithPythonOnScopesMadeOfSurrogateEscapeTokens asks it directly.

std::string line_with_scope(std::string_view scope_json) {
  return R"({"version": 1, "pid": 77, "scope_id": )" + std::string(scope_json) +
         R"(, "expiration_time": 12.5, "signal": 9})";
}

// The scope parse_request reads from `scope_json`, or "refused (<reason>): <message>".
std::string scope_of(std::string_view scope_json) {
  const auto parsed = parse_request(line_with_scope(scope_json));
  if (const auto* error = std::get_if<ParseError>(&parsed))
    return std::string("refused (") + reason_label(error->reason) + "): " + error->message;
  return std::get<Request>(parsed).scope_id;
}

TEST(ParseRequest, TakesALoneSurrogateScopeAsItsSurrogatepassBytes) {
  EXPECT_EQ(scope_of(R"("\ud800")"), "\xed\xa0\x80");
  // torch's default scope for /data/train<0xff>.py, line 42: surrogateescape makes the
  // byte 0xff U+DCFF.
  const std::string scope = scope_of(R"("/data/train\udcff.py#42")");
  EXPECT_EQ(scope, "/data/train\xed\xb3\xbf.py#42");
  // The log shows it escaped, byte by byte (printable() takes no surrogate for UTF-8).
  EXPECT_EQ(printable(scope), "/data/train\\xed\\xb3\\xbf.py#42");
  // Acquire and release name the same scope; the release is a release.
  const auto release = parse_request(
      R"({"version": 1, "pid": 77, "scope_id": "/data/train\udcff.py#42", "expiration_time": -1, "signal": 0})");
  ASSERT_TRUE(std::holds_alternative<Request>(release)) << std::get<ParseError>(release).message;
  EXPECT_EQ(std::get<Request>(release).scope_id, scope);
  EXPECT_TRUE(std::get<Request>(release).is_release());
  // The other fields are read as always.
  const auto acquire = parse_request(line_with_scope(R"("\ud800")"));
  ASSERT_TRUE(std::holds_alternative<Request>(acquire));
  EXPECT_EQ(std::get<Request>(acquire).pid, 77);
  EXPECT_EQ(std::get<Request>(acquire).expiration_time, 12.5);
  EXPECT_EQ(std::get<Request>(acquire).signal, 9);
}

TEST(ParseRequest, TakesALoneLowSurrogate) {
  EXPECT_EQ(scope_of(R"("\udcff")"), "\xed\xb3\xbf");
  EXPECT_EQ(scope_of(R"("x\udc00")"), "x\xed\xb0\x80");
  // A low surrogate before a high one is no pair: two lone surrogates.
  EXPECT_EQ(scope_of(R"("\ude00\ud83d")"), "\xed\xb8\x80\xed\xa0\xbd");
}

TEST(ParseRequest, TakesALoneSurrogateAtTheVeryEndOfTheScope) {
  EXPECT_EQ(scope_of(R"("a#1\ud800")"), "a#1\xed\xa0\x80");
  EXPECT_EQ(scope_of(R"("a#1\udbff")"), "a#1\xed\xaf\xbf");
  // A high surrogate followed by an escape that is not a low surrogate is alone, as in
  // Python: before an escaped backslash, before another escape, before a high surrogate
  // that starts a pair.
  EXPECT_EQ(scope_of(R"("\ud800\\")"), "\xed\xa0\x80\\");
  EXPECT_EQ(scope_of(R"("\ud800\u0041")"),
            "\xed\xa0\x80"
            "A");
  EXPECT_EQ(scope_of(R"("\ud800\ud800\udc00")"), "\xed\xa0\x80\xf0\x90\x80\x80");
  // At the end of the whole line, where no '\u' can follow it.
  const auto parsed = parse_request(R"({"pid": 1, "expiration_time": 1, "signal": 9, "scope_id": "\udfff"})");
  ASSERT_TRUE(std::holds_alternative<Request>(parsed)) << std::get<ParseError>(parsed).message;
  EXPECT_EQ(std::get<Request>(parsed).scope_id, "\xed\xbf\xbf");
}

TEST(ParseRequest, ReadsUppercaseHexInSurrogateEscapes) {
  EXPECT_EQ(scope_of(R"("\uD800")"), "\xed\xa0\x80");
  EXPECT_EQ(scope_of(R"("\uDcFf")"), "\xed\xb3\xbf");
  EXPECT_EQ(scope_of(R"("\uD800\uD83D\uDE00")"), "\xed\xa0\x80\xf0\x9f\x98\x80");  // uppercase pair
  EXPECT_EQ(scope_of(R"("\uFDD0\ud800")"), "\xef\xb7\x90\xed\xa0\x80");
}

TEST(ParseRequest, KeepsAPairedSurrogateAsUtf8) {
  EXPECT_EQ(scope_of(R"("\ud83d\ude00")"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(scope_of(R"("\uDBFF\uDFFF")"), "\xf4\x8f\xbf\xbf");
  // Also in a line that holds a lone surrogate as well, so it is parsed the second way.
  EXPECT_EQ(scope_of(R"("\ud800\ud83d\ude00")"), "\xed\xa0\x80\xf0\x9f\x98\x80");
  EXPECT_EQ(scope_of(R"("\ud83d\ude00\udfff")"), "\xf0\x9f\x98\x80\xed\xbf\xbf");
}

TEST(ParseRequest, ReadsAnEscapedBackslashBeforeUAsText) {
  // "\\ud800" is an escaped backslash and the text "ud800", not an escape.
  EXPECT_EQ(scope_of(R"("\\ud800")"), "\\ud800");
  EXPECT_EQ(scope_of(R"("\\ud800\ud800")"), "\\ud800\xed\xa0\x80");
  // An escaped backslash, then a lone surrogate escape.
  EXPECT_EQ(scope_of(R"("\\\ud800")"), "\\\xed\xa0\x80");
  // An escaped quote does not end the string: the escape after it is still in it.
  EXPECT_EQ(scope_of(R"("\"\ud800")"), "\"\xed\xa0\x80");
}

TEST(ParseRequest, KeepsAGenuineUFDD0Distinct) {
  // U+FDD0 is the mark of the rewrite that lets the JSON library read lone surrogates;
  // written by the client, escaped in either case or as its UTF-8 bytes, it stays itself,
  // as do U+E000.. (the mark's partners), next to a lone surrogate or not.
  EXPECT_EQ(scope_of(R"("\ufdd0\ud800")"), "\xef\xb7\x90\xed\xa0\x80");
  EXPECT_EQ(scope_of("\"\xef\xb7\x90\\ud800\""), "\xef\xb7\x90\xed\xa0\x80");
  EXPECT_EQ(scope_of(R"("\uFDD0\ue000\ud800")"), "\xef\xb7\x90\xee\x80\x80\xed\xa0\x80");
  EXPECT_EQ(scope_of(R"("\ufdd0\ufdd0\ud800")"), "\xef\xb7\x90\xef\xb7\x90\xed\xa0\x80");
  EXPECT_EQ(scope_of("\"\\ud800\xef\xb7\x90\xee\x80\x80\xef\xb7\x90\\ufdd0\\udfff\""),
            "\xed\xa0\x80\xef\xb7\x90\xee\x80\x80\xef\xb7\x90\xef\xb7\x90\xed\xbf\xbf");
  EXPECT_EQ(scope_of(R"("\ufdd0\ue000")"), "\xef\xb7\x90\xee\x80\x80");  // no lone surrogate here
  // So U+FDD0 U+E000 and U+D800 are two scopes, whichever way each is written.
  EXPECT_NE(scope_of(R"("\ufdd0\ue000\udfff")"), scope_of(R"("\ud800\udfff")"));
}

TEST(ParseRequest, AppliesTheScopeLimitToTheSurrogatepassBytes) {
  std::string surrogates;
  for (int i = 0; i < 84; ++i) surrogates += "\\udcff";            // 3 bytes each, kept
  EXPECT_EQ(scope_of("\"" + surrogates + "abcd\"").size(), 256u);  // 84 * 3 + 4 bytes: the limit
  EXPECT_EQ(scope_of("\"" + surrogates + "abcde\""), "refused (scope_id): \"scope_id\" is 257 bytes; the limit is 256");
  // Genuine U+FDD0s (doubled while parsing) count as 3 bytes each too.
  std::string marks;
  for (int i = 0; i < 84; ++i) marks += "\\ufdd0";
  EXPECT_EQ(scope_of("\"" + marks + "\\ud800a\"").size(), 256u);
  EXPECT_EQ(scope_of("\"" + marks + "\\ud800ab\""), "refused (scope_id): \"scope_id\" is 257 bytes; the limit is 256");
}

TEST(ParseRequest, TakesLoneSurrogatesInOtherStringsAndSaysSoInMessages) {
  // As Python's json.loads does, a lone surrogate is taken in any string: in a key or a
  // value of a field the request does not use, the request is kept.
  const auto parsed =
      parse_request(R"({"version": 1, "pid": 77, "\ud800": "\udcff", "scope_id": "a#1", "note": ["\uDFFF"], )"
                    R"("expiration_time": 12.5, "signal": 9})");
  ASSERT_TRUE(std::holds_alternative<Request>(parsed)) << std::get<ParseError>(parsed).message;
  EXPECT_EQ(std::get<Request>(parsed).scope_id, "a#1");
  // A key with a lone surrogate is another key, never the one it starts like.
  EXPECT_EQ(scope_of(R"("a#1", "scope_id\ud800": "b#2")"), "a#1");
  const auto missing = parse_request(R"({"pid": 1, "scope_id\ud800": "a", "expiration_time": 1, "signal": 9})");
  ASSERT_TRUE(std::holds_alternative<ParseError>(missing));
  EXPECT_EQ(reason_label(std::get<ParseError>(missing).reason), std::string("missing_field"));
  // A field of the wrong type is refused as always, its value shown as the line wrote it
  // (the surrogate as its surrogatepass bytes).
  const auto wrong = parse_request(R"({"pid": "\ud800\ufdd0", "scope_id": "a", "expiration_time": 1, "signal": 9})");
  ASSERT_TRUE(std::holds_alternative<ParseError>(wrong));
  EXPECT_EQ(reason_label(std::get<ParseError>(wrong).reason), std::string("pid"));
  EXPECT_EQ(std::get<ParseError>(wrong).message, "\"pid\" must be an integer, found \"\xed\xa0\x80\xef\xb7\x90\"");
}

TEST(ParseRequest, StaysStrictAroundLoneSurrogates) {
  // Each is refused by Python's json.loads (or by its strict UTF-8 read) too.
  const std::vector<std::string> lines{
      line_with_scope(R"("\ud800\u")"),                // a broken escape after the surrogate
      line_with_scope(R"("\ud800\u12")"),              // 2 hex digits
      line_with_scope(R"("\ud800\u12G4")"),            // not hex
      line_with_scope(R"("\ud80")"),                   // 3 hex digits
      line_with_scope(R"("\Ud800")"),                  // \U is no JSON escape
      line_with_scope(R"("\ud800\x")"),                // nor is \x
      line_with_scope("\"\xed\xa0\x80\""),             // a surrogate's bytes, unescaped: not UTF-8
      line_with_scope("\"\\ud800\xed\xa0\x80\""),      // the same next to an escaped one
      line_with_scope("\"\\ud800\xff\""),              // a byte that is never UTF-8
      line_with_scope("\"\\ud800\t\""),                // a raw control character
      line_with_scope("\"\\ud800\xef\xb7\""),          // a truncated U+FDD0
      line_with_scope("\"\\ud800\xf0\x8f\xb7\x90\""),  // U+FDD0 overlong
      line_with_scope(R"("\ud800)"),                   // the string is not closed
      R"({"pid": 1, "scope_id": "\ud800", "expiration_time": 1, "signal": 9})"
      " x",                                                                          // trailing text
      R"({"pid": 1, "scope_id": "\ud800", "expiration_time": 1, "signal": 9)",       // no closing brace
      R"({"pid": 1, "scope_id": "a", \ud800, "expiration_time": 1, "signal": 9})",   // outside a string
      R"({"pid": 1, "scope_id": "a" "\ud800", "expiration_time": 1, "signal": 9})",  // no comma
  };
  for (const auto& line : lines) {
    const auto parsed = parse_request(line);
    ASSERT_TRUE(std::holds_alternative<ParseError>(parsed)) << printable(line);
    EXPECT_EQ(reason_label(std::get<ParseError>(parsed).reason), std::string("not_json")) << printable(line);
  }
  // The other checks stand: a lone surrogate's string is JSON but no object, and a scope
  // that is not a string is refused as always.
  const auto string_line = parse_request(R"("\ud800")");
  ASSERT_TRUE(std::holds_alternative<ParseError>(string_line));
  EXPECT_EQ(reason_label(std::get<ParseError>(string_line).reason), std::string("not_an_object"));
  EXPECT_EQ(scope_of(R"(["\ud800"])"), "refused (scope_id): \"scope_id\" must be a string, found array");
}

std::string hex_of(std::string_view bytes) {
  std::string hex;
  char b[3];
  for (unsigned char c : bytes) {
    std::snprintf(b, sizeof b, "%02x", c);
    hex += b;
  }
  return hex;
}

TEST(ParseRequest, AgreesWithPythonOnScopesMadeOfSurrogateEscapeTokens) {
  // Random scopes (and a key and a value of another field) made of surrogate escapes,
  // U+FDD0 and its partners, backslashes, quotes and broken escapes: each line is taken
  // or refused as Python's json.loads takes it (reading the line as strict UTF-8, as
  // torch's server does), and a scope it takes is its surrogatepass bytes.
  const std::vector<std::string> tokens{
      "a",       "#",       "u",       "d800",         "\\ud800", "\\uDBFF", "\\udc00",
      "\\uDcFf", "\\ud83d", "\\ude00", "\\uD83D",      "\\uDE00", "\\\\",    "\\\"",
      "\"",      "\\ufdd0", "\\uFDD0", "\xef\xb7\x90", "\\ue000", "\\ue7ff", "\xee\x80\x80",
      "\\u0041", "\\u",     "\\u12",   "\xc3\xa9",     "\\n",     "\\x",     "\xed\xa0\x80",
      "\\/"};
  std::mt19937 random(20261126);
  const auto random_text = [&] {
    std::string text;
    const auto n = std::uniform_int_distribution<int>(0, 8)(random);
    std::uniform_int_distribution<std::size_t> token(0, tokens.size() - 1);
    for (int i = 0; i < n; ++i) text += tokens[token(random)];
    return text;
  };
  std::vector<std::string> lines;
  for (int i = 0; i < 2000; ++i) {
    const bool others = i % 4 == 0;  // every fourth line also has text in another key and value
    lines.push_back(R"({"version": 1, "pid": 77, "scope_id": ")" + random_text() + "\"" +
                    (others ? R"(, "k)" + random_text() + R"(": "v)" + random_text() + "\"" : "") +
                    R"(, "expiration_time": 12.5, "signal": 9})");
  }
  char path[] = "/tmp/fifo_protocol_test.XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    std::ofstream out(path);
    for (const auto& line : lines) out << hex_of(line) << "\n";
  }
  const std::string python = run_python(
      "import json, sys\n"
      "for h in open(sys.argv[1]).read().split():\n"
      "    try:\n"
      "        s = json.loads(bytes.fromhex(h).decode(\"utf-8\"))[\"scope_id\"]\n"
      "        print(s.encode(\"utf-8\", \"surrogatepass\").hex() if isinstance(s, str) else \"refused\")\n"
      "    except (ValueError, KeyError, TypeError):\n"
      "        print(\"refused\")\n"
      "' '" +
      std::string(path));
  ::unlink(path);
  std::istringstream answers(python);
  int taken = 0, with_lone_surrogates = 0;
  for (const auto& line : lines) {
    std::string expected;
    ASSERT_TRUE(std::getline(answers, expected)) << "python answered " << python.size() << " bytes";
    const auto parsed = parse_request(line);
    const auto* request = std::get_if<Request>(&parsed);
    EXPECT_EQ(request ? hex_of(request->scope_id) : "refused", expected) << printable(line);
    if (request) {
      ++taken;
      if (request->scope_id.find("\xed") != std::string::npos) ++with_lone_surrogates;
    }
  }
  // The tokens make both kinds common enough to mean something.
  EXPECT_GT(taken, 200);
  EXPECT_GT(with_lone_surrogates, 100);
  EXPECT_GT(static_cast<int>(lines.size()) - taken, 200);
}

TEST(FifoProtocol, WritesALoneSurrogateScopeAsPythonDoesAndReadsItBack) {
  // Such a scope's surrogatepass bytes (as parse_request reads them, and as the Python
  // module stores them) are written as the reference writes the str they stand for.
  const std::string scope = "train\xed\xb3\xbf.py#42 \xed\xa0\x80\xc3\xa9\xf0\x9f\x98\x80\xed\xbf\xbf";
  const std::string ours = format_acquire(1234, scope, 1764081234.5678983, 9) + format_release(1234, scope);
  const std::string python = run_python(
      "import sys\n"
      "from torch.distributed.elastic.timer.file_based_local_timer import FileTimerRequest as R\n"
      "s = bytes.fromhex(sys.argv[1]).decode(\"utf-8\", \"surrogatepass\")\n"
      "sys.stdout.write(R(1234, s, 1764081234.5678983, 9).to_json() + chr(10) + R(1234, s, -1, 0).to_json() + "
      "chr(10))\n"
      "' '" +
      hex_of(scope));
  EXPECT_EQ(ours, python);
  EXPECT_NE(ours.find(R"("train\udcff.py#42 \ud800\u00e9\ud83d\ude00\udfff")"), std::string::npos) << ours;
  const auto back = parse_request(std::string_view(ours).substr(0, ours.find('\n')));
  ASSERT_TRUE(std::holds_alternative<Request>(back));
  EXPECT_EQ(std::get<Request>(back).scope_id, scope);
}

TEST(FifoProtocol, RefusesASurrogatePairSplitIntoTwoSequences) {
  // "\ud83d\ude00" is read back as U+1F600's 4 bytes, never as these 6: refused, not changed.
  const auto pair = testing::thrown_by([] { format_acquire(1, "\xed\xa0\xbd\xed\xb8\x80", 1.0, 9); });
  EXPECT_EQ(pair.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(pair.message.find("surrogate pair"), std::string::npos) << pair.message;
  // Low before high is no pair, and reads back as it is.
  const std::string formatted = format_acquire(1, "\xed\xb8\x80\xed\xa0\xbd", 1.0, 9);
  EXPECT_NE(formatted.find(R"("\ude00\ud83d")"), std::string::npos) << formatted;
  // Invalid UTF-8 around a surrogate is still refused.
  for (const char* scope : {"\xed\xa0\x80\xff", "\xe2\x98\xed\xa0\x80"}) {
    const auto invalid = testing::thrown_by([&] { format_acquire(1, scope, 1.0, 9); });
    EXPECT_EQ(invalid.code, ErrorCode::kInvalidArgument);
    EXPECT_NE(invalid.message.find("not valid UTF-8"), std::string::npos) << invalid.message;
  }
}

struct Collected {
  std::vector<std::string> lines;
  std::vector<std::size_t> overlong;
  LineAssembler assembler{[this](std::string_view l) { lines.emplace_back(l); },
                          [this](std::size_t n, std::string_view) { overlong.push_back(n); }};
};

TEST(LineAssembler, ReassemblesLinesSplitAcrossReads) {
  Collected c;
  c.assembler.feed("ab");
  c.assembler.feed("c\nde");
  c.assembler.feed("f\n\nghi\n");
  EXPECT_EQ(c.lines, (std::vector<std::string>{"abc", "def", "ghi"}));
  EXPECT_EQ(c.assembler.buffered(), 0u);
}

TEST(LineAssembler, DropsAnOverlongLineWholeAndKeepsItsNeighbours) {
  Collected c;
  const std::string longline(fifo::kMaxLineBytes + 10, 'x');
  c.assembler.feed("before\n" + longline.substr(0, 3000));
  c.assembler.feed(longline.substr(3000) + "\nafter\n");
  EXPECT_EQ(c.lines, (std::vector<std::string>{"before", "after"}));
  EXPECT_EQ(c.overlong, (std::vector<std::size_t>{longline.size()}));
}

TEST(LineAssembler, ALineOfExactlyPipeBufIsKept) {
  Collected c;
  c.assembler.feed(std::string(fifo::kMaxLineBytes, 'y') + "\n");
  ASSERT_EQ(c.lines.size(), 1u);
  EXPECT_EQ(c.lines[0].size(), fifo::kMaxLineBytes);
}

}  // namespace
}  // namespace shmtimer::fifo
