#!/usr/bin/env bash
# make run: brings up the embedded stack (private PostgreSQL, the mock Kafka
# broker), starts every worker that exists, shows the fleet at work with
# scripts/demo.py, then keeps everything up until Ctrl-C (SIGINT to the
# process group) or SIGTERM, stops it all and exits 0. When the demo's
# checks fail it stops everything and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${AS_RUN_DIR:-build/run}
BIN=${AS_BIN_DIR:-build/bin}
mkdir -p "$RUN/logs"
wpids=() # the workers' pids
broker=  # the broker's pid
demo= # the demo's pid while it runs

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "run: stopping workers, broker and PostgreSQL"
  # Workers before the broker: a worker stopping drains its relay and
  # leaves its group, and with the broker gone first it waits out its
  # timeouts instead (20 s seen).
  for p in $demo "${wpids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $demo "${wpids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n $broker ]]; then
    kill -TERM "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
  fi
  scripts/pg.sh stop "$RUN/pg" >/dev/null 2>&1 || true
  echo "run: stopped"
}
# A signal stops everything and ends the script (exit 0: stopping is the
# expected way out); EXIT covers a failure during start-up.
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

eval "$(scripts/pg.sh start "$RUN/pg")"
export PGHOST PGPORT PGUSER PGDATABASE PGPASSFILE
echo "run: PostgreSQL on socket $PGHOST port $PGPORT, database $PGDATABASE"

# The broker has a session of its own: Ctrl-C (SIGINT to the terminal's
# process group) must not take it down before the workers, which drain
# their outboxes into it while they stop; stop_all ends it after them.
setsid "$BIN/as-broker" --topics proto/topics.tsv >"$RUN/broker.out" 2>"$RUN/logs/broker.log" &
broker=$!
for _ in $(seq 100); do grep -q '^bootstrap=' "$RUN/broker.out" 2>/dev/null && break; sleep 0.1; done
BOOTSTRAP=$(sed -n 's/^bootstrap=//p' "$RUN/broker.out")
[[ -n $BOOTSTRAP ]] || { echo "run: broker did not start (see $RUN/logs/broker.log)" >&2; exit 1; }
echo "run: Kafka broker (librdkafka mock cluster) at $BOOTSTRAP"

# Least privilege as in every stack (deploy/sql/roles.sql): each worker
# connects as its own role (as_<service>) and runs the migrations as the
# owner role; the demo reads the database as the admin. Passwords come from
# the cluster's pgpass file (PGPASSFILE), never from the command line.
dsn() { printf 'host=%s port=%s user=%s dbname=%s' "$PGHOST" "$PGPORT" "$1" "$PGDATABASE"; }
export AS_KAFKA_BOOTSTRAP=$BOOTSTRAP AS_DB_MIGRATE_DSN=$(dsn aftersales_owner)
export AS_HTTP_ADDR=127.0.0.1 AS_HTTP_PORT=0 AS_RDKAFKA_CONSUMER_SESSION_TIMEOUT_MS=6000

echo "run: workers from $BIN"
# Every service under services/ plus the runtime's probe worker.
workers=()
for d in services/*/; do
  [[ -f $d/main.c ]] && workers+=("$(basename "$d")")
done
workers+=(probe)
for w in "${workers[@]}"; do
  AS_DB_DSN=$(dsn "as_$w") "$BIN/as-$w" 2>"$RUN/logs/$w.log" &
  wpids+=($!)
done
for w in "${workers[@]}"; do
  port=""
  for _ in $(seq 100); do
    port=$(grep -o '"http_port":[0-9]*' "$RUN/logs/$w.log" 2>/dev/null | head -n1 | cut -d: -f2 || true)
    [[ -n $port ]] && break
    sleep 0.1
  done
  echo "run: worker $w: http://127.0.0.1:${port:-?}/metrics  /readyz  /healthz  (log $RUN/logs/$w.log)"
done

# The demo runs in the background so that a signal stops it at once (bash
# runs a trap only after a foreground child ends); its failure is make
# run's: a fleet that does not do what the demo shows fails visibly.
/usr/bin/python3 scripts/demo.py --bootstrap "$BOOTSTRAP" --dsn "$(dsn "$PGUSER")" &
demo=$!
rc=0
wait "$demo" || rc=$?
demo=
if [[ $rc -ne 0 ]]; then
  echo "run: the demo failed (exit $rc); worker logs in $RUN/logs" >&2
  stop_all
  exit 1
fi
echo "run: the fleet keeps running; poke it with: kcat -b $BOOTSTRAP -L    Ctrl-C stops everything"
# sleep in the background and wait for it, so a signal is handled at once
# rather than after the current sleep.
while true; do sleep 1 & wait $! || true; done
