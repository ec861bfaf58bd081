"""Fixtures of the integration suite: real processes, real protocols.

What the fixtures give a test:
  - one private PostgreSQL for the whole session (scripts/pg.sh, under
    AS_TEST_TMP), and a fresh database per test (CREATE DATABASE t_<hex>);
  - the Python protobuf classes, generated once from proto/*.proto by protoc;
  - an empty broker per test: AS_BROKER picks which (mock, the default:
    a fresh as-broker, librdkafka's mock cluster, per test; kafka: one real
    Apache Kafka broker per pytest process, scripts/kafka.sh, whose topics
    are deleted and created again from proto/topics.tsv before each test);
  - helpers to start, SIGTERM and SIGKILL as-probe workers (stderr captured to
    a file, http port parsed from the "worker started" line, /readyz polled),
    to produce real SyntheticProbe envelopes, to read whole topics and to
    query the database;
  - settle(h): waits until the live workers have consumed all their input
    and published their outboxes, before a test asserts that something
    happened exactly once or not at all (and before the invariants below).
Every wait is bounded and every process started here is killed at teardown.

After every test that used `h` and passed, the fleet's promises are checked
on its database and broker (check_invariants, below): refunded <= paid per
order and currency, every non-final case has a live deadline, every timeline
row has exactly one CaseStateChanged, every request exactly one answer. A
test that builds a broken state on purpose opts out, narrowly and with a
reason: @pytest.mark.invariants_exempt("why", checks=("deadlines",)).

Environment: AS_BIN_DIR (default build/bin; build/asan/bin for the sanitizer
pass), AS_TEST_TMP (scratch directory; default a new temporary directory;
worker logs land in AS_TEST_TMP/logs/<test>/), AS_IT_LOG_LEVEL (the workers'
AS_LOG_LEVEL, default info), AS_BROKER (mock or kafka, above).

Markers: @pytest.mark.mock_only("reason") for a test that needs the mock's
fault injection (skipped on real Kafka, with the reason);
@pytest.mark.kafka_only("reason") for one only a real broker allows
(skipped on the mock).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = (ROOT / os.environ.get("AS_BIN_DIR", "build/bin")).resolve()
PROBE_BIN = BIN_DIR / "as-probe"
BROKER_BIN = Path(os.environ.get("AS_BROKER_BIN", str(BIN_DIR / "as-broker")))
TOPICS_TSV = ROOT / "proto" / "topics.tsv"
KAFKA_SH = ROOT / "scripts" / "kafka.sh"
TOPICS_BIN = BIN_DIR / "as-topics"
# The one switch (scripts/run.sh and tests/bench read it too).
BROKER_KIND = os.environ.get("AS_BROKER", "mock")
if BROKER_KIND not in ("mock", "kafka"):
    raise SystemExit(f"AS_BROKER={BROKER_KIND!r}: want mock or kafka")

PROBE_TOPIC = "aftersales.probe.v1"
ECHO_TOPIC = "aftersales.probe-echo.v1"
DLQ_TOPIC = "aftersales.deadletter.v1"


def _built_with(binary, symbol):
    try:
        return symbol in Path(binary).read_bytes()
    except OSError:
        return False


SANITIZED = _built_with(PROBE_BIN, b"__asan_init")  # ASan+UBSan: leak checks apply
# Timeouts scale with the build: ASan+UBSan and ThreadSanitizer workers on a
# small machine are slow (a TSan relay reconnecting after a database outage
# once took longer than an unscaled 10 s).
SLOW = 2.5 if SANITIZED or _built_with(PROBE_BIN, b"__tsan_init") else 1.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


def topic_partitions():
    parts = {}
    for line in TOPICS_TSV.read_text().splitlines():
        line = line.split("#", 1)[0].split()
        if len(line) >= 2:
            parts[line[0]] = int(line[1])
    return parts


PARTITIONS = topic_partitions()


def wait_until(pred, timeout, interval=0.1, what="condition"):
    """Polls pred() until it returns a truthy value; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# ---- session: scratch dir, protobuf classes, PostgreSQL --------------------

@pytest.fixture(scope="session")
def test_tmp():
    given = os.environ.get("AS_TEST_TMP")
    if given:
        # Under pytest-xdist every worker process has its own session (its
        # own PostgreSQL cluster and logs): one sub-directory each.
        d = Path(given).resolve() / os.environ.get("PYTEST_XDIST_WORKER", "")
        d.mkdir(parents=True, exist_ok=True)
        yield d
    else:
        d = Path(tempfile.mkdtemp(prefix="as-it-"))
        yield d
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pb(test_tmp):
    """The generated Python protobuf modules, as a namespace."""
    out = test_tmp / "pygen"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").glob("*.proto"))
    subprocess.run(["protoc", f"--python_out={out}", "-Iproto", *protos], cwd=ROOT, check=True,
                   timeout=60)
    sys.path.insert(0, str(out))
    import envelope_pb2  # noqa: E402
    import probe_pb2  # noqa: E402
    import deadletter_pb2  # noqa: E402
    import orders_pb2  # noqa: E402

    class PB:
        Envelope = envelope_pb2.Envelope
        Producer = envelope_pb2.Producer
        SyntheticProbe = probe_pb2.SyntheticProbe
        ProbeEchoed = probe_pb2.ProbeEchoed
        DeadLetter = deadletter_pb2.DeadLetter
        OrderPlaced = orders_pb2.OrderPlaced

    return PB


class Postgres:
    """The session's private cluster (scripts/pg.sh)."""

    def __init__(self, root):
        self.dir = root / "pg"
        self.env = {}

    def _pg_sh(self, cmd, timeout=120):
        return subprocess.run([str(ROOT / "scripts" / "pg.sh"), cmd, str(self.dir)], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def start(self):
        r = self._pg_sh("start")
        if r.returncode != 0:
            raise RuntimeError(f"pg.sh start failed: {r.stderr}")
        for m in re.finditer(r"^export (PG\w+)=(.*)$", r.stdout, re.M):
            self.env[m.group(1)] = m.group(2).strip("'\"")
        assert {"PGHOST", "PGPORT", "PGUSER", "PGPASSFILE"} <= set(self.env), r.stdout

    def stop(self):
        r = self._pg_sh("stop")
        if r.returncode != 0:
            raise RuntimeError(f"pg.sh stop failed: {r.stderr}")

    def destroy(self):
        self._pg_sh("destroy")

    def dsn(self, dbname, user=None):
        """The admin's DSN (a superuser: tests' assertions and set-up), or
        the DSN of role `user` (as_<service> for a worker, aftersales_owner
        for migrations); passwords come from the cluster's pgpass file."""
        e = self.env
        return (f"host={e['PGHOST']} port={e['PGPORT']} user={user or e['PGUSER']}"
                f" dbname={dbname} passfile={e['PGPASSFILE']}")

    def prepare(self, dbname):
        """Creates database dbname with the fleet's roles, schemas and grants
        (deploy/sql/roles.sql, as every stack applies them)."""
        r = self._pg_sh_args("prepare", dbname)
        if r.returncode != 0:
            raise RuntimeError(f"pg.sh prepare failed: {r.stderr}")

    def _pg_sh_args(self, cmd, *args, timeout=120):
        return subprocess.run([str(ROOT / "scripts" / "pg.sh"), cmd, str(self.dir), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout)

    def connect(self, dbname="postgres"):
        import psycopg2
        conn = psycopg2.connect(self.dsn(dbname), connect_timeout=5)
        conn.autocommit = True
        return conn


@pytest.fixture(scope="session")
def postgres(test_tmp):
    pg = Postgres(test_tmp)
    pg.start()
    yield pg
    if os.environ.get("AS_TEST_TMP"):
        pg.stop()  # the caller owns AS_TEST_TMP and may want the logs
    else:
        pg.destroy()


# ---- per test: database, broker, workers, Kafka clients ----------------------

class Broker:
    """One as-broker process. Started ahead of need (its mock cluster takes a
    few seconds to come up): wait_bootstrap() blocks until it announced itself."""

    def __init__(self, logpath):
        self.logpath = logpath
        self.faults = logpath.with_suffix(".faults")
        self.log = open(logpath, "wb")
        self.proc = subprocess.Popen([str(BROKER_BIN), "--topics", str(TOPICS_TSV),
                                      "--faults", str(self.faults)], cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log, env=_child_env({}))
        self.bootstrap = None

    def wait_bootstrap(self, timeout=30):
        if self.bootstrap is None:
            line = _readline_timeout(self.proc.stdout, timeout * SLOW)
            m = re.match(rb"bootstrap=(\S+)", line or b"")
            if not m:
                self.stop()
                raise RuntimeError(f"as-broker printed {line!r}, exit {self.proc.poll()}: "
                                   f"{self.logpath.read_text(errors='replace')[-2000:]}")
            self.bootstrap = m.group(1).decode()
        return self.bootstrap

    def fail_produce(self, *codes, rtt_ms=None, timeout=10):
        """The next Produce requests the mock cluster receives, from any
        client, fail with these Kafka error codes, one request each; with
        rtt_ms every broker answers that much later from now on (as-broker
        --faults)."""
        done = len(re.findall(rb'"msg":"faults injected"', self.logpath.read_bytes()))
        self.faults.write_text("produce_errors " + " ".join(str(int(c)) for c in codes) + "\n"
                               + (f"rtt {int(rtt_ms)}\n" if rtt_ms is not None else ""))
        self.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: len(re.findall(rb'"msg":"faults injected"', self.logpath.read_bytes()))
                   > done, timeout, what="as-broker to inject the faults")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()


class BrokerPool:
    """Hands every test a fresh broker, keeping the next one starting meanwhile."""

    def __init__(self, root):
        self.dir = root / "logs" / "brokers"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0
        self.spare = None

    def _start(self):
        self.n += 1
        return Broker(self.dir / f"broker-{self.n}.log")

    def take(self):
        b = self.spare or self._start()
        self.spare = self._start()
        b.wait_bootstrap()
        return b

    def close(self):
        if self.spare:
            self.spare.stop()
            self.spare = None


class RealKafka:
    """One real broker (scripts/kafka.sh) in directory d: start, stop, and
    restart on the same data and ports (clients keep their bootstrap)."""

    def __init__(self, d):
        self.dir = Path(d)
        self.bootstrap = None
        self.logpath = self.dir / "log" / "server.log"

    def _sh(self, cmd, timeout=240):
        env = dict(os.environ, AS_TOPICS_BIN=str(TOPICS_BIN))
        r = subprocess.run([str(KAFKA_SH), cmd, str(self.dir)], cwd=ROOT, capture_output=True,
                           text=True, timeout=timeout, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"kafka.sh {cmd} {self.dir} failed ({r.returncode}):\n{r.stderr}")
        return r

    def start(self):
        r = self._sh("start")
        m = re.search(r"^export AS_KAFKA_BOOTSTRAP=(\S+)$", r.stdout, re.M)
        assert m, r.stdout
        self.bootstrap = m.group(1).strip("'\"")
        return self

    def stop(self):
        self._sh("stop", timeout=90)

    def restart(self):
        self._sh("restart")

    def running(self):
        return subprocess.run([str(KAFKA_SH), "status", str(self.dir)], cwd=ROOT,
                              capture_output=True, timeout=30).returncode == 0

    def pid(self):
        return int((self.dir / "kafka.pid").read_text())

    def admin(self):
        from confluent_kafka.admin import AdminClient
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 2})

    def empty(self, timeout=60):
        """Deletes every topic but Kafka's own, waits until the metadata no
        longer lists them (as-topics would otherwise verify a topic being
        deleted), and creates proto/topics.tsv's again: the empty broker a
        test may assume, about a second instead of a JVM start."""
        if not self.running():  # a test stopped it and failed before restarting it
            self.restart()
        admin = self.admin()
        deadline = time.monotonic() + timeout
        names = [t for t in admin.list_topics(timeout=20).topics if not t.startswith("__")]
        if names:
            for f in admin.delete_topics(names, operation_timeout=30).values():
                f.result(timeout=30)
        while set(names) & set(admin.list_topics(timeout=20).topics):
            assert time.monotonic() < deadline, f"topics still listed after delete: {names}"
            time.sleep(0.05)
        while True:
            r = subprocess.run([str(TOPICS_BIN), "--bootstrap", self.bootstrap, "--topics",
                                str(TOPICS_TSV)], cwd=ROOT, capture_output=True, text=True,
                               timeout=60)
            if r.returncode == 0:
                break
            assert time.monotonic() < deadline, f"as-topics: {r.stdout} {r.stderr[-2000:]}"
            time.sleep(0.2)
        self._wait_leaders(deadline)

    def _wait_leaders(self, deadline):
        """The metadata names a leader (as-topics waits for that) about a
        second before the leader serves the partition: until then a
        ListOffsets says NOT_LEADER_FOR_PARTITION, which the tests' readers
        and settle() would take for a failure. One ListOffsets for every
        partition until none fails."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "kafka-pool",
                      "log_level": 2})
        try:
            tps = [TopicPartition(t, p, -1) for t, n in PARTITIONS.items() for p in range(n)]
            while True:
                try:
                    c.offsets_for_times(tps, timeout=10)
                    return
                except KafkaException as e:
                    assert time.monotonic() < deadline, f"partitions not served: {e}"
                    time.sleep(0.05)
        finally:
            c.close()


class SharedKafka:
    """What the harness expects of a broker (bootstrap, logpath, stop) for
    the process's one real broker; stop() is the session's job."""

    def __init__(self, k):
        self.kafka = k
        self.bootstrap = k.bootstrap
        self.logpath = k.logpath

    def stop(self):
        pass


class KafkaPool:
    """The session's real broker, emptied for every test that takes it."""

    def __init__(self, root):
        if shutil.which(os.environ.get("AS_JAVA", "java")) is None:
            raise RuntimeError("AS_BROKER=kafka needs Java: scripts/deps.sh")
        assert TOPICS_BIN.exists(), f"{TOPICS_BIN} missing: make B={BIN_DIR.parent} build"
        self.kafka = RealKafka(root / f"kafka-{uuid.uuid4().hex[:6]}")
        self.started = False

    def take(self):
        if not self.started:
            self.kafka.start()
            self.kafka._wait_leaders(time.monotonic() + 60)
            self.started = True
        else:
            self.kafka.empty()
        return SharedKafka(self.kafka)

    def close(self):
        if self.started:
            self.kafka.stop()


@pytest.fixture(scope="session")
def broker_pool(test_tmp):
    pool = KafkaPool(test_tmp) if BROKER_KIND == "kafka" else BrokerPool(test_tmp)
    yield pool
    pool.close()


def _readline_timeout(f, timeout):
    import select
    buf = b""
    deadline = time.monotonic() + timeout
    fd = f.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return buf
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            return buf
        buf += chunk
    return buf


def _child_env(extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AS_", "PG", "ASAN_", "UBSAN_", "LSAN_"))}
    if SANITIZED:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=66"
        env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Worker:
    """One as-probe process."""
    service = "probe"

    def __init__(self, h, name, env):
        self.h = h
        self.name = name
        self.logpath = h.logdir / f"{name}.log"
        self.log = open(self.logpath, "ab")
        self.env = env
        self.proc = subprocess.Popen([str(PROBE_BIN)], cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, env=_child_env(env))
        self.port = None

    @property
    def pid(self):
        return self.proc.pid

    def text(self):
        try:
            return self.logpath.read_text(errors="replace")
        except OSError:
            return ""

    def lines(self):
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def tail(self, n=40):
        return "\n".join(self.text().splitlines()[-n:])

    def wait_started(self, timeout=30):
        def started():
            for rec in self.lines():
                if rec.get("msg") == "worker started":
                    return rec
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode} before starting:\n"
                                     f"{self.tail()}")
            return None
        rec = wait_until(started, timeout * SLOW, what=f"{self.name} to start")
        self.port = int(rec["http_port"])
        assert self.port > 0
        return self

    def http(self, path, timeout=5):
        """(status, body) of GET path."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def ready(self):
        try:
            return self.http("/readyz")[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout=30):
        def ok():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            return self.ready()
        wait_until(ok, timeout * SLOW, what=f"{self.name} /readyz 200")
        return self

    def metrics(self):
        status, body = self.http("/metrics")
        assert status == 200, body
        return parse_metrics(body)

    def metric(self, name, **labels):
        """Sum of the samples of name whose labels include labels."""
        return sum(v for n, l, v in self.metrics()
                   if n == name and all(l.get(k) == str(x) for k, x in labels.items()))

    def assigned(self):
        """Partitions of the last assignment (0 before any, or after a revoke)."""
        n = 0
        for rec in self.lines():
            if rec.get("msg") == "partitions assigned":
                n = int(rec["partitions"])
            elif rec.get("msg") == "partitions revoked":
                n = 0
        return n

    def wait_assigned(self, timeout=30, partitions=None):
        def ok():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            n = self.assigned()
            return n if (n == partitions if partitions is not None else n > 0) else None
        return wait_until(ok, timeout * SLOW, what=f"{self.name} partitions assigned")

    def logged(self, msg):
        return [r for r in self.lines() if r.get("msg") == msg]

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout * SLOW:.0f}s:\n{self.tail()}")

    def terminate(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(15)

    def sanitizer_report(self):
        t = self.text()
        return [m for m in SANITIZER_MARKERS if m in t]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.log.close()


def parse_metrics(text):
    """Prometheus text -> [(name, {label: value}, float)]."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


class TopicReader:
    """Reads a whole topic from the beginning, every partition, without a group."""

    def __init__(self, bootstrap, topic):
        from confluent_kafka import Consumer, TopicPartition
        self.topic = topic
        self.nparts = PARTITIONS[topic]
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                           "enable.auto.commit": False, "auto.offset.reset": "earliest",
                           "enable.partition.eof": False, "log_level": 2})
        self.c.assign([TopicPartition(topic, p, 0) for p in range(self.nparts)])
        self.msgs = []
        self.pos = [0] * self.nparts

    def drain(self, timeout=20):
        """Reads until every partition is at the high watermark seen now; returns all read."""
        from confluent_kafka import TopicPartition
        highs = [self.c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                 for p in range(self.nparts)]
        deadline = time.monotonic() + timeout * SLOW
        while any(self.pos[p] < highs[p] for p in range(self.nparts)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: could not read up to {highs}, at {self.pos}")
            m = self.c.poll(0.2)
            if m is None:
                continue
            if m.error():
                continue
            self.msgs.append(m)
            self.pos[m.partition()] = max(self.pos[m.partition()], m.offset() + 1)
        return self.msgs

    def close(self):
        self.c.close()


class Harness:
    """Everything one test needs; built by the `h` fixture."""

    def __init__(self, request, postgres, pb, test_tmp, broker_pool):
        self.pg = postgres
        self.pb = pb
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:80]
        self.logdir = test_tmp / "logs" / safe
        shutil.rmtree(self.logdir, ignore_errors=True)
        self.logdir.mkdir(parents=True)
        self.workers = []
        self.readers = []
        self._producer = None
        self._conn = None
        self.dbname = f"t_{uuid.uuid4().hex[:12]}"
        postgres.prepare(self.dbname)
        # The admin's DSN is the tests' own (assertions, invariants); each
        # worker connects as its service's role and migrates as the owner.
        self.dsn = postgres.dsn(self.dbname)
        self.owner_dsn = postgres.dsn(self.dbname, "aftersales_owner")
        self.group = f"probe-{uuid.uuid4().hex[:8]}"
        self.broker = broker_pool.take()
        (self.logdir / "broker.log").symlink_to(self.broker.logpath)
        self.bootstrap = self.broker.bootstrap

    # -- workers
    def role_dsn(self, service):
        """The DSN of service's own role, as_<service>."""
        return self.pg.dsn(self.dbname, f"as_{service}")

    def worker_env(self, **over):
        env = {
            "AS_KAFKA_BOOTSTRAP": self.bootstrap,
            "AS_DB_DSN": self.role_dsn("probe"),
            "AS_DB_MIGRATE_DSN": self.owner_dsn,
            "AS_DB_SCHEMA": "probe",
            "AS_GROUP_ID": self.group,
            "AS_HTTP_ADDR": "127.0.0.1",
            "AS_HTTP_PORT": "0",
            "AS_RETRY_MAX_MS": "500",
            "AS_LOG_LEVEL": os.environ.get("AS_IT_LOG_LEVEL", "info"),
            "AS_SHUTDOWN_TIMEOUT_MS": "10000",
            "AS_RELAY_INTERVAL_MS": "100",
            "AS_POLL_INTERVAL_MS": "50",
            "AS_RDKAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
            "AS_RDKAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
            "AS_RDKAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS": "1000",
        }
        env.update({k: str(v) for k, v in over.items()})
        return env

    def start_worker(self, name=None, ready=True, **over):
        name = name or f"w{len(self.workers) + 1}"
        env = self.worker_env(AS_INSTANCE=name, **over)
        w = Worker(self, name, env)
        self.workers.append(w)
        if ready:
            w.wait_started()
            w.wait_ready()
        return w

    # -- producing
    @property
    def producer(self):
        if self._producer is None:
            from confluent_kafka import Producer
            self._producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5,
                                       "acks": "all", "log_level": 2})
        return self._producer

    def envelope(self, payload_field, payload, event_id=None, case_id="case-1", event_type=None,
                 **fields):
        env = self.pb.Envelope()
        env.event_id = event_id or str(uuid.uuid4())
        env.event_type = event_type if event_type is not None else type(payload).DESCRIPTOR.name
        env.schema_version = 1
        env.case_id = case_id
        env.occurred_at_us = int(time.time() * 1e6)
        env.producer.service = "pytest"
        env.producer.instance = "integration"
        env.trace_id = uuid.uuid4().hex
        getattr(env, payload_field).CopyFrom(payload)
        for k, v in fields.items():
            setattr(env, k, v)
        return env

    def probe_envelope(self, probe_id, seq, amount=1, note="", **kw):
        p = self.pb.SyntheticProbe(probe_id=probe_id, seq=seq, amount_minor=amount, note=note)
        kw.setdefault("case_id", f"c-{probe_id}" if probe_id and len(probe_id) < 60 and
                      re.fullmatch(r"[A-Za-z0-9._:-]+", probe_id) else "c-x")
        return self.envelope("synthetic_probe", p, **kw)

    def produce(self, value, key, partition=None, topic=PROBE_TOPIC):
        """Produces one record and waits for its delivery; returns (partition, offset)."""
        return self.produce_many([(key, value, partition)], topic=topic)[0]

    def produce_many(self, records, topic=PROBE_TOPIC):
        """records: [(key, value, partition|None)]; returns [(partition, offset)] in order."""
        out = [None] * len(records)
        errs = []

        def cb(i):
            def dr(err, msg):
                if err:
                    errs.append(err)
                else:
                    out[i] = (msg.partition(), msg.offset())
            return dr
        for i, (key, value, part) in enumerate(records):
            kw = {"partition": part} if part is not None else {}
            while True:
                try:
                    self.producer.produce(topic, value=value,
                                          key=key.encode() if isinstance(key, str) else key,
                                          on_delivery=cb(i), **kw)
                    break
                except BufferError:
                    self.producer.poll(0.1)
            self.producer.poll(0)
        self.flush()
        assert not errs, errs[:3]
        return out

    def flush(self, timeout=30):
        left = self.producer.flush(timeout)
        assert left == 0, f"{left} messages not delivered"

    def produce_probe(self, probe_id, seq, amount=1, partition=None, **kw):
        env = self.probe_envelope(probe_id, seq, amount, **kw)
        at = self.produce_many([(probe_id, env.SerializeToString(), partition)])[0]
        return env, at

    # -- reading
    def reader(self, topic):
        r = TopicReader(self.bootstrap, topic)
        self.readers.append(r)
        return r

    def decode(self, value):
        env = self.pb.Envelope()
        env.ParseFromString(value)
        return env

    # -- database
    def sql(self, q, args=None):
        import psycopg2
        for attempt in range(3):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self.pg.connect(self.dbname)
                with self._conn.cursor() as cur:
                    cur.execute(q, args)
                    return cur.fetchall() if cur.description else None
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if self._conn is not None:
                    try:
                        self._conn.close()
                    except Exception:
                        pass
                self._conn = None
                if attempt == 2:
                    raise
                time.sleep(0.5)  # pacing: the server may be coming back (test_database_outage)

    def scalar(self, q, args=None):
        return self.sql(q, args)[0][0]

    def counts(self):
        """probe_id -> count."""
        return dict(self.sql("SELECT probe_id, count FROM probe.probe_state"))

    # -- teardown
    def close(self):
        reports = []
        for w in self.workers:
            w.close()
            rep = w.sanitizer_report()
            if rep:
                reports.append(f"{w.name}: {rep}\n{w.tail(60)}")
        for r in self.readers:
            try:
                r.close()
            except Exception:
                pass
        if self._producer is not None:
            self._producer.flush(1)
        self.broker.stop()
        if self._conn is not None:
            self._conn.close()
        try:
            admin = self.pg.connect()
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {self.dbname} WITH (FORCE)")
            admin.close()
        except Exception:
            pass
        return reports


@pytest.fixture
def h(request, postgres, pb, test_tmp, broker_pool):
    assert PROBE_BIN.exists(), f"{PROBE_BIN} missing: make B={BIN_DIR.parent} build"
    harness = Harness(request, postgres, pb, test_tmp, broker_pool)
    violations = []
    try:
        yield harness
        violations = _after_test_invariants(request, harness)
    finally:
        reports = harness.close()
    if reports:
        pytest.fail("sanitizer report in worker output:\n" + "\n".join(reports))
    if violations:
        pytest.fail("fleet invariants broken after the test (tests/integration/conftest.py,"
                    " check_invariants):\n  " + "\n  ".join(violations), pytrace=False)


def random_ids(n, prefix="p"):
    tag = uuid.uuid4().hex[:6]
    return [f"{prefix}-{tag}-{i:05d}" for i in range(n)]


def echo_events(h, reader):
    """Decoded ProbeEchoed envelopes on the echo topic: [(event_id, ProbeEchoed, message)]."""
    out = []
    for m in reader.drain():
        env = h.decode(m.value())
        assert env.WhichOneof("payload") == "probe_echoed", env
        out.append((env.event_id, env.probe_echoed, m))
    return out


def dead_letters(h, reader):
    """Decoded dead letters: [(envelope, DeadLetter, message)]."""
    out = []
    for m in reader.drain():
        env = h.decode(m.value())
        assert env.WhichOneof("payload") == "dead_letter", env
        out.append((env, env.dead_letter, m))
    return out



# ---- intake: helpers for tests/integration/test_intake*.py -------------------

ORDERS_TOPIC = "aftersales.orders.v1"
REQUESTS_TOPIC = "aftersales.requests.v1"
CASES_TOPIC = "aftersales.cases.v1"


class ServiceWorker(Worker):
    """A worker process of any service binary (Worker starts as-probe)."""

    def __init__(self, h, name, env, binary, service):
        self.service = service
        self.h = h
        self.name = name
        self.logpath = h.logdir / f"{name}.log"
        self.log = open(self.logpath, "ab")
        self.env = env
        self.proc = subprocess.Popen([str(binary)], cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, env=_child_env(env))
        self.port = None


def start_service(h, service, name=None, ready=True, **over):
    """Starts as-<service> on the test's database and broker (schema
    <service>, one consumer group per test); returns the ServiceWorker."""
    name = name or f"{service}{len(h.workers) + 1}"
    over.setdefault("AS_DB_SCHEMA", service)
    over.setdefault("AS_DB_DSN", h.role_dsn(service))
    over.setdefault("AS_GROUP_ID", f"{service}-{h.group}")
    over.setdefault("AS_SCAN_INTERVAL_MS", "200")
    env = h.worker_env(AS_INSTANCE=name, **over)
    w = ServiceWorker(h, name, env, BIN_DIR / f"as-{service}", service)
    h.workers.append(w)
    if ready:
        w.wait_started()
        w.wait_ready()
    return w


def start_intake(h, name=None, ready=True, **over):
    return start_service(h, "intake", name, ready, **over)


def start_inspection(h, name=None, ready=True, **over):
    """as-inspection on the test's database and broker, as its own role
    (as_inspection), schema inspection."""
    return start_service(h, "inspection", name, ready, **over)


def start_logistics(h, name=None, ready=True, **over):
    """as-logistics on the test's database and broker, as its own role
    (as_logistics), schema logistics."""
    return start_service(h, "logistics", name, ready, **over)


def start_notification(h, name=None, ready=True, **over):
    """as-notification on the test's database and broker, as its own role
    (as_notification), schema notification."""
    return start_service(h, "notification", name, ready, **over)


def intake_pb(h):
    """The generated modules intake tests build messages with."""
    import cases_pb2
    import common_pb2
    import orders_pb2
    import requests_pb2
    _ = h.pb  # makes sure the pb fixture put them on sys.path
    return common_pb2, orders_pb2, requests_pb2, cases_pb2


def order_events(h, order_id, buyer_id, lines, t0=None, merchant_id="m-1", currency="CNY"):
    """[(name, Envelope)] of OrderPlaced, OrderPaid, OrderShipped, OrderDelivered
    for lines = [(line_id, sku, unit_minor, quantity)]."""
    common, orders, _, _ = intake_pb(h)
    t0 = t0 or int(time.time() * 1e6) - 86400 * 1_000_000
    placed = orders.OrderPlaced(order_id=order_id, buyer_id=buyer_id, merchant_id=merchant_id,
                                placed_at_us=t0, region="CN-31")
    placed.shipping_fee.amount_minor = 800
    placed.shipping_fee.currency = currency
    for line_id, sku, unit, qty in lines:
        l = placed.lines.add(line_id=line_id, sku=sku, category="apparel", supplier_id="sup-1",
                             quantity=qty, title="T-shirt")
        l.unit_price.amount_minor = unit
        l.unit_price.currency = currency
    paid = orders.OrderPaid(order_id=order_id, payment_method=common.PAYMENT_METHOD_WALLET,
                            payment_ref="pay-" + order_id, paid_at_us=t0 + 1000)
    paid.amount_paid.amount_minor = sum(u * q for _, _, u, q in lines) + 800
    paid.amount_paid.currency = currency
    shipped = orders.OrderShipped(order_id=order_id, shipment_id="s-1", carrier="SF",
                                  tracking_number="SF" + order_id[-8:], shipped_at_us=t0 + 2000)
    delivered = orders.OrderDelivered(order_id=order_id, shipment_id="s-1",
                                      delivered_at_us=t0 + 3000, proof="locker")
    out = []
    for field, p in (("order_placed", placed), ("order_paid", paid), ("order_shipped", shipped),
                     ("order_delivered", delivered)):
        out.append((field, h.envelope(field, p, case_id="", order_id=order_id)))
    return out


def produce_orders(h, events, partition=None):
    h.produce_many([(e.order_id, e.SerializeToString(), partition) for _, e in events],
                   topic=ORDERS_TOPIC)


def request_envelope(h, order_id, buyer_id, key=None, lines=(("l1", 1),), case_type=None,
                     reason=None, comment="", evidence=(), **fields):
    """An AfterSalesRequested envelope; evidence = [(uri, media_type, size, sha256)]."""
    common, _, requests, _ = intake_pb(h)
    r = requests.AfterSalesRequested(
        request_id=f"r-{uuid.uuid4().hex[:12]}", idempotency_key=uuid.uuid4().hex if key is None else key,
        order_id=order_id, buyer_id=buyer_id,
        case_type=common.CASE_TYPE_RETURN_REFUND if case_type is None else case_type,
        reason=common.REASON_SIZE_MISMATCH if reason is None else reason, comment=comment,
        preferred_outcome=common.OUTCOME_REFUND, return_method=common.RETURN_METHOD_PICKUP,
        submitted_at_us=int(time.time() * 1e6), locale="zh-CN")
    for line_id, qty in lines:
        r.lines.add(line_id=line_id, quantity=qty)
    for uri, mt, size, sha in evidence:
        r.evidence.add(uri=uri, media_type=mt, size_bytes=size, sha256=sha)
    for k, v in fields.items():
        setattr(r, k, v)
    return h.envelope("aftersales_requested", r, case_id="", order_id=order_id)


def produce_requests(h, envs, key=None, partition=None):
    h.produce_many([(key or e.order_id or "k", e if isinstance(e, bytes) else e.SerializeToString(),
                     partition) for e in envs], topic=REQUESTS_TOPIC)


def case_events(h, reader):
    """[(payload name, payload, kafka key, envelope)] read so far on the cases topic."""
    out = []
    for m in reader.drain():
        env = h.decode(m.value())
        kind = env.WhichOneof("payload")
        out.append((kind, getattr(env, kind), (m.key() or b"").decode(), env))
    return out


def wait_case_events(h, reader, pred, timeout=20, what="case events"):
    """Re-reads the cases topic until pred(events) is truthy; returns the events."""
    def ok():
        evs = case_events(h, reader)
        return evs if pred(evs) else None
    return wait_until(ok, timeout * SLOW, interval=0.2, what=what)



# ---- suite-wide invariants ---------------------------------------------------
#
# Asserted by the `h` fixture after every passing test, on the test's own
# database and broker, once the fleet is at rest (settle). Each check runs
# only where it applies: nothing without the shared case tables (probe-only
# tests), money only where a schema has a ledger / refunds, deadlines over
# every schema's deadlines table, and so on. The database side is read in one
# REPEATABLE READ snapshot so that a case's state and its deadlines (written
# in one transaction) are seen together; what is on the wire is the topics
# read after that snapshot plus the outbox rows still unsent in it (committed,
# so they will be published: the relay publishes before it marks sent).

# The states a case ends in: no deadline is owed for them. One constant for
# the suite (review's and intake's terminal states).
FINAL_STATES = ("CLOSED", "REJECTED", "REFUNDED", "EXCHANGED", "RESOLVED")
INVARIANTS = ("money", "deadlines", "state_changes", "answers", "orphans")
SETTLE_SECONDS = 20
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_MAX_LISTED = 8  # violations listed per check; the rest are counted


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "mock_only(reason): needs the mock cluster's fault injection; skipped when "
        "AS_BROKER=kafka")
    config.addinivalue_line(
        "markers", "kafka_only(reason): needs what only a real broker does; skipped on the mock")
    config.addinivalue_line(
        "markers", "invariants_exempt(reason, checks=None): the test builds a state that breaks "
        "the fleet's invariants on purpose; skip the after-test checks named in checks (all "
        "of %s when None)" % (INVARIANTS,))


def pytest_report_header(config):
    return f"broker: {BROKER_KIND} (AS_BROKER)"


def pytest_collection_modifyitems(config, items):
    other = "kafka_only" if BROKER_KIND == "mock" else "mock_only"
    for item in items:
        for mark in item.iter_markers(other):
            reason = mark.args[0] if mark.args else mark.kwargs.get("reason")
            assert reason, f"{item.nodeid}: {other} needs a reason"
            item.add_marker(pytest.mark.skip(reason=f"{other} (AS_BROKER={BROKER_KIND}): {reason}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"_rep_{rep.when}", rep)


def _after_test_invariants(request, h):
    """The violations to report for the test that just ran ([] when it
    failed already: its own failure is the news)."""
    rep = getattr(request.node, "_rep_call", None)
    if rep is None or not rep.passed:
        return []
    checks = set(INVARIANTS)
    for mark in request.node.iter_markers("invariants_exempt"):
        reason = mark.args[0] if mark.args else mark.kwargs.get("reason")
        assert reason, f"{request.node.nodeid}: invariants_exempt needs a reason"
        named = mark.kwargs.get("checks")
        unknown = set(named or ()) - set(INVARIANTS)
        assert not unknown, f"{request.node.nodeid}: invariants_exempt names unknown checks {unknown}"
        checks -= set(named) if named else checks
    if not checks:
        return []
    return check_invariants(h, checks)


def _tables(cur):
    """{(schema, table): {column, ...}} of the test database's own tables."""
    cur.execute("SELECT table_schema, table_name, column_name FROM information_schema.columns"
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
    out = {}
    for schema, table, column in cur.fetchall():
        out.setdefault((schema, table), set()).add(column)
    return out


def _with(tables, table, *columns):
    """Schemas holding table with all of columns, sorted."""
    return sorted(s for (s, t), cols in tables.items() if t == table and set(columns) <= cols)


def _q(name):
    return '"' + name.replace('"', '""') + '"'


def _listed(kind, rows, fmt):
    out = [f"{kind}: " + fmt(r) for r in rows[:_MAX_LISTED]]
    if len(rows) > _MAX_LISTED:
        out.append(f"{kind}: ... and {len(rows) - _MAX_LISTED} more")
    return out


def _live(h):
    return [w for w in h.workers if w.proc.poll() is None]


def _db_fingerprint(h, schemas):
    """What changes while any worker still works: inbox and outbox sizes,
    unsent rows, timeline length."""
    parts = []
    for s in schemas:
        parts.append(h.sql(f"SELECT (SELECT count(*) FROM {_q(s)}.inbox),"
                           f" (SELECT count(*) FROM {_q(s)}.outbox),"
                           f" (SELECT count(*) FROM {_q(s)}.outbox WHERE sent_at IS NULL)")[0])
    if h.sql("SELECT to_regclass('cases.timeline') IS NOT NULL")[0][0]:
        parts.append(h.sql("SELECT count(*) FROM cases.timeline")[0])
    return parts


_SUBSCRIPTIONS = {}


def subscriptions(service):
    """The topics a worker binary subscribes to, from the consumers column of
    proto/topics.tsv (the one declaration the workers' subscriptions and the
    Kubernetes triggers come from), so that settle() knows them before the
    group has committed anything."""
    if service not in _SUBSCRIPTIONS:
        subs = []
        for line in TOPICS_TSV.read_text().splitlines():
            f = line.split()
            if len(f) >= 4 and not line.startswith("#") and service in f[3].split(","):
                subs.append(f[0])
        assert subs, f"{TOPICS_TSV}: no topic names {service} among its consumers"
        _SUBSCRIPTIONS[service] = tuple(subs)
    return _SUBSCRIPTIONS[service]


def _group_lag(h, subscribed):
    """Messages the live workers' groups have not committed yet
    (subscribed: {group: topics}): on every partition of the topics they
    subscribe to and of any other topic they committed on, the end offset
    minus the committed one, or minus the start of the log where the group
    committed nothing yet (workers reset to the earliest offset,
    as_kafka.c)."""
    from confluent_kafka import Consumer, TopicPartition
    lag = 0
    for g, topics in sorted(subscribed.items()):
        c = Consumer({"bootstrap.servers": h.bootstrap, "group.id": g, "enable.auto.commit": False,
                      "log_level": 2})
        try:
            tps = [TopicPartition(t, p) for t, n in PARTITIONS.items() for p in range(n)]
            committed = c.committed(tps, timeout=10)
            topics = sorted(set(topics) | {tp.topic for tp in committed if tp.offset >= 0})
            if not topics:
                continue
            done = {(tp.topic, tp.partition): tp.offset for tp in committed}
            # Timestamps -1 and -2 ask for each partition's end and start
            # offsets, all partitions in one request each.
            ends, starts = (c.offsets_for_times([TopicPartition(t, p, ts) for t in topics
                                                 for p in range(PARTITIONS[t])], timeout=10)
                            for ts in (-1, -2))
            for e, s in zip(ends, starts):
                at = done[(e.topic, e.partition)]
                lag += max(0, e.offset - (at if at >= 0 else s.offset))
        finally:
            c.close()
    return lag


def settle(h, timeout=SETTLE_SECONDS):
    """Waits until the live workers are at rest: their groups have committed
    every message of the topics they consume, their /metrics report no lag,
    their schemas hold no unsent outbox row, and the database did not change
    between two looks. Dead workers are left as they
    are (their unsent rows count as on their way). Bounded; raises
    AssertionError naming what still moved.
    Tests call it before asserting that something happened exactly once or
    not at all: once it returns, every input has been handled and every
    output is on the wire, so reading the whole topic then counts late
    duplicates too (a fixed sleep only hopes so)."""
    live = _live(h)
    if not live:
        return
    schemas = sorted({w.env["AS_DB_SCHEMA"] for w in live})
    subscribed = {}
    for w in live:
        subscribed.setdefault(w.env["AS_GROUP_ID"], set()).update(subscriptions(w.service))
    last = [None]

    def at_rest():
        fp = _db_fingerprint(h, [s for s in schemas if h.sql(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{_q(s)}.outbox",))[0][0]])
        unsent = sum(part[2] for part in fp if len(part) == 3)
        lag = _group_lag(h, subscribed)
        # The workers' own view (as_consumer_lag, recomputed each second from
        # the committed offsets of the partitions each holds): a cross-check
        # of the offsets read above.
        reported = sum(w.metric("as_consumer_lag") for w in live if w.port and w.ready())
        state = (fp, lag, reported)
        calm = unsent == 0 and lag == 0 and reported == 0 and state == last[0]
        last[0] = state
        return calm or None

    try:
        wait_until(at_rest, timeout * SLOW, interval=0.25, what="the fleet to settle")
    except AssertionError:
        raise AssertionError(f"the fleet did not settle within {timeout * SLOW:.0f}s"
                             f" ((db counts, group lag, reported lag): {last[0]!r})")


def _decode(h, raw):
    env = h.pb.Envelope()
    try:
        env.ParseFromString(raw)
    except Exception:
        return None
    return env


def _read_topics(h, topics, timeout=20):
    """Every message of topics, with one consumer reading each partition up
    to its end (partition EOF; TopicReader's watermark queries cost seconds
    per topic on the mock cluster, this a tenth of one)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    c = Consumer({"bootstrap.servers": h.bootstrap, "group.id": f"invariants-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.wait.max.ms": 10, "log_level": 2})
    try:
        c.assign([TopicPartition(t, p, 0) for t in topics for p in range(PARTITIONS[t])])
        left = {(t, p) for t in topics for p in range(PARTITIONS[t])}
        out = []
        deadline = time.monotonic() + timeout * SLOW
        while left:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {sorted(left)[:4]}... to their end")
            for m in c.consume(1000, 0.1):
                if m.error() is None:
                    out.append(m)
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    left.discard((m.topic(), m.partition()))
        return out
    finally:
        c.close()


def _wire(h, topics, pending):
    """{topic: {event_id: (Envelope, (partition, offset) | None)}}: every
    decodable event on the topics, plus the committed outbox rows not yet
    sent (pending: [(topic, payload)]), one entry per event id (duplicates on
    the wire are allowed; consumers dedupe by event id)."""
    out = {t: {} for t in topics}
    for m in _read_topics(h, topics):
        env = _decode(h, m.value())
        if env is not None and env.event_id:
            out[m.topic()].setdefault(env.event_id, (env, (m.partition(), m.offset())))
    for t, payload in pending:
        env = _decode(h, bytes(payload))
        if t in out and env is not None and env.event_id:
            out[t].setdefault(env.event_id, (env, None))
    return out


# The shared case tables keep no foreign keys (common/sql/cases/004): the
# writers keep the rule, and this check holds them to it.
_SATELLITES = ("timeline", "case_lines", "sla_clocks", "case_evidence", "case_messages")


def _check_orphans(cur):
    out = []
    for t in _SATELLITES:
        cur.execute(f"SELECT DISTINCT s.case_id FROM cases.{t} s WHERE NOT EXISTS"
                    " (SELECT 1 FROM cases.cases c WHERE c.case_id = s.case_id) ORDER BY 1")
        out += _listed("orphans", cur.fetchall(), lambda r: f"cases.{t} rows of case {r[0]}, which cases.cases lacks")
    return out


def _check_money(cur, tables):
    out = []
    for s in _with(tables, "ledger", "order_id", "line_id", "currency", "paid_minor", "refunded_minor"):
        cur.execute(f"SELECT order_id, line_id, currency, refunded_minor, paid_minor FROM {_q(s)}.ledger"
                    " WHERE refunded_minor > paid_minor ORDER BY 1, 2")
        out += _listed("money", cur.fetchall(), lambda r: f"{s}.ledger order {r[0]} line {r[1]}:"
                       f" refunded {r[3]} {r[2]} > paid {r[4]}")
    if not _with(tables, "cases", "paid_minor", "paid_currency"):
        return out
    # What intake recorded as paid, per order (every case of an order carries it).
    paid = ("SELECT order_id, max(paid_minor) AS paid, max(paid_currency) AS cur FROM cases.cases"
            " WHERE paid_minor IS NOT NULL GROUP BY order_id")
    for s in _with(tables, "refunds", "order_id", "currency", "total_minor"):
        cur.execute(f"WITH p AS ({paid}) SELECT r.order_id, r.currency, sum(r.total_minor), p.paid, p.cur"
                    f" FROM {_q(s)}.refunds r JOIN p USING (order_id)"
                    " GROUP BY r.order_id, r.currency, p.paid, p.cur"
                    " HAVING sum(r.total_minor) > p.paid OR r.currency <> p.cur ORDER BY 1")
        out += _listed("money", cur.fetchall(), lambda r: f"{s}.refunds order {r[0]}: refunded"
                       f" {r[2]} {r[1]}, paid {r[3]} {r[4]}")
    for s in _with(tables, "ledger", "order_id", "currency", "paid_minor"):
        # The cap itself: the ledger's paid figures never add up to more than the payment.
        cur.execute(f"WITH p AS ({paid}) SELECT l.order_id, l.currency, sum(l.paid_minor), p.paid, p.cur"
                    f" FROM {_q(s)}.ledger l JOIN p USING (order_id)"
                    " GROUP BY l.order_id, l.currency, p.paid, p.cur"
                    " HAVING sum(l.paid_minor) > p.paid OR l.currency <> p.cur ORDER BY 1")
        out += _listed("money", cur.fetchall(), lambda r: f"{s}.ledger order {r[0]}: cap"
                       f" {r[2]} {r[1]} above the payment {r[3]} {r[4]}")
    return out


def _check_deadlines(cur, tables):
    live = [f"EXISTS (SELECT 1 FROM {_q(s)}.deadlines d WHERE d.case_id = c.case_id"
            " AND d.fired_at IS NULL AND d.cancelled_at IS NULL)"
            for s in _with(tables, "deadlines", "case_id", "fired_at", "cancelled_at")]
    cur.execute("SELECT c.case_id, c.state, c.version FROM cases.cases c WHERE c.state <> ALL(%s)"
                + "".join(f" AND NOT {e}" for e in live) + " ORDER BY 1", (list(FINAL_STATES),))
    return _listed("deadlines", cur.fetchall(), lambda r: f"case {r[0]} in {r[1]} (version {r[2]})"
                   " has no pending deadline in any schema")


def _pending(cur, tables):
    """[(topic, payload)] of the outbox rows not yet sent, every schema."""
    out = []
    for s in _with(tables, "outbox", "topic", "payload", "sent_at"):
        cur.execute(f"SELECT topic, payload FROM {_q(s)}.outbox WHERE sent_at IS NULL ORDER BY id")
        out += cur.fetchall()
    return out


def _check_state_changes(h, timeline, versions, wire):
    """Every timeline row has exactly one CaseStateChanged (one event id) with
    its (case_id, version) and its from/to; no CaseStateChanged names a
    version the case has passed without a timeline row."""
    names = h.pb.Envelope.DESCRIPTOR.fields_by_name["case_state_changed"].message_type \
        .fields_by_name["to_state"].enum_type.values_by_number
    state = lambda n: names[n].name[len("CASE_STATE_"):] if n in names and n else None
    seen = {}
    for eid, (env, _) in wire.items():
        if env.WhichOneof("payload") == "case_state_changed":
            p = env.case_state_changed
            seen.setdefault((p.case_id, p.version), []).append((eid, state(p.from_state), state(p.to_state)))
    missing, doubled, wrong, phantom = [], [], [], []
    rows = {(c, v): (f, t) for c, v, f, t in timeline}
    for (c, v), (f, t) in sorted(rows.items()):
        got = seen.get((c, v), [])
        if not got:
            missing.append((c, v, f, t))
        elif len(got) > 1:
            doubled.append((c, v, [g[0] for g in got]))
        elif got[0][1:] != (f, t):
            wrong.append((c, v, (f, t), got[0][1:]))
    for (c, v), got in sorted(seen.items()):
        if (c, v) not in rows and c in versions and v <= versions[c]:
            phantom.append((c, v, got[0][1:]))
    return (_listed("state_changes", missing, lambda r: f"timeline {r[0]} v{r[1]} {r[2] or '-'}->{r[3]}"
                    " has no CaseStateChanged")
            + _listed("state_changes", doubled, lambda r: f"timeline {r[0]} v{r[1]} has"
                      f" {len(r[2])} CaseStateChanged with distinct event ids {r[2]}")
            + _listed("state_changes", wrong, lambda r: f"timeline {r[0]} v{r[1]} is {r[2]} but its"
                      f" CaseStateChanged says {r[3]}")
            + _listed("state_changes", phantom, lambda r: f"CaseStateChanged {r[0]} v{r[1]} {r[2]}"
                      " has no timeline row"))


def _check_answers(h, claimed, held, wire_requests, wire_cases, wire_dlq):
    """Every AfterSalesRequested whose request and buyer ids are valid and
    whose identifying fields hold no NUL, that is not held waiting for its
    order, has exactly one answer naming its request id (per buyer): a
    BuyerAcknowledged or a RequestRejected, also when it was dead-lettered
    (intake answers the requests the runtime refuses, intake_refused.c).
    One whose event id no inbox holds counts only if it was dead-lettered
    (a worker took it in)."""
    dead = set()
    for env, _ in wire_dlq.values():
        if env.WhichOneof("payload") == "dead_letter":
            d = env.dead_letter
            dead.add(d.original_event_id)
            dead.add((d.source_topic, d.source_partition, d.source_offset))
    asked = {}
    for eid, (env, at) in wire_requests.items():
        if env.WhichOneof("payload") != "aftersales_requested":
            continue
        r = env.aftersales_requested
        if not (_SAFE_ID.fullmatch(r.request_id) and _SAFE_ID.fullmatch(r.buyer_id)) or \
                "\0" in r.order_id + r.idempotency_key or r.request_id in held:
            continue
        if eid not in claimed and not (eid in dead or (at and (REQUESTS_TOPIC, at[0], at[1]) in dead)):
            continue
        asked.setdefault((r.buyer_id, r.request_id), []).append(eid)
    answers = {}
    for eid, (env, _) in wire_cases.items():
        kind = env.WhichOneof("payload")
        if kind in ("buyer_acknowledged", "request_rejected"):
            p = getattr(env, kind)
            answers.setdefault((p.buyer_id, p.request_id), []).append(f"{kind}:{eid}")
    bad = sorted((k, answers.get(k, [])) for k in asked if len(answers.get(k, [])) != 1)
    return _listed("answers", bad, lambda r: f"request {r[0][1]} (buyer {r[0][0]}) has"
                   f" {len(r[1])} answers, want 1: {r[1]}")


def check_invariants(h, checks=INVARIANTS):
    """The fleet's promises over the test's database and broker, after
    settle(): returns one line per violation ([] when all hold)."""
    import psycopg2
    if h.sql("SELECT to_regclass('cases.cases')")[0][0] is None:
        return []  # not a test of the case fleet (e.g. the probe's runtime tests)
    try:
        settle(h)
    except AssertionError as e:
        return [f"settle: {e}"]
    conn = psycopg2.connect(h.dsn, connect_timeout=5)
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur = conn.cursor()
        tables = _tables(cur)
        out = []
        if "money" in checks:
            out += _check_money(cur, tables)
        if "deadlines" in checks:
            out += _check_deadlines(cur, tables)
        if "orphans" in checks:
            out += _check_orphans(cur)
        cur.execute("SELECT case_id, version, from_state, to_state FROM cases.timeline")
        timeline = cur.fetchall()
        cur.execute("SELECT case_id, version FROM cases.cases")
        versions = dict(cur.fetchall())
        pending = _pending(cur, tables)
        claimed, held = set(), set()
        if "answers" in checks:
            for s in _with(tables, "inbox", "event_id", "topic"):
                cur.execute(f"SELECT event_id::text FROM {_q(s)}.inbox WHERE topic = %s", (REQUESTS_TOPIC,))
                claimed |= {r[0] for r in cur.fetchall()}
            for s in _with(tables, "held_requests", "request_id"):
                cur.execute(f"SELECT request_id FROM {_q(s)}.held_requests")
                held |= {r[0] for r in cur.fetchall()}
        conn.rollback()
    finally:
        conn.close()
    topics = [CASES_TOPIC] + ([REQUESTS_TOPIC, DLQ_TOPIC] if claimed else [])
    if "state_changes" not in checks and not claimed:
        return out
    wire = _wire(h, topics, pending)
    if "state_changes" in checks:
        out += _check_state_changes(h, timeline, versions, wire[CASES_TOPIC])
    if claimed:
        out += _check_answers(h, claimed, held, wire[REQUESTS_TOPIC], wire[CASES_TOPIC], wire[DLQ_TOPIC])
    return out
