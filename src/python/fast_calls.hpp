// The per-step calls of the Python module as plain CPython builtins (METH_FASTCALL).
// pybind11's dispatcher (argument loaders, overload records, its exception machinery)
// costs more than the whole table pair, so the calls a training loop makes on every step
// bypass it; everything else stays in pybind11.
#pragma once

#include <Python.h>

#include <memory>
#include <string_view>

#include "shmtimer/error.hpp"
#include "shmtimer/shm_timer_client.hpp"

// Sets the Python exception for a library error, with the module's exception types.
extern void (*g_raise)(const shmtimer::Error&);

// A new tuple (acquire, release, acquire_after): builtins bound to `client`, which they
// keep alive. acquire(scope_id, expiration_time) takes wall-clock epoch seconds, as
// torch's does; acquire_after(scope_id, seconds) a duration.
PyObject* client_fast_calls(const std::shared_ptr<shmtimer::ShmTimerClient>& client);

// A new tuple (arm, arm_after, disarm) over a Timer handle for `scope` of `client`:
// arm(expiration_time) in epoch seconds, arm_after(seconds), disarm().
PyObject* timer_fast_calls(const std::shared_ptr<shmtimer::ShmTimerClient>& client, std::string_view scope);
