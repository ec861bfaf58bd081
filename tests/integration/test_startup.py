"""Start-up: the listener answers before the database, settings and files
are checked before any connection, and a stuck lock ends in the retry path.

- A worker started while its database cannot be reached (its DSN names a
  socket directory where no server listens yet) answers /healthz 200 and
  /readyz 503 with reason "migrations_pending" at once, keeps waiting, and
  once the socket appears (a symlink to the session's server) applies its
  migrations, reports ready and processes probes.
- as-review with a policy file that does not parse, and no database
  anywhere, exits 2 at once with "line N: ..." in its log; as-probe with a
  librdkafka property librdkafka refuses likewise.
- A lock held by the test on a worker table makes the batch wait at most
  AS_DB_LOCK_TIMEOUT_MS, roll back and retry (counted), /healthz keeps
  answering, and after the release every probe is applied once.
"""
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from conftest import SLOW, random_ids, start_service, wait_until


def _listening_port(w, timeout=15):
    def port():
        for rec in w.lines():
            if rec.get("msg") == "http listening":
                return int(rec["http_port"])
        assert w.proc.poll() is None, w.tail()
        return None
    return wait_until(port, timeout * SLOW, what=f"{w.name} http listening")


def test_http_answers_while_the_database_is_away_then_ready(h):
    sockdir = Path(tempfile.mkdtemp(prefix="as-pg-", dir="/tmp"))
    try:
        e = h.pg.env

        def dsn(user):
            return (f"host={sockdir} port={e['PGPORT']} user={user} dbname={h.dbname}"
                    f" passfile={e['PGPASSFILE']}")
        w = h.start_worker(ready=False, AS_DB_DSN=dsn("as_probe"),
                           AS_DB_MIGRATE_DSN=dsn("aftersales_owner"))
        w.port = _listening_port(w)
        assert w.http("/healthz")[0] == 200
        status, body = w.http("/readyz")
        assert status == 503, body
        r = json.loads(body)
        assert (r["ready"], r["reason"], r["database"]) == (False, "migrations_pending", False), r
        # Pacing, not a wait for work: the worker must keep waiting (not
        # exit, not turn ready) while no server is there; nothing marks
        # "still waiting" but a few of its retries.
        time.sleep(1.5)
        assert w.proc.poll() is None, w.tail()
        assert w.http("/readyz")[0] == 503
        assert w.logged("database not reachable; retrying")

        sock = f".s.PGSQL.{e['PGPORT']}"
        os.symlink(Path(e["PGHOST"]) / sock, sockdir / sock)
        w.wait_started(timeout=30)
        w.wait_ready(timeout=30)
        assert json.loads(w.http("/readyz")[1])["reason"] is None
        ids = random_ids(5)
        h.produce_many([(pid, h.probe_envelope(pid, 0).SerializeToString(), None) for pid in ids])
        wait_until(lambda: h.counts() == {pid: 1 for pid in ids}, 30 * SLOW,
                   what="probes applied after the database came")
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def test_bad_policy_file_fails_start_with_no_database_at_all(h, tmp_path):
    pol = tmp_path / "bad.policy"
    pol.write_text("version = t\n[default]\nno_reason_days = many\n")
    nowhere = f"host={tmp_path} port=1 dbname=nowhere"
    w = start_service(h, "review", ready=False, AS_REVIEW_POLICY_FILE=str(pol), AS_DB_DSN=nowhere,
                      AS_DB_MIGRATE_DSN=nowhere)
    assert w.wait_exit(10) == 2, w.tail()
    refused = w.logged("policy refused")
    assert refused and refused[0]["detail"].startswith(f"{pol}: line 3: "), w.tail()
    assert not w.logged("database not reachable; retrying"), w.tail()


def test_bad_librdkafka_property_fails_start_with_no_database_at_all(h, tmp_path):
    nowhere = f"host={tmp_path} port=1 dbname=nowhere"
    w = h.start_worker(ready=False, AS_RDKAFKA_NO_SUCH_PROPERTY="1", AS_DB_DSN=nowhere,
                       AS_DB_MIGRATE_DSN=nowhere)
    assert w.wait_exit(10) == 2, w.tail()
    bad = w.logged("bad configuration")
    assert bad and "no.such.property" in bad[0]["detail"], w.tail()
    assert not w.logged("database not reachable; retrying"), w.tail()


def test_lock_held_on_a_worker_table_times_out_into_the_retry_path(h):
    w = h.start_worker(AS_DB_LOCK_TIMEOUT_MS=300)
    ids = random_ids(10)
    h.produce_many([(pid, h.probe_envelope(pid, 0).SerializeToString(), None) for pid in ids])
    wait_until(lambda: h.counts() == {pid: 1 for pid in ids}, 30 * SLOW, what="first probes")
    retries0 = w.metric("as_batch_retries_total")

    locker = h.pg.connect(h.dbname)
    locker.autocommit = False
    try:
        locker.cursor().execute("LOCK TABLE probe.probe_state IN ACCESS EXCLUSIVE MODE")
        h.produce_many([(pid, h.probe_envelope(pid, 1).SerializeToString(), None) for pid in ids])
        wait_until(lambda: w.metric("as_batch_retries_total") >= retries0 + 2, 20 * SLOW,
                   what="the locked batch rolled back and retried")
        t0 = time.monotonic()
        assert w.http("/healthz", timeout=2)[0] == 200
        assert time.monotonic() - t0 < 2
        assert [r for r in w.logged("batch not applied; will retry") if r.get("sqlstate") == "55P03"]
        assert h.scalar("SELECT count(*) FROM probe.inbox") == len(ids)  # nothing of the second lot
    finally:
        locker.rollback()
        locker.close()
    wait_until(lambda: h.counts() == {pid: 2 for pid in ids}, 30 * SLOW,
               what="probes applied after the lock was released")
    wait_until(w.ready, 10 * SLOW, what="ready again")
    assert h.scalar("SELECT count(*) FROM probe.inbox") == 2 * len(ids)
    assert w.metric("as_messages_processed_total") == 2 * len(ids)
    assert w.metric("as_messages_deadlettered_total") == 0
