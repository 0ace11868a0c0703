#!/usr/bin/env bash
# The project's two quick-start commands, and a few more for developers.
#   ./dev.sh demo    install what is missing, build, start shmtimerd and run the demo
#   ./dev.sh test    install what is missing, build, run the whole test suite
#                    (plus the TSan and ASan+UBSan builds and a short fuzz run;
#                    SHMTIMER_SANITIZERS=0 and SHMTIMER_FUZZ_SECONDS=0 skip those)
#   ./dev.sh bench   build and run the benchmarks, writing docs/benchmarks.md
#   ./dev.sh mutants the mutation gate: every safety property disabled in turn must be
#                    caught by a test (tests/mutants/, docs/reliability.md; ~30 min)
set -euo pipefail
cd "$(dirname "$0")"

BUILD_DEPS=(cmake ninja-build g++ pkg-config libboost-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
            libcpp-httplib-dev libsystemd-dev libgtest-dev libbenchmark-dev)
# Names that Debian 12 and 13 both have: the unversioned libclang-rt-dev follows each
# release's default clang. The torch 2.x suites also need a Python 3.11 (the release's
# own on Debian 12; on Debian 13 one from the machine's image) and the Python Package Index.
TEST_DEPS=(python3-dev python3-torch pybind11-dev python3-venv clang libclang-rt-dev gnuplot-nox util-linux
           prometheus systemd spin elfutils gdb)
JOBS=$(nproc)

install_missing() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The main build is Release, as the benchmarks need it: the test run then builds (and
# so checks with -Werror) exactly what `./dev.sh bench` builds, with no extra build.
build() {  # build DIR [cmake args...]
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DSHMTIMER_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$JOBS"
}

run_ctest() {  # run_ctest DIR LABEL
  echo "== tests: $2"
  ctest --test-dir "$1" -j"$JOBS" --output-on-failure --timeout 300
}

demo() {
  install_missing "${BUILD_DEPS[@]}"
  build build -DCMAKE_BUILD_TYPE=Release
  local table="/dev/shm/shmtimer-demo.$$.table"
  ./build/tools/shmtimerd --table "$table" --capacity 4096 &
  local daemon=$!
  # Expanded now: the trap runs at exit, after this function's locals are gone.
  # shellcheck disable=SC2064
  trap "kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -f '$table'" EXIT
  for _ in $(seq 100); do [[ -e $table ]] && break; sleep 0.05; done
  sleep 0.2
  ./build/tools/shmtimer-demo --table "$table"
}

test_all() {
  install_missing "${BUILD_DEPS[@]}" "${TEST_DEPS[@]}"
  # Every layer named, so that a cache left by the demo (configured before pybind11 was
  # installed) cannot leave one out: a missing dependency is a configure error.
  build build -DCMAKE_BUILD_TYPE=Release -DSHMTIMER_BUILD_TESTS=ON -DSHMTIMER_BUILD_BENCH=ON \
    -DSHMTIMER_BUILD_TOOLS=ON -DSHMTIMER_BUILD_PYTHON=ON -DPython3_EXECUTABLE=/usr/bin/python3
  run_ctest build "release build"
  if [[ ${SHMTIMER_SANITIZERS:-1} != 0 ]]; then
    # The Python module is not built here: an ASan or TSan runtime cannot be loaded into
    # an uninstrumented python3.
    build build-tsan -DSHMTIMER_SANITIZE=thread -DSHMTIMER_BUILD_BENCH=OFF -DSHMTIMER_BUILD_PYTHON=OFF
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" run_ctest build-tsan "ThreadSanitizer"
    build build-asan -DSHMTIMER_SANITIZE=address -DSHMTIMER_BUILD_BENCH=OFF -DSHMTIMER_BUILD_PYTHON=OFF
    ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1" run_ctest build-asan "AddressSanitizer+UBSan"
  fi
  if [[ ${SHMTIMER_FUZZ_SECONDS:-30} != 0 ]]; then
    # A bounded libFuzzer run per target; the long run is in docs/reliability.md.
    FUZZ_JOBS=$JOBS tests/fuzz/run.sh build-fuzz "${SHMTIMER_FUZZ_SECONDS:-30}"
  fi
}

bench() {
  install_missing "${BUILD_DEPS[@]}" "${TEST_DEPS[@]}"
  build build -DCMAKE_BUILD_TYPE=Release
  ./bench/run.sh build
}

mutants() {
  install_missing "${BUILD_DEPS[@]}" "${TEST_DEPS[@]}"
  tests/mutants/run.py build-mutants "${@}"
}

case "${1:-}" in
  demo) demo ;;
  test) test_all ;;
  bench) bench ;;
  mutants) shift; mutants "$@" ;;
  *) sed -n '2,10p' "$0"; exit 1 ;;
esac
