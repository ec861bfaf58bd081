"""Strings that are not what they seem: NUL bytes and invalid UTF-8, refused
centrally by the envelope decoder for every worker.

protobuf-c hands strings over NUL-terminated and checks neither NUL nor
UTF-8, so before the check two OrderPlaced whose event ids were
"<uuid>\\0a" and "<uuid>\\0b" collapsed into one (the second skipped as a
redelivery), an order id "o-x\\0evil" was stored as "o-x", a comment was
stored cut at its NUL, and an invalid UTF-8 CaseOpened.order.region failed
review's batch in PostgreSQL. Each record here is real protobuf bytes from
Python with the hostile bytes patched in (same length, so every length
prefix stays right); each must be dead-lettered as string_nul or
invalid_utf8 naming the field path, counted on /metrics, and the good
records after it on the same partition processed.
"""
import time
import uuid

import pytest

from conftest import (CASES_TOPIC, DLQ_TOPIC, ORDERS_TOPIC, REQUESTS_TOPIC, SLOW, case_events,
                      order_events, request_envelope, start_intake, wait_until)
from review_helpers import insert_case_rows, new_case, start_review, wait_dead


def patched(env, marker, hostile):
    """env's bytes with every occurrence of marker replaced by hostile."""
    assert len(marker) == len(hostile)
    value = env.SerializeToString()
    assert marker in value
    return value.replace(marker, hostile)


def letters(h, reader, n):
    """[(reason, detail)] of the dead letters, sorted, once n are there."""
    got = wait_dead(h, reader, n, timeout=30)
    assert len(got) == n, [(d.reason_code, d.detail) for _, d, _ in got]
    return sorted((d.reason_code, d.detail) for _, d, _ in got)


def test_intake_refuses_nul_and_bad_utf8_and_moves_on(h):
    w = start_intake(h)
    tag = uuid.uuid4().hex[:8]
    base = str(uuid.uuid4())
    # Two different orders whose event ids differ only after a NUL.
    a = order_events(h, f"o-a{tag}", "b-1", [("l1", "SKU-1", 100, 1)])[0][1]
    b = order_events(h, f"o-b{tag}", "b-1", [("l1", "SKU-1", 100, 1)])[0][1]
    a.event_id, b.event_id = base + "#a", base + "#b"
    # An order id with a NUL, in the envelope and the payload alike.
    evil = order_events(h, "o-x#evil", "b-1", [("l1", "SKU-1", 100, 1)])[0][1]
    # A region that is not UTF-8 (an overlong '/').
    region = order_events(h, f"o-r{tag}", "b-1", [("l1", "SKU-1", 100, 1)])[0][1]
    region.order_placed.region = "CN-##"
    good = order_events(h, f"o-g{tag}", "b-1", [("l1", "SKU-1", 100, 1)])
    records = [(a.order_id, patched(a, b"#a", b"\0a"), 0),
               (b.order_id, patched(b, b"#b", b"\0b"), 0),
               ("o-x", patched(evil, b"o-x#evil", b"o-x\0evil"), 0),
               (region.order_id, patched(region, b"CN-##", b"CN-\xc0\xaf"), 0)]
    records += [(e.order_id, e.SerializeToString(), 0) for _, e in good]
    h.produce_many(records, topic=ORDERS_TOPIC)
    # A request whose comment hides text behind a NUL, on the requests topic.
    req = request_envelope(h, f"o-g{tag}", "b-1", comment="fine#hidden")
    h.produce_many([(req.order_id, patched(req, b"fine#hidden", b"fine\0hidden"), 0)],
                   topic=REQUESTS_TOPIC)

    got = letters(h, h.reader(DLQ_TOPIC), 5)
    assert got == sorted([
        ("string_nul", "event_id: NUL byte at offset 36"),
        ("string_nul", "event_id: NUL byte at offset 36"),
        ("string_nul", "order_id: NUL byte at offset 3"),
        ("invalid_utf8", "order_placed.region: not UTF-8 from offset 3"),
        ("string_nul", "aftersales_requested.comment: NUL byte at offset 4"),
    ])
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND delivered_at_us"
                             " IS NOT NULL", (f"o-g{tag}",)), 20 * SLOW, what="good order projected")
    # Nothing of the hostile records was stored, under any truncated id.
    assert h.scalar("SELECT array_agg(order_id ORDER BY order_id) FROM intake.orders") == \
        [f"o-g{tag}"]
    assert h.scalar("SELECT count(*) FROM intake.inbox WHERE event_id = %s", (base,)) == 0
    assert h.scalar("SELECT count(*) FROM cases.case_messages") == 0
    assert w.metric("as_messages_deadlettered_total", reason="string_nul") == 4
    assert w.metric("as_messages_deadlettered_total", reason="invalid_utf8") == 1
    assert w.metric("as_messages_duplicate_total") == 0


@pytest.mark.invariants_exempt("the refused cases' shared rows are crafted without intake's pickup"
                               " deadline", checks=("deadlines",))
def test_review_refuses_bad_utf8_region_before_the_database(h):
    """An invalid UTF-8 CaseOpened.order.region used to reach PostgreSQL and
    fail the batch there (handler_failed after a replay one by one)."""
    w = start_review(h)
    bad = new_case(h, region="CN-##")
    nul = new_case(h)
    nul.case_opened.case_lines[0].sku = "SKU#1"
    good = new_case(h)
    insert_case_rows(h, [bad, nul, good])
    h.produce_many([(bad.case_id, patched(bad, b"CN-##", b"CN-\xed\xa0"), 0),
                    (nul.case_id, patched(nul, b"SKU#1", b"SKU\x001"), 0),
                    (good.case_id, good.SerializeToString(), 0)], topic=CASES_TOPIC)
    got = letters(h, h.reader(DLQ_TOPIC), 2)
    assert got == [("invalid_utf8", "case_opened.order.region: not UTF-8 from offset 3"),
                   ("string_nul", "case_opened.case_lines[0].sku: NUL byte at offset 3")]
    wait_until(lambda: h.scalar("SELECT state FROM cases.cases WHERE case_id = %s",
                                (good.case_id,)) != "OPEN", 30 * SLOW, what="good case decided")
    assert not w.logged("batch failed; replaying it message by message")
    assert w.metric("as_messages_deadlettered_total", reason="invalid_utf8") == 1
    assert w.metric("as_messages_deadlettered_total", reason="string_nul") == 1
    assert w.metric("as_messages_deadlettered_total", reason="handler_failed") == 0


def test_intake_answers_a_request_it_refused_for_its_bytes(h):
    """Every request is owed one answer: one refused for a NUL or invalid
    UTF-8 in any string used to be dead-lettered only, and the buyer's
    storefront waited for an answer that never came. Now it gets a
    RequestRejected with the dead letter's reason and the field at fault,
    once however often it is sent, unless the fields that say whom it
    answers are the ones at fault (an id cut at a NUL would answer another
    request)."""
    w = start_intake(h)
    tag = uuid.uuid4().hex[:8]
    cases = h.reader(CASES_TOPIC)
    nul = request_envelope(h, f"o-{tag}", "b-1", comment="fine#hidden")
    utf = request_envelope(h, f"o-{tag}", "b-1", comment="bad##")
    cut_id = request_envelope(h, f"o-{tag}", "b-1", comment="ok")
    cut_id.aftersales_requested.request_id = f"r-{tag}#x"
    cut_buyer = request_envelope(h, f"o-{tag}", "b-1#x", comment="ok")
    records = [(nul.order_id, patched(nul, b"fine#hidden", b"fine\0hidden"), 0),
               (utf.order_id, patched(utf, b"bad##", b"bad\xc0\xaf"), 0),
               (cut_id.order_id, patched(cut_id, f"r-{tag}#x".encode(), f"r-{tag}\0x".encode()), 0),
               (cut_buyer.order_id, patched(cut_buyer, b"b-1#x", b"b-1\0x"), 0)]
    # The same refused bytes again (a resend: the runtime cannot dedupe what
    # it cannot read, the answers table does).
    records.append(records[0])
    h.produce_many(records, topic=REQUESTS_TOPIC)
    letters(h, h.reader(DLQ_TOPIC), 5)

    def rejected():
        evs = [p for k, p, _, _ in case_events(h, cases) if k == "request_rejected"]
        return evs if len(evs) >= 2 else None
    got = wait_until(rejected, 20 * SLOW, what="answers to the refused requests")
    time.sleep(1 * SLOW)  # a second answer, or one for the cut ids, would be here by now
    got = [p for k, p, _, _ in case_events(h, cases) if k == "request_rejected"]
    assert sorted((p.request_id, p.reason_code, p.message_en) for p in got) == sorted([
        (nul.aftersales_requested.request_id, "string_nul", "a text field contains a NUL byte: comment"),
        (utf.aftersales_requested.request_id, "invalid_utf8", "a text field is not valid UTF-8: comment"),
    ])
    assert all(p.buyer_id == "b-1" and p.order_id == f"o-{tag}" for p in got)
    assert w.metric("as_intake_rejected_total", reason="string_nul") == 1
    assert w.metric("as_intake_requests_repeated_total") == 1
