"""Poison messages are dead-lettered, one by one, and never block a partition.

On one partition (all records share one key) the test sends, between good
probes: random bytes (decode_failed), an Envelope carrying OrderPlaced
(unexpected_payload), a 4 KiB envelope over AS_MAX_MESSAGE_BYTES=2048
(payload_too_large, original cut at AS_DLQ_MAX_BYTES with original_size
recorded), an envelope with a bad event id (invalid_envelope), a negative
amount (contract_violation) and an amount that breaks the table's CHECK
(handler_failed: the batch is rolled back and bisected down to the culprit).
Each lands on aftersales.deadletter.v1 once, as a decodable Envelope whose
DeadLetter names the right reason, source topic/partition/offset, key and
original bytes; the good probes produced after them on the same partition
are applied, once.
"""
import os
import re
import subprocess
import uuid

from conftest import (DLQ_TOPIC, ECHO_TOPIC, PROBE_TOPIC, ROOT, SLOW, dead_letters, echo_events,
                      wait_until)

PART = 3
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _poison(h, key):
    """[(reason, value)] in the order they are produced."""
    junk = b"\x0f" + os.urandom(63)  # field 1 with wire type 7: never valid protobuf
    order = h.envelope("order_placed", h.pb.OrderPlaced(), case_id="c-order")
    big = h.probe_envelope(key, 900, amount=1, note="x" * 4000)
    bad_id = h.probe_envelope(key, 901, amount=1, event_id="not-a-uuid")
    negative = h.probe_envelope(key, 902, amount=-5)
    too_much = h.probe_envelope(key, 903, amount=2_000_000_000_000)
    return [("decode_failed", junk, None),
            ("unexpected_payload", order.SerializeToString(), order),
            ("payload_too_large", big.SerializeToString(), big),
            ("invalid_envelope", bad_id.SerializeToString(), None),
            ("contract_violation", negative.SerializeToString(), negative),
            ("handler_failed", too_much.SerializeToString(), too_much)]


def test_poison_messages_dead_lettered_and_partition_moves_on(h):
    key = f"dlq-{uuid.uuid4().hex[:6]}"
    good = [h.probe_envelope(key, s, amount=100 + s) for s in range(3)]
    later = [h.probe_envelope(key, s, amount=100 + s) for s in range(3, 6)]
    poison = _poison(h, key)
    records = [(key, g.SerializeToString(), PART) for g in good]
    records += [(key, value, PART) for _, value, _ in poison]
    records += [(key, g.SerializeToString(), PART) for g in later]
    at = h.produce_many(records)
    poison_at = at[len(good):len(good) + len(poison)]
    assert all(p == PART for p, _ in at)

    w = h.start_worker(AS_MAX_MESSAGE_BYTES=2048, AS_DLQ_MAX_BYTES=3000)
    applied = good + later
    wait_until(lambda: h.counts().get(key) == len(applied), 40 * SLOW,
               what="good probes after the poison applied")
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NULL") == 0
               and h.scalar("SELECT count(*) FROM probe.outbox") == len(applied) + len(poison),
               30 * SLOW, what="dead letters and echoes published")
    assert h.scalar("SELECT total_minor FROM probe.probe_state WHERE probe_id = %s", (key,)) == \
        sum(e.synthetic_probe.amount_minor for e in applied)
    assert w.logged("batch failed; bisecting it")

    dl = dead_letters(h, h.reader(DLQ_TOPIC))
    by_reason = {}
    for env, d, m in dl:
        assert d.reason_code not in by_reason, f"{d.reason_code} dead-lettered twice"
        by_reason[d.reason_code] = (env, d, m)
    assert set(by_reason) == {r for r, _, _ in poison}

    for (reason, value, orig_env), (part, off) in zip(poison, poison_at):
        env, d, m = by_reason[reason]
        # The dead letter's own envelope obeys the contract.
        assert UUID_RE.match(env.event_id), env.event_id
        assert env.event_type == "DeadLetter"
        assert env.schema_version == 1
        assert env.producer.service == "probe" and env.producer.instance == w.name
        assert 946684800_000_000 < env.occurred_at_us < 7258118400_000_000
        assert re.fullmatch(r"[0-9a-f]{32}", env.trace_id), env.trace_id
        assert m.key() == PROBE_TOPIC.encode()  # key: the source topic
        # The DeadLetter says where it came from and what it was.
        assert d.detail, reason
        assert d.source_topic == PROBE_TOPIC
        assert (d.source_partition, d.source_offset) == (part, off), reason
        assert d.source_key == key.encode()
        assert d.consumer_group == h.group
        assert d.failed_at_us > 0
        assert d.original_size == len(value)
        if reason == "payload_too_large":
            assert len(value) > 4000
            assert d.original == value[:3000]
        else:
            assert d.original == value, reason
        if orig_env is not None and reason != "payload_too_large":
            assert d.original_event_id == orig_env.event_id, reason
            assert d.original_event_type == orig_env.event_type, reason
            assert env.causation_id == orig_env.event_id
            assert env.trace_id == orig_env.trace_id
    assert by_reason["unexpected_payload"][1].original_event_type == "OrderPlaced"

    # Only the good probes were echoed; metrics agree.
    echoed = sorted(e.seq for _, e, _ in echo_events(h, h.reader(ECHO_TOPIC)))
    assert echoed == [e.synthetic_probe.seq for e in applied]
    for reason, _, _ in poison:
        assert w.metric("as_messages_deadlettered_total", reason=reason) == 1, reason
    assert w.metric("as_messages_processed_total") == len(applied)


def test_protoc_decodes_echo_and_dead_letter_from_kafka(h):
    """An independent reader, Google's protoc, decodes what the C worker wrote."""
    key = f"pd-{uuid.uuid4().hex[:6]}"
    probe = h.probe_envelope(key, 7, amount=42)
    h.produce_many([(key, probe.SerializeToString(), 0), (key, b"\x0fnot protobuf", 0)])
    h.start_worker()
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NOT NULL") == 2,
               30 * SLOW, what="echo and dead letter published")
    echo = h.reader(ECHO_TOPIC).drain()
    dlq = h.reader(DLQ_TOPIC).drain()
    assert len(echo) == 1 and len(dlq) == 1

    def decode(value):
        r = subprocess.run(["protoc", "--decode=aftersales.v1.Envelope", "-Iproto",
                            "proto/envelope.proto"], cwd=ROOT, input=value, capture_output=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode()

    text = decode(echo[0].value())
    assert 'event_type: "ProbeEchoed"' in text
    assert "schema_version: 1" in text
    assert f'case_id: "{probe.case_id}"' in text
    assert f'causation_id: "{probe.event_id}"' in text
    assert f'trace_id: "{probe.trace_id}"' in text
    assert 'service: "probe"' in text
    assert "probe_echoed {" in text
    assert f'probe_id: "{key}"' in text
    assert "seq: 7" in text and "count: 1" in text and "total_minor: 42" in text

    text = decode(dlq[0].value())
    assert 'event_type: "DeadLetter"' in text
    assert "dead_letter {" in text
    assert 'reason_code: "decode_failed"' in text
    assert f'source_topic: "{PROBE_TOPIC}"' in text
    assert "source_partition" not in text or "source_partition: 0" in text
    assert 'source_offset: 1' in text
    assert f'source_key: "{key}"' in text
    assert 'original: "\\017not protobuf"' in text
    assert "original_size: 13" in text
