#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each for a bounded time.
#
#   tests/fuzz/run.sh [BUILD_DIR] [SECONDS]        BUILD_DIR defaults to build-fuzz,
#                                                  SECONDS to $FUZZ_SECONDS, else 60
#   FUZZ_SECONDS=3600 tests/fuzz/run.sh            the long run (docs/reliability.md)
#   tests/fuzz/run.sh build-fuzz 0                 only replay the corpus, no fuzzing
#
# Each target fuzzes a writable copy of its seed corpus (tests/fuzz/corpus/<name>) kept in
# BUILD_DIR/fuzz/<name>/corpus, so the committed seeds are never modified and a later run
# starts from what earlier runs found. Prints one summary line per target and exits 1 if
# any target crashed; the crashing input is left in BUILD_DIR/fuzz/<name>/ (crash-*,
# leak-*, timeout-* or oom-*) and its log in BUILD_DIR/fuzz/<name>/fuzz.log.
#
# Environment: FUZZ_SECONDS (per target), FUZZ_JOBS (build parallelism, default 1),
# FUZZ_TARGETS (default "fifo_parser_fuzz table_open_fuzz"), FUZZ_ARGS (extra libFuzzer
# flags, e.g. "-seed=1").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-fuzz}
seconds=${2:-${FUZZ_SECONDS:-60}}
jobs=${FUZZ_JOBS:-1}
targets=${FUZZ_TARGETS:-"fifo_parser_fuzz table_open_fuzz"}
build=$(realpath -m -- "$build")
[[ $seconds =~ ^[0-9]+$ ]] || { echo "run.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2; }

max_len() {  # the largest input worth generating for a target
  case $1 in
    fifo_parser_fuzz) echo 8192 ;;   # room for a line over PIPE_BUF (4096) and its neighbours
    table_open_fuzz) echo 65536 ;;   # a structured table of capacity 130 is 41.8 KB
    *) echo 4096 ;;
  esac
}

echo "== fuzz: building in $build"
if [[ ! -f $build/CMakeCache.txt ]]; then
  CXX=${CXX:-clang++} cmake -S "$here" -B "$build" -G Ninja >/dev/null
fi
# shellcheck disable=SC2086
cmake --build "$build" -j"$jobs" --target $targets

# The table target writes one file per process here; removed whatever happens.
shm_dir=$(mktemp -d /dev/shm/shmtimer-fuzz.XXXXXX)
trap 'rm -rf "$shm_dir"' EXIT

failed=0
for target in $targets; do
  work="$build/fuzz/$target"
  mkdir -p "$work/corpus"
  cp "$here/corpus/${target%_fuzz}/"* "$work/corpus/"
  log="$work/fuzz.log"
  if ((seconds > 0)); then what="for ${seconds}s"; else what="replaying its corpus"; fi
  echo "== fuzz: $target $what (log: $log)"
  status=0
  # -print_final_stats: the executions count for the summary. -timeout: one input may
  # take at most 10 s. -artifact_prefix: crashes land in the build dir, not the cwd.
  limit=(-max_total_time="$seconds")
  ((seconds > 0)) || limit=(-runs=0)  # libFuzzer reads -max_total_time=0 as "no limit"
  dict=()
  [[ -f $here/${target%_fuzz}.dict ]] && dict=(-dict="$here/${target%_fuzz}.dict")
  # shellcheck disable=SC2086
  SHMTIMER_FUZZ_DIR="$shm_dir" UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}" \
    "$build/$target" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$target")" \
    -print_final_stats=1 -artifact_prefix="$work/" "${dict[@]}" ${FUZZ_ARGS:-} "$work/corpus" >"$log" 2>&1 || status=$?

  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [[ -z $execs ]]; then  # no final stats after a crash: take the last progress line
    execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  fi
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  # libFuzzer's own count (inputs that add coverage), else the files in the directory.
  corpus=$(sed -n 's/^#[0-9]*[[:space:]]*DONE .* corp: \([0-9]*\)\/.*/\1/p' "$log" | tail -n 1)
  [[ -n $corpus ]] || corpus=$(find "$work/corpus" -type f | wc -l)
  if ((status == 0)); then
    echo "$target: ${execs:-?} executions in ${seconds}s (${rate:-?}/s), corpus $corpus inputs, no crash"
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    echo "$target: CRASHED (exit $status) after ${execs:-?} executions; input: ${artifact:-see log}; log: $log"
    grep -m 1 -E '^==[0-9]+==ERROR|runtime error|deadly signal|^SUMMARY' "$log" || true
  fi
done
exit "$failed"
