// _shmtimer: the C++ side of the Python package `shmtimer` (src/python/shmtimer/).
// Thin bindings: the client's acquire/release, the read API as plain dicts, the
// library's errors as Python exceptions, and the hosted server (hosted_server.cpp).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <csignal>

#include "shmtimer/clock.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "fast_calls.hpp"
#include "hosted_server.hpp"

namespace py = pybind11;
using namespace shmtimer;

// Sets the Python exception for a library error (the module's exception types).
void (*g_raise)(const Error&) = nullptr;

namespace {

// Opens a table for a client, with the errors a Python user needs to tell apart.
std::shared_ptr<Table> open_table(const std::string& path) { return Table::open(path); }

py::dict row_dict(const TimerRow& row) {
  const bool armed = row.state == RowState::kArmed;
  py::dict d;
  d["slot"] = row.slot;
  d["state"] = to_string(row.state);
  d["pid"] = row.pid;
  d["pid_alive"] = row.pid_alive;
  d["reclaimable"] = row.reclaimable();
  d["scope"] = py::bytes(row.scope).attr("decode")("utf-8", "replace");
  d["deadline_unix_s"] = armed ? py::object(py::float_(epoch_seconds_from_deadline(from_table_ns(row.deadline_ns))))
                               : py::object(py::none());
  d["remaining_s"] = armed ? py::object(py::float_(static_cast<double>(row.remaining_ns) / 1e9)) : py::object(py::none());
  d["overdue"] = armed && row.remaining_ns < 0;
  d["signal"] = row.signal;
  d["origin"] = row.origin == layout::Origin::kFifo ? "fifo" : "table";
  d["acquires"] = row.acquires;
  d["releases"] = row.releases;
  return d;
}

py::dict header_dict(const HeaderInfo& h) {
  py::dict d;
  d["path"] = h.path.string();
  d["version"] = std::to_string(h.version_major) + "." + std::to_string(h.version_minor);
  d["capacity"] = h.capacity;
  d["used_slots"] = h.used_slots;
  d["server_pid"] = h.server_pid;
  d["server_alive"] = h.server_alive;
  d["heartbeat_age_s"] =
      h.heartbeat_age_ns < 0 ? py::object(py::none()) : py::object(py::float_(static_cast<double>(h.heartbeat_age_ns) / 1e9));
  py::dict counters;
  counters["acquires"] = h.counters.acquires;
  counters["releases"] = h.counters.releases;
  counters["reaps"] = h.counters.reaps;
  counters["full_failures"] = h.counters.full_failures;
  counters["fifo_requests"] = h.counters.fifo_requests;
  d["counters"] = counters;
  return d;
}

}  // namespace

PYBIND11_MODULE(_shmtimer, m) {
  m.doc() = "C++ bindings of shmtimer; use the `shmtimer` package.";

  // One exception per error a caller may want to handle; all derive from ShmTimerError.
  static py::exception<Error> base(m, "ShmTimerError", PyExc_RuntimeError);
  static py::exception<Error> missing(m, "TableMissingError", base.ptr());
  static py::exception<Error> not_a_table(m, "NotATableError", base.ptr());
  static py::exception<Error> version(m, "VersionMismatchError", not_a_table.ptr());
  static py::exception<Error> unsafe(m, "UnsafeTableError", base.ptr());
  static py::exception<Error> full(m, "TableFullError", base.ptr());
  static py::exception<Error> too_long(m, "ScopeTooLongError", base.ptr());
  // Also a BrokenPipeError: what PyTorch's FileTimerClient raises when no server reads
  // its FIFO, so code written for it catches this too.
  static py::handle no_server = [&] {
    PyObject* bases = PyTuple_Pack(2, base.ptr(), PyExc_BrokenPipeError);
    PyObject* type = PyErr_NewException("shmtimer._shmtimer.NoServerError", bases, nullptr);
    Py_DECREF(bases);
    if (type == nullptr) throw py::error_already_set();
    m.add_object("NoServerError", py::handle(type));  // the module keeps a reference
    return py::handle(type);
  }();
  g_raise = [](const Error& e) {
    switch (e.code()) {
      case ErrorCode::kIo:
        (e.sys_errno() == ENOENT ? missing : base)(e.what());
        return;
      case ErrorCode::kNotATable:
      case ErrorCode::kSizeMismatch: not_a_table(e.what()); return;
      case ErrorCode::kVersionMismatch: version(e.what()); return;
      case ErrorCode::kUnsafeFile: unsafe(e.what()); return;
      case ErrorCode::kTableFull: full(e.what()); return;
      case ErrorCode::kScopeTooLong: too_long(e.what()); return;
      case ErrorCode::kNoServer: PyErr_SetString(no_server.ptr(), e.what()); return;
      case ErrorCode::kInvalidArgument: PyErr_SetString(PyExc_ValueError, e.what()); return;
      default: base(e.what()); return;
    }
  };
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      g_raise(e);
    }
  });

  m.def("default_table_path", [] { return default_table_path().string(); },
        "$SHMTIMER_TABLE, else the path shmtimerd uses by default.");

  py::class_<ShmTimerClient, std::shared_ptr<ShmTimerClient>>(m, "Client")
      .def(py::init([](const std::string& path, int signal, bool require_server, std::size_t recycle_idle_slots) {
             auto client = std::make_shared<ShmTimerClient>(open_table(path), signal, require_server);
             // Safe here: every call of a Python client is made holding the GIL.
             client->recycle_idle_slots(recycle_idle_slots);
             return client;
           }),
           py::arg("table_path"), py::arg("signal") = SIGKILL, py::arg("require_server") = false,
           py::arg("recycle_idle_slots") = 0)
      // Wall-clock epoch seconds in, as the reference's acquire takes them.
      .def("acquire",
           [](ShmTimerClient& c, std::string_view scope, double expiration_time) {
             c.acquire(scope, deadline_from_epoch_seconds(expiration_time));
           },
           py::arg("scope_id"), py::arg("expiration_time"))
      .def("acquire_after",
           [](ShmTimerClient& c, std::string_view scope, double after) {
             c.acquire(scope, SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                                       std::chrono::duration<double>(after)));
           },
           py::arg("scope_id"), py::arg("after"))
      .def("release", &ShmTimerClient::release, py::arg("scope_id"))
      .def(
          "fast_calls",
          [](const std::shared_ptr<ShmTimerClient>& c) { return py::reinterpret_steal<py::tuple>(client_fast_calls(c)); },
          "(acquire, release, acquire_after): the per-step calls as CPython builtins, without pybind11's dispatch.")
      .def(
          "timer_calls",
          [](const std::shared_ptr<ShmTimerClient>& c, std::string_view scope) {
            return py::reinterpret_steal<py::tuple>(timer_fast_calls(c, scope));
          },
          py::arg("scope_id"), "(arm, arm_after, disarm) of a Timer handle bound to the scope's slot.")
      .def("forget", &ShmTimerClient::forget, py::arg("scope_id"))
      .def_property_readonly("signal", &ShmTimerClient::signal)
      .def_property_readonly("table_path", [](const ShmTimerClient& c) { return c.table()->path().string(); });

  bind_hosted_server(m);

  m.def("read_header", [](const std::string& path) { return header_dict(TableReader::open(path).header()); },
        py::arg("table_path"));
  m.def(
      "read_timers",
      [](const std::string& path, bool all) {
        py::list out;
        const auto reader = TableReader::open(path);
        for (const auto& row : all ? reader.occupied_rows() : reader.rows()) out.append(row_dict(row));
        return out;
      },
      py::arg("table_path"), py::arg("all") = false);
}
