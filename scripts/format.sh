#!/usr/bin/env bash
# The C sources' formatting (.clang-format, clang-format 14 from Debian).
#   scripts/format.sh          rewrites every tracked .c/.h file in place;
#   scripts/format.sh --check  changes nothing, lists the files that differ
#                              and exits 1 if any does (tests/run.sh runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find common services tests tools -name '*.[ch]')
if [[ ${1:-} == --check ]]; then
  bad=0
  for f in "${files[@]}"; do
    if ! clang-format --style=file "$f" | cmp -s - "$f"; then
      echo "not formatted: $f (make format)"
      bad=1
    fi
  done
  exit $bad
fi
clang-format --style=file -i "${files[@]}"
