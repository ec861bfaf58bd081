#!/usr/bin/env bash
# The whole suite, as `make test` runs it after building build/ (optimised),
# build/asan/ (AddressSanitizer + UndefinedBehaviorSanitizer) and build/tsan/
# (ThreadSanitizer):
#   1. unit tests (tests/unit, one binary per module, discovered), both builds;
#   2. the README's configuration table and the Kubernetes manifests against
#      what generates them; each fuzz target's replay (tests/fuzz: its corpus
#      and 100k mutations of it), ASan build;
#   3. a few integration tests against build/tsan (ThreadSanitizer: the
#      relay's thread);
#   4. integration tests (tests/integration, pytest against the embedded
#      PostgreSQL and broker, real protobuf bytes), both builds.
# Ends with one line "N passed, N failed" that CI reads.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
TMP=${AS_TEST_TMP:-$(mktemp -d /tmp/as-test.XXXXXX)}
export AS_TEST_TMP=$TMP
passed=0
failed=0
failures=()

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=66
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

count_line() { # "N passed, M failed" from a unit binary's last line
  local out=$1 name=$2 p f
  p=$(tail -n 5 "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' | tail -n1)
  f=$(tail -n 5 "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' | tail -n1)
  if [[ -z $p ]]; then p=0; f=1; fi
  passed=$((passed + p))
  failed=$((failed + f))
  [[ $f -eq 0 ]] || failures+=("$name")
}

# Modules that talk to PostgreSQL (as_tx, as_case, as_deadline, as_migrate)
# are unit-tested against a real one: a private cluster for this run.
eval "$(scripts/pg.sh start "$TMP/pg")"
export AS_TEST_DSN="host=$PGHOST port=$PGPORT user=$PGUSER dbname=$PGDATABASE"
# Every cluster of the run: this script's and each pytest-xdist process's
# ($TMP/gw*/pg). A cluster relocated under /var/tmp would outlive rm -rf.
# Real Kafka brokers too ($TMP/gw*/kafka-*, test_real_kafka.py): a pytest
# ended by `timeout` skips its fixtures' teardown, and the JVM would stay.
destroy_clusters() {
  local d
  for d in "$TMP/pg" "$TMP"/*/pg; do
    [[ -e $d ]] && scripts/pg.sh destroy "$d" >/dev/null 2>&1
  done
  for d in "$TMP"/*/kafka-*; do
    [[ -d $d ]] && scripts/kafka.sh stop "$d" >/dev/null 2>&1
  done
  return 0
}
trap destroy_clusters EXIT

echo "== unit tests"
for build in build build/asan; do
  for t in "$build"/tests/test_*; do
    [[ -x $t ]] || continue
    out="$TMP/$(echo "$t" | tr / _).out"
    timeout 300 "$t" >"$out" 2>&1
    rc=$?
    grep -E '^(not ok|ok)' "$out" | sed "s|^|  [$build] |" | grep -E 'not ok' || true
    count_line "$out" "$t"
    [[ $rc -eq 0 ]] || { [[ " ${failures[*]} " == *" $t "* ]] || { failed=$((failed + 1)); failures+=("$t (exit $rc)"); }; cat "$out" | tail -n 30; }
    echo "  $t: $(tail -n1 "$out")"
  done
done

echo "== README configuration table matches --help"
workers=(build/bin/as-probe)
for d in services/*/; do [[ -f $d/main.c ]] && workers+=("build/bin/as-$(basename "$d")"); done
if "$PY" scripts/readme_config.py "${workers[@]}" --check; then
  passed=$((passed + 1)); echo "  ok"
else
  failed=$((failed + 1)); failures+=("readme_config")
fi

echo "== C sources formatted (.clang-format; make format rewrites them)"
if scripts/format.sh --check; then
  passed=$((passed + 1)); echo "  ok"
else
  failed=$((failed + 1)); failures+=("format")
fi

echo "== deploy/k8s manifests match proto/topics.tsv (scripts/gen_k8s.sh)"
if scripts/gen_k8s.sh --check; then
  passed=$((passed + 1)); echo "  ok"
else
  failed=$((failed + 1)); failures+=("gen_k8s")
fi

# Every fuzz target (tests/fuzz/fuzz_<name>.c) over its seed corpus and
# mutations of it, ASan build; `make fuzz` is the open-ended search.
echo "== fuzz replay"
for src in tests/fuzz/fuzz_*.c; do
  name=${src##*/fuzz_}; name=${name%.c}; t=build/asan/tests/fuzz_$name
  if timeout 300 "$t" -n "${AS_FUZZ_MUTATIONS:-100000}" "tests/fuzz/corpus/$name" >"$TMP/fuzz_$name.out" 2>&1; then
    passed=$((passed + 1)); echo "  $(tail -n1 "$TMP/fuzz_$name.out")"
  else
    failed=$((failed + 1)); failures+=("fuzz_$name"); tail -n 30 "$TMP/fuzz_$name.out"
  fi
done

# The relay runs a thread of its own beside the worker's loop: a few
# integration tests against the ThreadSanitizer build (build/tsan). A race
# ends the worker (exit 66) and is in its log, AS_TEST_TMP/<pytest
# process>/logs/<test>/<worker>.log. The broker is the optimised one: it is
# librdkafka's mock cluster, not our threads.
# test_relay.py: the relay thread's fault paths (halt, purge, parking, a new producer).
TSAN_TESTS=(tests/integration/test_exactly_once.py tests/integration/test_shutdown.py
  tests/integration/test_relay.py)
echo "== ThreadSanitizer (build/tsan: ${TSAN_TESTS[*]##*/})"
mkdir -p "$TMP/tsan"
TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$PWD/tests/tsan/suppressions.txt" \
  AS_TEST_TMP=$TMP/tsan AS_BIN_DIR=build/tsan/bin AS_BROKER_BIN=build/bin/as-broker \
  AS_GEN_PY=build/gen/py timeout 600 \
  "$PY" -m pytest -q -p no:cacheprovider -n 2 "${TSAN_TESTS[@]}" >"$TMP/tsan.out" 2>&1
rc=$?
races=$(grep -rl --include='*.log' "WARNING: ThreadSanitizer" "$TMP/tsan" 2>/dev/null)
# Each pytest process's cluster (AS_TEST_TMP/<worker>/pg) may sit in /var/tmp.
for d in "$TMP"/tsan/*/pg; do [[ -d $d ]] && scripts/pg.sh destroy "$d" >/dev/null 2>&1; done
if [[ $rc -eq 0 && -z $races ]]; then
  passed=$((passed + 1)); echo "  $(tail -n1 "$TMP/tsan.out")"
else
  failed=$((failed + 1)); failures+=("tsan")
  tail -n 30 "$TMP/tsan.out"
  for f in $races; do echo "  -- $f"; grep -A 30 "WARNING: ThreadSanitizer" "$f" | head -n 60; done
fi

# The integration tests mostly wait (on brokers, rebalances, deadlines), so
# they run in parallel processes (pytest-xdist), each with its own
# PostgreSQL cluster; every test has its own database and broker anyway,
# except the tests of one xdist_group, which share one (a real Kafka broker,
# test_real_kafka.py): loadgroup keeps a group on one process.
IT_WORKERS=${AS_IT_WORKERS:-4}
for build in build build/asan; do
  echo "== integration tests ($build, $IT_WORKERS processes)"
  xml="$TMP/junit-$(echo "$build" | tr / _).xml"
  AS_BIN_DIR=$build/bin AS_GEN_PY=build/gen/py timeout 2400 \
    "$PY" -m pytest -q -p no:cacheprovider -n "$IT_WORKERS" --dist loadgroup --junitxml="$xml" tests/integration
  rc=$?
  read -r p f < <("$PY" - "$xml" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1); sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skip = sum(int(s.get("skipped", 0)) for s in suites)
print(t - bad - skip, bad)
PYEOF
)
  if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  [[ $f -eq 0 ]] || failures+=("integration ($build)")
done

if [[ ${#failures[@]} -gt 0 ]]; then
  echo "failed: ${failures[*]}"
fi
destroy_clusters
trap - EXIT
[[ -n ${AS_KEEP_TMP:-} ]] || rm -rf "$TMP"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
