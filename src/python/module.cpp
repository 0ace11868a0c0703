// _shmtimer: the C++ side of the Python package `shmtimer` (src/python/shmtimer/).
// Thin bindings: the client's acquire/release, the read API as plain dicts, the
// library's errors as Python exceptions, and the hosted server (hosted_server.cpp).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <csignal>
#include <initializer_list>
#include <string>

#include "shmtimer/clock.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/shm_timer_client.hpp"
#include "shmtimer/table_reader.hpp"
#include "fast_calls.hpp"
#include "hosted_server.hpp"
#include "scope_text.hpp"

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
  d["pid_alive"] =
      row.pid_known ? py::object(py::bool_(row.pid_alive)) : py::object(py::none());  // None: could not tell
  d["reclaimable"] = row.reclaimable();
  d["scope"] = py::reinterpret_steal<py::str>(scope_to_python(row.scope));
  d["deadline_unix_s"] = armed ? py::object(py::float_(epoch_seconds_from_deadline(from_table_ns(row.deadline_ns))))
                               : py::object(py::none());
  d["remaining_s"] =
      armed ? py::object(py::float_(static_cast<double>(row.remaining_ns) / 1e9)) : py::object(py::none());
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
  d["heartbeat_age_s"] = h.heartbeat_age_ns < 0 ? py::object(py::none())
                                                : py::object(py::float_(static_cast<double>(h.heartbeat_age_ns) / 1e9));
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
  // A table that cannot be used (missing, not a table, another version, unsafe) or that
  // no live server holds is also a BrokenPipeError: what PyTorch's FileTimerClient raises
  // when it cannot reach its server, so code written for it catches these too. Errors
  // are set with PyErr_SetString: pybind11's own setter changed across the versions that
  // Debian 12 and 13 ship.
  const auto error_type = [&m](const char* name, std::initializer_list<PyObject*> parents) {
    PyObject* bases = PyTuple_New(static_cast<Py_ssize_t>(parents.size()));
    if (bases == nullptr) throw py::error_already_set();
    Py_ssize_t i = 0;
    for (PyObject* parent : parents) {
      Py_INCREF(parent);  // the tuple steals a reference
      PyTuple_SET_ITEM(bases, i++, parent);
    }
    PyObject* type = PyErr_NewException((std::string("shmtimer._shmtimer.") + name).c_str(), bases, nullptr);
    Py_DECREF(bases);
    if (type == nullptr) throw py::error_already_set();
    m.add_object(name, py::handle(type));  // the module keeps a reference
    return type;
  };
  static PyObject* const base = error_type("ShmTimerError", {PyExc_RuntimeError});
  static PyObject* const unreachable = PyExc_BrokenPipeError;
  static PyObject* const missing = error_type("TableMissingError", {base, unreachable});
  static PyObject* const not_a_table = error_type("NotATableError", {base, unreachable});
  static PyObject* const version = error_type("VersionMismatchError", {not_a_table});
  static PyObject* const unsafe = error_type("UnsafeTableError", {base, unreachable});
  static PyObject* const full = error_type("TableFullError", {base});
  static PyObject* const too_long = error_type("ScopeTooLongError", {base});
  static PyObject* const no_server = error_type("NoServerError", {base, unreachable});
  g_raise = [](const Error& e) {
    PyObject* type = base;
    switch (e.code()) {
      case ErrorCode::kIo: type = e.sys_errno() == ENOENT ? missing : base; break;
      case ErrorCode::kNotATable:
      case ErrorCode::kSizeMismatch: type = not_a_table; break;
      case ErrorCode::kVersionMismatch: type = version; break;
      case ErrorCode::kUnsafeFile: type = unsafe; break;
      case ErrorCode::kTableFull: type = full; break;
      case ErrorCode::kScopeTooLong: type = too_long; break;
      case ErrorCode::kNoServer: type = no_server; break;
      case ErrorCode::kInvalidArgument: type = PyExc_ValueError; break;
      default: break;
    }
    PyErr_SetString(type, e.what());
  };
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      g_raise(e);
    }
  });

  m.def(
      "default_table_path", [] { return default_table_path().string(); },
      "$SHMTIMER_TABLE, else the path shmtimerd uses by default.");
  m.def(
      "private_directory", [] { return private_directory().string(); },
      "/dev/shm/shmtimer-<uid>: the default table's directory, private to the user (made 0700 when a server "
      "creates a table in it).");

  py::class_<ShmTimerClient, std::shared_ptr<ShmTimerClient>>(m, "Client")
      .def(py::init([](const std::string& path, int signal, bool require_server, std::size_t recycle_idle_slots) {
             auto client = std::make_shared<ShmTimerClient>(open_table(path), signal, require_server);
             // Safe here: every call of a Python client is made holding the GIL.
             client->recycle_idle_slots(recycle_idle_slots);
             return client;
           }),
           py::arg("table_path"), py::arg("signal") = SIGKILL, py::arg("require_server") = false,
           py::arg("recycle_idle_slots") = 0)
      .def(
          "fast_calls",
          [](const std::shared_ptr<ShmTimerClient>& c) {
            return py::reinterpret_steal<py::tuple>(client_fast_calls(c));
          },
          "(acquire, release, acquire_after): the per-step calls as CPython builtins, without pybind11's dispatch.")
      .def(
          "timer_calls",
          [](const std::shared_ptr<ShmTimerClient>& c, const py::handle& scope_id) {
            ScopeArg scope;
            if (!scope.parse(scope_id.ptr())) throw py::error_already_set();
            return py::reinterpret_steal<py::tuple>(timer_fast_calls(c, scope.bytes()));
          },
          py::arg("scope_id"), "(arm, arm_after, disarm) of a Timer handle bound to the scope's slot.")
      .def(
          "forget",
          [](ShmTimerClient& c, const py::handle& scope_id) {
            ScopeArg scope;
            if (!scope.parse(scope_id.ptr())) throw py::error_already_set();
            return c.forget(scope.bytes());
          },
          py::arg("scope_id"))
      .def_property_readonly("signal", &ShmTimerClient::signal)
      .def_property_readonly("table_path", [](const ShmTimerClient& c) { return c.table()->path().string(); });

  bind_hosted_server(m);

  m.def(
      "read_header", [](const std::string& path) { return header_dict(TableReader::open(path).header()); },
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
