#!/usr/bin/env bash
# `pip install .` as a new user does it on Debian 12: a fresh venv that sees Debian's
# packages (torch included), an offline build without isolation; then the package
# imports, shmtimerd and timer-dump are on the venv's PATH, and one hung worker is reaped.
#   run.sh   (from anywhere; uses the checkout it lives in)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
daemon=""
table=/dev/shm/shmtimer-pip-$$.table
cleanup() {
  [[ -n $daemon ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -rf "$work" "$table"
}
trap cleanup EXIT

# A copy without build trees: pip builds in the source directory, and the checkout's own
# build/ must stay the developer's.
mkdir "$work/src"
tar -C "$repo" --exclude='./build*' --exclude='./.git' -cf - . | tar -C "$work/src" -xf -
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet --no-build-isolation --no-index "$work/src" >"$work/pip.log" 2>&1 ||
  { cat "$work/pip.log"; exit 1; }
export PATH=$work/venv/bin:$PATH
cd "$work"  # not the checkout: the import must come from the venv
[[ $(command -v shmtimerd) == "$work/venv/bin/shmtimerd" ]] || { echo "shmtimerd is not on the venv's PATH"; exit 1; }
shmtimerd --version
timer-dump --version
python -c 'import shmtimer, sys; assert shmtimer.__file__.startswith(sys.prefix), shmtimer.__file__; print(shmtimer.__file__)'
# The torchrun launcher and the hosted server come with the package.
python -c 'import shmtimer.torch, shmtimer.run, sys; assert shmtimer.run.__file__.startswith(sys.prefix)'

shmtimerd --table "$table" --capacity 64 --log-level warn &
daemon=$!
for _ in $(seq 300); do timer-dump --table "$table" --check >/dev/null 2>&1 && break; sleep 0.05; done
status=0
python -c '
import sys, time, shmtimer
shmtimer.ShmTimerClient(sys.argv[1]).acquire("pip-install-hang", time.time() + 0.1)
time.sleep(60)
' "$table" || status=$?
[[ $status -eq 137 ]] || { echo "the hung worker was not reaped with SIGKILL (status $status)"; exit 1; }
echo "pip install: imported, tools on PATH, a hung worker reaped"
