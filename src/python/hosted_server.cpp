// _shmtimer.Server: the C++ watchdog and FIFO shim hosted in a Python process, for
// shmtimer.torch.ShmTimerServer (src/python/shmtimer/torch.py). The watchdog runs on its
// own thread with the GIL released; it takes the GIL only to call log_event.
#include "hosted_server.hpp"

#include <pybind11/stl.h>

#include <unistd.h>

#include <set>
#include <tuple>
#include <vector>

#include "shmtimer/fifo_shim.hpp"
#include "shmtimer/table_fault_guard.hpp"
#include "shmtimer/table_reader.hpp"
#include "shmtimer/timer_server.hpp"
#include "scope_text.hpp"

namespace py = pybind11;
using namespace shmtimer;

namespace {

// Python 3.13 made the check public as Py_IsFinalizing and dropped the private name.
bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// log_event(name, None) or log_event(name, (worker_pid, scope_id, expiration_time,
// signal, incident)), from whichever thread emits it; the Python side makes the request
// object. `incident` is the incident report's directory, "" when there is none.
EventCallback python_event_callback(py::object callback) {
  if (callback.is_none()) return {};
  // Held by a shared_ptr whose deleter takes the GIL: the std::function is copied and
  // destroyed on threads that do not hold it.
  auto held = std::shared_ptr<py::object>(new py::object(std::move(callback)), [](py::object* p) {
    if (Py_IsInitialized() == 0) return;  // the interpreter is gone: leak, never touch it
    py::gil_scoped_acquire gil;
    delete p;
  });
  return [held](std::string_view name, const TimerEvent* event) {
    // After Python began to shut down, a thread that takes the GIL may hang for good.
    if (Py_IsInitialized() == 0 || interpreter_finalizing()) return;
    py::gil_scoped_acquire gil;
    try {
      py::object request = py::none();
      if (event != nullptr)
        request =
            py::make_tuple(event->pid, py::reinterpret_steal<py::str>(scope_to_python(event->scope)),
                           event->deadline_ns == 0 ? -1.0 : event->expiration_time(), event->signal, event->incident);
      (*held)(py::str(name.data(), name.size()), request);
    } catch (py::error_already_set& e) {  // a failing callback must not stop the watchdog
      e.discard_as_unraisable("shmtimer log_event");
    }
  };
}

class HostedServer {
 public:
  HostedServer(const std::string& table_path, const std::string& fifo_path, double max_interval_s,
               std::uint64_t capacity, py::object log_event, bool signal_self_after_reap,
               std::vector<std::string> remove_before_self_signal, const IncidentOptions& incidents,
               const KillLadder& ladder, int realtime_priority) {
    CreateOptions create;
    create.capacity = capacity;
    prepare_private_directory(table_path);  // where table_path_for() puts a job's table
    guard_table_faults();                   // a truncated table must not kill the agent that hosts the watchdog
    table_ = Table::open_or_create(table_path, create);
    ServerOptions options;
    options.policy.max_interval =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(max_interval_s));
    options.signal_self_after_reap = signal_self_after_reap;
    // torch 2.x's agent dies by its own signal after a reap, and cannot remove the job's
    // table (or its FIFO) at exit: they are removed just before, as stop() would.
    options.before_self_signal = [paths = std::move(remove_before_self_signal)] {
      for (const auto& path : paths) ::unlink(path.c_str());
    };
    options.log_event = python_event_callback(std::move(log_event));
    options.incidents = incidents;
    options.ladder = ladder;
    options.realtime_priority = realtime_priority;
    server_ = std::make_unique<TimerServer>(table_, options);
    fifo_ = std::make_shared<FifoShim>(table_, fifo_path, options.log_event);
    server_->add_source(fifo_);
  }
  // Python destroys this holding the GIL, and the watchdog may be waiting for it.
  ~HostedServer() {
    py::gil_scoped_release release;
    server_->stop();
    server_.reset();
    fifo_.reset();
  }
  HostedServer(const HostedServer&) = delete;
  HostedServer& operator=(const HostedServer&) = delete;

  TimerServer& server() { return *server_; }
  FifoShim& fifo() { return *fifo_; }
  Table& table() { return *table_; }

 private:
  std::shared_ptr<Table> table_;
  std::unique_ptr<TimerServer> server_;
  std::shared_ptr<FifoShim> fifo_;
};

using RequestTuple = std::tuple<pid_t, std::string, double, int>;

}  // namespace

void bind_hosted_server(py::module_& m) {
  py::class_<HostedServer>(m, "Server")
      .def(py::init([](const std::string& table_path, const std::string& fifo_path, double max_interval,
                       std::uint64_t capacity, py::object log_event, bool signal_self_after_reap,
                       std::vector<std::string> remove_before_self_signal, double capture_bound_ms,
                       const std::string& incident_dir, bool observe_only, const std::string& py_spy, int soft_signal,
                       double grace_ms, int realtime_priority) {
             IncidentOptions incidents;
             incidents.capture_bound = std::chrono::milliseconds(static_cast<std::int64_t>(capture_bound_ms));
             incidents.directory = incident_dir;
             incidents.observe_only = observe_only;
             incidents.py_spy = py_spy;
             // Where shmtimer's Python client registers its dumps: beside the table.
             incidents.stacks_directory = std::filesystem::path(table_path).parent_path() / "stacks";
             KillLadder ladder;
             ladder.soft_signal = soft_signal;
             ladder.grace = std::chrono::milliseconds(static_cast<std::int64_t>(grace_ms));
             return std::make_unique<HostedServer>(table_path, fifo_path, max_interval, capacity, std::move(log_event),
                                                   signal_self_after_reap, std::move(remove_before_self_signal),
                                                   incidents, ladder, realtime_priority);
           }),
           py::arg("table_path"), py::arg("fifo_path"), py::arg("max_interval"), py::arg("capacity"),
           py::arg("log_event"), py::arg("signal_self_after_reap"), py::arg("remove_before_self_signal"),
           py::arg("capture_bound_ms") = 0.0, py::arg("incident_dir") = "", py::arg("observe_only") = false,
           py::arg("py_spy") = "py-spy", py::arg("soft_signal") = 0, py::arg("grace_ms") = 5000.0,
           py::arg("realtime_priority") = 0)
      .def(
          "start", [](HostedServer& s) { s.server().start(); }, py::call_guard<py::gil_scoped_release>())
      .def(
          "stop", [](HostedServer& s) { s.server().stop(); }, py::call_guard<py::gil_scoped_release>())
      .def(
          "run_once", [](HostedServer& s) { s.server().run_once(); }, py::call_guard<py::gil_scoped_release>())
      .def("get_last_progress_time", [](HostedServer& s) { return s.server().get_last_progress_time(); })
      .def(
          "register",
          [](HostedServer& s, const std::vector<RequestTuple>& requests) {
            std::vector<fifo::Request> converted;
            converted.reserve(requests.size());
            for (const auto& [pid, scope, expiration, signal] : requests)
              converted.push_back({pid, scope, expiration, signal});
            py::gil_scoped_release release;  // the callback takes the GIL from this thread
            s.fifo().register_requests(converted);
          },
          py::arg("requests"), "(worker_pid, scope_id, expiration_time, signal) each, as FIFO lines.")
      .def(
          "clear", [](HostedServer& s, const std::set<pid_t>& pids) { return s.fifo().disarm_timers_of(pids); },
          py::arg("pids"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("request_count", [](HostedServer& s) { return s.fifo().request_count(); })
      .def_property_readonly("fifo_lost", [](HostedServer& s) { return s.fifo().lost(); })
      .def_property_readonly("table_path", [](HostedServer& s) { return s.table().path().string(); });
}
