// Incident reports: before a hung worker is signalled, the stacks of every process of its
// job on this host are captured into a directory of their own, with the event and a
// summary that names the rank that differs (docs/diagnosis.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>

namespace shmtimer {

struct IncidentOptions {
  // The longest an incident's capture may hold its kills back, from the incident's start
  // (about the first expired deadline). 0: no capture and no report, today's kill path.
  std::chrono::milliseconds capture_bound{0};
  // Where incident directories go; empty: "incidents" in the user's private directory
  // (shmtimerd: beside its table). Created 0700 when missing; refused when it is a
  // symlink, not a directory, another user's, or writable by group or others.
  std::filesystem::path directory;
  // Report and capture, but signal nothing: the expired timers are disarmed instead, so
  // that one hang makes one incident. Works without capture too (the report has the
  // event only).
  bool observe_only = false;
  // Where Python workers register their cooperative dumps (shmtimer's Python client:
  // faulthandler on SIGURG, into "<pid>-<start time>.stacks"); empty: "stacks" in the
  // user's private directory (shmtimerd: beside its table, where the client looks).
  std::filesystem::path stacks_directory;
  // The capture programs, looked up on PATH; an empty one is left out. py-spy for Python
  // frames; eu-stack for native frames, gdb in batch mode where eu-stack fails.
  std::string py_spy = "py-spy";
  std::string eu_stack = "eu-stack";
  std::string gdb = "gdb";
  // Processes captured per incident at most: the expired ones first, then their peers.
  std::size_t max_processes = 64;

  bool enabled() const { return capture_bound.count() > 0 || observe_only; }
};

}  // namespace shmtimer
