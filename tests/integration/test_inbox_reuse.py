"""Same event id, other payload: not a redelivery.

The inbox keeps the SHA-256 of each record's value with its event id. A
record that reuses a known id with other bytes is dead-lettered as
event_id_reused and counted; a true redelivery (the same bytes) stays a
silent no-op counted as a duplicate; the records after them are processed.
Both ways a reuse can meet its first: in one batch (produced before the
worker starts), and across batches (the first already committed).
"""
import hashlib
import uuid

from conftest import (DLQ_TOPIC, ORDERS_TOPIC, SLOW, dead_letters, order_events, start_intake,
                      wait_until)

PART = 2


def test_probe_reused_id_dead_lettered_redelivery_skipped(h):
    key = f"ru-{uuid.uuid4().hex[:6]}"
    first = h.probe_envelope(key, 1, amount=100)
    other = h.probe_envelope(key, 2, amount=5000, event_id=first.event_id)  # same id, other bytes
    good = h.probe_envelope(key, 3, amount=7)
    at = h.produce_many([(key, first.SerializeToString(), PART),
                         (key, other.SerializeToString(), PART),
                         (key, first.SerializeToString(), PART),  # a true redelivery
                         (key, good.SerializeToString(), PART)])
    w = h.start_worker()
    wait_until(lambda: h.counts().get(key) == 2, 30 * SLOW, what="first and good probes applied")
    dl = h.reader(DLQ_TOPIC)
    letters = wait_until(lambda: dead_letters(h, dl), 20 * SLOW, what="dead letter")
    assert [(d.reason_code, d.source_offset, d.original_event_id) for _, d, _ in letters] == \
        [("event_id_reused", at[1][1], first.event_id)]
    assert letters[0][1].original == other.SerializeToString()
    assert "event id taken by other content" in letters[0][1].detail

    # Across batches: the first is committed; a reuse and a redelivery later.
    again = h.probe_envelope(key, 4, amount=9, event_id=good.event_id)
    h.produce_many([(key, again.SerializeToString(), PART), (key, good.SerializeToString(), PART)])
    letters = wait_until(lambda: (lambda d: d if len(d) == 2 else None)(dead_letters(h, dl)),
                         20 * SLOW, what="second dead letter")
    assert letters[1][1].reason_code == "event_id_reused"
    assert letters[1][1].original == again.SerializeToString()
    wait_until(lambda: w.metric("as_messages_duplicate_total") == 2, 20 * SLOW,
               what="both redeliveries counted")
    assert h.scalar("SELECT total_minor FROM probe.probe_state WHERE probe_id = %s", (key,)) == 107
    assert w.metric("as_messages_deadlettered_total", reason="event_id_reused") == 2
    assert w.metric("as_messages_processed_total") == 2
    # The inbox holds each id once, with the hash of the first record's bytes.
    assert bytes(h.scalar("SELECT payload_hash FROM probe.inbox WHERE event_id = %s",
                          (first.event_id,))) == hashlib.sha256(first.SerializeToString()).digest()


def test_intake_order_event_reusing_an_id_is_not_taken_for_a_redelivery(h):
    """The issue's case: a second OrderPlaced under a known id with other
    content used to vanish as a duplicate."""
    w = start_intake(h)
    tag = uuid.uuid4().hex[:8]
    placed = order_events(h, f"o-1{tag}", "b-1", [("l1", "SKU-1", 100, 1)])[0][1]
    h.produce_many([(placed.order_id, placed.SerializeToString(), 0)], topic=ORDERS_TOPIC)
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s", (placed.order_id,)),
               20 * SLOW, what="first order projected")
    reused = order_events(h, f"o-2{tag}", "b-2", [("l1", "SKU-9", 999, 3)])[0][1]
    reused.event_id = placed.event_id
    good = order_events(h, f"o-3{tag}", "b-3", [("l1", "SKU-1", 100, 1)])[0][1]
    h.produce_many([(reused.order_id, reused.SerializeToString(), 0),
                    (placed.order_id, placed.SerializeToString(), 0),
                    (good.order_id, good.SerializeToString(), 0)], topic=ORDERS_TOPIC)
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s", (good.order_id,)),
               20 * SLOW, what="good order projected")
    letters = wait_until(lambda: dead_letters(h, h.reader(DLQ_TOPIC)), 20 * SLOW, what="dead letter")
    assert [(d.reason_code, d.original_event_type) for _, d, _ in letters] == \
        [("event_id_reused", "OrderPlaced")]
    assert h.scalar("SELECT count(*) FROM intake.orders WHERE order_id = %s", (reused.order_id,)) == 0
    assert w.metric("as_messages_deadlettered_total", reason="event_id_reused") == 1
    assert w.metric("as_messages_duplicate_total") == 1
