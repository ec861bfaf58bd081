"""PostgreSQL going away and coming back.

The session's server is really stopped (scripts/pg.sh stop, fast shutdown:
every connection is cut) while the worker runs. While it is down /readyz
answers 503 with "database":false (and /healthz stays 200: the loop is
alive), probes produced meanwhile are retried, not lost and not dead-lettered;
once the server is back /readyz returns to 200 and those probes are applied
exactly once, their echoes published once per event id.
"""
import collections
import json
import time

from conftest import ECHO_TOPIC, SLOW, echo_events, random_ids, wait_until


def test_database_down_then_back(h):
    w = h.start_worker(AS_RETRY_MAX_MS=300)
    ids = random_ids(8)
    before = [h.probe_envelope(pid, 0, amount=1) for pid in ids]
    h.produce_many([(e.synthetic_probe.probe_id, e.SerializeToString(), None) for e in before])
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.inbox") == len(before), 30 * SLOW,
               what="first probes applied")

    during = [h.probe_envelope(pid, s, amount=1) for s in (1, 2) for pid in ids]
    h.pg.stop()
    try:
        h.produce_many([(e.synthetic_probe.probe_id, e.SerializeToString(), None) for e in during])

        def not_ready():
            status, body = w.http("/readyz")
            r = json.loads(body)
            assert status == (200 if r["ready"] else 503), (status, r)
            return r if r["database"] is False else None
        r = wait_until(not_ready, 30 * SLOW, what="/readyz 503 with database false")
        assert r["ready"] is False, r
        assert w.http("/healthz")[0] == 200
        wait_until(lambda: w.metric("as_batch_retries_total") >= 2, 20 * SLOW,
                   what="batch retried")
        # Pacing, not a wait for work: the worker must stay unready while its
        # retries (every AS_RETRY_MAX_MS = 300 ms at most) keep failing; no
        # event marks "still down", so look again after a few of them.
        time.sleep(1)
        assert w.http("/readyz")[0] == 503
        assert w.proc.poll() is None, w.tail()
    finally:
        h.pg.start()

    wait_until(w.ready, 30 * SLOW, what="/readyz 200 after the database returned")
    everything = before + during
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.inbox") == len(everything), 30 * SLOW,
               what="probes produced during the outage applied")
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NULL") == 0,
               30 * SLOW, what="outbox drained")
    assert h.counts() == {pid: 3 for pid in ids}
    assert h.scalar("SELECT count(*) FROM probe.outbox") == len(everything)
    assert w.metric("as_messages_processed_total") == len(everything)
    assert w.metric("as_messages_deadlettered_total") == 0
    echoes = echo_events(h, h.reader(ECHO_TOPIC))
    distinct = {eid: (e.probe_id, e.seq) for eid, e, _ in echoes}
    assert collections.Counter(distinct.values()) == collections.Counter(
        (e.synthetic_probe.probe_id, e.synthetic_probe.seq) for e in everything)
    assert set(distinct) == {str(x) for (x,) in h.sql("SELECT event_id FROM probe.outbox")}
    assert w.http("/readyz")[0] == 200
