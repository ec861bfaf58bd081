"""Issue 13, review's side of logistics: cases intake routes to logistics are
recorded (with their ledger) but not decided; the logistics worker's
DeliveryOutcome closes, resolves, refunds or reships them exactly once; a
lost return parcel is refunded; a partial receipt refunds only the units
that came back; review's return-transit follow-up is retired (logistics
owns that clock). Real review, PostgreSQL and broker; the logistics
worker's events are crafted as it publishes them (real protobuf bytes on
aftersales.logistics.v1), the move to CARRIER_VERIFYING (logistics' own)
is made in SQL."""
import types
import uuid

from conftest import (CASES_TOPIC, DLQ_TOPIC, SLOW, intake_pb, order_events, produce_orders, produce_requests,
                      request_envelope, start_intake, wait_until)
from review_helpers import (INSPECTION_TOPIC, LOGISTICS_TOPIC, REFUNDS_TOPIC, REVIEW_TOPIC, decided, events,
                            inspection_completed, logistics_clock, new_case, now_us, of_kind, open_cases, pbm, pending_deadlines,
                            produce_on, refund_events, refunds_db, start_review, state, wait_dead, wait_decided,
                            wait_events, wait_state)

ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")


def inquiry_id(kind, subject, n=1):
    """README "Identifiers": uuid5("aftersales.carrier_inquiry", "<kind>|<case or tracking>|<n>")."""
    return str(uuid.uuid5(uuid.uuid5(ROOT, "aftersales.carrier_inquiry"), f"{kind}|{subject}|{n}"))


def logistics_case(h, preferred="REFUND", reason="DELIVERED_NOT_RECEIVED", **kw):
    """A CaseOpened routed to logistics, and the clock its owner keeps: intake's pickup clock, then the
    logistics worker's carrier-answer deadline (a row in a stand-in schema: neither runs here, and the
    fleet's invariant wants every open case to have one)."""
    kw.setdefault("lines", [("l1", "TEE", "apparel", 2, 1500, 2)])
    e = new_case(h, case_type="LOGISTICS", reason=reason, route="logistics", preferred_outcome=preferred, **kw)
    logistics_clock(h, e.case_id, "carrier_answer")
    return e


def recorded(h, e):
    wait_until(lambda: h.sql("SELECT 1 FROM review.cases WHERE case_id = %s", (e.case_id,)), 10 * SLOW,
               what=f"{e.case_id} recorded by review")


def verifying(h, e):
    """What the logistics worker does when it asks the carrier (its move)."""
    h.sql("UPDATE cases.cases SET state = 'CARRIER_VERIFYING', version = version + 1 WHERE case_id = %s",
          (e.case_id,))


def outcome(h, e, finding, remedy="NONE", rule=None, direction="FORWARD", kind="DELIVERED_NOT_RECEIVED",
            defaulted=False, proof="", **kw):
    """A DeliveryOutcome as the logistics worker publishes it (key case id)."""
    m = pbm(h)
    L, C = m.logistics, m.common
    co = e.case_opened
    k = kind.lower()
    o = L.DeliveryOutcome(case_id=kw.pop("case_id", co.case_id),
                          finding=finding if isinstance(finding, int) else L.DeliveryFinding.Value(
                              "DELIVERY_FINDING_" + finding),
                          remedy=C.Outcome.Value("OUTCOME_" + remedy), proof=proof, decided_at_us=now_us(),
                          rule=rule if rule is not None else {"DELIVERED_CONFIRMED": "carrier.delivered_confirmed",
                                                              "REDELIVERY": "carrier.redelivery"}.get(
                              finding, f"carrier.lost.{remedy.lower()}"),
                          inquiry_id=inquiry_id(k, co.case_id), kind=L.InquiryKind.Value("INQUIRY_KIND_" + kind),
                          direction=direction if isinstance(direction, int) else L.ParcelDirection.Value(
                              "PARCEL_DIRECTION_" + direction),
                          order_id=kw.pop("order_id", co.order_id), carrier="SF", tracking_number="SF" + co.order_id[-8:],
                          defaulted=defaulted, **kw)
    return o


def send(h, o, event_id=None):
    return produce_on(h, LOGISTICS_TOPIC, "delivery_outcome", o, o.case_id, event_id=event_id)


def last_row(h, case_id):
    return h.sql("SELECT from_state, to_state, actor_id, reason, detail FROM cases.timeline"
                 " WHERE case_id = %s ORDER BY version DESC LIMIT 1", (case_id,))[0]


def paid_of(e):
    return e.case_opened.order.paid.amount_minor


def test_logistics_cases_are_recorded_with_their_ledger_but_not_decided(h):
    w = start_review(h)
    review_r = h.reader(REVIEW_TOPIC)
    lg = logistics_case(h)
    rv = new_case(h, lines=[("l1", "S", "apparel", 1, 700, 1)], reason="SIZE_MISMATCH")
    open_cases(h, [lg, rv])
    wait_state(h, rv.case_id, "REFUNDED")
    wait_until(lambda: h.scalar("SELECT route FROM review.cases WHERE case_id = %s", (lg.case_id,)) == "logistics",
               10 * SLOW, what="logistics case recorded")
    assert h.scalar("SELECT count(*) FROM review.ledger WHERE order_id = %s", (lg.order_id,)) == 2  # l1, #shipping
    assert h.scalar("SELECT verdict FROM review.cases WHERE case_id = %s", (lg.case_id,)) is None
    assert state(h, lg.case_id) == "OPEN" and pending_deadlines(h, lg.case_id) == []
    assert lg.case_id not in decided(events(h, review_r))
    assert w.metric("as_review_decisions_total") == 1


def test_through_intake_a_lost_parcel_case_is_recorded_and_refunded_within_what_was_paid(h):
    """A real CaseOpened routed to logistics (intake's record of the payment passes review's integrity
    check), then the logistics worker's outcome: one refund, never above OrderPaid."""
    common, _, _, _ = intake_pb(h)
    start_review(h)
    start_intake(h)
    cases_r, refunds_r = h.reader(CASES_TOPIC), h.reader(REFUNDS_TOPIC)
    order_id, buyer_id = f"o-{h.dbname[2:]}", f"b-{h.dbname[2:]}"
    orders = order_events(h, order_id, buyer_id, [("l1", "SKU-1", 1999, 2), ("l2", "SKU-2", 500, 1)])
    produce_orders(h, orders)
    paid = dict(orders)["order_paid"].order_paid.amount_paid.amount_minor
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND delivered_at_us IS NOT NULL",
                             (order_id,)), 20 * SLOW, what="order projected")
    produce_requests(h, [request_envelope(h, order_id, buyer_id, lines=(("l1", 2),),
                                          case_type=common.CASE_TYPE_LOGISTICS,
                                          reason=common.REASON_DELIVERED_NOT_RECEIVED)])
    evs = wait_events(h, cases_r, lambda e: of_kind(e, "case_opened"), what="CaseOpened")
    (_, co, _, _), = of_kind(evs, "case_opened")
    assert co.route == "logistics"
    e = types.SimpleNamespace(case_id=co.case_id, order_id=order_id, case_opened=co)
    recorded(h, e)
    assert state(h, co.case_id) == "OPEN"
    verifying(h, e)
    o = outcome(h, e, "LOST", "REFUND")
    for _ in range(3):
        send(h, o)
    wait_state(h, co.case_id, "REFUNDED")
    wait_events(h, refunds_r, lambda ev: of_kind(ev, "refund_issued"), what="RefundIssued")
    rs = {r.refund_id: r for r in refund_events(h, refunds_r)[co.case_id]}
    (r,) = rs.values()
    assert r.items_amount.amount_minor == 2 * 1999 and r.reason_code == "carrier.lost.refund"
    assert sum(x[5] for x in refunds_db(h)) <= paid


def test_delivered_confirmed_closes_with_the_proof_and_redelivery_resolves_then_closes(h):
    m = pbm(h)
    w = start_review(h, AS_SCAN_INTERVAL_MS="200")
    review_r = h.reader(REVIEW_TOPIC)
    confirmed, redelivered, scanned = logistics_case(h), logistics_case(h), logistics_case(h)
    open_cases(h, [confirmed, redelivered, scanned])
    for e in (confirmed, redelivered, scanned):
        recorded(h, e)
        verifying(h, e)
    send(h, outcome(h, confirmed, "DELIVERED_CONFIRMED", proof="signed by J. Smith at the locker 12\u00e9"))
    send(h, outcome(h, redelivered, "REDELIVERY"))
    send(h, outcome(h, scanned, "REDELIVERY"))
    wait_state(h, confirmed.case_id, "CLOSED")
    wait_state(h, redelivered.case_id, "RESOLVED")
    wait_state(h, scanned.case_id, "RESOLVED")
    frm, to, who, why, detail = last_row(h, confirmed.case_id)
    assert (frm, to, why) == ("CARRIER_VERIFYING", "CLOSED", "carrier.delivered_confirmed")
    assert detail["proof"] == "signed by J. Smith at the locker 12\u00e9" and detail["defaulted"] is False
    assert detail["inquiry_id"] == inquiry_id("delivered_not_received", confirmed.case_id)
    assert pending_deadlines(h, redelivered.case_id) == ["redelivery"]
    # policy redelivery_close_days (default 7)
    assert h.scalar("SELECT round(extract(epoch FROM due_at - now()) / 86400) FROM review.deadlines"
                    " WHERE case_id = %s AND kind = 'redelivery'", (redelivered.case_id,)) == 7
    # The redelivered parcel is scanned delivered: closed, its deadline cancelled.
    send(h, outcome(h, scanned, "DELIVERED_CONFIRMED", rule="redelivery.delivered", kind="NOT_RECEIVED"))
    wait_state(h, scanned.case_id, "CLOSED")
    assert pending_deadlines(h, scanned.case_id) == []
    # Nobody says more: the deadline (moved into the past) closes it, fired by the real scanner.
    h.sql("UPDATE review.deadlines SET due_at = now() - interval '1 second' WHERE case_id = %s"
          " AND kind = 'redelivery'", (redelivered.case_id,))
    wait_state(h, redelivered.case_id, "CLOSED")
    assert last_row(h, redelivered.case_id)[3] == "redelivery.closed"
    evs = wait_decided(h, review_r, [confirmed.case_id, redelivered.case_id, scanned.case_id], n=1)
    evs = wait_decided(h, review_r, [redelivered.case_id, scanned.case_id], n=2)
    got = {c: [(p.verdict, p.reason_code, p.case_state) for p in ps] for c, ps in decided(evs).items()}
    V, C = m.review, m.common
    assert got[confirmed.case_id] == [(V.VERDICT_REJECTED, "carrier.delivered_confirmed", C.CASE_STATE_CLOSED)]
    assert got[redelivered.case_id] == [(V.VERDICT_UNSPECIFIED, "carrier.redelivery", C.CASE_STATE_RESOLVED),
                                        (V.VERDICT_UNSPECIFIED, "redelivery.closed", C.CASE_STATE_CLOSED)]
    assert got[scanned.case_id][-1] == (V.VERDICT_UNSPECIFIED, "redelivery.delivered", C.CASE_STATE_CLOSED)
    assert refunds_db(h) == []
    assert w.metric("as_review_delivery_outcomes_total", result="applied") == 4


def test_lost_parcel_refunds_the_claimed_units_once_whatever_is_delivered_again(h):
    m = pbm(h)
    w = start_review(h)
    refunds_r, review_r = h.reader(REFUNDS_TOPIC), h.reader(REVIEW_TOPIC)
    # two of three units claimed; 800 shipping. DELIVERED_NOT_RECEIVED is no seller_fault reason, but the
    # policy has the seller bear its shipping (shipping.DELIVERED_NOT_RECEIVED = seller): a lost parcel is
    # a seller-fault refund, and shipping_refund = pro_rata returns the fee's share of the refunded items
    lost = logistics_case(h, lines=[("l1", "TEE", "apparel", 2, 1500, 3)])
    late = logistics_case(h, reason="NOT_RECEIVED")
    open_cases(h, [lost, late])
    for e in (lost, late):
        recorded(h, e)
        verifying(h, e)
    o = outcome(h, lost, "LOST", "REFUND")
    env = send(h, o)
    send(h, o, event_id=env.event_id)  # the same bytes again (the inbox's)
    send(h, o)  # and as a new event (the case has moved: stale)
    d = outcome(h, late, "LOST", "REFUND", rule="deadline.buyer_favour.refund", kind="NOT_RECEIVED", defaulted=True)
    send(h, d)
    send(h, d)
    wait_state(h, lost.case_id, "REFUNDED")
    wait_state(h, late.case_id, "REFUNDED")
    # A second outcome for the same case (a later carrier answer) changes nothing either.
    send(h, outcome(h, lost, "LOST", "RESHIP"))
    send(h, outcome(h, lost, "DELIVERED_CONFIRMED"))
    wait_until(lambda: w.metric("as_review_delivery_outcomes_total", result="stale") >= 4, 20 * SLOW,
               what="4 stale outcomes counted")
    wait_events(h, refunds_r, lambda ev: len(of_kind(ev, "refund_issued")) >= 2, what="2 RefundIssued")
    by = refund_events(h, refunds_r)
    (r,) = {x.refund_id: x for x in by[lost.case_id]}.values()
    share = 800 * 3000 // 4500  # the fee's share: refunded items over the order's items paid
    assert (r.items_amount.amount_minor, r.shipping_amount.amount_minor, r.reason_code) == (
        3000, share, "carrier.lost.refund")
    assert r.total.amount_minor == 3000 + share <= paid_of(lost)
    assert [(l.line_id, l.quantity, l.amount.amount_minor) for l in r.lines] == [("l1", 2, 3000)]
    assert r.refund_id == str(uuid.uuid5(uuid.uuid5(ROOT, "aftersales.refund"), lost.case_id))
    (rl,) = {x.refund_id: x for x in by[late.case_id]}.values()
    # the whole order refunded: the whole fee too, and never more than was paid
    assert rl.reason_code == "deadline.buyer_favour.refund"
    assert (rl.items_amount.amount_minor, rl.shipping_amount.amount_minor) == (3000, 800)
    assert rl.total.amount_minor == paid_of(late)
    for e in (lost, late):
        assert sum(x[5] for x in refunds_db(h, e.case_id)) <= paid_of(e)
        assert len(refunds_db(h, e.case_id)) == 1
    assert last_row(h, late.case_id)[4]["defaulted"] is True
    assert h.scalar("SELECT count(*) FROM review.exchanges") == 0
    evs = wait_decided(h, review_r, [lost.case_id])
    (rd,) = decided(evs)[lost.case_id]
    assert (rd.verdict, rd.outcome, rd.reason_code, rd.case_state, rd.approved_amount.amount_minor) == (
        m.review.VERDICT_APPROVED, m.common.OUTCOME_REFUND, "carrier.lost.refund", m.common.CASE_STATE_REFUNDED,
        3000 + share)
    assert state(h, lost.case_id) == "REFUNDED"


def test_lost_parcel_with_reship_publishes_one_exchange_of_the_claimed_lines(h):
    m = pbm(h)
    start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    e = logistics_case(h, preferred="RESHIP", lines=[("l1", "TEE", "apparel", 1, 1500, 1),
                                                     ("l2", "CAP", "apparel", 2, 500, 2)])
    open_cases(h, [e])
    recorded(h, e)
    verifying(h, e)
    o = outcome(h, e, "LOST", "RESHIP")
    for _ in range(3):
        send(h, o)
    wait_state(h, e.case_id, "EXCHANGED")
    evs = wait_events(h, refunds_r, lambda ev: of_kind(ev, "exchange_requested"), what="ExchangeRequested")
    exs = {p.exchange_id: p for _, p, _, _ in of_kind(evs, "exchange_requested")}
    (ex,) = exs.values()
    assert ex.reason_code == "reship.lost_parcel" and ex.case_id == e.case_id
    assert [(l.line_id, l.sku, l.quantity) for l in ex.replacement_lines] == [("l1", "TEE", 1), ("l2", "CAP", 2)]
    assert ex.exchange_id == str(uuid.uuid5(uuid.uuid5(ROOT, "aftersales.exchange"), e.case_id))
    assert refunds_db(h) == [] and not of_kind(evs, "refund_issued")
    assert h.scalar("SELECT count(*) FROM review.exchanges WHERE case_id = %s", (e.case_id,)) == 1
    assert last_row(h, e.case_id)[3] == "carrier.lost.reship"


def test_lost_return_parcel_refunds_the_claimed_lines(h):
    m = pbm(h)
    start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    e = new_case(h, lines=[("l1", "S", "apparel", 2, 2500, 2)])
    open_cases(h, [e])
    wait_state(h, e.case_id, "AWAITING_RETURN")
    produce_on(h, LOGISTICS_TOPIC, "return_shipped",
               m.logistics.ReturnShipped(case_id=e.case_id, carrier="SF", tracking_number="SFR1",
                                         shipped_at_us=now_us()), e.case_id)
    send(h, outcome(h, e, "LOST", "REFUND", rule="return.lost.refund", direction="RETURN", kind="RETURN_TRANSIT",
                    defaulted=True))
    wait_state(h, e.case_id, "REFUNDED")
    wait_events(h, refunds_r, lambda ev: of_kind(ev, "refund_issued"), what="RefundIssued")
    (r,) = refund_events(h, refunds_r)[e.case_id]
    assert (r.items_amount.amount_minor, r.reason_code) == (5000, "return.lost.refund")
    frm, to, _, why, detail = last_row(h, e.case_id)
    assert (frm, to, why, detail["defaulted"]) == ("AWAITING_RETURN", "REFUNDED", "return.lost.refund", True)
    assert pending_deadlines(h, e.case_id) == []


def test_lost_return_parcel_returns_the_shipping_fee_only_for_a_seller_fault_reason(h):
    """A return the buyer shipped and the carrier lost: the claimed lines as
    if received, and the order's shipping fee as the approval in force says
    (seller_fault reason: its pro-rata share; a buyer's reason: none), never
    above what was paid."""
    m = pbm(h)
    start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    faulty = new_case(h, reason="MISSING_PARTS", lines=[("l1", "S", "apparel", 2, 2500, 2)],
                      other_lines=[("l2", 1000, 1)])
    mind = new_case(h, lines=[("l1", "S", "apparel", 2, 2500, 2)], other_lines=[("l2", 1000, 1)])
    open_cases(h, [faulty, mind])
    for e in (faulty, mind):
        wait_state(h, e.case_id, "AWAITING_RETURN")
        produce_on(h, LOGISTICS_TOPIC, "return_shipped",
                   m.logistics.ReturnShipped(case_id=e.case_id, carrier="SF", tracking_number="SFR" + e.case_id[-4:],
                                             shipped_at_us=now_us()), e.case_id)
        send(h, outcome(h, e, "LOST", "REFUND", rule="return.lost.refund", direction="RETURN",
                        kind="RETURN_TRANSIT"))
    for e in (faulty, mind):
        wait_state(h, e.case_id, "REFUNDED")
    wait_events(h, refunds_r, lambda ev: len(of_kind(ev, "refund_issued")) >= 2, what="2 RefundIssued")
    by = refund_events(h, refunds_r)
    got = {e.case_id: [(r.items_amount.amount_minor, r.shipping_amount.amount_minor) for r in by[e.case_id]]
           for e in (faulty, mind)}
    assert got == {faulty.case_id: [(5000, 800 * 5000 // 6000)], mind.case_id: [(5000, 0)]}, got
    for e in (faulty, mind):
        assert sum(x[5] for x in refunds_db(h, e.case_id)) <= paid_of(e)


def test_partial_receipt_refunds_only_the_units_that_came_back(h):
    m = pbm(h)
    start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    e = new_case(h, lines=[("l1", "S", "apparel", 2, 2500, 2), ("l2", "C", "apparel", 1, 1000, 1)])
    late = new_case(h, lines=[("l1", "S", "apparel", 1, 2500, 1)])
    open_cases(h, [e, late])
    for c in (e, late):
        wait_state(h, c.case_id, "AWAITING_RETURN")
    # logistics matched the warehouse's receipt: one of the two l1 units, no l2
    rr = m.logistics.ReturnReceived(case_id=e.case_id, warehouse_id="WH-CN-SH-01", tracking_number="SFR2",
                                    received_at_us=now_us(), partial=True, matched_by="tracking_number",
                                    receipt_id="rcpt-1", condition="sealed")
    rr.lines.add(line_id="l1", sku="S", quantity=1)
    rr.expected_lines.add(line_id="l1", sku="S", quantity=2)
    rr.expected_lines.add(line_id="l2", sku="C", quantity=1)
    produce_on(h, LOGISTICS_TOPIC, "return_received", rr, e.case_id)
    # the late one came back whole after its ship-by date: still refunded
    rl = m.logistics.ReturnReceived(case_id=late.case_id, warehouse_id="WH-CN-SH-01", received_at_us=now_us(),
                                    late=True, matched_by="label", receipt_id="rcpt-2")
    rl.lines.add(line_id="l1", sku="S", quantity=1)
    produce_on(h, LOGISTICS_TOPIC, "return_received", rl, late.case_id)
    for c in (e, late):
        wait_state(h, c.case_id, "INSPECTING")
    # the inspection (wrongly) counts every claimed unit: review pays what came back
    for c in (e, late):
        produce_on(h, INSPECTION_TOPIC, "inspection_completed", inspection_completed(h, c.case_id), c.case_id)
        wait_state(h, c.case_id, "REFUNDED")
    wait_events(h, refunds_r, lambda ev: len(of_kind(ev, "refund_issued")) >= 2, what="2 RefundIssued")
    by = refund_events(h, refunds_r)
    (r,) = by[e.case_id]
    assert [(l.line_id, l.quantity, l.amount.amount_minor) for l in r.lines] == [("l1", 1, 2500)]
    assert r.items_amount.amount_minor == 2500
    (r2,) = by[late.case_id]
    assert r2.items_amount.amount_minor == 2500
    assert h.sql("SELECT detail FROM cases.timeline WHERE case_id = %s AND to_state = 'RETURN_RECEIVED'",
                 (late.case_id,))[0][0]["late"] is True


def test_hostile_outcomes_are_dead_lettered_with_a_reason_and_the_partition_moves_on(h):
    start_review(h)
    dlq_r = h.reader(DLQ_TOPIC)
    lg = logistics_case(h)
    rv = new_case(h, lines=[("l1", "S", "apparel", 1, 5000, 1)])
    open_cases(h, [lg, rv])
    wait_state(h, rv.case_id, "AWAITING_RETURN")
    recorded(h, lg)
    verifying(h, lg)
    bad = [
        (outcome(h, lg, 99), "finding is not one review acts on"),
        (outcome(h, lg, "IN_TRANSIT"), "finding is not one review acts on"),
        (outcome(h, lg, "DELIVERED_CONFIRMED", "REFUND"), "remedy not allowed"),
        (outcome(h, lg, "LOST", "NONE"), "remedy not allowed"),
        (outcome(h, lg, "LOST", "COUPON"), "remedy not allowed"),
        (outcome(h, lg, "LOST", "REFUND", direction=7), "unknown direction"),
        (outcome(h, lg, "LOST", "REFUND", direction="RETURN"), "direction RETURN on a case with no return"),
        (outcome(h, rv, "LOST", "REFUND"), "forward outcome for a case not routed to logistics"),
        (outcome(h, rv, "LOST", "RESHIP", direction="RETURN"), "remedy not allowed"),
        (outcome(h, lg, "LOST", "REFUND", rule=""), "rule missing"),
        (outcome(h, lg, "LOST", "REFUND", rule="x y"), "rule missing, too long or unsafe"),
        (outcome(h, lg, "LOST", "REFUND", proof="a\x01b"), "proof too long"),
        (outcome(h, lg, "LOST", "REFUND", order_id="o-other"), "not the case's order"),
        (outcome(h, lg, "LOST", "REFUND", case_id="case-nobody-holds"), "unknown_case"),
    ]
    for o, _ in bad:
        send(h, o)
    # Behind them, the real outcome is applied.
    send(h, outcome(h, lg, "LOST", "REFUND"))
    wait_state(h, lg.case_id, "REFUNDED")
    dead = wait_dead(h, dlq_r, len(bad))
    assert all(d.reason_code == "contract_violation" for _, d, _ in dead)
    details = [d.detail for _, d, _ in dead]
    for _, want in bad:
        assert any(want in d for d in details), (want, details)
    assert state(h, rv.case_id) == "AWAITING_RETURN"
    assert len(refunds_db(h)) == 1


def test_an_outcome_for_a_case_elsewhere_is_counted_stale_and_ignored(h):
    w = start_review(h)
    e = logistics_case(h)
    open_cases(h, [e])
    recorded(h, e)
    send(h, outcome(h, e, "LOST", "REFUND"))  # the case never went to carrier verification
    wait_until(lambda: w.metric("as_review_delivery_outcomes_total", result="stale") == 1, 20 * SLOW,
               what="stale counted")
    assert state(h, e.case_id) == "OPEN" and refunds_db(h) == []
    assert any(r.get("msg", "").startswith("delivery outcome for a case not where it expects") for r in w.lines())


def test_return_transit_follow_up_is_retired_and_armed_rows_stay_harmless(h):
    m = pbm(h)
    start_review(h)
    cases_r = h.reader(CASES_TOPIC)
    shipped, armed = new_case(h), new_case(h)
    open_cases(h, [shipped, armed])
    for e in (shipped, armed):
        wait_state(h, e.case_id, "AWAITING_RETURN")
    produce_on(h, LOGISTICS_TOPIC, "return_shipped",
               m.logistics.ReturnShipped(case_id=shipped.case_id, carrier="SF", tracking_number="SF1",
                                         shipped_at_us=now_us()), shipped.case_id)
    wait_until(lambda: h.scalar("SELECT cancelled_at IS NOT NULL FROM review.deadlines WHERE case_id = %s"
                                " AND kind = 'return'", (shipped.case_id,)), 20 * SLOW, what="ship-by clock stopped")
    assert pending_deadlines(h, shipped.case_id) == []  # the transit clock is the logistics worker's
    # A row armed before the retirement fires once and does nothing: no SlaBreached, no twin.
    h.sql("INSERT INTO review.deadlines (case_id, kind, due_at) VALUES (%s, 'return:transit', now())",
          (armed.case_id,))
    logistics_clock(h, shipped.case_id, "return_transit")
    wait_until(lambda: h.scalar("SELECT fired_at IS NOT NULL FROM review.deadlines WHERE case_id = %s"
                                " AND kind = 'return:transit'", (armed.case_id,)), 20 * SLOW, what="fired")
    assert "return:transit+" not in pending_deadlines(h, armed.case_id)
    assert not [p for _, p, _, _ in of_kind(events(h, cases_r), "sla_breached") if p.clock == "return_transit"]
    assert state(h, armed.case_id) == "AWAITING_RETURN"
