#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs a consumer that
# finds it with find_package(shmtimer).   run.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
# With the tools: both systemd units, naming the installed binary and manual.
if [[ -x $work/prefix/bin/shmtimerd ]]; then
  for unit in lib/systemd/system/shmtimerd@.service lib/systemd/user/shmtimerd.service; do
    # The user unit adds --realtime-priority 0 (a user's manager cannot grant one).
    grep -qE "^ExecStart=$work/prefix/bin/shmtimerd --log-format json( --realtime-priority 0)?$" "$work/prefix/$unit" ||
      { echo "$unit: missing, or its ExecStart= is not the installed shmtimerd"; exit 1; }
    for doc in $(sed -n 's#^Documentation=##p' "$work/prefix/$unit"); do
      [[ -f ${doc#file://} ]] || { echo "$unit: Documentation= names $doc, which is not installed"; exit 1; }
    done
  done
fi
# With the Python module: installed where Debian's python3 looks under /usr/local, the
# default prefix (site.getsitepackages()), and importable from there.
if [[ -n $(find "$work/prefix" -name '_shmtimer*.so' -print -quit) ]]; then
  site=$(/usr/bin/python3 -c 'import site; print(next(p for p in site.getsitepackages() if p.startswith("/usr/local/"))[len("/usr/local/"):])')
  [[ -f $work/prefix/$site/shmtimer/__init__.py ]] ||
    { echo "the Python package is not in $site, where Debian's python3 looks under /usr/local"; exit 1; }
  PYTHONPATH=$work/prefix/$site /usr/bin/python3 -c 'import shmtimer, shmtimer._shmtimer' ||
    { echo "the installed Python package does not import"; exit 1; }
fi
# The installed headers are the API alone (include/shmtimer of the source tree, no private
# header), and each compiles on its own: one translation unit per header.
repo=$(cd "$here/../.." && pwd)
diff <(cd "$repo/include/shmtimer" && ls) <(cd "$work/prefix/include/shmtimer" && ls) ||
  { echo "the installed headers differ from include/shmtimer (<: not installed, >: not public)"; exit 1; }
mkdir "$work/headers"
for header in "$work"/prefix/include/shmtimer/*.hpp; do
  name=$(basename "$header" .hpp)
  printf '#include <shmtimer/%s.hpp>\n' "$name" >"$work/headers/$name.cpp"
done
cmake -S "$here" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DHEADER_UNITS_DIR="$work/headers" >"$work/log" 2>&1 &&
  cmake --build "$work/build" >>"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
"$work/build/consumer"
