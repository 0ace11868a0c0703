// A worker that uses the C++ FifoTimerClient, for the interop tests against PyTorch's
// own FileTimerServer: it arms a timer for --timeout seconds, works --work seconds,
// then releases and exits 0 (unless the watchdog killed it first).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <thread>

#include "shmtimer/error.hpp"
#include "shmtimer/fifo_timer_client.hpp"

int main(int argc, char** argv) {
  std::string fifo;
  double timeout_s = 1, work_s = 0;
  CLI::App app{"fifo_worker: a FileTimer-protocol worker written in C++"};
  app.add_option("--fifo", fifo)->required();
  app.add_option("--timeout", timeout_s);
  app.add_option("--work", work_s);
  CLI11_PARSE(app, argc, argv);
  try {
    auto client = std::make_shared<shmtimer::FifoTimerClient>(fifo);
    shmtimer::Expires guard(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(timeout_s)),
                            "fifo_worker", client);
    std::this_thread::sleep_for(std::chrono::duration<double>(work_s));
  } catch (const shmtimer::Error& e) {
    std::fprintf(stderr, "fifo_worker: %s\n", e.what());
    return 2;
  }
  return 0;
}
