// What the incident tests share: a private directory for the reports, and reading them.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace shmtimer::testing {

struct IncidentDir {
  IncidentDir() : path(TempPath("incidents").path()) {}
  ~IncidentDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::vector<std::filesystem::path> incidents() const {
    std::vector<std::filesystem::path> found;
    if (std::filesystem::exists(path))
      for (const auto& entry : std::filesystem::directory_iterator(path))
        if (entry.is_directory()) found.push_back(entry.path());
    std::sort(found.begin(), found.end());
    return found;
  }
  std::filesystem::path path;
};

inline std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

inline nlohmann::json read_event(const std::filesystem::path& incident) {
  return nlohmann::json::parse(read_text(incident / "event.json"));
}

}  // namespace shmtimer::testing
