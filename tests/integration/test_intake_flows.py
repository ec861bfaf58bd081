"""Intake flows across time and instances: the order projection converging
whatever the event order, held requests (order late, order never), the
duplicate-request flood over three instances, and follow-ups on a case."""
import random
import uuid

from conftest import (CASES_TOPIC, DLQ_TOPIC, PARTITIONS, SLOW, case_events, dead_letters, intake_pb,
                      order_events, produce_orders, produce_requests, request_envelope,
                      start_intake, wait_case_events, wait_until)
from test_intake import PHOTO, SHA, new_ids, opened, rejections, setup_order

INTAKE_PARTITIONS = sum(PARTITIONS[t] for t in ("aftersales.orders.v1", "aftersales.requests.v1",
                                                "aftersales.inspection.v1"))

PROJECTION = ("SELECT o.buyer_id, o.merchant_id, o.region, o.shipping_fee_minor, o.placed_at_us,"
              " o.amount_paid_minor, o.paid_currency, o.payment_method, replace(o.payment_ref, o.order_id, ''), o.paid_at_us,"
              " o.delivered_at_us, o.cancelled_at_us,"
              " (SELECT array_agg(row(l.line_id, l.sku, l.unit_minor, l.currency, l.quantity)::text"
              "  ORDER BY l.line_id) FROM intake.order_lines l WHERE l.order_id = o.order_id),"
              " (SELECT array_agg(row(s.shipment_id, s.carrier,"
              "  replace(s.tracking_number, right(o.order_id, 8), ''), s.shipped_at_us,"
              "  s.delivered_at_us)::text) FROM intake.shipments s WHERE s.order_id = o.order_id)"
              " FROM intake.orders o WHERE o.order_id = %s")


def test_projection_converges_whatever_the_order(h):
    start_intake(h)
    lines = [("l1", "SKU-1", 1999, 2), ("l2", "SKU-2", 500, 1)]
    tag = uuid.uuid4().hex[:6]
    orders = [f"o-{tag}-{i}" for i in range(6)]
    rng = random.Random(7)
    t0 = 1_700_000_000_000_000
    records = []
    for i, oid in enumerate(orders):
        evs = order_events(h, oid, "b-" + tag, lines, t0=t0)
        # Every order gets the same events; orders 1.. get them shuffled and
        # partly repeated, some on other partitions than their key's.
        if i > 0:
            evs = evs + rng.sample(evs, 2)
            rng.shuffle(evs)
        for _, e in evs:
            e.order_id = oid
            records.append((oid, e.SerializeToString(), rng.randrange(12) if i % 2 else None))
    h.produce_many(records, topic="aftersales.orders.v1")
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.orders WHERE placed_at_us IS NOT NULL"
                                " AND delivered_at_us IS NOT NULL AND paid_at_us IS NOT NULL") == 6,
               20 * SLOW, what="orders projected")
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.shipments WHERE shipped_at_us IS NOT NULL"
                                " AND delivered_at_us IS NOT NULL") == 6, 20 * SLOW)
    rows = [h.sql(PROJECTION, (oid,))[0] for oid in orders]
    assert all(r == rows[0] for r in rows), rows
    r = rows[0]
    assert r[:5] == ("b-" + tag, "m-1", "CN-31", 800, t0)
    assert r[5:10] == (1999 * 2 + 500 + 800, "CNY", 2, "pay-", t0 + 1000)
    assert r[10] == t0 + 3000 and r[11] is None
    assert r[12] == ["(l1,SKU-1,1999,CNY,2)", "(l2,SKU-2,500,CNY,1)"]
    assert r[13] == [f"(s-1,SF,SF,{t0 + 2000},{t0 + 3000})"]
    # An older OrderPlaced arriving late does not overwrite the newer one;
    # a Paid before its Placed creates the row with only payment columns.
    _, o, _, _ = intake_pb(h)
    stale = o.OrderPlaced(order_id=orders[0], buyer_id="someone-else", placed_at_us=t0 - 1)
    l = stale.lines.add(line_id="l1", sku="OLD", quantity=9)
    l.unit_price.amount_minor, l.unit_price.currency = 1, "CNY"
    early_oid = f"o-{tag}-early"
    paid = o.OrderPaid(order_id=early_oid, payment_ref="p", paid_at_us=5)
    paid.amount_paid.amount_minor, paid.amount_paid.currency = 42, "EUR"
    produce_orders(h, [("order_placed", h.envelope("order_placed", stale, case_id="", order_id=orders[0])),
                       ("order_paid", h.envelope("order_paid", paid, case_id="", order_id=early_oid))])
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s", (early_oid,)), 20 * SLOW)
    assert h.sql(PROJECTION, (orders[0],))[0] == r
    assert h.sql("SELECT buyer_id, placed_at_us, amount_paid_minor, paid_currency FROM intake.orders"
                 " WHERE order_id = %s", (early_oid,)) == [(None, None, 42, "EUR")]


def test_held_request_is_processed_when_the_order_arrives_late(h):
    w = start_intake(h, AS_INTAKE_HOLD_MS=1500)
    late, late_buyer = new_ids()
    never, never_buyer = new_ids()
    reader = h.reader(CASES_TOPIC)
    a = request_envelope(h, late, late_buyer)
    b = request_envelope(h, never, never_buyer)
    produce_requests(h, [a, b])
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.held_requests") >= 1, 20 * SLOW,
               what="requests held")
    produce_orders(h, order_events(h, late, late_buyer, [("l1", "SKU-1", 1999, 2)]))
    evs = wait_case_events(h, reader, lambda e: a.aftersales_requested.request_id in opened(e) and
                           b.aftersales_requested.request_id in rejections(e), timeout=30)
    rj = rejections(evs)[b.aftersales_requested.request_id]
    assert rj.reason_code == "unknown_order" and rj.order_id == never
    assert h.scalar("SELECT count(*) FROM intake.held_requests") == 0
    assert h.scalar("SELECT count(*) FROM cases.cases") == 1
    assert h.scalar("SELECT count(*) FROM cases.cases WHERE order_id = %s", (never,)) == 0
    assert w.metric("as_intake_requests_held_total") == 2
    # The opened case's event was caused by the original request.
    env = [e for k, _, _, e in evs if k == "case_opened"][0]
    assert env.causation_id == a.event_id


def test_duplicate_flood_over_three_instances_opens_one_case(h):
    ws = [start_intake(h, name=f"i{n}", ready=False) for n in range(3)]
    for w in ws:
        w.wait_started()
    order_id, buyer_id = setup_order(h)
    # Every partition of intake's topics (orders, requests, inspection) is taken.
    wait_until(lambda: all(w.assigned() for w in ws) and
               sum(w.assigned() for w in ws) == INTAKE_PARTITIONS, 40 * SLOW, what="three-way split")
    reader = h.reader(CASES_TOPIC)
    key = "flood-" + uuid.uuid4().hex
    base = request_envelope(h, order_id, buyer_id, key=key, lines=(("l1", 2),))
    records, rids = [], set()
    for i in range(1000):
        e = request_envelope(h, order_id, buyer_id, key=key, lines=(("l1", 2),))
        rids.add(e.aftersales_requested.request_id)
        # Half keyed by the order (one partition), half spread over all.
        records.append((order_id if i % 2 else f"k{i}", e.SerializeToString(), None))
    h.produce_many(records, topic="aftersales.requests.v1")
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.inbox WHERE topic ="
                                " 'aftersales.requests.v1'") == 1000, 60 * SLOW, what="flood consumed")
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.outbox WHERE sent_at IS NULL") == 0,
               20 * SLOW)
    evs = case_events(h, reader)
    assert len({p.case_id for k, p, _, _ in evs if k == "case_opened"}) == 1
    assert len([1 for k, *_ in evs if k == "case_opened"]) == 1
    # Every retry (same content, its own request id) is answered once, with the one case.
    acks = [p for k, p, _, _ in evs if k == "buyer_acknowledged"]
    assert sorted(a.request_id for a in acks) == sorted(rids)
    assert {a.case_id for a in acks} == {p.case_id for k, p, _, _ in evs if k == "case_opened"}
    assert not rejections(evs)
    assert h.scalar("SELECT count(*) FROM cases.cases") == 1
    assert h.scalar("SELECT count(*) FROM cases.case_lines") == 1
    assert h.scalar("SELECT count(*) FROM intake.requests") == 1
    # After a restart of every instance, the same key still opens nothing new.
    for w in ws:
        w.terminate()
    w = start_intake(h, name="again")
    produce_requests(h, [base])
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.inbox WHERE event_id = %s",
                                (base.event_id,)) == 1, 30 * SLOW)
    assert h.scalar("SELECT count(*) FROM cases.cases") == 1
    assert w.metric("as_intake_requests_duplicate_total") == 1


def test_evidence_and_messages_attach_to_the_buyers_case(h):
    common, _, requests, _ = intake_pb(h)
    start_intake(h)
    order_id, buyer_id = setup_order(h)
    reader = h.reader(CASES_TOPIC)
    req = request_envelope(h, order_id, buyer_id, case_type=common.CASE_TYPE_QUALITY_CLAIM,
                           reason=common.REASON_QUALITY_DEFECT)
    produce_requests(h, [req])
    evs = wait_case_events(h, reader, lambda e: opened(e))
    case = opened(evs)[req.aftersales_requested.request_id][0]
    assert case.state == common.CASE_STATE_AWAITING_EVIDENCE

    def follow(field, payload):
        return h.envelope(field, payload, case_id=case.case_id, order_id=order_id)
    ev = requests.EvidenceAdded(case_id=case.case_id, buyer_id=buyer_id, comment="补充照片",
                                added_at_us=1)
    ev.evidence.add(uri=PHOTO[0], media_type="image/jpeg", size_bytes=10, sha256=SHA)
    msg = requests.BuyerMessage(case_id=case.case_id, buyer_id=buyer_id, text="请尽快处理 🙏", sent_at_us=2)
    other = requests.BuyerMessage(case_id=case.case_id, buyer_id="b-intruder", text="hi", sent_at_us=3)
    bad = requests.EvidenceAdded(case_id=case.case_id, buyer_id=buyer_id)
    bad.evidence.add(uri="ftp://x/y.jpg", media_type="image/jpeg", size_bytes=10, sha256=SHA)
    unknown = requests.BuyerMessage(case_id="no-such-case", buyer_id=buyer_id, text="?", sent_at_us=4)
    envs = [follow("evidence_added", ev), follow("buyer_message", msg), follow("buyer_message", other),
            follow("evidence_added", bad), h.envelope("buyer_message", unknown, case_id="no-such-case",
                                                      order_id=order_id)]
    produce_requests(h, envs, key=order_id)
    evs = wait_case_events(h, reader, lambda e: len([1 for k, *_ in e if k in (
        "evidence_added", "buyer_message", "request_rejected")]) == 4)
    repub = {k: (p, key) for k, p, key, _ in evs if k in ("evidence_added", "buyer_message")}
    assert repub["evidence_added"][1] == case.case_id and repub["evidence_added"][0].comment == "补充照片"
    assert repub["buyer_message"][0].text == "请尽快处理 🙏"
    rj = {p.request_id: p.reason_code for p in rejections(evs).values()}
    assert rj == {envs[2].event_id: "not_buyers_case", envs[3].event_id: "attachment_not_https"}
    dl = h.reader(DLQ_TOPIC)
    letters = wait_until(lambda: dead_letters(h, dl), 20 * SLOW, what="dead letter")
    assert [(d.reason_code, h.decode(d.original).event_id) for _, d, _ in letters] == \
        [("contract_violation", envs[4].event_id)]
    assert h.scalar("SELECT count(*) FROM cases.case_evidence WHERE case_id = %s", (case.case_id,)) == 1
    bodies = sorted(r[0] for r in h.sql("SELECT body FROM cases.case_messages WHERE case_id = %s",
                                        (case.case_id,)))
    assert bodies == sorted(["补充照片", "请尽快处理 🙏"])
    # No state change: the case still waits for review to act.
    assert h.scalar("SELECT version FROM cases.cases WHERE case_id = %s", (case.case_id,)) == 1
