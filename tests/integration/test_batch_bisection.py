"""A batch that fails in the database is bisected, not replayed one by one.

1,000 probes over 50 keys are produced before the worker starts (so its
batches are full, AS_BATCH_MAX=500); one in 100 carries an amount that
passes the probe's validator but breaks probe_state's CHECK, so each batch
that holds one fails in PostgreSQL. Every good probe must be applied once
(counts and totals per key), each bad one dead-lettered once as
handler_failed, and the transactions spent finding them must be
O(log n) per bad message: as_batch_bisect_transactions_total at most
2 log2(500) + 2 per culprit, and, counted by PostgreSQL itself
(pg_stat_database, read after the worker exited so its statistics are
flushed), far below the one transaction per message that replaying a
failed batch message by message costs (about 1,000 here).
"""
import collections
import math
import time

from conftest import DLQ_TOPIC, SLOW, dead_letters, random_ids, wait_until

N = 1000
KEYS = 50
BATCH = 500
TOO_MUCH = 2_000_000_000_000  # probe_state.total_minor CHECK: at most 10^12


def _db_transactions(h):
    # A fresh connection each time: its own statistics are flushed on close.
    c = h.pg.connect()
    try:
        cur = c.cursor()
        cur.execute("SELECT pg_stat_force_next_flush()")
        cur.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                    (h.dbname,))
        return cur.fetchone()[0]
    finally:
        c.close()


def test_one_bad_probe_in_100_costs_log_n_transactions(h):
    ids = random_ids(KEYS, prefix="bis")
    envs = [h.probe_envelope(ids[i % KEYS], i, amount=TOO_MUCH if i % 100 == 37 else 1 + i % 7)
            for i in range(N)]
    bad = [e for e in envs if e.synthetic_probe.amount_minor == TOO_MUCH]
    good = [e for e in envs if e.synthetic_probe.amount_minor != TOO_MUCH]
    h.produce_many([(e.synthetic_probe.probe_id, e.SerializeToString(), None) for e in envs])

    before = _db_transactions(h)
    # The relay is woken by every commit; its timer only adds idle rounds
    # (transactions) to what PostgreSQL counts below.
    w = h.start_worker(AS_BATCH_MAX=BATCH, AS_RELAY_INTERVAL_MS=1000)
    wait_until(lambda: w.metric("as_messages_processed_total") == len(good)
               and w.metric("as_messages_deadlettered_total", reason="handler_failed") == len(bad),
               60 * SLOW, what="good probes applied and bad ones dead-lettered")
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NULL") == 0,
               30 * SLOW, what="outbox published")

    want_count = collections.Counter(e.synthetic_probe.probe_id for e in good)
    want_total = collections.Counter()
    for e in good:
        want_total[e.synthetic_probe.probe_id] += e.synthetic_probe.amount_minor
    assert h.counts() == dict(want_count)
    assert dict(h.sql("SELECT probe_id, total_minor FROM probe.probe_state")) == dict(want_total)

    dl = dead_letters(h, h.reader(DLQ_TOPIC))
    assert sorted(d.original_event_id for _, d, _ in dl) == sorted(e.event_id for e in bad)
    assert {d.reason_code for _, d, _ in dl} == {"handler_failed"}
    assert all("23514" in d.detail for _, d, _ in dl), [d.detail for _, d, _ in dl][:3]

    per_culprit = 2 * math.ceil(math.log2(BATCH)) + 2
    bisect_tx = w.metric("as_batch_bisect_transactions_total")
    assert 0 < bisect_tx <= len(bad) * per_culprit, (bisect_tx, len(bad) * per_culprit)
    assert w.metric("as_batch_handler_failures_total") >= len(bad)
    assert w.terminate() == 0, w.tail()
    # What PostgreSQL counted: batches, bisection, relay rounds and the
    # readiness pings of a run of a few seconds; a message-by-message replay
    # adds one transaction per message of every failed batch.
    time.sleep(0.5)
    spent = _db_transactions(h) - before
    assert spent < N // 2, f"{spent} transactions for {N} probes with {len(bad)} bad"
