"""Exactly-once effects of the batch transaction.

Proves that a batch is applied in one transaction (state, inbox and outbox move
together) and that a message delivered twice -- the very same bytes replayed --
has one effect: probe_state.count, inbox rows, outbox rows and the echo events
(distinct by event id) all count it once. The same event id produced again with
new bytes is no redelivery: it has no effect either, and is dead-lettered as
event_id_reused (test_inbox_reuse.py).
"""
from conftest import (DLQ_TOPIC, ECHO_TOPIC, PROBE_TOPIC, dead_letters, echo_events, random_ids,
                      wait_until, SLOW)


def test_batch_one_transaction_and_duplicates_have_one_effect(h):
    ids = random_ids(20)
    # Produced before the worker starts, so that they arrive as one batch.
    first = []
    records = []
    for seq, pid in enumerate(ids):
        env = h.probe_envelope(pid, seq, amount=10 + seq)
        first.append(env)
        records.append((pid, env.SerializeToString(), 0))
    h.produce_many(records)

    w = h.start_worker(AS_BATCH_MAX=500)
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.inbox") == len(ids), 30 * SLOW,
               what="first batch applied")
    # One transaction: every row shares the inbox's transaction timestamp
    # (now() is the start of the transaction), and the outbox got one row each.
    batches = w.metric("as_batch_size_count")
    assert batches >= 1
    assert h.scalar("SELECT count(DISTINCT received_at) FROM probe.inbox") == batches
    assert h.scalar("SELECT count(DISTINCT created_at) FROM probe.outbox") == batches
    # Each probe's inbox row and its echo's outbox row were written by the same
    # transaction: the multisets of timestamps are equal.
    assert sorted(r[0] for r in h.sql("SELECT received_at FROM probe.inbox")) == \
        sorted(r[0] for r in h.sql("SELECT created_at FROM probe.outbox"))
    assert h.scalar("SELECT count(*) FROM probe.outbox") == len(ids)
    assert w.metric("as_messages_processed_total") == len(ids)

    # Not duplicates: (a) the same event ids with new bytes (another seq,
    # amount, and on another partition); duplicates: (b) the very same bytes
    # replayed.
    dup_records = []
    for env in first[:10]:
        again = h.probe_envelope(env.synthetic_probe.probe_id, env.synthetic_probe.seq + 1000,
                                 amount=999, event_id=env.event_id)
        dup_records.append((env.synthetic_probe.probe_id, again.SerializeToString(), 5))
    for env in first:
        dup_records.append((env.synthetic_probe.probe_id, env.SerializeToString(), None))
    # And a fresh probe after them, as a marker that the duplicates were consumed.
    marker = h.probe_envelope(ids[0], 5000, amount=1)
    dup_records.append((ids[0], marker.SerializeToString(), 0))
    h.produce_many(dup_records)

    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.inbox") == len(ids) + 1, 30 * SLOW,
               what="marker applied")
    wait_until(lambda: w.metric("as_messages_duplicate_total") == len(first), 20 * SLOW,
               what="duplicates counted")
    wait_until(lambda: w.metric("as_messages_deadlettered_total", reason="event_id_reused") == 10,
               20 * SLOW, what="reused ids counted")

    counts = h.counts()
    assert counts[ids[0]] == 2, counts
    assert all(counts[p] == 1 for p in ids[1:]), counts
    totals = dict(h.sql("SELECT probe_id, total_minor FROM probe.probe_state"))
    assert totals[ids[0]] == 10 + 1
    assert all(totals[p] == 10 + i for i, p in enumerate(ids) if i), totals
    assert h.scalar("SELECT count(*) FROM probe.inbox") == len(ids) + 1
    assert h.scalar("SELECT count(*) FROM probe.outbox WHERE topic = %s", (ECHO_TOPIC,)) == \
        len(ids) + 1
    assert w.metric("as_messages_processed_total") == len(ids) + 1

    # The echo topic carries one event per applied probe (duplicates only with
    # the same event id), each caused by the probe it answers.
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NULL") == 0,
               20 * SLOW, what="outbox drained")
    r = h.reader(ECHO_TOPIC)
    echoes = echo_events(h, r)
    by_id = {}
    for eid, e, _ in echoes:
        by_id.setdefault(eid, set()).add((e.probe_id, e.seq))
    assert all(len(v) == 1 for v in by_id.values())
    assert len(by_id) == len(ids) + 1
    got = sorted(next(iter(v)) for v in by_id.values())
    want = sorted([(env.synthetic_probe.probe_id, env.synthetic_probe.seq) for env in first] +
                  [(ids[0], 5000)])
    assert got == want
    outbox_ids = {str(x) for (x,) in h.sql("SELECT event_id FROM probe.outbox WHERE topic = %s",
                                           (ECHO_TOPIC,))}
    assert set(by_id) == outbox_ids
    reused = dead_letters(h, h.reader(DLQ_TOPIC))
    assert sorted(d.original_event_id for _, d, _ in reused) == \
        sorted(env.event_id for env in first[:10])
    assert {d.reason_code for _, d, _ in reused} == {"event_id_reused"}
    causes = {h.decode(m.value()).causation_id for _, _, m in echoes}
    assert causes == {env.event_id for env in first} | {marker.event_id}
    assert w.proc.poll() is None
    _ = PROBE_TOPIC
