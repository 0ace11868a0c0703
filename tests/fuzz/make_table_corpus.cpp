// Writes the binary seeds of tests/fuzz/corpus/table_open (see table_open_fuzz.cpp for
// the input layout). Usage: make_table_corpus DIR. Every file is under 64 KiB.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "shmtimer/table.hpp"
#include "slot_ops.hpp"

namespace {

namespace layout = shmtimer::layout;
using Bytes = std::vector<unsigned char>;

std::filesystem::path g_out;

void save(const std::string& name, const Bytes& bytes) {
  std::ofstream(g_out / name, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  std::printf("%-28s %6zu bytes\n", name.c_str(), bytes.size());
}

Bytes read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

// A table made by Table::create, optionally filled by `fill`, as bytes.
template <typename Fill>
Bytes make_table(std::uint64_t capacity, Fill fill) {
  const std::filesystem::path path = "/dev/shm/shmtimer-make-corpus." + std::to_string(::getpid()) + ".table";
  std::filesystem::remove(path);
  {
    shmtimer::CreateOptions options;
    options.capacity = capacity;
    const auto table = shmtimer::Table::create(path, options);
    fill(*table);
  }
  Bytes bytes = read_all(path);
  std::filesystem::remove(path);
  return bytes;
}

std::uint64_t monotonic_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// An armed table timer, an idle FIFO timer with a non-ASCII scope, a slot left Claiming,
// and a server that has beaten a few times: what a live table looks like.
void fill_live(shmtimer::Table& table) {
  using namespace shmtimer::detail;
  const NewKey worker{4242, 123456, 9, layout::Origin::kTable};
  const auto armed = insert_slot(table, worker, ScopeKey("/work/train.py#57"));
  if (armed.ok())
    arm_slot(table.slot(armed.index), {armed.control, worker.identity}, monotonic_ns() + 10'000'000'000ULL, 9);
  const NewKey fifo_worker{4243, 123457, 15, layout::Origin::kFifo};
  insert_slot(table, fifo_worker, ScopeKey("step/\xc3\xa9tape \xe2\x98\x83"));
  auto& claiming = table.slot(3);
  claiming.control.store(layout::Control::pack(layout::SlotState::kClaiming, 1, 4244));
  set_occupancy(table, 3);
  auto& h = table.header();
  h.server_pid.store(1);
  h.server_identity.store(1);
  h.heartbeat_mono_ns.store(monotonic_ns());
  h.heartbeat_count.store(17);
  h.retired_acquires.store(5);
  h.retired_releases.store(4);
  h.reaps.store(1);
  h.fifo_requests.store(2);
}

// Structured mode: byte 0 even (mode bits), byte 1 capacity - 1, then bitmap words,
// slots, header bytes 64..255, version_minor, creator_uid, created_unix_ns.
Bytes structured(std::uint8_t mode, const Bytes& table) {
  std::uint64_t capacity;
  std::memcpy(&capacity, table.data() + offsetof(layout::TableHeader, capacity), 8);
  const layout::Geometry g = layout::geometry_for(capacity);
  Bytes out{mode, static_cast<unsigned char>(capacity - 1)};
  auto append = [&](std::size_t offset, std::size_t n) {
    out.insert(out.end(), table.begin() + static_cast<std::ptrdiff_t>(offset),
               table.begin() + static_cast<std::ptrdiff_t>(offset + n));
  };
  append(g.bitmap_offset, g.bitmap_words * 8);
  append(g.slots_offset, capacity * sizeof(layout::Slot));
  append(offsetof(layout::TableHeader, server_pid),
         sizeof(layout::TableHeader) - offsetof(layout::TableHeader, server_pid));
  append(offsetof(layout::TableHeader, version_minor), 2);
  append(offsetof(layout::TableHeader, creator_uid), 4);
  append(offsetof(layout::TableHeader, created_unix_ns), 8);
  return out;
}

// Slots a rogue writer could leave: Ready with impossible fields, unknown states, every
// occupancy bit set (also past the capacity).
void fill_rogue(shmtimer::Table& table) {
  for (std::uint64_t w = 0; w < table.geometry().bitmap_words; ++w) table.bitmap_word(w).store(~0ULL);
  auto& a = table.slot(0);
  a.control.store(layout::Control::pack(layout::SlotState::kReady, 7, -1));
  a.armed.store(~0ULL);
  a.scope_len.store(0xffffffffu);
  a.signal.store(INT32_MIN);
  a.origin.store(9);
  auto& b = table.slot(1);
  b.control.store(layout::Control::pack(layout::SlotState::kReady, 1, 0));
  b.armed.store(1);
  b.scope_len.store(256);
  for (auto& word : b.scope_words) word.store(0xfffefdfc0a0d1b00ULL);  // control bytes, invalid UTF-8
  b.signal.store(9999);
  table.slot(2).control.store(0xff00000000000001ULL);  // an unknown state
  table.slot(table.capacity() - 1).control.store(layout::Control::pack(layout::SlotState::kClaiming, 3, 0));
  table.header().heartbeat_mono_ns.store(~0ULL);
  table.header().server_pid.store(-5);
  table.header().retired_acquires.store(~0ULL);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  g_out = argv[1];
  std::filesystem::create_directories(g_out);

  const Bytes empty = make_table(4, [](shmtimer::Table&) {});
  const Bytes live = make_table(4, fill_live);
  const Bytes rogue = make_table(70, fill_rogue);
  save("empty-cap4.table", empty);
  save("live-cap4.table", live);
  save("truncated-header.bin", Bytes(live.begin(), live.begin() + 200));
  save("truncated-body.bin", Bytes(live.begin(), live.begin() + 6000));
  Bytes version2 = live;
  version2[offsetof(layout::TableHeader, version_major)] = 2;
  save("version2-cap4.table", version2);
  Bytes garbage(600);
  std::uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (auto& byte : garbage) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    byte = static_cast<unsigned char>(x);
  }
  garbage[0] |= 1;  // raw mode
  save("garbage.bin", garbage);
  save("structured-live-cap4.bin", structured(0x04, live));
  save("structured-rogue-cap70.bin", structured(0x3c, rogue));
  return 0;
}
