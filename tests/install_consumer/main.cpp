// Creates a table, arms and disarms a timer through the installed headers and library.
#include <shmtimer/shm_timer_client.hpp>
#include <shmtimer/table_reader.hpp>

#include <csignal>
#include <cstdio>
#include <unistd.h>

int main() {
  const std::string path = "/dev/shm/shmtimer-consumer-" + std::to_string(::getpid()) + ".table";
  shmtimer::CreateOptions options;
  options.capacity = 8;
  auto table = shmtimer::Table::create(path, options);
  // No server runs here: this only checks that the installed package links and works.
  shmtimer::ShmTimerClient client(table, SIGKILL, /*require_server=*/false);
  client.acquire("consumer", shmtimer::SteadyClock::now() + std::chrono::seconds(5));
  const auto armed = shmtimer::TableReader(table).rows().size();
  client.release("consumer");
  ::unlink(path.c_str());
  std::printf("armed timers: %zu\n", armed);
  return armed == 1 ? 0 : 1;
}
