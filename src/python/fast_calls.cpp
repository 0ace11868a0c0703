#include "fast_calls.hpp"

#include <chrono>
#include <exception>

#include "shmtimer/clock.hpp"
#include "scope_text.hpp"

using shmtimer::ShmTimerClient;

namespace {

// What a capsule owns: the client (kept alive while a bound call exists), and for a
// Timer handle the handle itself.
struct BoundClient {
  std::shared_ptr<ShmTimerClient> client;
};
struct BoundTimer {
  std::shared_ptr<ShmTimerClient> client;
  shmtimer::Timer timer;
};

constexpr const char* kClientCapsule = "shmtimer.client";
constexpr const char* kTimerCapsule = "shmtimer.timer";

template <class T>
T& owned(PyObject* capsule, const char* name) {
  return *static_cast<T*>(PyCapsule_GetPointer(capsule, name));
}

// Positional and keyword arguments into `out` by name; false (TypeError set) on a
// missing, repeated or unknown one.
template <std::size_t N>
bool bind_args(const char* fn, const char* const (&names)[N], PyObject* const* args, Py_ssize_t nargs,
               PyObject* kwnames, PyObject* (&out)[N]) {
  if (nargs > static_cast<Py_ssize_t>(N)) {
    PyErr_Format(PyExc_TypeError, "%s() takes %zu arguments (%zd given)", fn, N, nargs);
    return false;
  }
  for (std::size_t i = 0; i < N; ++i) out[i] = i < static_cast<std::size_t>(nargs) ? args[i] : nullptr;
  const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, k);
    std::size_t i = 0;
    while (i < N && PyUnicode_CompareWithASCIIString(key, names[i]) != 0) ++i;
    if (i == N || out[i] != nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated argument '%U'", fn, key);
      return false;
    }
    out[i] = args[nargs + k];
  }
  for (std::size_t i = 0; i < N; ++i)
    if (out[i] == nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() missing argument '%s'", fn, names[i]);
      return false;
    }
  return true;
}

bool seconds_arg(PyObject* o, double& out) {
  out = PyFloat_AsDouble(o);  // float, int or anything with __float__
  return !(out == -1.0 && PyErr_Occurred());
}

shmtimer::Deadline after(double seconds) {
  return shmtimer::SteadyClock::now() +
         std::chrono::duration_cast<shmtimer::SteadyClock::duration>(std::chrono::duration<double>(seconds));
}

template <class Fn>
PyObject* call(Fn&& fn) {
  try {
    fn();
  } catch (const shmtimer::Error& e) {
    g_raise(e);
    return nullptr;
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"scope_id", "expiration_time"};
  PyObject* a[2];
  ScopeArg scope;
  double expiration = 0;
  if (!bind_args("acquire", names, args, nargs, kwnames, a) || !scope.parse(a[0]) || !seconds_arg(a[1], expiration))
    return nullptr;
  auto& client = *owned<BoundClient>(self, kClientCapsule).client;
  return call([&] { client.acquire(scope.bytes(), shmtimer::deadline_from_epoch_seconds(expiration)); });
}

PyObject* release(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"scope_id"};
  PyObject* a[1];
  ScopeArg scope;
  if (!bind_args("release", names, args, nargs, kwnames, a) || !scope.parse(a[0])) return nullptr;
  auto& client = *owned<BoundClient>(self, kClientCapsule).client;
  return call([&] { client.release(scope.bytes()); });
}

PyObject* acquire_after(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"scope_id", "seconds"};
  PyObject* a[2];
  ScopeArg scope;
  double seconds = 0;
  if (!bind_args("acquire_after", names, args, nargs, kwnames, a) || !scope.parse(a[0]) || !seconds_arg(a[1], seconds))
    return nullptr;
  auto& client = *owned<BoundClient>(self, kClientCapsule).client;
  return call([&] { client.acquire(scope.bytes(), after(seconds)); });
}

PyObject* timer_arm(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"expiration_time"};
  PyObject* a[1];
  double expiration = 0;
  if (!bind_args("arm", names, args, nargs, kwnames, a) || !seconds_arg(a[0], expiration)) return nullptr;
  auto& timer = owned<BoundTimer>(self, kTimerCapsule).timer;
  return call([&] { timer.arm(shmtimer::deadline_from_epoch_seconds(expiration)); });
}

PyObject* timer_arm_after(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"seconds"};
  PyObject* a[1];
  double seconds = 0;
  if (!bind_args("arm_after", names, args, nargs, kwnames, a) || !seconds_arg(a[0], seconds)) return nullptr;
  auto& timer = owned<BoundTimer>(self, kTimerCapsule).timer;
  return call([&] { timer.arm(after(seconds)); });
}

PyObject* timer_disarm(PyObject* self, PyObject* const* /*args*/, Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs != 0 || (kwnames && PyTuple_GET_SIZE(kwnames) != 0)) {
    PyErr_SetString(PyExc_TypeError, "disarm() takes no arguments");
    return nullptr;
  }
  owned<BoundTimer>(self, kTimerCapsule).timer.disarm();
  Py_RETURN_NONE;
}

constexpr int kFlags = METH_FASTCALL | METH_KEYWORDS;
#define SHMTIMER_FAST(fn, doc) {#fn, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn)), kFlags, doc}
PyMethodDef g_acquire = SHMTIMER_FAST(acquire, "acquire(scope_id, expiration_time): arm until the epoch time.");
PyMethodDef g_release = SHMTIMER_FAST(release, "release(scope_id): disarm; an unknown scope is a no-op.");
PyMethodDef g_acquire_after = SHMTIMER_FAST(acquire_after, "acquire_after(scope_id, seconds): arm that long from now.");
PyMethodDef g_arm = {"arm", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(timer_arm)), kFlags,
                     "arm(expiration_time): arm until the epoch time."};
PyMethodDef g_arm_after = {"arm_after", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(timer_arm_after)),
                           kFlags, "arm_after(seconds): arm to expire that many seconds from now."};
PyMethodDef g_disarm = {"disarm", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(timer_disarm)), kFlags,
                        "disarm(): disarm (never throws)."};
#undef SHMTIMER_FAST

template <class T>
PyObject* capsule_owning(T* object, const char* name) {
  PyObject* capsule = PyCapsule_New(
      object, name, [](PyObject* c) { delete static_cast<T*>(PyCapsule_GetPointer(c, PyCapsule_GetName(c))); });
  if (capsule == nullptr) delete object;
  return capsule;
}

// A tuple of builtins bound to `capsule` (whose reference it takes over).
template <std::size_t N>
PyObject* bound_tuple(PyObject* capsule, PyMethodDef* (&defs)[N]) {
  if (capsule == nullptr) return nullptr;
  PyObject* tuple = PyTuple_New(N);
  for (std::size_t i = 0; tuple != nullptr && i < N; ++i) {
    PyObject* fn = PyCFunction_NewEx(defs[i], capsule, nullptr);
    if (fn == nullptr) {
      Py_CLEAR(tuple);
      break;
    }
    PyTuple_SET_ITEM(tuple, static_cast<Py_ssize_t>(i), fn);
  }
  Py_DECREF(capsule);
  return tuple;
}

}  // namespace

PyObject* client_fast_calls(const std::shared_ptr<ShmTimerClient>& client) {
  PyMethodDef* defs[] = {&g_acquire, &g_release, &g_acquire_after};
  return bound_tuple(capsule_owning(new BoundClient{client}, kClientCapsule), defs);
}

PyObject* timer_fast_calls(const std::shared_ptr<ShmTimerClient>& client, std::string_view scope) {
  auto* bound = new BoundTimer{client, client->timer(scope)};  // claims the slot (if this throws, new frees)
  PyMethodDef* defs[] = {&g_arm, &g_arm_after, &g_disarm};
  return bound_tuple(capsule_owning(bound, kTimerCapsule), defs);
}
