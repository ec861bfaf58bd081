"""settle() (conftest), the wait that the "exactly once" and "nothing more"
assertions of the suite stand on, tested on workers held back on purpose:
it must not return while a worker has input it has not consumed or output
it has not published, and once it returns the whole topic, late duplicates
included, is there to count.

Two ways to hold a probe worker back without touching its code: an
EXCLUSIVE lock on its state table (its batch waits in the database, nothing
is committed, not even the first offset of its group) and its schema's relay
lock (as_relay.c takes pg_try_advisory_lock(hashtext('as_relay:<schema>'));
while the test holds it, the worker consumes and commits but its relay stands
by and the outbox fills).
"""
import pytest

from conftest import ECHO_TOPIC, SLOW, echo_events, random_ids, settle, wait_until

N = 5


def produce_probes(h):
    envs = [h.probe_envelope(pid, 0, amount=1) for pid in random_ids(N)]
    h.produce_many([(e.synthetic_probe.probe_id, e.SerializeToString(), None) for e in envs])
    return envs


def test_settle_waits_for_input_not_yet_consumed(h):
    w = h.start_worker()
    w.wait_assigned(partitions=12)
    lock = h.pg.connect(h.dbname)
    lock.autocommit = False
    try:
        lock.cursor().execute("LOCK TABLE probe.probe_state IN EXCLUSIVE MODE")
        envs = produce_probes(h)
        # The group has committed nothing yet on any topic: its lag must be
        # counted from the start of the log, not skipped.
        with pytest.raises(AssertionError, match="did not settle"):
            settle(h, timeout=2)
        assert h.scalar("SELECT count(*) FROM probe.inbox") == 0
    finally:
        lock.rollback()
        lock.close()
    settle(h)
    # No wait of its own: settle() returned, so everything is on the wire.
    assert h.scalar("SELECT count(*) FROM probe.inbox") == N
    echoes = echo_events(h, h.reader(ECHO_TOPIC))
    assert sorted(e.probe_id for _, e, _ in echoes) == sorted(e.synthetic_probe.probe_id for e in envs)


def test_settle_waits_for_the_outbox_and_the_count_sees_a_late_duplicate(h):
    lock = h.pg.connect(h.dbname)
    try:
        lock.cursor().execute("SELECT pg_advisory_lock(hashtext('as_relay:probe'))")
        w = h.start_worker()
        produce_probes(h)
        wait_until(lambda: h.scalar("SELECT count(*) FROM probe.inbox") == N, 30 * SLOW,
                   what="probes consumed")
        # Consumed and committed, not published: the outbox alone holds settle() back.
        with pytest.raises(AssertionError, match="did not settle"):
            settle(h, timeout=2)
        assert h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NULL") == N
        assert w.metric("as_relay_active") == 0
    finally:
        lock.close()  # releases the relay lock: the worker's relay takes over
    settle(h)
    reader = h.reader(ECHO_TOPIC)
    echoes = echo_events(h, reader)
    assert len(echoes) == N
    # A late duplicate (what a relay replay after a crash publishes) counts:
    # the reader reads the whole topic again up to its end.
    h.produce(echoes[0][2].value(), key=echoes[0][2].key(), topic=ECHO_TOPIC)
    assert len(echo_events(h, reader)) == N + 1
