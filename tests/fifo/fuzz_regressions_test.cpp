// Inputs that broke an invariant of the libFuzzer targets (tests/fuzz/), replayed through
// the public API. Each case names its seed in tests/fuzz/corpus/, where the fuzzer keeps
// replaying it too.
#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "shmtimer/fifo_protocol.hpp"

namespace shmtimer::fifo {
namespace {

std::string line_with_signal(const std::string& signal) {
  return R"({"version": 1, "pid": 4242, "scope_id": "/work/train.py#57", "expiration_time": 1764081234.5678983, )"
         R"("signal": )" +
         signal + "}";
}

// fifo_parser_fuzz, corpus/fifo_parser/regression-signal-above-2to63.txt. A "signal" of
// 2^63 or more is an unsigned JSON integer; read through int64_t it wrapped to a small
// negative number, which passed the range check, so 18446744073709551607 was accepted as
// signal -9 (a timer that never kills) instead of being refused as above SIGRTMAX.
TEST(FuzzRegressions, SignalAtOrAbove2To63IsRefusedNotWrapped) {
  for (const std::string signal :
       {"9223372036854775808", "18446744071562067968", "18446744073709551607", "18446744073709551615"}) {
    const auto parsed = parse_request(line_with_signal(signal));
    const auto* refusal = std::get_if<ParseError>(&parsed);
    EXPECT_NE(refusal, nullptr) << "signal " << signal << " was accepted as " << std::get<Request>(parsed).signal;
    if (refusal != nullptr) {
      EXPECT_EQ(refusal->reason, ParseErrorReason::kSignal) << refusal->message;
    }
  }
  // The neighbours that are valid stay valid.
  for (const std::string signal : {"9", "0", "-1", "-2147483648"}) {
    const auto parsed = parse_request(line_with_signal(signal));
    const auto* request = std::get_if<Request>(&parsed);
    EXPECT_NE(request, nullptr) << "signal " << signal << ": " << std::get<ParseError>(parsed).message;
    if (request != nullptr) {
      EXPECT_EQ(std::to_string(request->signal), signal);
    }
  }
}

}  // namespace
}  // namespace shmtimer::fifo
