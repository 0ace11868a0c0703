#include <string.h>  // sigabbrev_np (GNU)

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "format.hpp"

namespace timer_dump {

namespace {

constexpr std::uint64_t kNsPerS = 1'000'000'000;
constexpr std::uint64_t kSPerMin = 60;
constexpr std::uint64_t kSPerHour = 60 * kSPerMin;
constexpr std::uint64_t kSPerDay = 24 * kSPerHour;

std::string two_units(std::uint64_t big, const char* big_unit, std::uint64_t small, const char* small_unit) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%llu%s%02llu%s", static_cast<unsigned long long>(big), big_unit,
                static_cast<unsigned long long>(small), small_unit);
  return buf;
}

std::string one_unit(double value, const char* format) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, value);
  return buf;
}

// "+02:00" from strftime's "+0200".
std::string iso_offset(const std::tm& tm) {
  char buf[16];
  if (std::strftime(buf, sizeof buf, "%z", &tm) != 5) return "";
  return std::string(buf, 3) + ":" + std::string(buf + 3, 2);
}

}  // namespace

std::string format_duration(std::int64_t ns) {
  const std::string sign = ns < 0 ? "-" : "";
  // The magnitude as unsigned, so that INT64_MIN does not overflow.
  const std::uint64_t abs_ns = ns < 0 ? 0 - static_cast<std::uint64_t>(ns) : static_cast<std::uint64_t>(ns);
  if (abs_ns < kNsPerS) return sign + one_unit(static_cast<double>(abs_ns) / 1e6, "%.1fms");
  if (abs_ns < kSPerMin * kNsPerS) return sign + one_unit(static_cast<double>(abs_ns) / 1e9, "%.3fs");
  const std::uint64_t s = abs_ns / kNsPerS;
  if (s < kSPerHour) return sign + two_units(s / kSPerMin, "m", s % kSPerMin, "s");
  if (s < kSPerDay) return sign + two_units(s / kSPerHour, "h", s % kSPerHour / kSPerMin, "m");
  return sign + two_units(s / kSPerDay, "d", s % kSPerDay / kSPerHour, "h");
}

std::string format_local_time(double unix_s, bool iso) {
  if (!std::isfinite(unix_s) || unix_s < 0 || unix_s > 253402300799.0) return "?";  // year 9999
  const double whole = std::floor(unix_s);
  const auto seconds = static_cast<std::time_t>(whole);
  const int ms = std::min(999, static_cast<int>((unix_s - whole) * 1000));
  std::tm tm{};
  if (::localtime_r(&seconds, &tm) == nullptr) return "?";
  char buf[64];
  if (std::strftime(buf, sizeof buf, iso ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm) == 0) return "?";
  char millis[16];
  std::snprintf(millis, sizeof millis, ".%03d", ms);
  return std::string(buf) + millis + (iso ? iso_offset(tm) : "");
}

std::optional<std::string> signal_name(int signal) {
  if (signal <= 0) return std::nullopt;
  const char* abbrev = ::sigabbrev_np(signal);
  if (abbrev == nullptr) return std::nullopt;
  return std::string("SIG") + abbrev;
}

std::string signal_label(int signal) {
  if (signal <= 0) return "none";
  return signal_name(signal).value_or(std::to_string(signal));
}

const char* origin_name(shmtimer::layout::Origin origin) {
  return origin == shmtimer::layout::Origin::kFifo ? "fifo" : "table";
}

}  // namespace timer_dump
