"""make bench: drives the runtime with the probe worker over the embedded
stack and prints one line per benchmark.

bench runtime: a prefilled topic of probes is drained by one as-probe worker
(inbox insert, one state write, one outbox event, relay publish per message),
first with the default batch size, then with batch size 1 on a fresh
database and group; the worker's peak RSS is read from /proc.

It also holds what every benchmark shares (bench_<service>.py import it):
Stack (PostgreSQL, the broker and the workers, started and stopped in one
place), the producers, a consumer from the end of a topic, settle and
report_batches.

The broker: AS_BROKER=kafka (a real Apache Kafka, scripts/kafka.sh) or mock
(as-broker, librdkafka's mock cluster); every bench line names it
(broker=...) and the broker's CPU seconds over the stack's life, its
start included (broker_cpu_s, utime + stime from /proc: on a 2-core
machine the broker competes with the worker it feeds); bench runtime also
its CPU during the batched drain, in % of one core (broker_cpu_pct).
bench.sh runs every benchmark once per broker.
"""
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.environ.get("AS_GEN_PY", "build/gen/py"))
import envelope_pb2  # noqa: E402
import probe_pb2  # noqa: E402
import psycopg2  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

BIN = os.environ.get("AS_BIN_DIR", "build/bin")
N_BATCH = int(os.environ.get("AS_BENCH_N", "100000"))
N_SINGLE = int(os.environ.get("AS_BENCH_N1", "3000"))
BATCH = int(os.environ.get("AS_BENCH_BATCH", "500"))
BROKER = os.environ.get("AS_BROKER", "mock")
if BROKER not in ("kafka", "mock"):
    raise SystemExit("AS_BROKER=%r: want kafka or mock" % BROKER)


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def settle(dsn):
    """Between a bulk phase and a paced one: write the bulk phase's dirty
    pages out (CHECKPOINT, then the OS's writeback) so that the paced
    phase's commits measure steady state, not the kernel flushing a
    gigabyte behind them (commits of 50-90 ms were seen otherwise)."""
    t = time.time()
    c = psycopg2.connect(dsn)
    c.autocommit = True
    c.cursor().execute("CHECKPOINT")
    c.close()
    os.sync()
    time.sleep(1)
    log("settled after the bulk phase in %.1fs (CHECKPOINT + sync)" % (time.time() - t))


def start_pg(tmp):
    out = subprocess.run(["scripts/pg.sh", "start", tmp + "/pg"], check=True,
                         capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        for part in line.replace("export ", "").split():
            if "=" in part:
                k, v = part.split("=", 1)
                env[k] = v.strip("'\"")
    return env


def cpu_seconds(pid):
    """utime + stime of pid so far, in seconds (0 when it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class RealKafka:
    """A real broker by scripts/kafka.sh in tmp/kafka, fresh storage on
    every start (an empty broker, as the mock's restart gives)."""

    def __init__(self, tmp):
        self.dir = tmp + "/kafka"
        self.pid = None

    def start(self):
        env = dict(os.environ, AS_TOPICS_BIN=BIN + "/as-topics")
        out = subprocess.run(["scripts/kafka.sh", "start", self.dir], env=env, check=True,
                             capture_output=True, text=True).stdout
        self.pid = int(open(self.dir + "/kafka.pid").read())
        bootstrap = out.strip().split("=", 1)[1].strip("'\"")
        self.wait_served(bootstrap)
        return bootstrap

    @staticmethod
    def wait_served(bootstrap):
        """A new topic's leader is in the metadata (as-topics waits for
        that) about a second before it serves ListOffsets."""
        from confluent_kafka import KafkaException
        parts = {}
        for line in open("proto/topics.tsv"):
            f = line.split("#", 1)[0].split()
            if len(f) >= 2:
                parts[f[0]] = int(f[1])
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-wait", "log_level": 2})
        deadline = time.time() + 60
        try:
            while True:
                try:
                    c.offsets_for_times([TopicPartition(t, p, -1) for t in parts for p in range(parts[t])],
                                        timeout=10)
                    return
                except KafkaException:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            c.close()

    def terminate(self):
        subprocess.run(["scripts/kafka.sh", "stop", self.dir], capture_output=True, timeout=120)

    def wait(self, timeout):
        pass


def start_broker(tmp):
    if BROKER == "kafka":
        k = RealKafka(tmp)
        return k, k.start()
    out = open(tmp + "/broker.out", "w+")
    p = subprocess.Popen([BIN + "/as-broker", "--topics", "proto/topics.tsv"],
                         stdout=out, stderr=open(tmp + "/broker.log", "w"))
    for _ in range(200):
        out.seek(0)
        line = out.readline()
        if line.startswith("bootstrap="):
            return p, line.strip().split("=", 1)[1]
        time.sleep(0.05)
    raise RuntimeError("broker did not start")


# What the worker benchmarks run with in their paced phases: short poll and
# relay intervals and no producer linger, so that they measure the worker,
# not its timers, and consumer fetches (the workers' and the benchmark's
# own) that suit each broker. On the mock an idle fetch waits out
# fetch.wait.max.ms, so it is cut to 2 ms. Real Kafka answers a fetch as
# soon as fetch.min.bytes are there: with 1 byte every consumer's every
# arrival is a fetch round (and a 2 ms wait makes an idle one send 500 a
# second), and on two cores the broker's request handling took the CPU the
# worker and the database needed (the JVM at 86% of a core, intake's p99
# at 1,000 requests/s 650-770 ms); letting a fetch wait up to 5 ms for
# 100 kB gave p99 35-47 ms per second once warm.
FETCH = {"mock": dict(wait_ms=2, min_bytes=1), "kafka": dict(wait_ms=5, min_bytes=100000)}[BROKER]
LOW_LATENCY = dict(AS_POLL_INTERVAL_MS="5", AS_RELAY_INTERVAL_MS="20",
                   AS_RDKAFKA_CONSUMER_FETCH_WAIT_MAX_MS=str(FETCH["wait_ms"]),
                   AS_RDKAFKA_CONSUMER_FETCH_MIN_BYTES=str(FETCH["min_bytes"]),
                   AS_RDKAFKA_PRODUCER_LINGER_MS="0")

# What the low-rate phases run the worker with: the settings make run gives
# a newcomer (scripts/run.sh), the workers' own defaults otherwise. On the
# mock an idle fetch waits fetch.wait.max.ms (500 ms by default) before it
# sees a new message, so run.sh lowers it there; real Kafka answers a
# waiting fetch as soon as a message arrives.
RUN_DEFAULTS = {"mock": dict(AS_RDKAFKA_CONSUMER_FETCH_WAIT_MAX_MS="10"), "kafka": {}}[BROKER]
LOW_RATE = int(os.environ.get("AS_BENCH_LOW_RATE", "10"))
LOW_N = int(os.environ.get("AS_BENCH_LOW_N", "100"))
LOW_WARM = 10  # requests at the low rate first, not counted: the restarted worker's first ones
# Seconds of the paced rate run first and not counted. The paced phase's
# single-message produce requests and small fetches are code paths the bulk
# phase before it did not warm: a broker's JVM compiles them in its first
# second of that traffic (intake on Kafka: p99 153 ms in that second,
# 35-47 ms in each after it), and a production broker is long past that.
PACED_WARM = int(float(os.environ.get("AS_BENCH_RATE", "1000")) * float(os.environ.get("AS_BENCH_WARM_S", "2")))


class Stack:
    """One benchmark's PostgreSQL, broker and workers in a fresh temporary
    folder. close() (or the end of a with block) stops them all and removes
    the folder; with AS_KEEP_TMP it keeps the folder (the logs, and a
    cluster `scripts/pg.sh start <folder>/pg` brings back)."""

    def __init__(self, name):
        self.tmp = tempfile.mkdtemp(prefix="as-bench-%s." % name)
        self.broker = None
        self.broker_cpu = 0.0  # of the brokers stopped so far
        self.t0 = time.time()
        self.workers = []
        self.pg = start_pg(self.tmp)
        self.dsn = self.dsn_for(self.pg["PGDATABASE"])
        self.restart_broker()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def restart_broker(self):
        """A fresh, empty broker (for a phase whose topic must hold exactly
        what it produces)."""
        if self.broker:
            self.broker_cpu += cpu_seconds(self.broker.pid)
            self.broker.terminate()
            self.broker.wait(10)
        self.broker, self.bootstrap = start_broker(self.tmp)

    def broker_cpu_field(self):
        """broker_cpu_s=N, the broker's CPU seconds so far (its share of
        the run on stderr): the field every bench line ends with."""
        cpu = self.broker_cpu + cpu_seconds(self.broker.pid)
        wall = time.time() - self.t0
        log("broker %s: %.1f CPU seconds over %.0f s (%.0f%% of one core, %.0f%% of the machine's %d)"
            % (BROKER, cpu, wall, 100 * cpu / wall, 100 * cpu / wall / os.cpu_count(), os.cpu_count()))
        return "broker_cpu_s=%.1f" % cpu

    def dsn_for(self, db, user=None):
        """The admin's DSN on database db, or role user's (the roles of
        deploy/sql/roles.sql, their passwords in the cluster's pgpass)."""
        pg = self.pg
        return "host=%s port=%s user=%s dbname=%s passfile=%s" % (
            pg["PGHOST"], pg["PGPORT"], user or pg["PGUSER"], db, pg["PGPASSFILE"])

    def prepare(self, db):
        """A fresh database with the fleet's schemas and grants."""
        subprocess.run(["scripts/pg.sh", "prepare", self.tmp + "/pg", db], check=True,
                       capture_output=True)

    def env(self, schema, group, db=None, **extra):
        """A worker's environment on this stack: its own role (as_<schema>),
        on database db (default the cluster's)."""
        self.db = db or self.pg["PGDATABASE"]
        return dict(os.environ, AS_KAFKA_BOOTSTRAP=self.bootstrap, AS_DB_SCHEMA=schema,
                    AS_DB_DSN=self.dsn_for(self.db, "as_" + schema),
                    AS_GROUP_ID=group, AS_HTTP_PORT="0", AS_HTTP_ADDR="127.0.0.1",
                    AS_LOG_LEVEL=os.environ.get("AS_BENCH_LOG", "info"), AS_INSTANCE="bench", **extra)

    def log(self, name):
        """The stderr (JSON lines, and the /metrics port) of worker name."""
        return "%s/worker-%s.log" % (self.tmp, name)

    def migrate(self, binary, env, name):
        """The one-shot migration, as the owner role (as compose's and
        Kubernetes' migrate jobs)."""
        env = dict(env, AS_DB_DSN=self.dsn_for(self.db, "aftersales_owner"))
        subprocess.run([BIN + "/" + binary, "--migrate"], env=env, check=True,
                       stderr=open("%s/migrate-%s.log" % (self.tmp, name), "w"))

    def start(self, binary, env, name):
        w = subprocess.Popen([BIN + "/" + binary], env=env, stderr=open(self.log(name), "w"))
        self.workers.append(w)
        return w

    def stop(self, w):
        w.terminate()
        w.wait(30)
        self.workers.remove(w)

    def close(self):
        for w in list(self.workers):
            self.stop(w)
        if self.broker:
            self.broker.terminate()
            self.broker.wait(10)
        keep = os.environ.get("AS_KEEP_TMP")
        subprocess.run(["scripts/pg.sh", "stop" if keep else "destroy", self.tmp + "/pg"], capture_output=True)
        if keep:
            log("kept " + self.tmp)
        else:
            subprocess.run(["rm", "-rf", self.tmp])


def produce(p, topic, key, value):
    """Queues one message, waiting for room when the producer's queue is full."""
    while True:
        try:
            p.produce(topic, key=key, value=value)
            return
        except BufferError:
            p.poll(0.01)


def bulk_producer(bootstrap):
    """For prefilling: batches (20 ms linger), idempotent, a deep queue."""
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True,
                     "queue.buffering.max.messages": 1000000, "log_level": 2})


def paced_producer(bootstrap):
    """For the paced phases: each message sent at once."""
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all", "log_level": 2,
                     "socket.nagle.disable": True})


def paced_p99(bootstrap, topic, arrived, rate, n, message, what):
    """Sends n messages (message(k) -> (key, value), k = 0..n-1) on topic at
    rate/s and waits for every key to show up in arrived (key -> when its
    answer was read back, filled by the caller's reader thread); logs p50,
    p99 and max and returns the p99 in milliseconds."""
    p = paced_producer(bootstrap)
    p.list_topics(timeout=10)
    time.sleep(2)
    sent = {}
    t0 = time.time()
    for k in range(n):
        delay = t0 + k / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        key, value = message(k)
        sent[key] = time.time()
        produce(p, topic, key, value)
        p.poll(0)
    p.flush(30)
    deadline = time.time() + 60
    while sum(1 for c in sent if c in arrived) < n and time.time() < deadline:
        time.sleep(0.1)
    lat = sorted((arrived[c] - t) * 1e3 for c, t in sent.items() if c in arrived)
    if len(lat) < n:
        raise RuntimeError("only %d of %d %s" % (len(lat), n, what))
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    log("paced %d at %d/s (%s): p50=%.1fms p99=%.1fms max=%.1fms" % (n, rate, what, p50, p99, lat[-1]))
    return p99


def consumer_at_end(bootstrap, topic, partitions=12):
    """A consumer of every partition of topic from its current end: it
    reads what the benchmark causes, not what came before."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-%s" % uuid.uuid4().hex,
                  "enable.auto.commit": False, "fetch.wait.max.ms": FETCH["wait_ms"],
                  "fetch.min.bytes": FETCH["min_bytes"], "log_level": 2,
                  "socket.nagle.disable": True})
    parts = [TopicPartition(topic, i) for i in range(partitions)]
    for tp in parts:
        tp.offset = c.get_watermark_offsets(tp, timeout=10)[1]
    c.assign(parts)
    return c


class EventReader(threading.Thread):
    """Reads topic from its current end on a thread of its own and calls
    on_event(event, message, arrival time) for each envelope whose payload
    is `payload` (arrival taken at the poll's return, before decoding).
    poll, not consume(n, timeout): a batch consume waits for n messages or
    the whole timeout, which would add up to 50 ms. close() stops it."""

    def __init__(self, bootstrap, topic, payload):
        super().__init__(daemon=True)
        self.c = consumer_at_end(bootstrap, topic)
        self.payload = payload
        self.stop = False

    def run(self):
        while not self.stop:
            m = self.c.poll(0.05)
            now = time.time()
            if m is None or m.error():
                continue
            e = envelope_pb2.Envelope()
            e.ParseFromString(m.value())
            if e.WhichOneof("payload") == self.payload:
                self.on_event(getattr(e, self.payload), m, now)

    def on_event(self, event, message, now):
        raise NotImplementedError

    def close(self):
        self.stop = True
        self.join(5)


class ArrivalReader(EventReader):
    """at: the arrival time of the first event of each key(event)."""

    def __init__(self, bootstrap, topic, payload, key):
        super().__init__(bootstrap, topic, payload)
        self.key = key
        self.at = {}

    def on_event(self, event, message, now):
        self.at.setdefault(self.key(event), now)


def probe_bytes(i):
    e = envelope_pb2.Envelope()
    e.event_id = str(uuid.uuid4())
    e.event_type = "SyntheticProbe"
    e.schema_version = 1
    pid = "bench-%d" % i  # one state row per probe, like one case per request
    e.case_id = pid
    e.occurred_at_us = int(time.time() * 1e6)
    e.producer.service = "bench"
    e.producer.instance = "bench-1"
    e.trace_id = uuid.uuid4().hex
    e.synthetic_probe.probe_id = pid
    e.synthetic_probe.seq = i
    e.synthetic_probe.amount_minor = 100 + i % 50
    return pid, e.SerializeToString()


def prefill(bootstrap, n):
    p = bulk_producer(bootstrap)
    for i in range(n):
        key, value = probe_bytes(i)
        produce(p, "aftersales.probe.v1", key, value)
        if i % 10000 == 0:
            p.poll(0)
    if p.flush(60) != 0:
        raise RuntimeError("prefill not delivered")


def counts(dsn, schema):
    try:
        with psycopg2.connect(dsn) as c, c.cursor() as cur:
            # Cheap on purpose (a 1000-row table and the partial index of
            # unsent rows): the probe must not load the database it measures.
            cur.execute("SELECT coalesce(sum(count), 0) FROM %s.probe_state" % schema)
            applied = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM %s.outbox WHERE sent_at IS NULL" % schema)
            unsent = cur.fetchone()[0]
            rows = applied
            c.rollback()
        return int(applied), int(unsent), int(rows)
    except psycopg2.Error:
        return 0, 1, 0


def peak_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def report_batches(logfile):
    """Batch size and duration means from the worker's /metrics (stderr)."""
    import re
    import urllib.request
    m = re.search(r'"http_port":(\d+)', open(logfile).read())
    if not m:
        return
    text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % m.group(1), timeout=5).read().decode()
    vals = {}
    for name in ("as_batch_size_sum", "as_batch_size_count", "as_batch_duration_seconds_sum"):
        mm = re.search(r"^%s\{[^}]*\} (\S+)$" % name, text, re.M)
        vals[name] = float(mm.group(1)) if mm else 0.0
    if vals["as_batch_size_count"]:
        c = vals["as_batch_size_count"]
        log("batches=%d mean_size=%.0f mean_ms=%.2f" % (c, vals["as_batch_size_sum"] / c,
                                                        1000 * vals["as_batch_duration_seconds_sum"] / c))


def run_worker(stack, db, batch, n):
    """as-probe on a fresh database db (schema probe, role as_probe):
    (msgs/s, peak RSS kB, the broker's CPU over the drain in % of a core)."""
    stack.prepare(db)
    env = stack.env("probe", "bench-" + db, db=db, AS_BATCH_MAX=str(batch))
    stack.migrate("as-probe", env, db)
    w = stack.start("as-probe", env, db)
    schema, dsn = "probe", stack.dsn_for(db)
    t0 = t_applied = None
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            applied, unsent, rows = counts(dsn, schema)
            now = time.time()
            if t0 is None and applied > 0:
                t0, base = now, applied
                cpu0 = cpu_seconds(stack.broker.pid)
            if applied >= n and t_applied is None:
                t_applied = now
                log("all applied after %.2fs, %d unsent" % (now - t0, unsent))
            if applied >= n and unsent == 0 and rows >= n:
                rss = peak_rss_kb(w.pid)
                report_batches(stack.log(db))
                share = 100 * (cpu_seconds(stack.broker.pid) - cpu0) / max(now - t0, 1e-6)
                log("broker %s during the drain: %.0f%% of one core" % (BROKER, share))
                return (n - base) / max(now - t0, 1e-6), rss, share
            time.sleep(0.1 if t0 else 0.02)
        raise RuntimeError("worker did not finish: applied=%d unsent=%d" % (applied, unsent))
    finally:
        stack.stop(w)


def main():
    with Stack("runtime") as stack:
        log("prefilling %d probes" % N_BATCH)
        prefill(stack.bootstrap, N_BATCH)
        schema = "bench_%d" % random.randint(0, 1 << 30)
        rate, rss, share = run_worker(stack, schema, BATCH, N_BATCH)
        log("batch=%d: %.0f msgs/s, peak rss %d kB" % (BATCH, rate, rss))
        # Batch size 1 on a fresh broker (the topic must hold exactly N_SINGLE).
        stack.restart_broker()
        prefill(stack.bootstrap, N_SINGLE)
        schema1 = "bench1_%d" % random.randint(0, 1 << 30)
        rate1, _, _ = run_worker(stack, schema1, 1, N_SINGLE)
        log("batch=1: %.0f msgs/s" % rate1)
        print("bench runtime broker=%s msgs_per_s=%d batch1_msgs_per_s=%d batch=%d rss_kb=%d"
              " broker_cpu_pct=%d %s" % (BROKER, rate, rate1, BATCH, rss, round(share),
                                         stack.broker_cpu_field()), flush=True)


if __name__ == "__main__":
    main()
