#!/usr/bin/env bash
# `pip install .` and `pip wheel .` as a PyTorch user runs them: with build isolation
# (scikit-build-core and pybind11 from the Python Package Index), into a fresh venv of a
# given Python that has torch pinned to a given release. Then:
#   - the package imports from the venv, shmtimerd and timer-dump are on the venv's PATH,
#     and shmtimerd reaps a hung worker;
#   - the wheel installs on a clean venv of the same Python, with the same checks;
#   - the source tree is left exactly as it was.
# The torch venv is kept: the suites that run against this torch use it (tests/CMakeLists.txt).
#   run.sh VENV PYTHON TORCH_VERSION
set -euo pipefail
venv=$1 python=$2 torch_version=$3
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
daemon=""
table=/dev/shm/shmtimer-pip-$$.table
cleanup() {
  [[ -n $daemon ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -rf "$work" "$table"
}
trap cleanup EXIT
fail() { echo "pip_install: $*" >&2; exit 1; }
quietly() {  # quietly LOG command...: its output only if it fails
  local log=$1; shift
  "$@" >"$log" 2>&1 || { cat "$log"; fail "failed: $*"; }
}

[[ -x $python ]] || fail "no Python at '$python' for the torch $torch_version venv: the torch wheel on this machine is for Python 3.11 (set SHMTIMER_TORCH2_PYTHON)"
# A copy of the checkout without build trees or history, as a user's unpacked source.
mkdir "$work/src"
tar -C "$repo" --exclude='./build*' --exclude='./.git' -cf - . | tar -C "$work/src" -xf -
(cd "$work/src" && find . | sort) >"$work/tree.before"

rm -rf "$venv"
"$python" -m venv "$venv"
# Pinned: an unpinned torch would fetch a multi-gigabyte CUDA build.
quietly "$work/torch.log" "$venv/bin/pip" install "torch==$torch_version"

# Both commands share one CMake build directory, so the second does not compile again.
started=$SECONDS
quietly "$work/install.log" "$venv/bin/pip" install -C build-dir="$work/cmake" "$work/src"
echo "pip install . took $((SECONDS - started)) s"
quietly "$work/wheel.log" "$venv/bin/pip" wheel --no-deps -C build-dir="$work/cmake" -w "$work/dist" "$work/src"
(cd "$work/src" && find . | sort) >"$work/tree.after"
diff "$work/tree.before" "$work/tree.after" || fail "the build left files in the source tree"

"$python" -m venv "$work/clean"
quietly "$work/clean.log" "$work/clean/bin/pip" install --no-deps "$work"/dist/shmtimer-*.whl

# check VENV: imports from VENV, its tools on PATH, its shmtimerd reaps a hung worker.
check() {
  local env=$1 status=0
  PATH=$env/bin:$PATH
  [[ $(command -v shmtimerd) == "$env/bin/shmtimerd" ]] || fail "shmtimerd is not on $env's PATH"
  [[ $(command -v timer-dump) == "$env/bin/timer-dump" ]] || fail "timer-dump is not on $env's PATH"
  shmtimerd --version >/dev/null
  (cd "$work" && python -c '
import sys, shmtimer, shmtimer.torch, shmtimer.run
for module in (shmtimer, shmtimer.torch, shmtimer.run):
    assert module.__file__.startswith(sys.prefix), module.__file__') || fail "shmtimer is not imported from $env"
  shmtimerd --table "$table" --capacity 64 --log-level warn &
  daemon=$!
  for _ in $(seq 300); do timer-dump --table "$table" --check >/dev/null 2>&1 && break; sleep 0.05; done
  python -c '
import sys, time, shmtimer
shmtimer.ShmTimerClient(sys.argv[1]).acquire("pip-install-hang", time.time() + 0.1)
time.sleep(60)
' "$table" || status=$?
  kill -TERM "$daemon" && wait "$daemon" || fail "shmtimerd did not stop cleanly"
  daemon=""
  [[ $status -eq 137 ]] || fail "the hung worker was not reaped with SIGKILL (status $status)"
}
(check "$venv")
(check "$work/clean")
"$venv/bin/python" -c 'import sys, torch; assert torch.__version__.split("+")[0] == sys.argv[1], torch.__version__' \
  "$torch_version" || fail "the venv's torch is not $torch_version"
echo "pip install . and pip wheel . with build isolation: both venvs import shmtimer, have the tools on PATH and reap"
