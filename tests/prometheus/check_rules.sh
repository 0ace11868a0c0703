#!/usr/bin/env bash
# promtool check rules + promtool test rules on the shipped alert rules. Fails without
# promtool (Debian: prometheus), as a suite that cannot run must.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v promtool >/dev/null || { echo "no promtool: install prometheus"; exit 1; }
promtool check rules "$here/../../tools/shmtimerd/prometheus/shmtimer-rules.yml"
cd "$here" && promtool test rules shmtimer-rules.test.yml
