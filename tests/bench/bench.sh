#!/usr/bin/env bash
# make bench: each benchmark prints exactly one "bench ..." line on stdout
# (diagnostics go to stderr), once per broker: real Kafka, then the mock
# (AS_BROKER=kafka or mock runs only that one); every line names its
# broker (broker=kafka|mock). bench.py measures the runtime; every
# tests/bench/bench_<service>.py measures one worker and is discovered.
set -euo pipefail
cd "$(dirname "$0")/../.."
export AS_GEN_PY=${AS_GEN_PY:-build/gen/py}
for broker in ${AS_BROKER:-kafka mock}; do
  export AS_BROKER=$broker
  /usr/bin/python3 tests/bench/bench.py
  for b in tests/bench/bench_*.py; do
    [[ -f $b ]] || continue
    /usr/bin/python3 "$b"
  done
done
