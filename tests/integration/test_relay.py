"""The outbox relay never stalls silently (issue 10, items 1, 3 and 4).

Through the topics, the database and the probes, like a user's client:
  - settings that would make rows the producer refuses are refused at start;
  - a row the producer refuses for good is parked (marked, counted,
    dead-lettered as outbox_row_refused) and the rows after it go out; a
    batch the broker refuses is resent row by row until the row refused
    alone is found, and only that one is parked;
  - /healthz fails with a JSON reason when the relay has rows due but
    publishes none, or a batch is in hand but none completes, for
    AS_WATCHDOG_MS;
  - a failed delivery does not let a later event of the same key reach the
    topic before the resent one (the mock cluster refuses one Produce
    request: as-broker --faults);
  - a fatal idempotent-producer error (the mock answers a Produce with
    OUT_OF_ORDER_SEQUENCE_NUMBER) makes the relay build a new producer, and
    nothing is lost or reordered.
"""
import json
import os
import uuid

from conftest import (DLQ_TOPIC, ECHO_TOPIC, SLOW, dead_letters, echo_events, random_ids,
                      wait_until)

POLICY_VIOLATION = 44  # not retriable, not a topic error: librdkafka fails the batch
MESSAGE_TOO_LARGE = 10  # a permanent refusal: gapless makes it a fatal producer error
OUT_OF_ORDER_SEQUENCE_NUMBER = 45  # on the first batch in flight: a fatal idempotence error


def _healthz(w):
    status, body = w.http("/healthz")
    return status, json.loads(body)


def _echo_seqs(h, reader, probe_id):
    """The seqs echoed for probe_id, in topic order, first occurrence only
    (consumers dedupe by event id: the first copy is the one applied)."""
    seen, out = set(), []
    for eid, e, _ in echo_events(h, reader):
        if e.probe_id == probe_id and eid not in seen:
            seen.add(eid)
            out.append(e.seq)
    return out


def test_dead_letters_that_cannot_fit_the_producer_refuse_to_start(h):
    # The README's documented pair: a 1.5 MB poison message would dead-letter
    # into a 2 MB row that message.max.bytes (1,000,000) never lets out.
    w = h.start_worker(ready=False, AS_DLQ_MAX_BYTES=2000000, AS_MAX_MESSAGE_BYTES=4000000)
    assert w.wait_exit(20) == 2, w.tail()
    bad = [r for r in w.lines() if r.get("msg") == "bad configuration"]
    assert bad and "AS_DLQ_MAX_BYTES" in bad[0]["detail"], w.tail()
    assert "message.max.bytes" in bad[0]["detail"], bad[0]
    # Raising the producer's limit with it is a consistent pair.
    ok = h.start_worker(AS_DLQ_MAX_BYTES=2000000, AS_MAX_MESSAGE_BYTES=4000000,
                        AS_RDKAFKA_PRODUCER_MESSAGE_MAX_BYTES=3000000)
    assert ok.ready()


def test_a_row_the_producer_refuses_is_parked_and_the_rest_go_out(h):
    w = h.start_worker(AS_DLQ_MAX_BYTES=4096)
    echoes, dlq = h.reader(ECHO_TOPIC), h.reader(DLQ_TOPIC)
    # A row too large for message.max.bytes, as an older build or another
    # tool could have committed it.
    poison_id = str(uuid.uuid4())
    h.sql("INSERT INTO probe.outbox (event_id, topic, msg_key, payload) VALUES (%s, %s, %s, %s)",
          (poison_id, ECHO_TOPIC, "c-poison", os.urandom(1_500_000)))
    pid = random_ids(1)[0]
    for seq in range(1, 6):
        h.produce_probe(pid, seq)
    wait_until(lambda: len(_echo_seqs(h, echoes, pid)) == 5, 30 * SLOW, what="5 echoes after the poison row")
    assert _echo_seqs(h, echoes, pid) == [1, 2, 3, 4, 5]
    row = h.sql("SELECT sent_at IS NOT NULL, parked_at IS NOT NULL, park_reason FROM probe.outbox"
                " WHERE event_id = %s", (poison_id,))
    assert row[0][:2] == (True, True) and "MSG_SIZE_TOO_LARGE" in row[0][2], row
    wait_until(lambda: dead_letters(h, dlq), 20 * SLOW, what="the parked row's dead letter")
    (env, dl, m), = dead_letters(h, dlq)
    assert dl.reason_code == "outbox_row_refused", dl
    assert "MSG_SIZE_TOO_LARGE" in dl.detail
    assert dl.original_event_id == poison_id and dl.original_size == 1_500_000
    assert len(dl.original) == 4096 and dl.source_topic == ECHO_TOPIC
    assert dl.source_key == b"c-poison" and dl.source_offset == -1
    root = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")  # README, Identifiers
    assert env.event_id == str(uuid.uuid5(uuid.uuid5(root, "aftersales.deadletter"),
                                          f"outbox|probe|{poison_id}"))
    assert len(m.value()) < 8192
    assert w.metric("as_outbox_parked_total") == 1
    assert _healthz(w)[0] == 200
    assert w.logged("outbox row parked: the producer refuses it")


# The mock cluster fails the next Produce requests of any client: the
# fault tests produce their input first, then arm the fault, then start the
# worker, so that only its relay meets it.

def test_healthz_fails_when_the_relay_publishes_nothing(h):
    pid = random_ids(1)[0]
    h.produce_probe(pid, 1)
    # Every Produce request fails for a minute (retriable: librdkafka keeps
    # retrying, nothing is published): the relay is wedged with rows due.
    h.broker.fail_produce(*[19] * 600)  # NOT_ENOUGH_REPLICAS
    w = h.start_worker(AS_WATCHDOG_MS=2000)
    wait_until(lambda: h.counts().get(pid) == 1, 20 * SLOW, what="the probe applied")
    status, body = wait_until(lambda: (lambda s: s if s[0] == 503 else None)(_healthz(w)),
                              20 * SLOW, what="/healthz 503")
    assert body["status"] == "stalled" and body["reason"] == "relay", body
    assert body["watchdog_ms"] == 2000 and "published" in body["detail"]
    assert w.logged("watchdog: worker stalled")


def test_healthz_fails_when_no_batch_completes(h):
    w = h.start_worker(AS_WATCHDOG_MS=2000)
    echoes = h.reader(ECHO_TOPIC)
    pid = random_ids(1)[0]
    h.produce_probe(pid, 1)
    wait_until(lambda: _echo_seqs(h, echoes, pid) == [1], 20 * SLOW, what="first echo")
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NULL") == 0,
               10 * SLOW, what="the relay caught up")
    # The database stops taking this worker's connections: the batch in
    # hand is retried for ever (not ready, and after the watchdog not alive).
    admin = h.pg.connect()
    admin.cursor().execute(f"ALTER DATABASE {h.dbname} ALLOW_CONNECTIONS false")
    try:
        admin.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE datname = %s", (h.dbname,))
        h.produce_probe(pid, 2)
        # The relay, cut off too, may be named first; once the batch has
        # been stuck as long, the batch is (the cause).
        status, body = wait_until(
            lambda: (lambda s: s if s[0] == 503 and s[1]["reason"] == "batch" else None)(_healthz(w)),
            20 * SLOW, what="/healthz 503 naming the batch")
        assert body["status"] == "stalled" and "batch in hand" in body["detail"], body
    finally:
        admin.cursor().execute(f"ALTER DATABASE {h.dbname} ALLOW_CONNECTIONS true")
        admin.close()
    wait_until(lambda: h.counts().get(pid) == 2, 30 * SLOW, what="the batch applied once the database is back")
    wait_until(lambda: _healthz(w)[0] == 200, 10 * SLOW, what="/healthz 200 again")


def _stream(h, pid, first, n):
    """Probes first..first+n-1 of one key (one partition, in order)."""
    h.produce_many([(pid, h.probe_envelope(pid, s).SerializeToString(), None)
                    for s in range(first, first + n)])


def _outbox_echoes(h, pid, seqs):
    """Commits ProbeEchoed rows for pid straight into the outbox, in one
    transaction, as if the worker had decided them."""
    rows = []
    for seq in seqs:
        e = h.pb.ProbeEchoed(probe_id=pid, seq=seq)
        env = h.envelope("probe_echoed", e, case_id=f"c-{pid}")
        rows.append((env.event_id, ECHO_TOPIC, pid, env.SerializeToString()))
    args = ",".join(["(%s, %s, %s, %s)"] * len(rows))
    h.sql(f"INSERT INTO probe.outbox (event_id, topic, msg_key, payload) VALUES {args}",
          [v for r in rows for v in r])


def test_a_failed_delivery_does_not_let_a_later_event_of_the_key_overtake_it(h):
    # A slow broker and 10 messages a request: when the first request is
    # refused for good, later rows of the key are in flight or queued, and
    # an idempotent producer left to itself bumps its epoch and sends them
    # at once, ahead of any resend.
    h.broker.fail_produce(POLICY_VIOLATION, rtt_ms=100)
    w = h.start_worker(AS_RELAY_BATCH=50,
                       AS_RDKAFKA_PRODUCER_BATCH_NUM_MESSAGES=10)
    echoes = h.reader(ECHO_TOPIC)
    pid = random_ids(1)[0]
    _outbox_echoes(h, pid, range(1, 201))
    wait_until(lambda: len(_echo_seqs(h, echoes, pid)) == 200, 60 * SLOW, what="200 echoes")
    seqs = _echo_seqs(h, echoes, pid)
    assert seqs == sorted(seqs), [s for i, s in enumerate(seqs[1:]) if s < seqs[i]][:10]
    assert w.metric("as_outbox_failed_total") >= 1


def test_a_batch_the_broker_refuses_for_good_parks_only_the_row_refused_alone(h):
    # The broker refuses the first batch as too large, then the row resent
    # alone: that row is parked; the rest of the batch goes out, in order.
    h.broker.fail_produce(MESSAGE_TOO_LARGE, MESSAGE_TOO_LARGE, rtt_ms=20)
    w = h.start_worker(AS_RELAY_BATCH=50, AS_RDKAFKA_PRODUCER_BATCH_NUM_MESSAGES=10,
                       AS_DLQ_MAX_BYTES=64)
    echoes, dlq = h.reader(ECHO_TOPIC), h.reader(DLQ_TOPIC)
    pid = random_ids(1)[0]
    _outbox_echoes(h, pid, range(1, 101))
    wait_until(lambda: len(_echo_seqs(h, echoes, pid)) == 99, 60 * SLOW, what="99 echoes")
    assert _echo_seqs(h, echoes, pid) == list(range(2, 101))
    parked = h.sql("SELECT park_reason FROM probe.outbox WHERE parked_at IS NOT NULL")
    assert len(parked) == 1 and parked[0][0].startswith("MSG_SIZE_TOO_LARGE"), parked
    wait_until(lambda: dead_letters(h, dlq), 20 * SLOW, what="the parked row's dead letter")
    (env, dl, _), = dead_letters(h, dlq)
    assert dl.reason_code == "outbox_row_refused" and len(dl.original) == 64
    assert w.metric("as_outbox_parked_total") == 1
    assert w.metric("as_relay_producer_restarts_total") >= 1


def test_a_fatal_producer_error_gets_a_new_producer_and_loses_nothing(h):
    pid = random_ids(1)[0]
    _stream(h, pid, 1, 220)
    h.broker.fail_produce(OUT_OF_ORDER_SEQUENCE_NUMBER)
    w = h.start_worker()
    echoes = h.reader(ECHO_TOPIC)
    wait_until(lambda: len(_echo_seqs(h, echoes, pid)) == 220, 60 * SLOW, what="220 echoes")
    assert _echo_seqs(h, echoes, pid) == list(range(1, 221))
    assert w.metric("as_relay_producer_restarts_total") >= 1
    assert w.logged("producer recreated after a fatal error")
    assert _healthz(w)[0] == 200
