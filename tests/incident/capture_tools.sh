#!/usr/bin/env bash
# The capture tools the incident tests use besides Debian's (eu-stack, gdb): py-spy,
# pinned, from the Python Package Index, in a venv kept in the build tree.
#   capture_tools.sh VENV
set -euo pipefail
venv=$1
version=0.4.3
if [[ ! -x $venv/bin/py-spy ]] || [[ $("$venv/bin/py-spy" --version) != "py-spy $version" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "py-spy==$version"
fi
command -v eu-stack >/dev/null || { echo "capture_tools: eu-stack is not installed (Debian's elfutils; ./dev.sh installs it)" >&2; exit 1; }
"$venv/bin/py-spy" --version
