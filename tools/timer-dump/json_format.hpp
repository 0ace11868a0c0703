// timer-dump's JSON output. Its field names are an interface: they are listed in
// docs/timer-dump.md, and a change to them is a change to that page.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "snapshot.hpp"

namespace timer_dump {

// Bumped when a JSON field is renamed, removed or takes a new type (adding a field does
// not bump it). 2: timers[].pid_alive may be null ("could not tell").
inline constexpr int kJsonSchema = 2;

nlohmann::ordered_json to_json(const Snapshot& snapshot);
// One document; `pretty` indents it, otherwise it is one line (JSON Lines under --watch).
std::string format_json(const Snapshot& snapshot, bool pretty);

}  // namespace timer_dump
