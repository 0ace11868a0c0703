#!/usr/bin/env bash
# Runs the whole benchmark suite in one go and writes docs/benchmarks.md and
# docs/benchmarks.png (used by `./dev.sh bench`, which builds `build` in Release first):
#
#   ./bench/run.sh BUILD_DIR
#
#   1. BUILD/bench/shmtimer_bench (Google Benchmark; 5 repetitions in random interleaved order,
#      median aggregates, JSON):
#      the C++ acquire+release pairs (table client, FIFO client against an in-process
#      TimerServer + FifoShim), scaling, the Expires guard, the server, the FIFO flood,
#      incident capture (py-spy from the venv tests/incident/capture_tools.sh makes);
#   2. bench/python_pairs.py with /usr/bin/python3: PyTorch's FileTimerClient against a
#      FIFO served by BUILD_DIR/tools/shmtimerd --fifo, and the Python shmtimer module;
#   3. bench/report.py (standard library only) merges both into docs/benchmarks.md, and
#      gnuplot draws the main comparison into docs/benchmarks.png.
#
# Raw results stay in BUILD_DIR/bench-results/. About 3 minutes on 2 cores. The build
# should be Release; the targets are (re)built here if needed, with
# SHMTIMER_BUILD_JOBS jobs (default: all cores).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  sed -n '2,18p' "$0"
  exit 2
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd)
BUILD_ARG=$1
OUT=$BUILD/bench-results
PYTHON=/usr/bin/python3
mkdir -p "$OUT"
command -v gnuplot >/dev/null || { echo "gnuplot not found: apt-get install gnuplot-nox" >&2; exit 1; }

build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
if [[ $build_type != Release ]]; then
  echo "warning: $BUILD is a '${build_type:-?}' build; the figures are meant for Release" >&2
fi

# The commit, taken before anything is written (the report itself is tracked).
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" --no-optional-locks status --porcelain 2>/dev/null) ]]; then commit+=-dirty; fi

targets=(shmtimer_bench shmtimerd)
if cmake --build "$BUILD" --target help 2>/dev/null | grep -Eq '(^|[ .])_shmtimer(:|$)'; then targets+=(_shmtimer); fi
echo "== building ${targets[*]} in $BUILD"
cmake --build "$BUILD" -j"${SHMTIMER_BUILD_JOBS:-$(nproc)}" --target "${targets[@]}" >/dev/null

workdir=$(mktemp -d /tmp/shmtimer-bench.XXXXXX)
daemon=""
bench_pid=""
cleanup() {
  if [[ -n $daemon ]]; then kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  if [[ -n $bench_pid ]]; then rm -f /dev/shm/shmtimer-*-"$bench_pid".table /dev/shm/shmtimer-*-"$bench_pid".fifo; fi
  rm -f "/dev/shm/shmtimer-bench-$$.table"
  rm -rf "$workdir"
}
trap cleanup EXIT

# py-spy for the incident capture benchmark, pinned, in the venv the tests use.
"$REPO/tests/incident/capture_tools.sh" "$BUILD/venv-py-spy" >/dev/null

echo "== C++ suite (Google Benchmark): $BUILD/bench/shmtimer_bench"
SHMTIMER_BENCH_PY_SPY="$BUILD/venv-py-spy/bin/py-spy" "$BUILD/bench/shmtimer_bench" \
  --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
  --benchmark_out="$OUT/cpp.json" --benchmark_out_format=json &
bench_pid=$!
wait "$bench_pid"

echo "== Python pairs: PyTorch FileTimerClient against shmtimerd --fifo, and the shmtimer module"
table=/dev/shm/shmtimer-bench-$$.table
fifo=$workdir/timer.fifo
"$BUILD/tools/shmtimerd" --table "$table" --fifo "$fifo" --capacity 4096 --log-level warn &
daemon=$!
for _ in $(seq 200); do [[ -p $fifo && -e $table ]] && break; sleep 0.05; done
[[ -p $fifo ]] || { echo "shmtimerd did not create $fifo" >&2; exit 1; }
PYTHONPATH="$BUILD/python${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" "$REPO/bench/python_pairs.py" \
  --fifo "$fifo" --table "$table" --out "$OUT/python.json"
kill -TERM "$daemon"
wait "$daemon" || { echo "shmtimerd exited with status $?" >&2; exit 1; }
daemon=""

echo "== report"
"$PYTHON" "$REPO/bench/report.py" --build "$BUILD" --cpp "$OUT/cpp.json" --python "$OUT/python.json" \
  --commit "$commit" --command "./bench/run.sh $BUILD_ARG" \
  --markdown "$REPO/docs/benchmarks.md" --chart-data "$OUT/pairs.dat"
gnuplot -e "datafile='$OUT/pairs.dat'; outfile='$REPO/docs/benchmarks.png'" "$REPO/bench/chart.gp"
echo "== wrote docs/benchmarks.md and docs/benchmarks.png (raw results: $OUT)"
