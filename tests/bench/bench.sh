#!/usr/bin/env bash
# make bench: each benchmark prints exactly one "bench ..." line on stdout
# (diagnostics go to stderr). bench.py measures the runtime; every
# tests/bench/bench_<service>.py measures one worker and is discovered.
set -euo pipefail
cd "$(dirname "$0")/../.."
export AS_GEN_PY=${AS_GEN_PY:-build/gen/py}
/usr/bin/python3 tests/bench/bench.py
for b in tests/bench/bench_*.py; do
  [[ -f $b ]] || continue
  /usr/bin/python3 "$b"
done
