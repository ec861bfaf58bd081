"""`make run` end to end: scripts/run.sh with the build under test
(AS_BIN_DIR) and its own run directory (AS_RUN_DIR, under the test's scratch
directory) brings up PostgreSQL, the broker and every worker; its demo must
pass every scenario, print each line under a case number (or the request or
probe it is about) and leave the fleet running; SIGTERM to the script must
stop everything and end it with exit 0.
"""
import os
import re
import shutil
import signal
import subprocess
import time

from conftest import BIN_DIR, ROOT, SANITIZER_MARKERS, SLOW

# scripts/demo.py's scenarios: each must print its "ok [key]" line.
SCENARIOS = ("return", "evidence", "socks", "too_many", "agent", "sla", "goodwill", "dispute", "runtime")
CASE = r"AS-\d{8}-\d+"
UNDER = re.compile(rf"^demo: ({CASE}|request demo-r-\w+|probe \S+|probes) ")


def live_in_session(sid):
    """Processes of the session still running (zombies are already gone)."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(sid)], capture_output=True,
                         text=True).stdout
    return [line.strip() for line in out.splitlines() if line.split()[1][0] != "Z"]


def test_make_run_shows_every_scenario_and_stops_on_sigterm(test_tmp):
    run_dir = test_tmp / "make-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    out_path = run_dir / "out.txt"
    env = dict(os.environ, AS_RUN_DIR=str(run_dir), AS_BIN_DIR=str(BIN_DIR))
    with open(out_path, "wb") as out:
        p = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 75
        while True:
            text = out_path.read_text(errors="replace")
            if "run: the fleet keeps running" in text or p.poll() is not None:
                break
            assert time.monotonic() < deadline, f"no end of the demo after 75 s:\n{text[-6000:]}"
            time.sleep(0.2)
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

        p.send_signal(signal.SIGTERM)  # to the script, as a supervisor would
        rc = p.wait(30 * SLOW)
        text = out_path.read_text(errors="replace")
        assert rc == 0, f"run.sh exited {rc} on SIGTERM:\n{text[-3000:]}"
        assert text.endswith("run: stopped\n"), text[-3000:]
        assert wait_empty(p.pid, 10 * SLOW) == [], "processes left behind"
        for log in sorted((run_dir / "logs").glob("*.log")):
            body = log.read_text(errors="replace")
            assert not [m for m in SANITIZER_MARKERS if m in body], f"{log.name}: {body[-3000:]}"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        subprocess.run(["scripts/pg.sh", "destroy", str(run_dir / "pg")], cwd=ROOT, capture_output=True,
                       timeout=60)


def wait_empty(sid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        left = live_in_session(sid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
