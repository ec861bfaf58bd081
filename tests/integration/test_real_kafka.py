"""A real Apache Kafka broker (scripts/kafka.sh, jars from tools/kafka/pom.xml)
and our topics command (as-topics), checked from outside.

One broker for the module (per pytest-xdist process that runs any of it):
started by scripts/kafka.sh in the session's scratch directory, stopped at
the end. The `broker_pool` fixture is overridden here so that `h` (the
harness of every other test) hands out that broker instead of a mock one:
the probe worker runs against real Kafka with the same helpers, unique
consumer groups per test, and its invariants checked afterwards.

What is checked, each through a client we did not write where one exists
(confluent_kafka's AdminClient and consumer, on Debian's librdkafka):
  - kafka.sh start creates every topic of proto/topics.tsv with its
    partition count and one replica;
  - as-topics --check reports a topic whose count differs (one line, exit
    1) and a missing one, and creates nothing; without --check it creates
    what is missing and never alters what differs;
  - a produce / consume round trip through a consumer group (commit, a
    second member's rebalance, resume from committed offsets) works with
    librdkafka 2.0.2's protocol versions;
  - as-probe consumes, commits and publishes through its outbox end to end;
  - stop leaves no JVM, a start interrupted or failing after launch leaves
    none either, and start after stop on the same directory works.

Skipped, with the reason, only when there is no Java (scripts/deps.sh
installs it, so `make test` runs it).
"""
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import (BIN_DIR, ECHO_TOPIC, PARTITIONS, ROOT, SLOW, TOPICS_TSV, echo_events,
                      random_ids, settle, wait_until)

KAFKA_SH = ROOT / "scripts" / "kafka.sh"
TOPICS_BIN = BIN_DIR / "as-topics"
# Under `--dist loadgroup` this keeps the module on one process (one broker).
pytestmark = pytest.mark.xdist_group(name="real_kafka")


def kafka_env(**over):
    env = dict(os.environ)
    env["AS_TOPICS_BIN"] = str(TOPICS_BIN)
    env.update({k: str(v) for k, v in over.items()})
    return env


def kafka_sh(cmd, d, timeout=240, **env):
    return subprocess.run([str(KAFKA_SH), cmd, str(d)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=kafka_env(**env))


def jvms(d):
    """Pids of JVMs running a broker of directory d (ours only: the pattern
    is that directory's own server.properties)."""
    r = subprocess.run(["pgrep", "-f", f"kafka.Kafka {d}/server.properties"],
                       capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def alive(pid):
    """True while pid runs; an exited process its adopter has not reaped
    yet (a zombie, state Z) has no JVM left."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class RealKafka:
    def __init__(self, d):
        self.dir = Path(d)
        self.bootstrap = None
        self.start_seconds = None

    def start(self):
        t0 = time.monotonic()
        r = kafka_sh("start", self.dir)
        assert r.returncode == 0, f"kafka.sh start failed ({r.returncode}):\n{r.stderr}"
        m = re.search(r"^export AS_KAFKA_BOOTSTRAP=(\S+)$", r.stdout, re.M)
        assert m, r.stdout
        self.bootstrap = m.group(1).strip("'\"")
        self.start_seconds = time.monotonic() - t0
        self.ready_line = r.stderr.strip().splitlines()[-1]
        return self

    def stop(self):
        r = kafka_sh("stop", self.dir, timeout=90)
        assert r.returncode == 0, r.stderr

    def pid(self):
        return int((self.dir / "kafka.pid").read_text())

    @property
    def logpath(self):
        return self.dir / "log" / "server.log"

    def admin(self):
        from confluent_kafka.admin import AdminClient
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 2})

    def topics(self):
        """name -> TopicMetadata, as confluent_kafka sees them."""
        return self.admin().list_topics(timeout=20).topics

    def create(self, name, partitions):
        from confluent_kafka.admin import NewTopic
        admin = self.admin()  # alive until the futures are done
        fs = admin.create_topics([NewTopic(name, partitions, 1)], request_timeout=20)
        for f in fs.values():
            f.result(timeout=30)
        wait_until(lambda: name in self.topics(), 20, what=f"{name} in metadata")


@pytest.fixture(scope="module")
def kafka(test_tmp):
    if shutil.which(os.environ.get("AS_JAVA", "java")) is None:
        pytest.skip("no Java runtime: scripts/deps.sh installs default-jre-headless")
    assert TOPICS_BIN.exists(), f"{TOPICS_BIN} missing: make B={BIN_DIR.parent} build"
    k = RealKafka(test_tmp / f"kafka-{uuid.uuid4().hex[:6]}")
    k.start()
    yield k
    k.stop()
    assert jvms(k.dir) == [], "a broker JVM outlived kafka.sh stop"


class _SharedBroker:
    """What the harness expects of a broker (bootstrap, logpath, stop), for
    the module's one real broker: stop() is the module fixture's job."""

    def __init__(self, k):
        self.bootstrap = k.bootstrap
        self.logpath = k.logpath

    def stop(self):
        pass


class _Pool:
    def __init__(self, k):
        self.k = k

    def take(self):
        return _SharedBroker(self.k)


@pytest.fixture(scope="module")
def broker_pool(kafka):
    """Overrides conftest's mock broker pool for this module: `h` gets the
    real broker."""
    return _Pool(kafka)


def as_topics(k, *args, timeout=60):
    return subprocess.run([str(TOPICS_BIN), "--bootstrap", k.bootstrap, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


# ---- topics ------------------------------------------------------------

def test_start_created_every_topic_with_its_partition_count(kafka):
    topics = kafka.topics()
    for name, parts in PARTITIONS.items():
        assert name in topics, f"{name} missing; broker has {sorted(topics)}"
        got = topics[name].partitions
        assert len(got) == parts, f"{name}: {len(got)} partitions, topics.tsv says {parts}"
        assert all(len(p.replicas) == 1 and p.leader >= 0 for p in got.values()), name
    # Nothing else appears by itself: auto.create.topics.enable=false.
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": kafka.bootstrap, "message.timeout.ms": 1000,
                  "log_level": 2})
    errs = []
    p.produce(f"it.typo.{uuid.uuid4().hex[:6]}", b"x", on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    assert errs and errs[0] is not None, "a produce to an unknown topic created it"
    # The table as a whole checks clean.
    r = as_topics(kafka, "--check", "--topics", str(TOPICS_TSV))
    assert r.returncode == 0 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    print(f"kafka: started in {kafka.start_seconds:.1f}s; {kafka.ready_line}")


def test_check_reports_differences_and_creates_nothing(kafka, tmp_path):
    tag = uuid.uuid4().hex[:6]
    wrong, missing = f"it.wrong.{tag}", f"it.missing.{tag}"
    kafka.create(wrong, 2)
    table = tmp_path / "topics.tsv"
    table.write_text(TOPICS_TSV.read_text() +
                     f"{wrong}  4  case_id  -  created with 2 by the test\n"
                     f"{missing}  3  case_id  -  never created\n")

    r = as_topics(kafka, "--check", "--topics", str(table))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.splitlines() == [
        f"difference topic={wrong} problem=partitions want=4 have=2",
        f"difference topic={missing} problem=missing want=3",
    ], r.stdout
    assert missing not in kafka.topics(), "--check created a topic"

    # Without --check: the missing one is created, the wrong one left alone
    # (more partitions would move keys) and still reported.
    r = as_topics(kafka, "--topics", str(table))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.splitlines() == [
        f"difference topic={wrong} problem=partitions want=4 have=2",
        f"created topic={missing} partitions=3 replication=1",
    ], r.stdout
    topics = kafka.topics()
    assert len(topics[missing].partitions) == 3
    assert len(topics[wrong].partitions) == 2

    # An unreachable cluster is its own exit code, not "all fine".
    r = subprocess.run([str(TOPICS_BIN), "--bootstrap", "127.0.0.1:1", "--check",
                        "--timeout-ms", "2000"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)


# ---- clients -------------------------------------------------------------

def test_group_round_trip_with_debian_librdkafka(kafka):
    """Idempotent producer, two group members sharing partitions (eager
    range assignor, as our workers), commits, and a later member resuming
    from the committed offsets: every protocol version librdkafka 2.0.2
    negotiates must be one the broker still serves."""
    import confluent_kafka as ck
    print(f"librdkafka {ck.libversion()[0]}")
    topic, group = f"it.rt.{uuid.uuid4().hex[:6]}", f"it-{uuid.uuid4().hex[:8]}"
    kafka.create(topic, 4)
    p = ck.Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True,
                     "acks": "all", "log_level": 2})
    sent = {f"k{i}": f"v{i}".encode() for i in range(200)}
    for k, v in sent.items():
        p.produce(topic, key=k.encode(), value=v)
    assert p.flush(30) == 0

    def member():
        c = ck.Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "partition.assignment.strategy": "range", "session.timeout.ms": 6000,
                         "heartbeat.interval.ms": 500, "log_level": 2})
        c.subscribe([topic])
        return c

    a, b = member(), member()
    got = {}
    deadline = time.monotonic() + 60 * SLOW
    while len(got) < len(sent) and time.monotonic() < deadline:
        for c in (a, b):
            m = c.poll(0.2)
            if m is not None and not m.error():
                got[m.key().decode()] = m.value()
                c.commit(message=m, asynchronous=False)
    assert got == sent
    wait_until(lambda: a.assignment() and b.assignment(), 30 * SLOW,
               what="both members assigned")
    assert len(a.assignment()) + len(b.assignment()) == 4
    a.close()
    b.close()

    # Resumes where the group committed: no redelivery, then new records.
    c = member()
    p.produce(topic, key=b"after", value=b"after")
    assert p.flush(30) == 0
    later = []
    deadline = time.monotonic() + 30 * SLOW
    while not later and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            later.append(m.key())
    c.close()
    assert later == [b"after"]


def test_probe_worker_end_to_end(h, kafka):
    """as-probe (C, our runtime on librdkafka 2.0.2) joins its group on the
    real broker, applies every probe once and publishes one echo each
    through its outbox and idempotent producer."""
    assert h.bootstrap == kafka.bootstrap
    ids = random_ids(120)
    w = h.start_worker()
    w.wait_assigned(partitions=PARTITIONS["aftersales.probe.v1"])
    h.produce_many([(pid, h.probe_envelope(pid, seq).SerializeToString(), None)
                    for seq, pid in enumerate(ids)])
    wait_until(lambda: sum(h.counts().get(p, 0) for p in ids) == len(ids), 60 * SLOW,
               what="probes applied")
    settle(h)
    assert all(h.counts()[p] == 1 for p in ids)
    echoed = {e.probe_id for _, e, _ in echo_events(h, h.reader(ECHO_TOPIC))
              if e.probe_id in set(ids)}
    assert echoed == set(ids)
    assert w.metric("as_messages_processed_total") == len(ids)
    assert w.terminate() == 0


# ---- lifecycle -----------------------------------------------------------

def test_stop_leaves_no_jvm_and_start_again_works(kafka):
    """Last of the module's broker tests on purpose: stops the shared broker,
    checks no JVM of its directory is left, then a start that fails after
    the JVM is up (topics cannot be created) must leave none either, and a
    plain start on the same directory works again."""
    pid = kafka.pid()
    assert jvms(kafka.dir) == [pid]
    rss_kib = int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])
    print(f"kafka: broker RSS {rss_kib // 1024} MiB")
    t0 = time.monotonic()
    kafka.stop()
    print(f"kafka: stopped in {time.monotonic() - t0:.1f}s")
    assert jvms(kafka.dir) == []
    assert not alive(pid), f"broker pid {pid} still running after stop"
    assert kafka_sh("status", kafka.dir).returncode == 3
    kafka.stop()  # a second stop is a no-op

    r = kafka_sh("start", kafka.dir, AS_TOPICS_BIN="/bin/false")
    assert r.returncode != 0 and "as-topics failed" in r.stderr, r.stderr
    assert "stopping the broker" in r.stderr, r.stderr  # it had been launched
    assert jvms(kafka.dir) == [], "a failed start left its JVM running"

    kafka.start()
    assert kafka_sh("status", kafka.dir).returncode == 0
    topics = kafka.topics()
    assert all(len(topics[n].partitions) == c for n, c in PARTITIONS.items())


def test_interrupted_start_leaves_no_jvm(test_tmp):
    """SIGTERM to kafka.sh start while it waits for the JVM's readiness."""
    if shutil.which(os.environ.get("AS_JAVA", "java")) is None:
        pytest.skip("no Java runtime: scripts/deps.sh installs default-jre-headless")
    d = test_tmp / f"kafka-int-{uuid.uuid4().hex[:6]}"
    p = subprocess.Popen([str(KAFKA_SH), "start", str(d)], cwd=ROOT, env=kafka_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: (d.exists() and jvms(d.resolve())) or p.poll() is not None, 60,
               what="the JVM launched")
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0, err
    assert jvms(d.resolve()) == [], f"SIGTERM during start left its JVM running:\n{err}"
