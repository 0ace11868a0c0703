// shmtimer-demo: two workers against a running shmtimerd. One overruns its timer and is
// reaped; one releases in time and survives. Exits 0 when both happen as expected.
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <thread>

#include "shmtimer/error.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "format.hpp"  // tools/common: timer-dump's text format
#include "shmtimer/table_reader.hpp"

namespace {

using namespace std::chrono_literals;

// The table as timer-dump shows it, idle slots included.
void print_table(const shmtimer::TableReader& reader) {
  timer_dump::Filter filter;
  filter.all = true;
  std::fputs(timer_dump::format_text(timer_dump::take_snapshot(reader, filter)).c_str(), stdout);
  std::fputs("\n", stdout);
}

// Runs `work` in a child process with its own client, and returns the child's pid.
template <typename Work>
pid_t spawn(const std::shared_ptr<shmtimer::Table>& table, Work work) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      shmtimer::ShmTimerClient client(table);
      work(client);
      ::_exit(0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker %d: %s\n", ::getpid(), e.what());
      ::_exit(1);
    }
  }
  return pid;
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + std::to_string(WTERMSIG(status));
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = shmtimer::default_table_path().string();
  CLI::App app{"shmtimer-demo: a hung worker is reaped, a punctual one survives (needs a running shmtimerd)"};
  app.add_option("--table", path, "Table served by shmtimerd")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    auto table = shmtimer::Table::open(path);
    shmtimer::TableReader reader(table);
    if (!reader.header().server_alive) {
      std::fprintf(stderr, "no live shmtimerd serves %s; start it first\n", path.c_str());
      return 2;
    }
    const pid_t hung = spawn(table, [](shmtimer::ShmTimerClient& client) {
      shmtimer::Expires guard(300ms, "demo/hung-step", client);
      std::this_thread::sleep_for(10s);  // a hang: the watchdog must end it
    });
    const pid_t punctual = spawn(table, [](shmtimer::ShmTimerClient& client) {
      auto timer = client.timer("demo/punctual-step");
      timer.arm_after(2s);
      std::this_thread::sleep_for(100ms);
      timer.disarm();
    });
    std::printf("started hung worker %d (timer 300 ms, hangs 10 s) and punctual worker %d (timer 2 s, works 100 ms)\n",
                hung, punctual);
    std::this_thread::sleep_for(50ms);
    print_table(reader);
    int hung_status = 0, punctual_status = 0;
    ::waitpid(punctual, &punctual_status, 0);
    ::waitpid(hung, &hung_status, 0);
    std::printf("hung worker %d: %s\npunctual worker %d: %s\n", hung, describe(hung_status).c_str(), punctual,
                describe(punctual_status).c_str());
    // The server clears a reaped timer just after its signal, and the worker may be gone
    // before that: wait for it (at most a second), so the table shows the end state.
    for (int i = 0; i < 100 && !reader.rows().empty(); ++i) std::this_thread::sleep_for(10ms);
    print_table(reader);
    const bool ok = WIFSIGNALED(hung_status) && WTERMSIG(hung_status) == SIGKILL && WIFEXITED(punctual_status) &&
                    WEXITSTATUS(punctual_status) == 0;
    std::printf("%s\n", ok ? "demo OK: the hung worker was reaped, the punctual one survived" : "demo FAILED");
    return ok ? 0 : 1;
  } catch (const shmtimer::Error& e) {
    std::fprintf(stderr, "shmtimer-demo: %s\n", e.what());
    return 2;
  }
}
