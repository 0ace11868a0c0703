// A worker for tests that need one as a separate program: it arms a timer for --timeout
// seconds, works --work seconds, then releases and exits 0 (unless the watchdog killed it
// first). With --fifo it uses the C++ FifoTimerClient (the interop tests against
// PyTorch's own FileTimerServer); with --table, the shared-memory ShmTimerClient (the
// README sample test).
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "shmtimer/error.hpp"
#include "shmtimer/fifo_timer_client.hpp"
#include "shmtimer/shm_timer_client.hpp"

int main(int argc, char** argv) {
  std::string fifo, table, scope = "fifo_worker";
  double timeout_s = 1, work_s = 0;
  int signal = SIGKILL;
  CLI::App app{"fifo_worker: a timer-protected worker written in C++"};
  auto* through_fifo = app.add_option("--fifo", fifo, "Use the FileTimer protocol on this FIFO");
  app.add_option("--table", table, "Use this shared-memory table")->excludes(through_fifo);
  app.add_option("--scope", scope);
  app.add_option("--signal", signal);
  app.add_option("--timeout", timeout_s);
  app.add_option("--work", work_s);
  CLI11_PARSE(app, argc, argv);
  if (fifo.empty() == table.empty()) {
    std::fprintf(stderr, "fifo_worker: give --fifo or --table\n");
    return 1;
  }
  try {
    std::shared_ptr<shmtimer::TimerClient> client;
    if (!fifo.empty())
      client = std::make_shared<shmtimer::FifoTimerClient>(fifo, signal);
    else
      client = std::make_shared<shmtimer::ShmTimerClient>(shmtimer::Table::open(table), signal);
    shmtimer::Expires guard(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(timeout_s)), scope, client);
    std::this_thread::sleep_for(std::chrono::duration<double>(work_s));
  } catch (const shmtimer::Error& e) {
    std::fprintf(stderr, "fifo_worker: %s\n", e.what());
    return 2;
  }
  return 0;
}
