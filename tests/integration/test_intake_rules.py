"""Intake's validation rules, each with both outcomes, and hostile input.

One intake per test; every request of a test is produced in one go and the
verdicts are read back from aftersales.cases.v1 (RequestRejected with its
reason code, or CaseOpened) and the dead-letter topic. A rejected or
dead-lettered request must leave no row in the shared case tables.
"""
from conftest import (CASES_TOPIC, DLQ_TOPIC, REQUESTS_TOPIC, SLOW, dead_letters, intake_pb, produce_orders, produce_requests, request_envelope,
                      start_intake, wait_case_events, wait_until)
from test_intake import PHOTO, SHA, opened, rejections, setup_order


def verdicts(h, reader, envs, dlq=0, timeout=30):
    """{request_id: reason code or "opened"} once every request has one."""
    ids = {e.aftersales_requested.request_id for e in envs}

    def done(evs):
        seen = set(rejections(evs)) | set(opened(evs))
        return len(ids - seen) <= dlq
    evs = wait_case_events(h, reader, done, timeout=timeout, what="verdicts")
    out = {rid: "opened" for rid in opened(evs)}
    out.update({rid: p.reason_code for rid, p in rejections(evs).items()})
    return out, evs


def case_rows(h, order_id):
    return h.scalar("SELECT count(*) FROM cases.cases WHERE order_id = %s", (order_id,))


def test_each_rule_rejects_with_its_reason_and_accepts_the_valid_twin(h):
    common, _, requests, _ = intake_pb(h)
    start_intake(h)
    order_id, buyer_id = setup_order(h)
    other_order, other_buyer = setup_order(h)
    cancelled, cbuyer = setup_order(h)
    _, orders, _, _ = intake_pb(h)
    c = orders.OrderCancelled(order_id=cancelled, reason="buyer", cancelled_at_us=1)
    produce_orders(h, [("order_cancelled", h.envelope("order_cancelled", c, case_id="",
                                                      order_id=cancelled))])
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND"
                             " cancelled_at_us IS NOT NULL", (cancelled,)), 20 * SLOW)
    reader = h.reader(CASES_TOPIC)
    R = lambda **kw: request_envelope(h, order_id, buyer_id, **kw)  # noqa: E731
    cases = [
        # (request, expected verdict)
        (R(key=""), "missing_field"),
        (R(case_type=0), "missing_field"),
        (R(reason=0), "missing_field"),
        (R(case_type=99), "unknown_enum"),
        (R(reason=77), "unknown_enum"),
        (R(preferred_outcome=42), "unknown_enum"),
        (R(return_method=9), "unknown_enum"),
        (R(case_type=common.CASE_TYPE_COMPLAINT, lines=(), complaint_type=17), "unknown_enum"),
        (R(case_type=common.CASE_TYPE_COMPLAINT, lines=()), "missing_field"),
        (request_envelope(h, other_order, buyer_id), "not_buyers_order"),
        (request_envelope(h, cancelled, cbuyer), "order_cancelled"),
        (R(lines=(("l9", 1),)), "unknown_line"),
        (R(lines=(("l1", 0),)), "invalid_quantity"),
        (R(lines=(("l1", -3),)), "invalid_quantity"),
        (R(lines=(("l1", 3),)), "quantity_exceeded"),
        (R(lines=(("l1", 1), ("l1", 1))), "duplicate_line"),
        (R(lines=()), "missing_field"),
        (R(comment="x" * 2001), "comment_too_long"),
        (R(evidence=[PHOTO] * 10), "too_many_attachments"),
        (R(evidence=[("http://img.example.com/a.jpg", "image/jpeg", 1, SHA)]), "attachment_not_https"),
        (R(evidence=[("https://img.example.com/a.pdf", "application/pdf", 1, SHA)]),
         "attachment_media_type"),
        (R(evidence=[("https://img.example.com/a.jpg", "image/jpeg", 1, SHA.upper())]),
         "attachment_sha256"),
        (R(evidence=[("https://img.example.com/a.jpg", "image/jpeg", 1, "")]), "attachment_sha256"),
        (R(evidence=[("https://img.example.com/a.jpg", "image/jpeg", 0, SHA)]), "attachment_size"),
        (R(submitted_at_us=0), "missing_field"),
        # the valid twins
        (R(lines=(("l2", 1),), comment="x" * 2000, evidence=[PHOTO] * 9), "opened"),
        (request_envelope(h, other_order, other_buyer, lines=(("l1", 2),)), "opened"),
        (request_envelope(h, cancelled, cbuyer, lines=(), case_type=common.CASE_TYPE_COMPLAINT,
                          complaint_type=requests.COMPLAINT_TYPE_OTHER), "opened"),
    ]
    envs = [e for e, _ in cases]
    produce_requests(h, envs)
    got, evs = verdicts(h, reader, envs)
    want = {e.aftersales_requested.request_id: v for e, v in cases}
    assert got == want
    # Rejections are keyed by order id and say it in both languages.
    for k, p, key, _ in evs:
        if k == "request_rejected":
            assert key == p.order_id and p.message_en and p.message_zh
    # Only the valid twins wrote anything.
    assert case_rows(h, order_id) == 1 and case_rows(h, other_order) == 1
    assert h.scalar("SELECT count(*) FROM cases.case_evidence") == 9
    assert h.scalar("SELECT count(*) FROM intake.requests") == 3


def test_quantity_counts_open_and_finished_cases_not_rejected_ones(h):
    start_intake(h)
    order_id, buyer_id = setup_order(h)  # l1: 2 units
    reader = h.reader(CASES_TOPIC)
    first = request_envelope(h, order_id, buyer_id, lines=(("l1", 2),))
    produce_requests(h, [first])
    got, evs = verdicts(h, reader, [first])
    assert got == {first.aftersales_requested.request_id: "opened"}
    case_id = opened(evs)[first.aftersales_requested.request_id][0].case_id
    second = request_envelope(h, order_id, buyer_id, lines=(("l1", 1),))
    produce_requests(h, [second])
    got, _ = verdicts(h, reader, [second])
    assert got[second.aftersales_requested.request_id] == "quantity_exceeded"
    # A finished case still counts; a rejected one frees its units.
    h.sql("UPDATE cases.cases SET state = 'REFUNDED' WHERE case_id = %s", (case_id,))
    third = request_envelope(h, order_id, buyer_id, lines=(("l1", 1),))
    produce_requests(h, [third])
    got, _ = verdicts(h, reader, [third])
    assert got[third.aftersales_requested.request_id] == "quantity_exceeded"
    h.sql("UPDATE cases.cases SET state = 'REJECTED' WHERE case_id = %s", (case_id,))
    fourth = request_envelope(h, order_id, buyer_id, lines=(("l1", 2),))
    produce_requests(h, [fourth])
    got, _ = verdicts(h, reader, [fourth])
    assert got[fourth.aftersales_requested.request_id] == "opened"


def test_unanswerable_requests_are_dead_lettered(h):
    start_intake(h)
    order_id, buyer_id = setup_order(h)
    reader = h.reader(CASES_TOPIC)
    no_request_id = request_envelope(h, order_id, buyer_id, request_id="")
    no_buyer = request_envelope(h, order_id, "")
    bad_buyer = request_envelope(h, order_id, "b'; DROP TABLE cases.cases;--")
    ok = request_envelope(h, order_id, buyer_id)
    produce_requests(h, [no_request_id, no_buyer, bad_buyer, ok])
    got, evs = verdicts(h, reader, [no_request_id, no_buyer, bad_buyer, ok], dlq=3)
    assert got == {ok.aftersales_requested.request_id: "opened"}
    dl = h.reader(DLQ_TOPIC)
    letters = wait_until(lambda: (lambda d: d if len(d) == 3 else None)(dead_letters(h, dl)), 20 * SLOW)
    assert sorted(d.reason_code for _, d, _ in letters) == ["contract_violation"] * 3
    assert {h.decode(d.original).event_id for _, d, _ in letters} == \
        {no_request_id.event_id, no_buyer.event_id, bad_buyer.event_id}
    assert case_rows(h, order_id) == 1
    assert len([e for e in evs if e[0] == "request_rejected"]) == 0


def test_hostile_input(h):
    """SQL metacharacters in every text field, a 1 MB comment, invalid UTF-8,
    negative quantities and unknown enum numbers. A comment that is not UTF-8
    makes the record no valid proto3 message: the runtime dead-letters it as
    invalid_utf8 before intake sees it (test_envelope_strings.py)."""
    start_intake(h)
    order_id, buyer_id = setup_order(h)
    reader = h.reader(CASES_TOPIC)
    meta = "'; DROP TABLE cases.cases; -- \" \\ $1 %s {{schema}} ) ;"
    evil_uri = "https://e.example.com/a'%22;--DROP$1%s{{schema}}\\.jpg"
    # Accepted, stored byte-exact: comment, idempotency key, sku-free lines, uri.
    key = "k'\";--DROP$1%s{{schema}}\\"
    accepted = request_envelope(h, order_id, buyer_id, key=key, comment=meta,
                                evidence=[(evil_uri, "image/png", 10, SHA)])
    # Refused: ids, sku and locale with metacharacters.
    bad_order = request_envelope(h, order_id, buyer_id)
    bad_order.aftersales_requested.order_id = "o'; DROP TABLE intake.orders;--"
    bad_line = request_envelope(h, order_id, buyer_id, lines=(("l1'--", 1),))
    bad_locale = request_envelope(h, order_id, buyer_id, locale="zh'; --")
    bad_sku = request_envelope(h, order_id, buyer_id)
    bad_sku.aftersales_requested.lines[0].sku = "SKU-1'; DELETE FROM cases.case_lines;--"
    negative = request_envelope(h, order_id, buyer_id, lines=(("l1", -2147483648),))
    enum = request_envelope(h, order_id, buyer_id, case_type=2147483647)
    neg_enum = request_envelope(h, order_id, buyer_id, reason=-1)
    too_long = request_envelope(h, order_id, buyer_id, comment="长" * 700)  # 2100 bytes
    # Invalid UTF-8: a placeholder patched in the serialized bytes (same length).
    marker = "QQQQQQQQ"
    inv = request_envelope(h, order_id, buyer_id, comment="ok " + marker)
    inv_bytes = inv.SerializeToString().replace(marker.encode(), b"\xc0\xaf\xed\xa0\x80\xff\xf5!")
    overlong = request_envelope(h, order_id, buyer_id, comment=marker)
    overlong_bytes = overlong.SerializeToString().replace(marker.encode(), b"\xe0\x80\xafabcde")
    truncated = request_envelope(h, order_id, buyer_id, comment="ab" + marker)
    truncated_bytes = truncated.SerializeToString().replace(marker.encode(), b"abcdefg\xe4")
    # A 1 MB (10^6 bytes) comment fits in a message: rejected comment_too_long.
    mb = request_envelope(h, order_id, buyer_id, comment="x" * 999_000)
    # A 1 MiB comment makes the envelope exceed AS_MAX_MESSAGE_BYTES (1 MiB):
    # the runtime dead-letters it as payload_too_large before intake sees it.
    huge = request_envelope(h, order_id, buyer_id, comment="x" * (1 << 20))
    envs = [accepted, bad_order, bad_line, bad_locale, bad_sku, negative, enum, neg_enum, too_long, mb]
    produce_requests(h, envs + [inv_bytes, overlong_bytes, truncated_bytes], key=order_id)
    from confluent_kafka import Producer
    big = Producer({"bootstrap.servers": h.bootstrap, "message.max.bytes": 4 << 20, "log_level": 2})
    big.produce(REQUESTS_TOPIC, key=order_id.encode(), value=huge.SerializeToString())
    assert big.flush(30) == 0
    all_envs = envs + [inv, overlong, truncated, huge]
    got, evs = verdicts(h, reader, all_envs)
    rid = lambda e: e.aftersales_requested.request_id  # noqa: E731
    # The four the runtime dead-letters are answered too, with the dead
    # letter's reason (intake_refused.c).
    assert got == {rid(accepted): "opened", rid(bad_order): "invalid_field",
                   rid(bad_line): "invalid_field", rid(bad_locale): "invalid_field",
                   rid(bad_sku): "unknown_line", rid(negative): "invalid_quantity",
                   rid(enum): "unknown_enum", rid(neg_enum): "unknown_enum",
                   rid(too_long): "comment_too_long", rid(mb): "comment_too_long",
                   rid(inv): "invalid_utf8", rid(overlong): "invalid_utf8",
                   rid(truncated): "invalid_utf8", rid(huge): "payload_too_large"}
    dl = h.reader(DLQ_TOPIC)
    letters = wait_until(lambda: (lambda d: d if len(d) == 4 else None)(dead_letters(h, dl)),
                         20 * SLOW, what="dead letters")
    assert sorted((d.reason_code, d.original_size > (1 << 20)) for _, d, _ in letters) == \
        [("invalid_utf8", False)] * 3 + [("payload_too_large", True)]
    assert sorted(d.detail for _, d, _ in letters if d.reason_code == "invalid_utf8") == \
        ["aftersales_requested.comment: not UTF-8 from offset 0",
         "aftersales_requested.comment: not UTF-8 from offset 3",
         "aftersales_requested.comment: not UTF-8 from offset 9"]
    # The accepted one is stored byte-exact; nothing else was written.
    case_id = opened(evs)[rid(accepted)][0].case_id
    assert h.scalar("SELECT body FROM cases.case_messages WHERE case_id = %s", (case_id,)) == meta
    assert h.scalar("SELECT uri FROM cases.case_evidence WHERE case_id = %s", (case_id,)) == evil_uri
    assert h.scalar("SELECT idempotency_key FROM intake.requests") == key
    assert h.scalar("SELECT count(*) FROM cases.cases") == 1
    assert h.scalar("SELECT count(*) FROM cases.case_lines") == 1
    assert h.scalar("SELECT count(*) FROM intake.orders") == 1
    assert h.scalar("SELECT count(*) FROM intake.held_requests") == 0
    assert opened(evs)[rid(accepted)][0].comment == meta


def test_comment_in_any_script_round_trips_byte_exact(h):
    start_intake(h)
    order_id, buyer_id = setup_order(h, lines=(("l1", "SKU-1", 100, 5),))
    reader = h.reader(CASES_TOPIC)
    texts = [
        "衣服颜色和图片不一样，洗了一次就褪色了。请尽快处理！",
        "Emoji 👩‍👩‍👧‍👦 🇨🇳 👍🏽 ✨ and a variation selector ❤️",
        "עברית: המוצר הגיע שבור — العربية: المنتج وصل تالفًا",
        "mixed\u200f RTL mark, combining e\u0301, NFC é, tabs\tand\nnewlines\r\n",
        "𠀀𪚥 (astral CJK) ﷽ ꧁꧂",
    ]
    envs = [request_envelope(h, order_id, buyer_id, comment=t) for t in texts]
    produce_requests(h, envs)
    got, evs = verdicts(h, reader, envs)
    assert set(got.values()) == {"opened"}
    op = opened(evs)
    for e, t in zip(envs, texts):
        p, _ = op[e.aftersales_requested.request_id]
        assert p.comment.encode() == t.encode()
        raw = h.scalar("SELECT convert_to(body, 'UTF8') FROM cases.case_messages WHERE case_id = %s",
                       (p.case_id,))
        assert bytes(raw) == t.encode()
