#!/usr/bin/env bash
# make bench: each benchmark prints exactly one "bench ..." line on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
export AS_GEN_PY=${AS_GEN_PY:-build/gen/py}
/usr/bin/python3 tests/bench/bench.py
