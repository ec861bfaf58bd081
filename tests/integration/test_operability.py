"""Operability, from outside the process as an operator sees it: the
librdkafka settings reach only the clients they are for (no configuration
warning at start), the HTTP listener binds loopback unless told otherwise
and keeps answering /healthz under a flood of idle connections at the
common 1,024-descriptor limit, and every binary tells its version, on
--version and as as_build_info, beside the standard process metrics.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

from conftest import BIN_DIR, ROOT, SLOW, wait_until

BINARIES = ["as-probe", "as-intake", "as-review", "as-broker", "as-topics"]


def config_warnings(w):
    """librdkafka's warnings about its configuration in w's log."""
    return [r for r in w.lines() if r.get("msg") == "librdkafka"
            and r.get("level") in ("warn", "error")
            and re.search(r"(?i)configuration|property", r.get("detail", ""))]


def test_no_librdkafka_configuration_warning_at_start(h):
    # The harness sets consumer-only properties (session.timeout.ms,
    # heartbeat.interval.ms) the way an operator would, and a producer-only
    # one here: each must reach its client only.
    w = h.start_worker(name="cfg-w", AS_RDKAFKA_PRODUCER_LINGER_MS="1")
    time.sleep(1.5)  # librdkafka's first log lines are out by now
    assert config_warnings(w) == [], config_warnings(w)
    assert any(r.get("msg") == "worker started" for r in w.lines())


def test_a_consumer_property_for_every_client_still_reaches_the_producer(h):
    # The shared prefix means every client: the producer says it ignores a
    # consumer property (which is why the scoped prefixes exist).
    w = h.start_worker(name="cfg-shared", AS_RDKAFKA_SESSION_TIMEOUT_MS="6000")
    wait_until(lambda: config_warnings(w), 10 * SLOW, what="the producer's warning")


def listen_address(port):
    """The local address of the TCP socket listening on port (/proc/net/tcp*)."""
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                addr, p = cols[1].split(":")
                if cols[3] == "0A" and int(p, 16) == port:
                    return addr if width == 32 else socket.inet_ntoa(bytes.fromhex(addr)[::-1])
    return None


def test_http_listener_binds_loopback_by_default(h):
    w = h.start_worker(name="addr-w", AS_HTTP_ADDR="")  # empty: the default
    assert listen_address(w.port) == "127.0.0.1"
    assert w.http("/healthz")[0] == 200


# Holds n idle connections to a port: prints "open <seconds>" once all are
# established and keeps them until stdin closes. A process of its own,
# connecting 32 at a time (non-blocking) with a pause after each group:
# one after the other, each took ~5 ms here, and the first would reach the
# idle timeout of a worker without AS_HTTP_IDLE_TIMEOUT_MS before the last
# were open; all at once, they overflow the listen backlog and the kernel
# completes some that the worker never sees.
HOLDER = r"""
import select, socket, sys, time
t0 = time.monotonic()
port, n = int(sys.argv[1]), int(sys.argv[2])
conns = []
while len(conns) < n:
    group = []
    for _ in range(min(32, n - len(conns))):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        group.append(s)
    for s in group:
        p = select.poll()
        p.register(s, select.POLLOUT)
        p.poll(10000)
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            sys.exit("connect failed")
    conns += group
    time.sleep(0.01)
print("open %.2f" % (time.monotonic() - t0), flush=True)
sys.stdin.read()
"""


def hold_idle(port, n):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(port), str(n)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith("open "), p.stderr.read()
    return p


def test_healthz_answers_with_1100_idle_connections_at_1024_descriptors(h):
    # 1,024 is the usual soft limit; the harness's own is higher.
    w = h.start_worker(name="flood-w", AS_HTTP_IDLE_TIMEOUT_MS="60000")
    subprocess.run(["prlimit", f"--pid={w.pid}", "--nofile=1024:1024"], check=True)
    holder = hold_idle(w.port, 1100)
    try:
        # Held open and idle, well inside any idle timeout: every probe for
        # the next 2 s is answered, at once.
        for _ in range(10):
            t0 = time.monotonic()
            assert w.http("/healthz", timeout=3)[0] == 200
            assert time.monotonic() - t0 < 1
            time.sleep(0.2)
        assert w.ready(), w.tail()
        assert w.metric("as_http_connections_dropped_total") >= 1100 - 64
        assert w.metric("process_open_fds") < 1024 - 64
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert w.terminate() == 0, w.tail()


def test_version_on_every_binary():
    want = (ROOT / "VERSION").read_text().strip()
    for b in BINARIES:
        out = subprocess.run([str(BIN_DIR / b), "--version"], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, (b, out.stderr)
        m = re.fullmatch(r"(\S+) (\S+) \(commit ([0-9a-z.+-]+)[,)].*\n", out.stdout)
        assert m and m.group(1).endswith(b) and m.group(2) == want, (b, out.stdout)


def test_build_info_and_process_metrics(h):
    w = h.start_worker(name="info-w")
    version = (ROOT / "VERSION").read_text().strip()
    info = [(l, v) for n, l, v in w.metrics() if n == "as_build_info"]
    assert len(info) == 1 and info[0][1] == 1, info
    assert info[0][0]["version"] == version and info[0][0]["commit"], info
    cli = subprocess.run([str(BIN_DIR / "as-probe"), "--version"], capture_output=True,
                         text=True, timeout=30).stdout
    assert f"commit {info[0][0]['commit']}" in cli
    assert w.metric("process_resident_memory_bytes") > 1 << 20
    assert 3 < w.metric("process_open_fds") < w.metric("process_max_fds")
    assert w.metric("process_cpu_seconds_total") > 0
    assert abs(w.metric("process_start_time_seconds") - time.time()) < 600
    status, text = w.http("/metrics")
    assert "# TYPE process_cpu_seconds_total counter" in text
    promtool = shutil.which("promtool")
    if promtool:  # Debian's prometheus package
        out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_a_refused_setting_is_reported_as_one_json_line_whatever_its_value():
    """The start-up refusal quotes the operator's value: a quote, a
    backslash or a control character in it must not break the JSON line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AS_")}
    env.update(AS_BATCH_MAX='1"2\\3\x01', AS_DB_DSN="host=/nonexistent", AS_KAFKA_BOOTSTRAP="127.0.0.1:1")
    out = subprocess.run([str(BIN_DIR / "as-probe")], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert lines, out.stderr
    for line in lines:
        rec = json.loads(line)
        assert rec["msg"] == "bad configuration", rec
        assert '1"2\\3' in rec["detail"], rec  # control characters are shown as ?
