#!/usr/bin/env bash
# systemd-analyze verify on the units cmake configured (BUILD_DIR/tools/systemd), with
# ExecStart pointed at the built shmtimerd (the installed path may not exist yet).
# Fails without systemd-analyze (Debian: systemd), as a suite that cannot run must.
set -euo pipefail
build=$1 shmtimerd=$2
command -v systemd-analyze >/dev/null || { echo "no systemd-analyze: install systemd"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -m 0700 "$work/runtime"
sed "s#^ExecStart=[^ ]*shmtimerd#ExecStart=$shmtimerd#" "$build/tools/systemd/system/shmtimerd@.service" \
  > "$work/shmtimerd@alice.service"
sed "s#^ExecStart=[^ ]*shmtimerd#ExecStart=$shmtimerd#" "$build/tools/systemd/user/shmtimerd.service" \
  > "$work/shmtimerd.service"
# verify prints problems and exits non-zero on errors; warnings are failures here too.
out=$(systemd-analyze verify "$work/shmtimerd@alice.service" 2>&1) || true
out+=$(XDG_RUNTIME_DIR="$work/runtime" systemd-analyze --user verify "$work/shmtimerd.service" 2>&1) || true
if [[ -n $out ]]; then
  echo "$out"
  exit 1
fi
for unit in "$work/shmtimerd@alice.service" "$work/shmtimerd.service"; do
  for line in Type=notify WatchdogSec=10 StartLimitIntervalSec=0; do
    grep -qx "$line" "$unit" || { echo "$(basename "$unit") lacks $line"; exit 1; }
  done
done
echo "both units verify cleanly"
