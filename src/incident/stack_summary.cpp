#include "stack_summary.hpp"

#include <algorithm>
#include <array>
#include <fmt/format.h>
#include <map>

#include "shmtimer/printable.hpp"

namespace shmtimer::detail {

namespace {

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const auto end = text.find('\n');
    lines.push_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

// The C library, the loader and the kernel's entry points: where every blocked thread
// waits, so they say nothing about where the program was.
bool in_system_library(std::string_view module) {
  const std::string_view base = module.substr(module.rfind('/') + 1);
  for (std::string_view lib : {"libc.so", "libc-", "ld-linux", "libpthread", "linux-vdso", "libstdc++.so"})
    if (base.starts_with(lib)) return true;
  return false;
}

// gdb names a frame's source where the library has debug information: the C library's
// sources are its own tree's ("../sysdeps/unix/...", "./nptl/...").
bool in_system_source(std::string_view file) {
  for (std::string_view dir :
       {"../sysdeps/", "./sysdeps/", "../nptl/", "./nptl/", "../csu/", "./csu/", "../posix/", "./posix/"})
    if (file.starts_with(dir)) return true;
  return false;
}

constexpr std::array<std::string_view, 14> kCollectives{
    "all_reduce", "allreduce", "all_gather", "allgather", "reduce_scatter", "broadcast",         "barrier",
    "all_to_all", "alltoall",  "reduce",     "gather",    "scatter",        "monitored_barrier", "wait"};

bool in_collective(const ProcessPlace& place) {
  if (!place.frame) return false;
  const std::string& f = place.frame->function;
  return std::any_of(kCollectives.begin(), kCollectives.end(), [&](std::string_view c) {
    return f == c || f.starts_with(std::string(c) + "_") || f.ends_with("." + std::string(c));
  });
}

std::string_view trim_right(std::string_view text) {
  while (!text.empty() && (text.back() == ' ' || text.back() == '\r' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// py-spy's '    function (file.py:line)'; false for any other line.
bool parse_py_spy_frame(std::string_view line, std::string& function, std::string& where) {
  line = trim_right(line);
  if (!line.starts_with("    ") || line.size() < 8 || line[4] == ' ' || line.back() != ')') return false;
  const auto open = line.rfind(" (");
  if (open == std::string_view::npos || open < 5) return false;
  function = std::string(line.substr(4, open - 4));
  where = std::string(line.substr(open + 2, line.size() - open - 3));
  return !where.empty();
}

// faulthandler's '  File "path", line 12 in function'.
bool parse_faulthandler_frame(std::string_view line, std::string& function, std::string& where) {
  constexpr std::string_view kFile = "  File \"", kLine = "\", line ", kIn = " in ";
  line = trim_right(line);
  if (!line.starts_with(kFile)) return false;
  const auto quote = line.rfind(kLine);
  if (quote == std::string_view::npos || quote < kFile.size()) return false;
  const auto in = line.find(kIn, quote + kLine.size());
  if (in == std::string_view::npos) return false;
  const std::string_view number = line.substr(quote + kLine.size(), in - quote - kLine.size());
  if (number.empty() || number.find_first_not_of("0123456789") != std::string_view::npos) return false;
  function = std::string(line.substr(in + kIn.size()));
  where = std::string(line.substr(kFile.size(), quote - kFile.size())) + ":" + std::string(number);
  return !function.empty();
}

// A native frame: eu-stack -m's '#0  0x00007f... function - /path/module' (the name and
// module may be missing), or gdb's '#0  0x00007f... in function (args) at file:line' or
// '... from /path/module' (frame 0 may have no address). `source`: gdb's "at" file.
bool parse_native_frame(std::string_view line, std::string& function, std::string& module, bool& source) {
  line = trim_right(line);
  if (!line.starts_with("#")) return false;
  auto next = [&line]() {
    const auto start = line.find_first_not_of(' ');
    if (start == std::string_view::npos) return std::string_view();
    line.remove_prefix(start);
    const auto end = line.find(' ');
    const std::string_view token = line.substr(0, end);
    line.remove_prefix(end == std::string_view::npos ? line.size() : end);
    return token;
  };
  next();  // "#3"
  std::string_view token = next();
  if (token.starts_with("0x")) token = next();
  source = false;
  if (token == "in" || line.find(" (") != std::string_view::npos || line.starts_with(" (")) {  // gdb
    if (token == "in") token = next();
    function = std::string(token);
    const auto at = line.rfind(" at "), from = line.rfind(" from ");
    const auto close = line.rfind(')');
    if (at != std::string_view::npos && (close == std::string_view::npos || at > close)) {
      module = std::string(line.substr(at + 4));
      source = true;
    } else if (from != std::string_view::npos && (close == std::string_view::npos || from > close)) {
      module = std::string(line.substr(from + 6));
    } else {
      module.clear();
    }
    return !function.empty();
  }
  function = std::string(token);  // eu-stack
  const auto dash = line.find(" - ");
  module = dash == std::string_view::npos ? std::string() : std::string(trim_right(line.substr(dash + 3)));
  return !function.empty();
}

}  // namespace

std::string Frame::place() const {
  const auto colon = kind == "python" ? where.rfind(':') : std::string::npos;
  return function + " (" + (colon == std::string::npos ? where : where.substr(0, colon)) + ")";
}

std::string Frame::text() const { return where.empty() ? function : function + " (" + where + ")"; }

std::optional<Frame> innermost_python_frame(std::string_view dump) {
  // py-spy: 'Thread 4242 (idle): "MainThread"', then its frames innermost first, each
  // '    function (file.py:line)'.
  std::optional<Frame> first_thread_frame, main_frame;
  bool in_thread = false, in_main = false, first_thread = true, took = false;
  for (std::string_view line : lines_of(dump)) {
    if (line.starts_with("Thread ")) {
      if (in_thread) first_thread = false;
      in_thread = true;
      in_main = line.find("\"MainThread\"") != std::string_view::npos;
      took = false;
      continue;
    }
    std::string function, where;
    if (!in_thread || took || !parse_py_spy_frame(line, function, where)) continue;
    took = true;
    Frame f{printable(function), printable(where), "python"};
    if (in_main && !main_frame) main_frame = f;
    if (first_thread && !first_thread_frame) first_thread_frame = f;
  }
  return main_frame ? main_frame : first_thread_frame;
}

std::optional<Frame> innermost_faulthandler_frame(std::string_view dump) {
  std::string main_thread;
  std::optional<Frame> main_frame, current_frame;
  bool in_main = false, in_current = false, took = false;
  for (std::string_view line : lines_of(dump)) {
    if (line.starts_with("shmtimer: main thread ")) {
      main_thread = std::string(line.substr(22));
      continue;
    }
    if (line.starts_with("Thread ") || line.starts_with("Current thread ")) {
      in_main = !main_thread.empty() && line.find(main_thread) != std::string_view::npos;
      in_current = line.starts_with("Current thread ");
      took = false;
      continue;
    }
    std::string function, where;
    if (took || !parse_faulthandler_frame(line, function, where)) continue;
    took = true;
    Frame f{printable(function), printable(where), "python"};
    if (in_main && !main_frame) main_frame = f;
    if (in_current && !current_frame) current_frame = f;
  }
  return main_frame ? main_frame : current_frame;
}

std::optional<Frame> innermost_native_frame(std::string_view output, pid_t pid) {
  // eu-stack -m: 'TID 4242:', then '#0  0x00007f... function - /path/module'.
  // gdb: 'Thread 1 (Thread 0x7f... (LWP 4242) "name"):', then
  // '#0  0x00007f... in function (args) at file:line' or '... from /path/module'.
  const std::string tid_eu = fmt::format("TID {}:", pid);
  const std::string tid_gdb = fmt::format("(LWP {})", pid);
  bool in_main = false;
  for (std::string_view line : lines_of(output)) {
    if (line.starts_with("TID ") || line.starts_with("Thread ")) {
      in_main =
          line.starts_with(tid_eu) || (line.starts_with("Thread ") && line.find(tid_gdb) != std::string_view::npos);
      continue;
    }
    if (!in_main) continue;
    std::string function, module;
    bool source = false;
    if (!parse_native_frame(line, function, module, source)) continue;
    if (source && in_system_source(module)) continue;
    if (function == "??" || in_system_library(module)) continue;
    const std::string where = module.substr(module.rfind('/') + 1);
    return Frame{printable(function), printable(where), "native"};
  }
  return std::nullopt;
}

std::vector<std::size_t> odd_ones_out(const std::vector<ProcessPlace>& places, std::string& reason) {
  std::vector<std::size_t> odd;
  std::map<std::string, std::size_t> count;
  std::size_t known = 0;
  for (const auto& p : places)
    if (p.frame) ++count[p.frame->place()], ++known;
  if (known < 2) {
    reason = "too few stacks to compare";
    return odd;
  }
  const auto most =
      std::max_element(count.begin(), count.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  const bool unique_majority =
      std::count_if(count.begin(), count.end(), [&](const auto& c) { return c.second == most->second; }) == 1;
  if (count.size() == 1) {
    reason = "every process is in the same place";
    return odd;
  }
  if (unique_majority && most->second * 2 > known) {
    for (std::size_t i = 0; i < places.size(); ++i)
      if (places[i].frame && places[i].frame->place() != most->first) odd.push_back(i);
    reason = fmt::format("{} of {} are in {}", most->second, known, most->first);
    return odd;
  }
  const auto collective = static_cast<std::size_t>(std::count_if(places.begin(), places.end(), in_collective));
  if (collective > 0 && collective < known) {
    for (std::size_t i = 0; i < places.size(); ++i)
      if (places[i].frame && !in_collective(places[i])) odd.push_back(i);
    reason = fmt::format("{} of {} wait in a collective call; the others do not", collective, known);
    return odd;
  }
  reason = "no place is shared by most of them";
  return odd;
}

std::string summary_text(std::string_view headline, const std::vector<ProcessPlace>& places) {
  std::string reason;
  const auto odd = odd_ones_out(places, reason);
  std::string text = std::string(headline) + "\n\n";
  std::size_t width = 0;
  for (const auto& p : places) width = std::max(width, p.who.size());
  for (std::size_t i = 0; i < places.size(); ++i) {
    const auto& p = places[i];
    const bool differs = std::find(odd.begin(), odd.end(), i) != odd.end();
    text += fmt::format("{:<{}}  pid {:<7}  {:<7}  {}{}\n", p.who, width, p.pid, p.expired ? "expired" : "peer",
                        p.frame ? p.frame->text() + "  [" + p.frame->kind + "]" : "(no stack: " + p.missing + ")",
                        differs ? "   <- differs" : "");
  }
  text += "\n";
  if (odd.empty()) {
    text += "no process stands out: " + reason + "\n";
  } else {
    std::string names;
    for (std::size_t i : odd)
      names += (names.empty() ? "" : ", ") + places[i].who + " (pid " + std::to_string(places[i].pid) + ")";
    text += "differs: " + names + "; " + reason + "\n";
  }
  return text;
}

}  // namespace shmtimer::detail
