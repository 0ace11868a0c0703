#include "stack_summary.hpp"

#include <algorithm>
#include <array>
#include <fmt/format.h>
#include <map>
#include <regex>

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

}  // namespace

std::string Frame::place() const {
  const auto colon = kind == "python" ? where.rfind(':') : std::string::npos;
  return function + " (" + (colon == std::string::npos ? where : where.substr(0, colon)) + ")";
}

std::string Frame::text() const { return where.empty() ? function : function + " (" + where + ")"; }

std::optional<Frame> innermost_python_frame(std::string_view dump) {
  // py-spy: 'Thread 4242 (idle): "MainThread"', then its frames innermost first, each
  // '    function (file.py:line)'.
  static const std::regex frame(R"(^ {4}(.+) \((.+)\)\s*$)");
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
    std::match_results<std::string_view::const_iterator> m;
    if (!in_thread || took || !std::regex_match(line.begin(), line.end(), m, frame)) continue;
    took = true;
    Frame f{printable(m[1].str()), printable(m[2].str()), "python"};
    if (in_main && !main_frame) main_frame = f;
    if (first_thread && !first_thread_frame) first_thread_frame = f;
  }
  return main_frame ? main_frame : first_thread_frame;
}

std::optional<Frame> innermost_faulthandler_frame(std::string_view dump) {
  static const std::regex frame(R"re(^  File "(.*)", line (\d+) in (.+)$)re");
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
    std::match_results<std::string_view::const_iterator> m;
    if (took || !std::regex_match(line.begin(), line.end(), m, frame)) continue;
    took = true;
    Frame f{printable(m[3].str()), printable(m[1].str() + ":" + m[2].str()), "python"};
    if (in_main && !main_frame) main_frame = f;
    if (in_current && !current_frame) current_frame = f;
  }
  return main_frame ? main_frame : current_frame;
}

std::optional<Frame> innermost_native_frame(std::string_view output, pid_t pid) {
  // eu-stack -m: 'TID 4242:', then '#0  0x00007f... function - /path/module'.
  // gdb: 'Thread 1 (Thread 0x7f... (LWP 4242) "name"):', then
  // '#0  0x00007f... in function (args) at file:line' or '... from /path/module'.
  static const std::regex eu(R"(^#\d+\s+0x[0-9a-f]+\s+(\S+)(?: - (\S+))?\s*$)");
  static const std::regex gdb(R"(^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(.*\)(?: at (\S+)| from (\S+))?\s*$)");
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
    std::match_results<std::string_view::const_iterator> m;
    std::string function, module;
    if (std::regex_match(line.begin(), line.end(), m, eu)) {
      function = m[1].str();
      module = m[2].str();
    } else if (std::regex_match(line.begin(), line.end(), m, gdb)) {
      function = m[1].str();
      module = m[2].matched ? m[2].str() : m[3].str();
      if (m[2].matched && in_system_source(module)) continue;
    } else {
      continue;
    }
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
