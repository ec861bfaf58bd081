"""`make run` end to end: scripts/run.sh with the build under test
(AS_BIN_DIR) and its own run directory (AS_RUN_DIR, under the test's scratch
directory) brings up PostgreSQL, the broker and every worker; its demo must
pass every scenario, print each line under a case number (or the request or
probe it is about) and leave the fleet running; SIGTERM to the script, or
SIGINT to its process group (Ctrl-C), must stop everything at once, even in
the middle of the demo, and end it with exit 0.
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
UNDER = re.compile(rf"^demo: ({CASE}|request demo-r-\w+|probe \S+|probes) ")


@contextlib.contextmanager
def run_sh(test_tmp):
    """scripts/run.sh in its own session; yields (process, output reader)."""
    run_dir = test_tmp / "make-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    out_path = run_dir / "out.txt"
    env = dict(os.environ, AS_RUN_DIR=str(run_dir), AS_BIN_DIR=str(BIN_DIR))
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
        subprocess.run(["scripts/pg.sh", "destroy", str(run_dir / "pg")], cwd=ROOT, capture_output=True,
                       timeout=60)


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
    with run_sh(test_tmp) as (p, read):
        text = wait_line(p, read, "run: the fleet keeps running", 75)
        assert p.poll() is None, f"run.sh exited {p.returncode}:\n{text[-6000:]}"
        assert re.search(r"^demo: all \d+ scenarios and the runtime as expected", text, re.M), text[-6000:]
        for key in SCENARIOS:
            assert re.search(rf"^demo: ({CASE}|request \S+|probes) ok \[{key}\] ", text, re.M), \
                f"no ok line for [{key}]:\n{text[-6000:]}"
        demo = [line for line in text.splitlines() if line.startswith("demo: ")]
        unnamed = [line for line in demo[1:-1] if not UNDER.match(line)]
        assert not unnamed, f"demo lines naming no case: {unnamed}"
        # Grouped by case: one case's lines are contiguous, cases in number order.
        numbers = [m.group(1) for m in (re.match(rf"^demo: ({CASE}) ", line) for line in demo) if m]
        blocks = [n for i, n in enumerate(numbers) if i == 0 or numbers[i - 1] != n]
        assert blocks == sorted(set(numbers)), f"case lines not grouped in case order: {blocks}"
        stop(p, read, "SIGTERM", 30 * SLOW)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_make_run_stops_at_once_during_the_demo(test_tmp, how):
    with run_sh(test_tmp) as (p, read):
        wait_line(p, read, "waiting for the fleet", 45)
        assert p.poll() is None, read()[-6000:]
        text, took = stop(p, read, how, 30 * SLOW)
        # the script does not wait for the demo to finish (about 10 s) first
        assert "demo: all" not in text and took < 5 * SLOW, f"stopped in {took:.1f} s:\n{text[-3000:]}"
