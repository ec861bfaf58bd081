#!/usr/bin/env bash
# make run: brings up the embedded stack (private PostgreSQL and a Kafka
# broker: AS_BROKER=kafka, the default, a real Apache Kafka by
# scripts/kafka.sh; AS_BROKER=mock, librdkafka's mock cluster as-broker,
# which starts in a second and needs no Java), starts every worker that
# exists, shows the fleet at work with
# scripts/demo.py, then keeps everything up until Ctrl-C (SIGINT to the
# process group) or SIGTERM, stops it all and exits 0. When the demo's
# checks fail it stops everything and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${AS_RUN_DIR:-build/run}
BIN=${AS_BIN_DIR:-build/bin}
BROKER=${AS_BROKER:-kafka}
case $BROKER in kafka | mock) ;; *)
  echo "run: AS_BROKER=$BROKER: want kafka or mock" >&2
  exit 2
  ;;
esac
mkdir -p "$RUN/logs"
wpids=() # the workers' pids
broker=  # the mock broker's pid
kafka=   # the real broker's directory once kafka.sh started it
demo= # the demo's pid while it runs
gateway= # the loopback SMS/push/e-mail gateways' pid (tests/integration/gateway.py)

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "run: stopping workers, broker and PostgreSQL"
  # Workers before the broker: a worker stopping drains its relay and
  # leaves its group, and with the broker gone first it waits out its
  # timeouts instead (20 s seen).
  for p in $demo "${wpids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $demo "${wpids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n $gateway ]]; then
    kill -TERM "$gateway" 2>/dev/null || true
    wait "$gateway" 2>/dev/null || true
  fi
  if [[ -n $broker ]]; then
    kill -TERM "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
  fi
  if [[ -n $kafka ]]; then
    scripts/kafka.sh stop "$kafka" >/dev/null 2>&1 || true
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

# The broker has a session of its own (kafka.sh starts the JVM with setsid
# too): Ctrl-C (SIGINT to the terminal's process group) must not take it
# down before the workers, which drain their outboxes into it while they
# stop; stop_all ends it after them.
if [[ $BROKER == kafka ]]; then
  # Fresh storage on every run, like the mock's empty memory.
  kafka=$RUN/kafka
  scripts/kafka.sh start "$kafka" >"$RUN/kafka.env" 2>"$RUN/logs/kafka.sh.log" || {
    echo "run: the Kafka broker did not start: $(tail -n 2 "$RUN/logs/kafka.sh.log" | tr '\n' ' ')" >&2
    exit 1
  }
  BOOTSTRAP=$(sed -n "s/^export AS_KAFKA_BOOTSTRAP=//p" "$RUN/kafka.env" | tr -d "'\"")
  echo "run: Kafka broker (Apache Kafka $(sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' tools/kafka/pom.xml), AS_BROKER=kafka) at $BOOTSTRAP, pid $(cat "$kafka/kafka.pid"), log $kafka/log/server.log"
else
  setsid "$BIN/as-broker" --topics proto/topics.tsv >"$RUN/broker.out" 2>"$RUN/logs/broker.log" &
  broker=$!
  for _ in $(seq 100); do grep -q '^bootstrap=' "$RUN/broker.out" 2>/dev/null && break; sleep 0.1; done
  BOOTSTRAP=$(sed -n 's/^bootstrap=//p' "$RUN/broker.out")
  [[ -n $BOOTSTRAP ]] || { echo "run: broker did not start (see $RUN/logs/broker.log)" >&2; exit 1; }
  echo "run: Kafka broker (librdkafka mock cluster, AS_BROKER=mock) at $BOOTSTRAP, pid $broker, log $RUN/logs/broker.log"
  # An idle fetch on the mock waits out fetch.wait.max.ms (500 ms by
  # default) even when a message arrives: the demo's requests would be
  # answered in about a second. Real Kafka answers a waiting fetch at once.
  export AS_RDKAFKA_CONSUMER_FETCH_WAIT_MAX_MS=${AS_RDKAFKA_CONSUMER_FETCH_WAIT_MAX_MS:-10}
fi

# Least privilege as in every stack (deploy/sql/roles.sql): each worker
# connects as its own role (as_<service>) and runs the migrations as the
# owner role; the demo reads the database as the admin. Passwords come from
# the cluster's pgpass file (PGPASSFILE), never from the command line.
dsn() { printf 'host=%s port=%s user=%s dbname=%s' "$PGHOST" "$PGPORT" "$1" "$PGDATABASE"; }
export AS_KAFKA_BOOTSTRAP=$BOOTSTRAP AS_DB_MIGRATE_DSN=$(dsn aftersales_owner)
export AS_HTTP_ADDR=127.0.0.1 AS_HTTP_PORT=0 AS_RDKAFKA_CONSUMER_SESSION_TIMEOUT_MS=6000

# The notification worker's gateways: one loopback process answering the SMS
# and push webhooks (HTTP) and e-mail (SMTP), recording every message in
# $RUN/gateway.jsonl, which the demo shows as what the buyers received.
/usr/bin/python3 tests/integration/gateway.py --record "$RUN/gateway.jsonl" >"$RUN/gateway.out" 2>"$RUN/logs/gateway.log" &
gateway=$!
for _ in $(seq 100); do grep -q '^gateway ' "$RUN/gateway.out" 2>/dev/null && break; sleep 0.1; done
http_port=$(sed -n 's/^gateway http=\([0-9]*\).*/\1/p' "$RUN/gateway.out")
smtp_port=$(sed -n 's/.* smtp=\([0-9]*\)$/\1/p' "$RUN/gateway.out")
[[ -n $http_port && -n $smtp_port ]] || { echo "run: the gateways did not start (see $RUN/logs/gateway.log)" >&2; exit 1; }
echo "run: gateways: SMS and push http://127.0.0.1:$http_port/{sms,push}, e-mail smtp://127.0.0.1:$smtp_port (received: $RUN/gateway.jsonl)"
export AS_NOTIFICATION_SMS_URL=http://127.0.0.1:$http_port/sms AS_NOTIFICATION_PUSH_URL=http://127.0.0.1:$http_port/push
export AS_NOTIFICATION_SMTP_URL=smtp://127.0.0.1:$smtp_port AS_NOTIFICATION_SMTP_FROM=care@shop.example
export AS_NOTIFICATION_WEBHOOK_SECRET=${AS_NOTIFICATION_WEBHOOK_SECRET:-make-run-local-secret}

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
/usr/bin/python3 scripts/demo.py --bootstrap "$BOOTSTRAP" --dsn "$(dsn "$PGUSER")" --gateway-record "$RUN/gateway.jsonl" &
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
