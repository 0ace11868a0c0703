#!/usr/bin/env bash
# Every C++ file the repository tracks is formatted as .clang-format says, by one pinned
# clang-format from the Python Package Index (its wheel carries the binary), so that the
# check gives the same answer on Debian 12 and 13 whatever clang they ship.
#   format_check.sh VENV     (the venv is made once and kept in the build tree)
# To reformat: VENV/bin/clang-format -i $(git ls-files '*.cpp' '*.hpp')
set -euo pipefail
venv=$1
version=19.1.7
repo=$(cd "$(dirname "$0")/.." && pwd)
if [[ ! -x $venv/bin/clang-format ]] || [[ $("$venv/bin/clang-format" --version) != *" $version"* ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "clang-format==$version"
fi
cd "$repo"
mapfile -t files < <(git ls-files '*.cpp' '*.hpp')
((${#files[@]} > 0)) || { echo "format_check: no C++ files found under $repo" >&2; exit 1; }
if ! "$venv/bin/clang-format" --dry-run --Werror "${files[@]}"; then
  echo "format_check: the files above differ from .clang-format; run: $venv/bin/clang-format -i <file>" >&2
  exit 1
fi
echo "format_check: ${#files[@]} files formatted as .clang-format says (clang-format $version)"
