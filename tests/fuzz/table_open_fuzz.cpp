// libFuzzer target: opening a table file made of arbitrary bytes, and reading it the way
// timer-dump does. Table::open must refuse bad files with shmtimer::Error, and for a file
// it accepts, TableReader (and, when built with it, timer-dump's snapshot and its three
// output formats) must never crash on garbage header counters or garbage slots.
//
// Input layout. Byte 0 chooses the mode:
//  - odd (a real table starts with 'S' = 0x53, the magic's first byte): raw mode, the
//    whole input is the file;
//  - even: structured mode, a valid header of this build's version is built so that the
//    fuzzer reaches the reader. Byte 1 picks the capacity (1..130, so the bitmap has 1 to
//    3 words); then come the bitmap words, the slots, the header's bytes 64..255 (server
//    pid, heartbeat, max_probe, counters) and version_minor, creator_uid,
//    created_unix_ns. Whatever the input does not cover is zero.
//  Bit 1 of byte 0 opens the table read-write instead of read-only (timer-dump's mode:
//  a read-only mapping also proves that the reader never writes). Bits 2..5 choose
//  timer-dump's filter (--all, --expired, --pid, --scope).
//
// The file is written to one path per process (mode 0600), reused by every input, in
// $SHMTIMER_FUZZ_DIR (run.sh sets it) or /dev/shm; it is removed at exit.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "shmtimer/error.hpp"
#include "shmtimer/table.hpp"
#include "shmtimer/table_layout.hpp"
#include "shmtimer/table_reader.hpp"

#ifdef SHMTIMER_FUZZ_TIMER_DUMP
#include <nlohmann/json.hpp>

#include "format.hpp"
#include "json_format.hpp"
#include "snapshot.hpp"
#endif

namespace {

namespace layout = shmtimer::layout;

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

constexpr std::uint64_t kMaxStructuredCapacity = 130;

std::string g_path;

void remove_table() { ::unlink(g_path.c_str()); }

void write_file(const std::vector<unsigned char>& bytes) {
  const int fd = ::open(g_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();  // the harness itself is broken, not the code under test
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) std::abort();
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

// Copies the next `n` input bytes to `out` (zero past the end of the input).
struct Cursor {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t at = 0;
  void take(unsigned char* out, std::size_t n) {
    const std::size_t have = at < size ? std::min(n, size - at) : 0;
    if (have) std::memcpy(out, data + at, have);
    at += n;
  }
};

template <typename T>
void put(std::vector<unsigned char>& image, std::size_t offset, T value) {
  std::memcpy(image.data() + offset, &value, sizeof value);
}

std::vector<unsigned char> structured_image(const std::uint8_t* data, std::size_t size) {
  const std::uint64_t capacity = (size > 1 ? data[1] : 0) % kMaxStructuredCapacity + 1;
  const layout::Geometry g = layout::geometry_for(capacity);
  std::vector<unsigned char> image(g.file_bytes, 0);
  Cursor in{data, size, 2};
  in.take(image.data() + g.bitmap_offset, g.bitmap_words * 8);
  in.take(image.data() + g.slots_offset, capacity * sizeof(layout::Slot));
  in.take(image.data() + offsetof(layout::TableHeader, server_pid),
          sizeof(layout::TableHeader) - offsetof(layout::TableHeader, server_pid));
  in.take(image.data() + offsetof(layout::TableHeader, version_minor), 2);
  in.take(image.data() + offsetof(layout::TableHeader, creator_uid), 4);
  in.take(image.data() + offsetof(layout::TableHeader, created_unix_ns), 8);
  put(image, offsetof(layout::TableHeader, magic), layout::kMagic);
  put(image, offsetof(layout::TableHeader, version_major), layout::kVersionMajor);
  put(image, offsetof(layout::TableHeader, header_bytes), static_cast<std::uint32_t>(layout::kHeaderBytes));
  put(image, offsetof(layout::TableHeader, capacity), capacity);
  put(image, offsetof(layout::TableHeader, slot_bytes), static_cast<std::uint32_t>(sizeof(layout::Slot)));
  put(image, offsetof(layout::TableHeader, max_scope_bytes), static_cast<std::uint32_t>(layout::kMaxScopeBytes));
  put(image, offsetof(layout::TableHeader, file_bytes), g.file_bytes);
  put(image, offsetof(layout::TableHeader, slots_offset), g.slots_offset);
  // The builder's own sanity: this header must be accepted.
  const layout::Geometry checked = shmtimer::validate_header(image.data(), layout::kHeaderBytes, g.file_bytes);
  FUZZ_CHECK(checked.capacity == capacity && checked.file_bytes == g.file_bytes);
  return image;
}

// validate_header straight on the input, with sizes taken from the input itself.
void check_validate_header(const std::uint8_t* data, std::size_t size) {
  std::uint64_t claimed = 0;
  if (size >= offsetof(layout::TableHeader, file_bytes) + 8)
    std::memcpy(&claimed, data + offsetof(layout::TableHeader, file_bytes), 8);
  for (const std::uint64_t file_bytes : {std::uint64_t{size}, claimed}) {
    try {
      const layout::Geometry g = shmtimer::validate_header(data, size, file_bytes);
      FUZZ_CHECK(g.capacity >= 1 && g.capacity <= layout::kMaxCapacity);
      const layout::Geometry expected = layout::geometry_for(g.capacity);
      FUZZ_CHECK(g.file_bytes == expected.file_bytes && g.file_bytes == file_bytes);
      FUZZ_CHECK(g.slots_offset == expected.slots_offset && g.bitmap_offset == expected.bitmap_offset &&
                 g.bitmap_words == expected.bitmap_words);
      FUZZ_CHECK(g.bitmap_offset + g.bitmap_words * 8 <= g.slots_offset);
      FUZZ_CHECK(g.slots_offset + g.capacity * sizeof(layout::Slot) == g.file_bytes);
    } catch (const shmtimer::Error& e) {
      FUZZ_CHECK(e.what()[0] != '\0');
    }
  }
}

bool bit_set(const shmtimer::Table& table, std::uint64_t slot) {
  return (table.bitmap_word(slot / 64).load(std::memory_order_relaxed) >> (slot % 64)) & 1;
}

void check_rows(const shmtimer::Table& table, const std::vector<shmtimer::TimerRow>& rows) {
  bool seen_unarmed = false;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    FUZZ_CHECK(r.slot < table.capacity());
    FUZZ_CHECK(r.scope.size() <= layout::kMaxScopeBytes);
    const bool armed = r.state == shmtimer::RowState::kArmed;
    FUZZ_CHECK(armed == (r.deadline_ns != layout::kDisarmed));
    if (r.state == shmtimer::RowState::kFree || r.state == shmtimer::RowState::kClaiming) FUZZ_CHECK(r.scope.empty());
    // Sorted: armed rows by deadline first, then the rest by slot.
    if (!armed) seen_unarmed = true;
    FUZZ_CHECK(!(armed && seen_unarmed));
    if (i > 0 && armed) FUZZ_CHECK(rows[i - 1].deadline_ns <= r.deadline_ns);
    if (i > 0 && !armed && rows[i - 1].state != shmtimer::RowState::kArmed) FUZZ_CHECK(rows[i - 1].slot < r.slot);
  }
}

#ifdef SHMTIMER_FUZZ_TIMER_DUMP
void render_like_timer_dump(const shmtimer::TableReader& reader, const std::vector<shmtimer::TimerRow>& all,
                            std::uint8_t mode) {
  timer_dump::Filter filter;
  filter.all = mode & 0x04;
  filter.expired_only = mode & 0x08;
  if ((mode & 0x10) && !all.empty()) filter.pid = all.front().pid;
  if ((mode & 0x20) && !all.empty()) filter.scope = all.front().scope.substr(0, 3);
  const auto snapshot = timer_dump::take_snapshot(reader, filter);
  FUZZ_CHECK(snapshot.slots.armed + snapshot.slots.idle + snapshot.slots.claiming + snapshot.slots.free ==
             snapshot.header.capacity);
  (void)timer_dump::format_text(snapshot);
  (void)timer_dump::format_check_line(snapshot);
  (void)timer_dump::format_prometheus(snapshot);
  // --json output is one valid JSON document whatever bytes the scopes hold.
  const std::string json = timer_dump::format_json(snapshot, mode & 0x40);
  FUZZ_CHECK(nlohmann::json::accept(json));
}
#endif

void read_table(const std::shared_ptr<shmtimer::Table>& table, std::uint8_t mode) {
  const shmtimer::TableReader reader(table);
  const shmtimer::HeaderInfo header = reader.header();
  FUZZ_CHECK(header.capacity == table->capacity());
  FUZZ_CHECK(header.capacity >= 1 && header.capacity <= layout::kMaxCapacity);
  FUZZ_CHECK(header.used_slots <= header.capacity);
  FUZZ_CHECK(header.version_major == layout::kVersionMajor);

  // Nothing writes this file while we read it, so every slot reads stably: rows(true)
  // has exactly one row per slot.
  const auto all = reader.rows(true);
  FUZZ_CHECK(all.size() == table->capacity());
  check_rows(*table, all);
  // rows(false) and occupied_rows() go through the occupancy bitmap, as the server does:
  // they hold exactly the armed (resp. non-free) rows of rows(true) whose bit is set, in
  // the same order.
  const auto armed = reader.rows(false);
  check_rows(*table, armed);
  const auto occupied = reader.occupied_rows();
  check_rows(*table, occupied);
  std::vector<std::uint64_t> expected_armed, expected_occupied;
  for (const auto& r : all) {
    if (!bit_set(*table, r.slot)) continue;
    if (r.state == shmtimer::RowState::kArmed) expected_armed.push_back(r.slot);
    if (r.state != shmtimer::RowState::kFree) expected_occupied.push_back(r.slot);
  }
  FUZZ_CHECK(armed.size() == expected_armed.size());
  for (std::size_t i = 0; i < armed.size(); ++i) FUZZ_CHECK(armed[i].slot == expected_armed[i]);
  FUZZ_CHECK(occupied.size() == expected_occupied.size());
  for (std::size_t i = 0; i < occupied.size(); ++i) FUZZ_CHECK(occupied[i].slot == expected_occupied[i]);
#ifdef SHMTIMER_FUZZ_TIMER_DUMP
  render_like_timer_dump(reader, all, mode);
#else
  (void)mode;
#endif
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("SHMTIMER_FUZZ_DIR");
  g_path = std::string(dir != nullptr && *dir != '\0' ? dir : "/dev/shm") + "/shmtimer-fuzz-table_open." +
           std::to_string(::getpid()) + ".table";
  std::atexit(remove_table);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_validate_header(data, size);

  const std::uint8_t mode = size > 0 ? data[0] : 1;
  const bool raw = mode & 1;
  if (raw)
    write_file(std::vector<unsigned char>(data, data + size));
  else
    write_file(structured_image(data, size));

  shmtimer::OpenOptions options;
  options.read_only = !(mode & 0x02) || raw;
  options.allow_foreign_owner = options.read_only;
  options.init_wait_ms = 0;  // an all-zero header is refused at once, not waited for
  std::shared_ptr<shmtimer::Table> table;
  try {
    table = shmtimer::Table::open(g_path, options);
  } catch (const shmtimer::Error&) {
    FUZZ_CHECK(raw);  // a structured image is a valid table of ours: it must open
    return 0;
  }
  // The mapping covers exactly the validated geometry, which matches the file.
  struct stat st{};
  FUZZ_CHECK(::stat(g_path.c_str(), &st) == 0);
  FUZZ_CHECK(table->geometry().file_bytes == static_cast<std::uint64_t>(st.st_size));
  read_table(table, mode);
  return 0;
}
