// The FileTimer wire protocol: exact bytes, strict parsing, line reassembly.
#include <gtest/gtest.h>

#include <cstdio>

#include "shmtimer/error.hpp"
#include "shmtimer/fifo_protocol.hpp"

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
  const std::vector<double> values{1.0 / 3, 2.0 / 3 * 1e9, 1764081234.1, 17640812341234.5, 5e-324, 1.7976931348623157e308,
                                   123.456, 1e-4, 9.999999999999999e15, 42.0};
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
      "sys.stdout.write(R(1234, s, 1764081234.5678983, 9).to_json() + chr(10) + R(1234, s, -1, 0).to_json() + chr(10))\n"
      "' '" + [&] {
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
  EXPECT_THROW(format_acquire(1, std::string("\xff\xfe", 2), 1.0, 9), Error);
}

TEST(FifoProtocol, ParsesTheReferenceLine) {
  const auto parsed = parse_request(R"({"version": 1, "pid": 77, "scope_id": "a#1", "expiration_time": 12.5, "signal": 9})");
  ASSERT_TRUE(std::holds_alternative<Request>(parsed));
  const auto& r = std::get<Request>(parsed);
  EXPECT_EQ(r.pid, 77);
  EXPECT_EQ(r.scope_id, "a#1");
  EXPECT_EQ(r.expiration_time, 12.5);
  EXPECT_EQ(r.signal, 9);
  EXPECT_FALSE(r.is_release());
  const auto release = parse_request(R"({"version": 1, "pid": 77, "scope_id": "a#1", "expiration_time": -1, "signal": 0})");
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
      {R"({"pid": 1, "scope_id": 5, "expiration_time": 1, "signal": 9})", "\"scope_id\" must be a string",
       "scope_id"},
      {R"({"pid": 1, "scope_id": "a", "expiration_time": "soon", "signal": 9})", "must be a number",
       "expiration_time"},
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
    const auto parsed = parse_request(std::string(R"({"pid": 1, "scope_id": "a", "expiration_time": 1, "signal": )") +
                                      sig + "}");
    EXPECT_TRUE(std::holds_alternative<Request>(parsed)) << sig;
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
