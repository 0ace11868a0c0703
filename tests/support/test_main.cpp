// The main of every GoogleTest binary: the library's log is silent unless asked for,
// since many tests provoke errors on purpose (SHMTIMER_TEST_LOG=debug shows it).
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const char* level = std::getenv("SHMTIMER_TEST_LOG");
  spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::off);
  return RUN_ALL_TESTS();
}
