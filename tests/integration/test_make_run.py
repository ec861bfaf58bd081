"""`make run` end to end: scripts/run.sh with the build under test
(AS_BIN_DIR) and its own run directory (AS_RUN_DIR, under the test's scratch
directory) brings up PostgreSQL, the broker and every worker; its demo must
pass every scenario, print each line under a case number (or the request or
probe it is about) and leave the fleet running; SIGTERM to the script, or
SIGINT to its process group (Ctrl-C), must stop everything at once, even in
the middle of the demo, and end it with exit 0.

The broker: real Apache Kafka by default (scripts/kafka.sh; its JVM runs in
a session of its own, so it is checked by its pid), the mock with
AS_BROKER=mock; either way run.sh names the one it started and where.
"""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BIN_DIR, ROOT, SANITIZER_MARKERS, SLOW

# scripts/demo.py's scenarios: each must print its "ok [key]" line.
SCENARIOS = ("return", "evidence", "socks", "too_many", "agent", "sla", "goodwill", "dispute", "runtime")
CASE = r"AS-\d{8}-\d+"
UNDER = re.compile(rf"^demo: ({CASE}|request demo-r-\w+|probe \S+|probes|received|logistics|\[logistics\]) ")


@contextlib.contextmanager
def run_sh(test_tmp, broker=None):
    """scripts/run.sh in its own session; yields (process, output reader).
    broker: AS_BROKER for it (None: unset, run.sh's default)."""
    run_dir = test_tmp / "make-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    out_path = run_dir / "out.txt"
    env = {k: v for k, v in os.environ.items() if k != "AS_BROKER"}
    env.update(AS_RUN_DIR=str(run_dir), AS_BIN_DIR=str(BIN_DIR))
    if broker:
        env["AS_BROKER"] = broker
    with open(out_path, "wb") as out:
        p = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield p, lambda: out_path.read_text(errors="replace")
        for log in sorted((run_dir / "logs").glob("*.log")):
            body = log.read_text(errors="replace")
            assert not [m for m in SANITIZER_MARKERS if m in body], f"{log.name}: {body[-3000:]}"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        subprocess.run(["scripts/kafka.sh", "stop", str(run_dir / "kafka")], cwd=ROOT,
                       capture_output=True, timeout=120)
        subprocess.run(["scripts/pg.sh", "destroy", str(run_dir / "pg")], cwd=ROOT, capture_output=True,
                       timeout=60)


BROKER_LINE = re.compile(r"^run: Kafka broker \((Apache Kafka [0-9.]+|librdkafka mock cluster),"
                         r" AS_BROKER=(kafka|mock)\) at (127\.0\.0\.1:\d+)\S*, pid (\d+), log \S+$", re.M)


def broker_started(text):
    """(kind, bootstrap, pid) from run.sh's line naming its broker."""
    m = BROKER_LINE.search(text)
    assert m, f"run.sh did not say which broker it started and where:\n{text[-3000:]}"
    return m.group(2), m.group(3), int(m.group(4))


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def wait_line(p, read, line, timeout):
    deadline = time.monotonic() + timeout
    while True:
        text = read()
        if line in text or p.poll() is not None:
            return text
        assert time.monotonic() < deadline, f"no {line!r} after {timeout:.0f} s:\n{text[-6000:]}"
        time.sleep(0.2)


def live_in_session(sid):
    """Processes of the session still running (zombies are already gone)."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(sid)], capture_output=True,
                         text=True).stdout
    return [line.strip() for line in out.splitlines() if line.split()[1][0] != "Z"]


def stop(p, read, how, timeout):
    """Stops run.sh as a supervisor (SIGTERM to the script) or a terminal
    (SIGINT to the group) would; asserts exit 0, everything gone, in time."""
    t0 = time.monotonic()
    if how == "SIGTERM":
        p.send_signal(signal.SIGTERM)
    else:
        os.killpg(p.pid, signal.SIGINT)
    rc = p.wait(timeout)
    took = time.monotonic() - t0
    text = read()
    assert rc == 0, f"run.sh exited {rc} on {how}:\n{text[-3000:]}"
    assert text.endswith("run: stopped\n"), text[-3000:]
    deadline = time.monotonic() + 5 * SLOW
    while live_in_session(p.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_in_session(p.pid) == [], "processes left behind"
    return text, took


def test_make_run_shows_every_scenario_and_stops_on_sigterm(test_tmp):
    """On the default broker, which is real Kafka; its JVM must be gone
    after the stop, although it runs in a session of its own."""
    with run_sh(test_tmp) as (p, read):
        text = wait_line(p, read, "run: the fleet keeps running", 90 * SLOW)
        assert p.poll() is None, f"run.sh exited {p.returncode}:\n{text[-6000:]}"
        kind, bootstrap, jvm = broker_started(text)
        assert kind == "kafka", f"make run's default broker is {kind}, not real Kafka"
        cmdline = open(f"/proc/{jvm}/cmdline", "rb").read().replace(b"\0", b" ")
        assert b"kafka.Kafka" in cmdline, cmdline[:300]
        assert re.search(r"^demo: all \d+ scenarios and the runtime as expected", text, re.M), text[-6000:]
        for key in SCENARIOS:
            assert re.search(rf"^demo: ({CASE}|request \S+|probes) ok \[{key}\] ", text, re.M), \
                f"no ok line for [{key}]:\n{text[-6000:]}"
        if (BIN_DIR / "as-logistics").exists():
            assert re.search(r"^demo: logistics ok \[carrier and warehouse\] ", text, re.M), text[-6000:]
        demo = [line for line in text.splitlines() if line.startswith("demo: ")]
        unnamed = [line for line in demo[1:-1] if not UNDER.match(line)]
        assert not unnamed, f"demo lines naming no case: {unnamed}"
        # Grouped by case: one case's lines are contiguous, cases in number order.
        numbers = [m.group(1) for m in (re.match(rf"^demo: ({CASE}) ", line) for line in demo) if m]
        blocks = [n for i, n in enumerate(numbers) if i == 0 or numbers[i - 1] != n]
        assert blocks == sorted(set(numbers)), f"case lines not grouped in case order: {blocks}"
        stop(p, read, "SIGTERM", 60 * SLOW)
        assert gone(jvm), f"the Kafka JVM (pid {jvm}) outlived make run"


def test_make_run_on_the_mock_answers_at_once(test_tmp):
    """AS_BROKER=mock: the mock cluster, named as such, and a newcomer does
    not wait on it: the demo's requests are answered about as fast as on
    real Kafka (an idle fetch on the mock waits fetch.wait.max.ms, 500 ms
    by default, before it sees a new message)."""
    with run_sh(test_tmp, "mock") as (p, read):
        text = wait_line(p, read, "run: the fleet keeps running", 75 * SLOW)
        assert p.poll() is None, f"run.sh exited {p.returncode}:\n{text[-6000:]}"
        kind, bootstrap, pid = broker_started(text)
        assert kind == "mock", text[-3000:]
        assert b"as-broker" in open(f"/proc/{pid}/cmdline", "rb").read()
        latency_check(bootstrap)
        stop(p, read, "SIGTERM", 30 * SLOW)
        assert gone(pid)


def latency_check(bootstrap, n=20):
    """A probe produced at 10/s reaches the probe worker and comes back on
    the echo topic: p90 under 200 ms (the mock's 500 ms fetch wait made
    it about a second)."""
    import uuid
    from confluent_kafka import Consumer, Producer, TopicPartition
    sys_path = str(ROOT / os.environ.get("AS_GEN_PY", "build/gen/py"))
    import sys
    if sys_path not in sys.path:
        sys.path.insert(0, sys_path)
    import envelope_pb2
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 5, "log_level": 2})
    parts = [TopicPartition("aftersales.probe-echo.v1", i) for i in range(12)]
    for tp in parts:
        tp.offset = c.get_watermark_offsets(tp, timeout=10)[1]
    c.assign(parts)
    pr = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 2})
    sent, took = {}, []
    for i in range(n):
        e = envelope_pb2.Envelope(event_id=str(uuid.uuid4()), event_type="SyntheticProbe",
                                  schema_version=1, occurred_at_us=int(time.time() * 1e6))
        pid = f"lat-{uuid.uuid4().hex[:8]}"
        e.case_id = pid
        e.producer.service, e.producer.instance = "test", "make-run"
        e.trace_id = uuid.uuid4().hex
        e.synthetic_probe.probe_id, e.synthetic_probe.seq = pid, 1
        pr.produce("aftersales.probe.v1", key=pid, value=e.SerializeToString())
        pr.flush(10)
        sent[pid] = time.monotonic()
        end = time.monotonic() + 0.1
        while time.monotonic() < end:
            m = c.poll(max(0.0, end - time.monotonic()))
            if m is not None and not m.error():
                echo = envelope_pb2.Envelope.FromString(m.value())
                at = sent.pop(echo.probe_echoed.probe_id, None)
                if at is not None:
                    took.append(time.monotonic() - at)
    end = time.monotonic() + 10
    while sent and time.monotonic() < end:
        m = c.poll(0.1)
        if m is not None and not m.error():
            at = sent.pop(envelope_pb2.Envelope.FromString(m.value()).probe_echoed.probe_id, None)
            if at is not None:
                took.append(time.monotonic() - at)
    c.close()
    assert not sent, f"{len(sent)} probes never echoed"
    took.sort()
    p90 = took[int(0.9 * (len(took) - 1))]
    assert p90 < 0.2 * SLOW, f"probe round trip at 10/s: p90 {p90 * 1000:.0f} ms, all {took}"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_make_run_stops_at_once_during_the_demo(test_tmp, how):
    with run_sh(test_tmp) as (p, read):
        wait_line(p, read, "waiting for the fleet", 60 * SLOW)
        assert p.poll() is None, read()[-6000:]
        kind, _, jvm = broker_started(read())
        text, took = stop(p, read, how, 30 * SLOW)
        assert gone(jvm), f"the broker (pid {jvm}) outlived make run"
        # the script does not wait for the demo to finish (about 10 s) first
        assert "demo: all" not in text and took < 5 * SLOW, f"stopped in {took:.1f} s:\n{text[-3000:]}"
