"""Crash recovery: SIGKILL at the runtime's failpoints loses nothing and
applies nothing twice.

 - after_db_commit: the batch is committed in PostgreSQL but its offsets are
   not; the restarted worker gets it again and the inbox skips it.
 - before_db_commit: the batch's transaction dies uncommitted; the restarted
   worker applies it once.
 - relay_after_delivery: the relay dies after the broker acknowledged a round
   but before marking the rows sent; the restarted relay republishes them with
   the same event ids, so the wire carries exactly the outbox's event ids
   (duplicates only with the same id) and every row ends up sent.
In every case the final state is checked on both sides: probe_state counts per
probe id, inbox and outbox rows in the database, and the echo events on Kafka.
"""
import collections

from conftest import ECHO_TOPIC, SLOW, echo_events, random_ids, wait_until

PER_ID = 5


def _produce_workload(h, nids=12, per_id=PER_ID):
    ids = random_ids(nids)
    envs = []
    records = []
    for seq in range(per_id):
        for pid in ids:
            env = h.probe_envelope(pid, seq, amount=seq + 1)
            envs.append(env)
            records.append((pid, env.SerializeToString(), None))
    h.produce_many(records)
    return ids, envs


def _assert_exactly_once(h, ids, envs, worker):
    n = len(envs)
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.inbox") == n, 60 * SLOW,
               what=f"{n} probes in the inbox")
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NULL") == 0,
               30 * SLOW, what="outbox drained")
    counts = h.counts()
    assert counts == {pid: PER_ID for pid in ids}, counts
    totals = dict(h.sql("SELECT probe_id, total_minor FROM probe.probe_state"))
    assert totals == {pid: sum(range(1, PER_ID + 1)) for pid in ids}
    assert h.scalar("SELECT count(*) FROM probe.outbox") == n
    assert h.scalar("SELECT count(DISTINCT event_id) FROM probe.outbox") == n
    assert {str(x) for (x,) in h.sql("SELECT event_id FROM probe.inbox")} == {e.event_id for e in envs}

    # On the wire: every outbox event id, nothing else; copies of one id are
    # the same event; each (probe_id, seq) is echoed under exactly one id.
    outbox = {str(x): bytes(p) for x, p in h.sql("SELECT event_id, payload FROM probe.outbox")}
    echoes = echo_events(h, h.reader(ECHO_TOPIC))
    by_id = collections.defaultdict(set)
    for eid, _, m in echoes:
        by_id[eid].add(m.value())
    assert set(by_id) == set(outbox)
    for eid, values in by_id.items():
        assert values == {outbox[eid]}, f"{eid}: different bytes under one event id"
    echoed = collections.Counter((e.probe_id, e.seq) for eid, e, _ in
                                 {eid: (eid, e, m) for eid, e, m in echoes}.values())
    assert echoed == collections.Counter((e.synthetic_probe.probe_id, e.synthetic_probe.seq)
                                         for e in envs)
    assert worker.proc.poll() is None, worker.tail()
    return echoes


def test_sigkill_after_db_commit_before_offset_commit(h):
    ids, envs = _produce_workload(h)
    w1 = h.start_worker(ready=False, AS_BATCH_MAX=10, AS_FAILPOINT="after_db_commit",
                        AS_FAILPOINT_AFTER=2)
    assert w1.wait_exit(60) == -9, w1.tail()
    assert w1.logged("failpoint: killing myself")
    # What the dead worker left: committed batches, consistent.
    applied = h.scalar("SELECT count(*) FROM probe.inbox")
    assert 2 <= applied <= 20
    assert h.scalar("SELECT coalesce(sum(count), 0) FROM probe.probe_state") == applied
    assert h.scalar("SELECT count(*) FROM probe.outbox") == applied

    w2 = h.start_worker(name="w2")
    _assert_exactly_once(h, ids, envs, w2)
    # The second batch was in the database but its offsets were not committed:
    # it came back and the inbox skipped it.
    assert w2.metric("as_messages_duplicate_total") >= 1
    assert w2.metric("as_messages_processed_total") == len(envs) - applied


def test_sigkill_before_db_commit(h):
    ids, envs = _produce_workload(h)
    w1 = h.start_worker(ready=False, AS_BATCH_MAX=10, AS_FAILPOINT="before_db_commit",
                        AS_FAILPOINT_AFTER=2)
    assert w1.wait_exit(60) == -9, w1.tail()
    assert w1.logged("failpoint: killing myself")
    # Only the first batch is in: the second died with its transaction.
    applied = h.scalar("SELECT count(*) FROM probe.inbox")
    assert 1 <= applied <= 10
    assert h.scalar("SELECT coalesce(sum(count), 0) FROM probe.probe_state") == applied
    assert h.scalar("SELECT count(*) FROM probe.outbox") == applied

    w2 = h.start_worker(name="w2")
    _assert_exactly_once(h, ids, envs, w2)
    assert w2.metric("as_messages_processed_total") == len(envs) - applied


def test_relay_killed_after_delivery_republishes_same_event_ids(h):
    ids, envs = _produce_workload(h)
    w1 = h.start_worker(ready=False, AS_FAILPOINT="relay_after_delivery")
    assert w1.wait_exit(60) == -9, w1.tail()
    # The round reached the broker, yet no row is marked sent.
    assert h.scalar("SELECT count(*) FROM probe.outbox") > 0
    assert h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NOT NULL") == 0
    before = echo_events(h, h.reader(ECHO_TOPIC))
    assert before, "the killed relay's round was not delivered"

    w2 = h.start_worker(name="w2")
    echoes = _assert_exactly_once(h, ids, envs, w2)
    # The delivered-but-unmarked rows went out again, under the same ids.
    assert len(echoes) > len({eid for eid, _, _ in echoes})
    assert {eid for eid, _, _ in before} <= {eid for eid, _, _ in echoes}
    assert h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NULL") == 0
