// timer-dump --list and --job: the tables in a directory (the user's private one,
// /dev/shm/shmtimer-<uid>, by default: shmtimerd's default table and the tables that the
// Python module's hosted servers make up per job), and picking a job's table by run id.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "snapshot.hpp"

namespace timer_dump {

struct ListedTable {
  std::filesystem::path path;
  std::optional<shmtimer::HeaderInfo> header;  // empty: not readable as a table
  std::uint64_t armed = 0;
  std::string problem;  // why it is not, when header is empty
};

// Every regular file in `dir`, sorted by name, each opened read-only as a table. A missing
// directory lists nothing.
std::vector<ListedTable> list_tables(const std::filesystem::path& dir);

// One line per table: path, capacity, armed timers, the server.
std::string format_table_list(const std::vector<ListedTable>& tables, const std::filesystem::path& dir);

// The table of the job with this run id, as the Python module names it
// (shmtimer.torch.table_path_for: job-<run id, sanitized, at most 48 bytes>-<hash>.table).
// Throws shmtimer::Error(kInvalidArgument) naming the candidates when there is none or
// more than one (several agents of one run id on the host).
std::filesystem::path table_of_job(const std::filesystem::path& dir, const std::string& run_id);

}  // namespace timer_dump
