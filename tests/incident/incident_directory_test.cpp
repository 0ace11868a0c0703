// Reports hold bytes from untrusted processes and the server may be root: it never
// writes through a path another user could have placed.
#include "incident_directory.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "shmtimer/error.hpp"
#include "test_support.hpp"

namespace shmtimer::detail {
namespace {

struct TempDir {
  TempDir() : path(testing::TempPath("incidents").path()) {}
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

TEST(IncidentDirectory, IsMadePrivateAndEachIncidentIsANewPrivateDirectory) {
  TempDir d;
  const DirFd root = open_incident_root(d.path);
  struct stat st{};
  ASSERT_EQ(::stat(d.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  std::string first, second;
  make_incident_directory(root, 42, first);
  make_incident_directory(root, 42, second);
  EXPECT_NE(first, second);
  EXPECT_NE(first.find("-pid42"), std::string::npos);
  ASSERT_EQ(::stat((d.path / first).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST(IncidentDirectory, ASymlinkOrADirectoryOthersMayWriteIsRefused) {
  TempDir d;
  std::filesystem::create_directory(d.path);
  const auto link = d.path / "link";
  std::filesystem::create_directory_symlink("/tmp", link);
  EXPECT_THROW(open_incident_root(link), Error);
  const auto open_dir = d.path / "open";
  std::filesystem::create_directory(open_dir);
  ::chmod(open_dir.c_str(), 0777);
  try {
    open_incident_root(open_dir);
    ADD_FAILURE() << "a directory others may write was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsafeFile);
  }
}

TEST(IncidentDirectory, AReportFileIsNeverWrittenThroughOneThatExists) {
  TempDir d;
  const DirFd root = open_incident_root(d.path);
  std::string name;
  const DirFd incident = make_incident_directory(root, 7, name);
  std::filesystem::create_symlink("/tmp/shmtimer-should-not-exist", d.path / name / "event.json");
  EXPECT_THROW(write_report_file(incident, "event.json", "{}"), Error);
  EXPECT_FALSE(std::filesystem::exists("/tmp/shmtimer-should-not-exist"));
  write_report_file(incident, "summary.txt", "text");
  EXPECT_EQ(read_report_file(incident, "summary.txt"), "text");
}

}  // namespace
}  // namespace shmtimer::detail
