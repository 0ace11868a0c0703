// _shmtimer.Server: the watchdog and FIFO shim hosted in a Python process.
#pragma once

#include <pybind11/pybind11.h>

void bind_hosted_server(pybind11::module_& m);
