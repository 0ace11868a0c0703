# The Python and PyTorch suites, once per torch that users run:
#   torch-debian  Debian's python3-torch (1.13 on Debian 12, 2.x on Debian 13), under
#                 /usr/bin/python3, with the build tree's module on PYTHONPATH;
#   torch-<V>     torch V from the Python Package Index, pinned, in a venv of the Python
#                 its wheel is built for, with shmtimer installed by `pip install .`
#                 (the pip_install test makes that venv, so it runs first).
# Each suite checks that it got the torch it was given (tests/python/torch_under_test.py):
# one that cannot run fails, it never skips. All run in a private pid namespace, so that
# a bug in kill handling can never reach a process outside the test.

set(SHMTIMER_TORCH2_VERSION 2.13.0 CACHE STRING "The torch 2.x release of the venv suites (pinned: never a range)")
find_program(SHMTIMER_TORCH2_PYTHON NAMES python3.11
             DOC "The Python of the torch 2.x venv: the one its wheel on this machine is built for")
set(torch2 torch-${SHMTIMER_TORCH2_VERSION})
set(torch2_venv ${PROJECT_BINARY_DIR}/venv-${torch2})

# pip install . and pip wheel . with build isolation (tests/pip_install/run.sh): a build
# of its own, so alone, and the fixture that gives the torch 2.x suites their venv.
add_test(NAME pip_install COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/pip_install/run.sh ${torch2_venv}
                                  ${SHMTIMER_TORCH2_PYTHON} ${SHMTIMER_TORCH2_VERSION})
set_tests_properties(pip_install PROPERTIES RUN_SERIAL ON TIMEOUT 1200 FIXTURES_SETUP ${torch2})

set(tools_env "SHMTIMERD=$<TARGET_FILE:shmtimerd>;TIMER_DUMP=$<TARGET_FILE:timer-dump>"
              "FIFO_WORKER=$<TARGET_FILE:fifo_worker>;PYTHONDONTWRITEBYTECODE=1"
              "SHMTIMER_TEST_PY_SPY=${PROJECT_BINARY_DIR}/venv-py-spy/bin/py-spy")
set(helpers ${CMAKE_CURRENT_SOURCE_DIR}/python)  # torch_under_test.py

# shmtimer_add_torch_suite(NAME DIR MODULE [test properties...]): tests/<DIR>/<MODULE>.py
# as NAME.torch-debian and NAME.torch-<V>.
function(shmtimer_add_torch_suite name dir module)
  set(where WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/${dir})
  add_test(NAME ${name}.torch-debian ${where}
           COMMAND unshare --pid --fork --mount-proc /usr/bin/python3 -m unittest -v ${module})
  set_tests_properties(${name}.torch-debian PROPERTIES ${ARGN} ENVIRONMENT
    "${tools_env};SHMTIMER_EXPECT_TORCH=debian;PYTHONPATH=${PROJECT_BINARY_DIR}/python:${helpers}")
  add_test(NAME ${name}.${torch2} ${where}
           COMMAND unshare --pid --fork --mount-proc ${torch2_venv}/bin/python -m unittest -v ${module})
  set_tests_properties(${name}.${torch2} PROPERTIES ${ARGN} FIXTURES_REQUIRED ${torch2} ENVIRONMENT
    "${tools_env};SHMTIMER_EXPECT_TORCH=${SHMTIMER_TORCH2_VERSION};PYTHONPATH=${helpers}")
endfunction()

shmtimer_add_torch_suite(python_module python test_shmtimer_module TIMEOUT 600)
shmtimer_add_torch_suite(python_torch_server python test_torch_server TIMEOUT 600)
shmtimer_add_torch_suite(torch_contract python test_torch_contract TIMEOUT 600)
shmtimer_add_torch_suite(torch_interop interop test_torch_interop TIMEOUT 600)
# Real torchrun jobs: alone, as each starts several torch processes and the tests bound
# how long a hung job lives.
shmtimer_add_torch_suite(torchrun_launcher interop test_torchrun TIMEOUT 1200 RUN_SERIAL ON)
# Its incident test captures Python stacks with py-spy (tests/incident/capture_tools.sh).
set_property(TEST torchrun_launcher.torch-debian torchrun_launcher.${torch2} APPEND PROPERTY FIXTURES_REQUIRED capture_tools)
