// chaos_soak: workers (table and FIFO clients, several threads each) acquire and release
// timers while the soak SIGKILLs workers and the server at random points. Every death is
// judged against what the dead worker had logged, and the summary must show no false
// kill, no missed kill, no timer lost across a restart and no stuck slot.
//   chaos_soak --shmtimerd PATH [--duration-s 20] [--workers 6] [--seed N]
// Long mode (docs/reliability.md): --duration-s 600. Under a sanitizer everything runs
// several times slower, so the test registration widens --kill-bound-ms there.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "shmtimer/clock.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/fifo_timer_client.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "worker_log.hpp"

namespace {

using namespace std::chrono_literals;
using shmtimer::monotonic_now_ns;
using soak::WorkerLog;

constexpr int kServerSignal = SIGUSR2;  // what workers are reaped with; chaos uses SIGKILL
constexpr std::uint64_t kMs = 1'000'000;
constexpr int kMaxWorkerLogs = 1 << 15;

struct Config {
  std::string shmtimerd;
  double duration_s = 20;
  int workers = 6;
  unsigned seed = 1;
  std::string table;
  std::string fifo;
  std::uint64_t kill_bound_ns = 1000 * kMs;  // deadline to death, plus any server downtime
};

// ---- the worker side -------------------------------------------------------------

void worker_thread(shmtimer::TimerClient& client, WorkerLog& log, int thread, unsigned seed, bool fifo,
                   std::atomic<bool>& hanging) {
  std::mt19937 rng(seed);
  auto& scopes = log.scopes[thread];
  const auto set = [&](int s, std::uint64_t deadline, bool acquire) {
    scopes[s].intent.store(deadline);
    const std::string scope = "t" + std::to_string(thread) + "-s" + std::to_string(s);
    try {
      if (acquire)
        client.acquire(scope, shmtimer::from_table_ns(deadline));
      else
        client.release(scope);
      scopes[s].done.store(deadline);
    } catch (const shmtimer::Error&) {
      log.fifo_errors.fetch_add(1);  // no server during a restart: the request did not happen
      scopes[s].intent.store(scopes[s].done.load());
    }
    log.ops.fetch_add(1, std::memory_order_relaxed);
  };
  while (!hanging.load()) {
    for (int burst = 0; burst < (fifo ? 1 : 50) && !hanging.load(); ++burst) {
      const int s = static_cast<int>(rng() % soak::kScopesPerThread);
      set(s, monotonic_now_ns() + (2000 + rng() % 2000) * kMs, true);
      set(s, 0, false);
    }
    std::this_thread::sleep_for(fifo ? 2ms : 1ms);
  }
}

[[noreturn]] void worker_main(const Config& config, WorkerLog& log, unsigned seed) {
  std::mt19937 rng(seed);
  std::shared_ptr<shmtimer::TimerClient> client;
  const bool fifo = log.uses_fifo.load() != 0;
  try {
    if (fifo) {
      shmtimer::FifoClientOptions options;
      options.open_attempts = 100;  // ride out a server restart
      options.open_retry_interval = 10ms;
      client = std::make_shared<shmtimer::FifoTimerClient>(config.fifo, kServerSignal, options);
    } else {
      client = std::make_shared<shmtimer::ShmTimerClient>(shmtimer::Table::open(config.table), kServerSignal);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "worker: %s\n", e.what());
    ::_exit(3);
  }
  std::atomic<bool> hanging{false};
  std::vector<std::thread> threads;
  for (int t = 1; t < soak::kThreadsPerWorker; ++t)
    threads.emplace_back(worker_thread, std::ref(*client), std::ref(log), t, seed * 31 + t, fifo, std::ref(hanging));
  // Thread 0 works a while, then hangs inside a short timer: the server must kill us.
  const auto lifetime = std::chrono::milliseconds(300 + rng() % 2000);
  std::thread([&] {
    std::this_thread::sleep_for(lifetime);
    hanging.store(true);
  }).detach();
  worker_thread(*client, log, 0, seed * 31, fifo, hanging);
  const std::uint64_t deadline = monotonic_now_ns() + (30 + rng() % 90) * kMs;
  log.hang_started_ns.store(monotonic_now_ns());
  log.scopes[0][0].intent.store(deadline);
  try {
    client->acquire("hang", shmtimer::from_table_ns(deadline));
    log.scopes[0][0].done.store(deadline);
    log.hang_deadline_ns.store(deadline);
  } catch (const shmtimer::Error&) {
    log.fifo_errors.fetch_add(1);
    ::_exit(4);  // could not arm: nothing to wait for
  }
  for (;;) ::pause();
}

// ---- the soak side -----------------------------------------------------------------

struct Outcome {
  std::uint64_t server_kills = 0, chaos_kills = 0, server_restarts = 0;
  std::uint64_t false_kills = 0, missed_kills = 0, lost_fifo_hangs = 0, lost_table_timers = 0;
  std::uint64_t hangs_across_restart = 0, workers = 0, ops = 0, fifo_errors = 0;
  std::uint64_t stuck_slots = 0;
  std::vector<double> latencies_ms;
};

class Soak {
 public:
  explicit Soak(Config config) : config_(std::move(config)), rng_(config_.seed) {
    logs_ = static_cast<WorkerLog*>(::mmap(nullptr, sizeof(WorkerLog) * kMaxWorkerLogs, PROT_READ | PROT_WRITE,
                                           MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    if (logs_ == MAP_FAILED) throw std::runtime_error("mmap");
  }

  Outcome run() {
    start_server();
    for (int i = 0; i < config_.workers; ++i) spawn_worker();
    const auto end = monotonic_now_ns() + static_cast<std::uint64_t>(config_.duration_s * 1e9);
    std::uint64_t next_chaos_kill = monotonic_now_ns() + 300 * kMs;
    std::uint64_t next_server_kill = monotonic_now_ns() + (1000 + rng_() % 2000) * kMs;
    while (monotonic_now_ns() < end) {
      reap_deaths();
      check_missed_kills();
      const std::uint64_t now = monotonic_now_ns();
      if (now >= next_chaos_kill) {
        chaos_kill_a_worker();
        next_chaos_kill = now + (200 + rng_() % 600) * kMs;
      }
      if (server_pid_ > 0 && now >= next_server_kill) {
        ::kill(server_pid_, SIGKILL);
        ::waitpid(server_pid_, nullptr, 0);
        server_pid_ = 0;
        down_since_ = now;
        restart_at_ = now + (10 + rng_() % 150) * kMs;
      }
      if (server_pid_ == 0 && now >= restart_at_) {
        start_server();
        downtimes_.push_back({down_since_, monotonic_now_ns()});
        ++outcome_.server_restarts;
        next_server_kill = monotonic_now_ns() + (1000 + rng_() % 2500) * kMs;
      }
      std::this_thread::sleep_for(1ms);
    }
    finish();
    return outcome_;
  }

 private:
  struct Live {
    int log;
    bool chaos = false;  // we SIGKILLed it
  };

  void start_server() {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execl(config_.shmtimerd.c_str(), config_.shmtimerd.c_str(), "--table", config_.table.c_str(), "--fifo",
              config_.fifo.c_str(), "--capacity", "8192", "--max-interval-ms", "20", "--sweep-interval-ms", "200",
              "--log-level", "error", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    server_pid_ = pid;
    for (int i = 0; i < 3000; ++i) {
      try {
        if (shmtimer::TableReader::open(config_.table).header().server_pid == pid) return;
      } catch (const shmtimer::Error&) {
      }
      std::this_thread::sleep_for(1ms);
    }
    throw std::runtime_error("shmtimerd did not start");
  }

  void spawn_worker() {
    const int index = next_log_++ % kMaxWorkerLogs;
    WorkerLog& log = logs_[index];
    std::memset(static_cast<void*>(&log), 0, sizeof log);
    log.uses_fifo.store(index % 3 == 2 ? 1 : 0);  // a third of the workers speak the FIFO protocol
    const unsigned seed = static_cast<unsigned>(rng_());
    const pid_t pid = ::fork();
    if (pid == 0) worker_main(config_, log, seed);
    log.pid.store(pid);
    live_[pid] = {index};
    ++outcome_.workers;
  }

  void chaos_kill_a_worker() {
    if (live_.empty()) return;
    auto it = std::next(live_.begin(), static_cast<long>(rng_() % live_.size()));
    it->second.chaos = true;
    ::kill(it->first, SIGKILL);
  }

  // Server downtime that overlaps [from, to].
  std::uint64_t downtime_between(std::uint64_t from, std::uint64_t to) const {
    std::uint64_t total = 0;
    for (const auto& [down, up] : downtimes_)
      if (up > from && down < to) total += std::min(up, to) - std::max(down, from);
    if (server_pid_ == 0 && to > down_since_) total += to - std::max(down_since_, from);
    return total;
  }
  bool restarted_between(std::uint64_t from, std::uint64_t to) const {
    for (const auto& [down, up] : downtimes_)
      if (up > from && down < to) return true;
    return server_pid_ == 0 && to > down_since_;
  }

  void reap_deaths() {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      const std::uint64_t now = monotonic_now_ns();
      auto it = live_.find(pid);
      if (it == live_.end()) continue;
      WorkerLog& log = logs_[it->second.log];
      outcome_.ops += log.ops.load();
      outcome_.fifo_errors += log.fifo_errors.load();
      const bool by_server = WIFSIGNALED(status) && WTERMSIG(status) == kServerSignal;
      if (by_server) {
        ++outcome_.server_kills;
        if (!log.held_expired_timer(now)) {
          ++outcome_.false_kills;
          std::fprintf(stderr, "FALSE KILL: worker %d was signalled while holding no expired timer\n", pid);
        }
        if (const std::uint64_t d = log.hang_deadline_ns.load(); d != 0 && now >= d) {
          outcome_.latencies_ms.push_back(static_cast<double>(now - d) / 1e6);
          if (restarted_between(log.hang_started_ns.load(), d)) ++outcome_.hangs_across_restart;
        }
      } else if (it->second.chaos) {
        ++outcome_.chaos_kills;
      } else {
        std::fprintf(stderr, "worker %d ended unexpectedly (status %d)\n", pid, status);
        ++outcome_.false_kills;
      }
      live_.erase(it);
      if (!finishing_) spawn_worker();
    }
  }

  void check_missed_kills() {
    const std::uint64_t now = monotonic_now_ns();
    for (auto& [pid, live] : live_) {
      const WorkerLog& log = logs_[live.log];
      const std::uint64_t deadline = log.hang_deadline_ns.load();
      if (deadline == 0 || live.chaos) continue;
      if (now <= deadline + config_.kill_bound_ns + downtime_between(log.hang_started_ns.load(), now)) continue;
      if (log.uses_fifo.load() && restarted_between(log.hang_started_ns.load(), now)) {
        ++outcome_.lost_fifo_hangs;  // the request died in the pipe with the server
      } else {
        ++outcome_.missed_kills;
        if (restarted_between(log.hang_started_ns.load(), now)) ++outcome_.lost_table_timers;
        std::fprintf(stderr, "MISSED KILL: worker %d (%s) was not reaped %.0f ms after its deadline\n", pid,
                     log.uses_fifo.load() ? "fifo" : "table", static_cast<double>(now - deadline) / 1e6);
      }
      live.chaos = true;  // end it ourselves
      ::kill(pid, SIGKILL);
    }
  }

  void finish() {
    finishing_ = true;
    for (auto& [pid, live] : live_) {
      live.chaos = true;
      ::kill(pid, SIGKILL);
    }
    while (!live_.empty()) {
      reap_deaths();
      std::this_thread::sleep_for(1ms);
    }
    if (server_pid_ == 0) start_server();
    // The server's sweep frees every slot of the dead workers, including any left mid-claim.
    for (int i = 0; i < 5000; ++i) {
      outcome_.stuck_slots = shmtimer::TableReader::open(config_.table).header().used_slots;
      if (outcome_.stuck_slots == 0) break;
      std::this_thread::sleep_for(1ms);
    }
    ::kill(server_pid_, SIGTERM);
    ::waitpid(server_pid_, nullptr, 0);
  }

  Config config_;
  std::mt19937 rng_;
  WorkerLog* logs_;
  int next_log_ = 0;
  std::map<pid_t, Live> live_;
  pid_t server_pid_ = 0;
  std::uint64_t down_since_ = 0, restart_at_ = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> downtimes_;
  bool finishing_ = false;
  Outcome outcome_;
};

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"chaos_soak: workers, a server and SIGKILL at random points; judges every death"};
  app.add_option("--shmtimerd", config.shmtimerd, "The daemon to run")->required();
  app.add_option("--duration-s", config.duration_s, "How long (600 for the long mode)")->capture_default_str();
  app.add_option("--workers", config.workers, "Worker processes kept running")->capture_default_str();
  app.add_option("--seed", config.seed, "Random seed")->capture_default_str();
  double kill_bound_ms = 1000;
  app.add_option("--kill-bound-ms", kill_bound_ms,
                 "How late after its deadline (plus server downtime) a kill may come before it counts as missed")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  config.kill_bound_ns = static_cast<std::uint64_t>(kill_bound_ms * 1e6);
  spdlog::set_level(spdlog::level::off);
  config.table = "/dev/shm/shmtimer-soak-" + std::to_string(::getpid()) + ".table";
  config.fifo = "/dev/shm/shmtimer-soak-" + std::to_string(::getpid()) + ".fifo";
  ::signal(SIGPIPE, SIG_IGN);
  Outcome o;
  try {
    o = Soak(config).run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chaos_soak: %s\n", e.what());
    return 2;
  }
  ::unlink(config.table.c_str());
  std::printf("chaos soak, %.0f s, seed %u\n", config.duration_s, config.seed);
  std::printf("  operations            %llu (acquire or release, logged before and after)\n",
              static_cast<unsigned long long>(o.ops));
  std::printf("  workers run           %llu (a third on the FIFO protocol)\n", static_cast<unsigned long long>(o.workers));
  std::printf("  server kills          %llu (hung workers reaped; %llu of them hung across a server restart)\n",
              static_cast<unsigned long long>(o.server_kills), static_cast<unsigned long long>(o.hangs_across_restart));
  std::printf("  chaos kills           %llu workers SIGKILLed at random points\n",
              static_cast<unsigned long long>(o.chaos_kills));
  std::printf("  server restarts       %llu (SIGKILLed at random points)\n",
              static_cast<unsigned long long>(o.server_restarts));
  std::printf("  reap latency          p50 %.2f ms, p99 %.2f ms, max %.2f ms (deadline to waitpid)\n",
              percentile(o.latencies_ms, 0.5), percentile(o.latencies_ms, 0.99), percentile(o.latencies_ms, 1.0));
  std::printf("  FIFO requests refused %llu (no server during a restart; the client was told)\n",
              static_cast<unsigned long long>(o.fifo_errors));
  std::printf("  FIFO hangs lost       %llu (request in the pipe when the server died)\n",
              static_cast<unsigned long long>(o.lost_fifo_hangs));
  std::printf("  false kills           %llu\n", static_cast<unsigned long long>(o.false_kills));
  std::printf("  missed kills          %llu\n", static_cast<unsigned long long>(o.missed_kills));
  std::printf("  lost table timers     %llu (hung across a restart and not reaped)\n",
              static_cast<unsigned long long>(o.lost_table_timers));
  std::printf("  stuck slots           %llu\n", static_cast<unsigned long long>(o.stuck_slots));
  const bool ok = o.false_kills == 0 && o.missed_kills == 0 && o.stuck_slots == 0 && o.server_kills > 0;
  std::printf("soak: %d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
  return ok ? 0 : 1;
}
