"""Intake: order projection, request validation, case opening, routing, first
response (issue 3). Real PostgreSQL, real broker, real protobuf bytes.

Each test starts its own as-intake on a fresh database and broker, feeds it
order events and requests, and checks both what it wrote (intake projection,
shared case tables) and what it published on aftersales.cases.v1.
"""
import re
import time
import uuid

from conftest import (CASES_TOPIC, SLOW, intake_pb, order_events, produce_orders, produce_requests, request_envelope,
                      start_intake, wait_case_events, wait_until)

SHA = "a" * 64
PHOTO = ("https://img.example.com/p/1.jpg", "image/jpeg", 123456, SHA)


def new_ids(prefix="o"):
    tag = uuid.uuid4().hex[:8]
    return f"{prefix}-{tag}", f"b-{tag}"


def setup_order(h, lines=(("l1", "SKU-1", 1999, 2), ("l2", "SKU-2", 500, 1), ("l3", "SKU-3", 300, 1)),
                **kw):
    order_id, buyer_id = new_ids()
    produce_orders(h, order_events(h, order_id, buyer_id, list(lines), **kw))
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND placed_at_us"
                             " IS NOT NULL AND delivered_at_us IS NOT NULL", (order_id,)),
               20 * SLOW, what="order projected")
    return order_id, buyer_id


def by_kind(evs, kind):
    return [e for e in evs if e[0] == kind]


def rejections(evs):
    return {p.request_id: p for k, p, _, _ in evs if k == "request_rejected"}


def opened(evs):
    return {p.request_id: (p, key) for k, p, key, _ in evs if k == "case_opened"}


def test_valid_request_opens_case_routes_and_acknowledges(h):
    common, _, requests, _ = intake_pb(h)
    w = start_intake(h)
    order_id, buyer_id = setup_order(h)
    reader = h.reader(CASES_TOPIC)
    ret = request_envelope(h, order_id, buyer_id, lines=(("l1", 2),), comment="尺码偏小")
    quality = request_envelope(h, order_id, buyer_id, lines=(("l2", 1),),
                               case_type=common.CASE_TYPE_QUALITY_CLAIM,
                               reason=common.REASON_QUALITY_DEFECT)
    logi = request_envelope(h, order_id, buyer_id, lines=(("l3", 1),),
                            case_type=common.CASE_TYPE_LOGISTICS,
                            reason=common.REASON_DELIVERED_NOT_RECEIVED)
    compl = request_envelope(h, order_id, buyer_id, lines=(),
                             case_type=common.CASE_TYPE_COMPLAINT, reason=common.REASON_OTHER,
                             complaint_type=requests.COMPLAINT_TYPE_CASE_HANDLING,
                             preferred_outcome=common.OUTCOME_NONE)
    produce_requests(h, [ret, quality, logi, compl])
    evs = wait_case_events(h, reader, lambda e: len(by_kind(e, "buyer_acknowledged")) +
                           len(rejections(e)) >= 4)
    assert not rejections(evs), rejections(evs)
    op = opened(evs)
    p, key = op[ret.aftersales_requested.request_id]
    assert key == p.case_id and re.fullmatch(r"AS-\d{8}-\d{7,}", p.case_number)
    assert p.route == "review" and p.state == common.CASE_STATE_OPEN
    assert p.claimed_amount.amount_minor == 2 * 1999 and p.claimed_amount.currency == "CNY"
    assert [(l.line_id, l.sku, l.quantity) for l in p.lines] == [("l1", "SKU-1", 2)]
    assert p.comment == "尺码偏小" and p.merchant_id == "m-1"
    assert p.first_response_due_us > 0 and p.review_due_us > 0 and p.resolution_due_us == 0
    # One partition, in order: each request sees the earlier ones as cases on the order.
    assert [(op[e.aftersales_requested.request_id][0].buyer_history.cases,
             op[e.aftersales_requested.request_id][0].buyer_history.claims_on_order)
            for e in (ret, quality, logi, compl)] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    # A quality claim without photo or video waits for evidence.
    q, _ = op[quality.aftersales_requested.request_id]
    assert q.state == common.CASE_STATE_AWAITING_EVIDENCE and q.route == "review"
    lg, _ = op[logi.aftersales_requested.request_id]
    assert lg.route == "logistics" and lg.state == common.CASE_STATE_OPEN
    c, _ = op[compl.aftersales_requested.request_id]
    assert c.route == "complaints:quality_assurance" and c.claimed_amount.amount_minor == 0
    hours = (c.resolution_due_us - compl.occurred_at_us) / 3.6e9
    assert 71.9 < hours < 72.1, hours
    # The shared tables.
    row = h.sql("SELECT case_type, state, reason, route, currency, claimed_minor, version, buyer_id"
                " FROM cases.cases WHERE case_id = %s", (p.case_id,))[0]
    assert row == ("RETURN_REFUND", "OPEN", "SIZE_MISMATCH", "review", "CNY", 3998, 1, buyer_id)
    assert h.sql("SELECT line_id, sku, quantity, unit_minor, currency FROM cases.case_lines"
                 " WHERE case_id = %s", (p.case_id,)) == [("l1", "SKU-1", 2, 1999, "CNY")]
    tl = h.sql("SELECT version, from_state, to_state, actor_kind, actor_id FROM cases.timeline"
               " WHERE case_id = %s", (p.case_id,))
    assert tl == [(1, None, "OPEN", "buyer", buyer_id)]
    clocks = dict((k, met) for k, met in h.sql(
        "SELECT clock, met_at IS NOT NULL FROM cases.sla_clocks WHERE case_id = %s", (p.case_id,)))
    assert clocks == {"first_response": True, "review": False}
    assert dict(h.sql("SELECT clock, met_at IS NOT NULL FROM cases.sla_clocks WHERE case_id = %s",
                      (c.case_id,))) == {"first_response": True, "resolution": False}
    # The acknowledgement, keyed by case id, and its histogram.
    acks = {a.case_id: (a, key) for k, a, key, _ in evs if k == "buyer_acknowledged"}
    a, key = acks[p.case_id]
    assert key == p.case_id and a.case_number == p.case_number and a.buyer_id == buyer_id
    assert a.submitted_at_us == ret.aftersales_requested.submitted_at_us and a.locale == "zh-CN"
    assert a.request_id == ret.aftersales_requested.request_id
    assert w.metric("as_intake_ack_seconds_count", **{"from": "submitted"}) == 4
    assert w.metric("as_intake_ack_seconds_count", **{"from": "occurred"}) == 4
    assert w.metric("as_intake_cases_opened_total") == 4


def test_complaint_routes_are_configurable_and_validated(h):
    common, _, requests, _ = intake_pb(h)
    bad = start_intake(h, name="bad", ready=False, AS_INTAKE_COMPLAINT_ROUTES="DELIVERY=x")
    assert bad.wait_exit(30) != 0
    assert "no department for SERVICE_ATTITUDE" in bad.text()
    start_intake(h, AS_INTAKE_COMPLAINT_ROUTES="SERVICE_ATTITUDE=care:12,CASE_HANDLING=qa,"
                 "DELIVERY=lops,PRODUCT_LISTING=mops,OTHER=care", AS_INTAKE_COMPLAINT_HOURS=48)
    order_id, buyer_id = setup_order(h)
    reader = h.reader(CASES_TOPIC)
    a = request_envelope(h, order_id, buyer_id, lines=(), case_type=common.CASE_TYPE_COMPLAINT,
                         complaint_type=requests.COMPLAINT_TYPE_SERVICE_ATTITUDE)
    b = request_envelope(h, order_id, buyer_id, lines=(), case_type=common.CASE_TYPE_COMPLAINT,
                         complaint_type=requests.COMPLAINT_TYPE_DELIVERY)
    produce_requests(h, [a, b])
    evs = wait_case_events(h, reader, lambda e: len(opened(e)) == 2)
    op = opened(evs)
    pa, _ = op[a.aftersales_requested.request_id]
    pb_, _ = op[b.aftersales_requested.request_id]
    assert pa.route == "complaints:care" and pb_.route == "complaints:lops"
    assert round((pa.resolution_due_us - a.occurred_at_us) / 3.6e9) == 12
    assert round((pb_.resolution_due_us - b.occurred_at_us) / 3.6e9) == 48


def project_order(h, order_id, buyer_id, lines, t0):
    """Order events for an order of a known buyer; waits until projected."""
    produce_orders(h, order_events(h, order_id, buyer_id, list(lines), t0=t0))
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND placed_at_us"
                             " IS NOT NULL AND delivered_at_us IS NOT NULL", (order_id,)),
               20 * SLOW, what="order projected")


def test_case_opened_carries_lines_order_facts_and_buyer_history(h):
    """CaseOpened fields 20-25: what the review worker decides on. Three
    requests of one buyer handled in one batch count each other in order."""
    common, _, _, _ = intake_pb(h)
    w = start_intake(h)
    tag = uuid.uuid4().hex[:8]
    buyer_id, order_a, order_b = f"b-{tag}", f"oa-{tag}", f"ob-{tag}"
    t0 = int(time.time() * 1e6) - 10 * 86400 * 1_000_000
    project_order(h, order_a, buyer_id, (("l1", "SKU-1", 1999, 2), ("l2", "SKU-2", 500, 1)), t0)
    project_order(h, order_b, buyer_id, (("l1", "SKU-9", 700, 3),), t0 + 3_600_000_000)
    reader = h.reader(CASES_TOPIC)
    r0 = request_envelope(h, order_a, buyer_id, lines=(("l1", 1),))
    produce_requests(h, [r0])
    wait_case_events(h, reader, lambda e: len(opened(e)) == 1)
    # The next three wait while no instance runs, so that one batch takes them.
    w.terminate()
    r1 = request_envelope(h, order_a, buyer_id, lines=(("l1", 1),), declared_unused=True,
                          locale="en-GB")
    r2 = request_envelope(h, order_b, buyer_id, lines=(("l1", 2),))
    r3 = request_envelope(h, order_a, buyer_id, lines=(("l2", 1),))
    produce_requests(h, [r1, r2, r3], key=buyer_id)
    w2 = start_intake(h, name="again")
    evs = wait_case_events(h, reader, lambda e: len(opened(e)) == 4)
    assert not rejections(evs), rejections(evs)
    assert w2.metric("as_batch_size_count") == 1 and w2.metric("as_batch_size_sum") == 3
    op = opened(evs)
    p = {k: op[r.aftersales_requested.request_id][0] for k, r in
         (("r0", r0), ("r1", r1), ("r2", r2), ("r3", r3))}

    hist = {k: (v.buyer_history.orders, v.buyer_history.first_order_at_us, v.buyer_history.cases,
                v.buyer_history.claims_on_order) for k, v in p.items()}
    assert hist == {"r0": (2, t0, 0, 0), "r1": (2, t0, 1, 1), "r2": (2, t0, 2, 0),
                    "r3": (2, t0, 3, 2)}, hist

    def line(cl):
        return (cl.line_id, cl.sku, cl.category, cl.supplier_id, cl.quantity,
                cl.unit_price.amount_minor, cl.unit_price.currency, cl.purchased_quantity)
    assert [line(c) for c in p["r1"].case_lines] == [("l1", "SKU-1", "apparel", "sup-1", 1, 1999, "CNY", 2)]
    assert [line(c) for c in p["r2"].case_lines] == [("l1", "SKU-9", "apparel", "sup-1", 2, 700, "CNY", 3)]
    assert [line(c) for c in p["r3"].case_lines] == [("l2", "SKU-2", "apparel", "sup-1", 1, 500, "CNY", 1)]

    def facts(o):
        return (o.placed_at_us, o.delivered_at_us, o.paid.amount_minor, o.paid.currency,
                o.payment_method, o.payment_ref, o.region, o.shipping_fee.amount_minor,
                o.shipping_fee.currency)
    assert facts(p["r1"].order) == (t0, t0 + 3000, 2 * 1999 + 500 + 800, "CNY",
                                    common.PAYMENT_METHOD_WALLET, "pay-" + order_a, "CN-31", 800, "CNY")
    tb = t0 + 3_600_000_000
    assert facts(p["r2"].order) == (tb, tb + 3000, 3 * 700 + 800, "CNY",
                                    common.PAYMENT_METHOD_WALLET, "pay-" + order_b, "CN-31", 800, "CNY")
    assert p["r1"].declared_unused and not p["r2"].declared_unused
    assert p["r1"].locale == "en-GB" and p["r0"].locale == "zh-CN"
    for k, r in (("r0", r0), ("r1", r1), ("r2", r2), ("r3", r3)):
        assert p[k].submitted_at_us == r.aftersales_requested.submitted_at_us
    # One first timeline row per case, written by as_case_open_many.
    tl = h.sql("SELECT count(*), min(version), max(version), bool_and(actor_kind = 'buyer'"
               " AND actor_id = %s AND reason = 'request submitted' AND event_id IS NOT NULL)"
               " FROM cases.timeline WHERE case_id IN (SELECT case_id FROM cases.cases"
               " WHERE buyer_id = %s)", (buyer_id, buyer_id))
    assert tl == [(4, 1, 1, True)]
