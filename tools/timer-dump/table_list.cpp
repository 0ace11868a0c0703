#include "table_list.hpp"

#include <algorithm>
#include <cctype>
#include <system_error>

#include "shmtimer/error.hpp"
#include "format.hpp"

namespace timer_dump {

namespace {

// As shmtimer.torch.table_path_for sanitizes a run id (src/python/shmtimer/torch.py).
std::string sanitized_run_id(const std::string& run_id) {
  std::string out = run_id.empty() ? "fifo" : run_id;
  for (char& c : out)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  return out.substr(0, 48);
}

}  // namespace

std::vector<ListedTable> list_tables(const std::filesystem::path& dir) {
  std::vector<ListedTable> tables;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (!entry.is_regular_file(error)) continue;
    ListedTable table{entry.path(), std::nullopt, 0, ""};
    try {
      const auto reader = shmtimer::TableReader::open(entry.path());
      table.header = reader.header();
      table.armed = reader.rows().size();
    } catch (const std::exception& e) {
      table.problem = e.what();
    }
    tables.push_back(std::move(table));
  }
  std::sort(tables.begin(), tables.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  return tables;
}

std::string format_table_list(const std::vector<ListedTable>& tables, const std::filesystem::path& dir) {
  if (tables.empty()) return "no tables in " + dir.string() + "\n";
  std::string text;
  for (const auto& t : tables) {
    text += t.path.string();
    if (!t.header) {
      text += "  not a table: " + t.problem + "\n";
      continue;
    }
    text += "  capacity " + std::to_string(t.header->capacity) + "  armed " + std::to_string(t.armed) + "  ";
    text += t.header->served() ? "served by pid " + std::to_string(t.header->server_pid) : std::string("not served");
    text += "\n";
  }
  return text;
}

std::filesystem::path table_of_job(const std::filesystem::path& dir, const std::string& run_id) {
  const std::string prefix = "job-" + sanitized_run_id(run_id) + "-";
  std::vector<std::filesystem::path> found;
  for (const auto& t : list_tables(dir)) {
    const std::string name = t.path.filename().string();
    // The hash is 16 hex digits: "job-a-<hash>.table" is never taken for job "a-b".
    if (name.size() == prefix.size() + 16 + 6 && name.rfind(prefix, 0) == 0 && name.ends_with(".table"))
      found.push_back(t.path);
  }
  if (found.size() == 1) return found.front();
  std::string names;
  for (const auto& path : found) names += "\n  " + path.string();
  throw shmtimer::Error(shmtimer::ErrorCode::kInvalidArgument,
                        found.empty() ? "no table of job '" + run_id + "' in " + dir.string() + " (timer-dump --list)"
                                      : std::to_string(found.size()) + " tables of job '" + run_id +
                                            "' (one per agent); pick one with --table:" + names);
}

}  // namespace timer_dump
