"""Issue 13 across the fleet, from outside: upstream's orders and the
buyer's request go in on their topics, intake opens the case, the logistics
worker asks the carrier or matches the warehouse's receipt, review carries
out the remedy (and the inspection worker judges what came back). The test
plays only the carrier, the warehouse and the buyer's parcel; finance's
view is the refunds topic."""

from conftest import (SLOW, check_invariants, dead_letters, intake_pb, order_events,
                      produce_orders, produce_requests, request_envelope, start_inspection,
                      start_intake, wait_until)
from logistics_helpers import (DAY_US, answer, events, fire, now_us, of_kind, receipt,
                               return_shipped, start_logistics, wait_kind)
from review_helpers import (CASES_TOPIC, LOGISTICS_TOPIC, REFUNDS_TOPIC, REVIEW_TOPIC,
                            refunds_db, start_review, state, wait_state)


def opened(h, cases_r, order_id):
    (_, co, _, _), = wait_kind(h, cases_r, "case_opened", pred=lambda p: p.order_id == order_id)
    return co


def project(h, order_id, buyer_id, lines):
    orders = order_events(h, order_id, buyer_id, lines)
    produce_orders(h, orders)
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND delivered_at_us"
                             " IS NOT NULL", (order_id,)), 20 * SLOW, what="order projected")
    return dict(orders)


def test_delivered_not_received_verified_with_the_carrier_and_refunded_once(h):
    common, _, _, _ = intake_pb(h)
    start_review(h)
    start_logistics(h)
    start_intake(h)
    cases_r, logi_r, refunds_r = h.reader(CASES_TOPIC), h.reader(LOGISTICS_TOPIC), h.reader(REFUNDS_TOPIC)
    dlq = h.reader("aftersales.deadletter.v1")
    order_id, buyer_id = f"o-{h.dbname[2:]}", f"b-{h.dbname[2:]}"
    orders = project(h, order_id, buyer_id, [("l1", "SKU-EAR", 39900, 1)])
    produce_requests(h, [request_envelope(h, order_id, buyer_id, lines=(("l1", 1),),
                                          case_type=common.CASE_TYPE_LOGISTICS,
                                          reason=common.REASON_DELIVERED_NOT_RECEIVED,
                                          preferred_outcome=common.OUTCOME_REFUND)])
    co = opened(h, cases_r, order_id)
    assert co.route == "logistics"
    (_, q, _, _), = wait_kind(h, logi_r, "carrier_verification_requested",
                              pred=lambda p: p.case_id == co.case_id)
    assert q.tracking_number == orders["order_shipped"].order_shipped.tracking_number
    assert q.inquiry_id and q.answer_due_us > 0
    wait_state(h, co.case_id, "CARRIER_VERIFYING")
    # The carrier's system retries its answer (one event, three times),
    # then sends a second, different answer for the same inquiry.
    first = answer(h, co.case_id, q.inquiry_id, "LOST")
    for _ in range(2):
        h.produce_many([(co.case_id, first.SerializeToString(), None)], topic=LOGISTICS_TOPIC)
    answer(h, co.case_id, q.inquiry_id, "DELIVERED_CONFIRMED", proof="photo 17")
    wait_state(h, co.case_id, "REFUNDED")
    (_, out, _, _), = wait_kind(h, logi_r, "delivery_outcome", pred=lambda p: p.case_id == co.case_id)
    assert out.rule == "carrier.lost.refund" and out.remedy == common.OUTCOME_REFUND
    wait_until(lambda: dead_letters(h, dlq), 20 * SLOW, what="the second answer dead-lettered")
    (_, d, _), = dead_letters(h, dlq)
    assert d.reason_code == "contract_violation" and "already" in d.detail, d
    (_, ri, _, _), = wait_kind(h, refunds_r, "refund_issued")
    rows = refunds_db(h, co.case_id)
    assert len(rows) == 1 and rows[0][2] == 39900, rows
    paid = orders["order_paid"].order_paid.amount_paid.amount_minor
    # finance's view: the lines and, the carrier having lost the parcel of a reason whose shipping the
    # seller bears (review.policy), the order's whole shipping fee (the whole order is refunded)
    assert (ri.items_amount.amount_minor, ri.shipping_amount.amount_minor) == (39900, 800)
    assert ri.total.amount_minor == paid
    assert sum(r[5] for r in refunds_db(h)) <= paid
    outs = [e for e in events(h, logi_r) if e[0] == "delivery_outcome"]  # everything read so far
    assert len(outs) == 1, [(e[3].event_id, e[1].rule) for e in outs]


def test_a_return_matched_by_tracking_number_refunds_only_what_came_back(h):
    common, _, _, _ = intake_pb(h)
    start_review(h)
    start_logistics(h)
    start_inspection(h)
    start_intake(h)
    cases_r, review_r, logi_r = h.reader(CASES_TOPIC), h.reader(REVIEW_TOPIC), h.reader(LOGISTICS_TOPIC)
    order_id, buyer_id = f"o-{h.dbname[2:]}", f"b-{h.dbname[2:]}"
    project(h, order_id, buyer_id, [("l1", "TEE-BLUE-L", 5900, 2)])
    produce_requests(h, [request_envelope(h, order_id, buyer_id, lines=(("l1", 2),), declared_unused=True,
                                          reason=common.REASON_CHANGED_MIND)])
    co = opened(h, cases_r, order_id)
    wait_kind(h, review_r, "return_instructions", pred=lambda p: p.case_id == co.case_id)
    wait_state(h, co.case_id, "AWAITING_RETURN")
    wait_until(lambda: h.sql("SELECT 1 FROM logistics.returns WHERE case_id = %s", (co.case_id,)),
               20 * SLOW, what="the expected return")
    return_shipped(h, co.case_id, "YT-" + order_id[-6:])
    # The parcel's label is torn: the warehouse knows only the tracking
    # number, and counts one T-shirt of the two.
    receipt(h, lines=(("l1", 1),), tracking="YT-" + order_id[-6:], condition="sealed")
    (_, rr, _, _), = wait_kind(h, logi_r, "return_received", pred=lambda p: p.case_id == co.case_id)
    assert rr.matched_by == "tracking_number" and rr.partial and not rr.late
    assert [(l.line_id, l.quantity) for l in rr.lines] == [("l1", 1)]
    assert [(l.line_id, l.quantity) for l in rr.expected_lines] == [("l1", 2)]
    wait_state(h, co.case_id, "REFUNDED", timeout=30)
    rows = refunds_db(h, co.case_id)
    assert len(rows) == 1 and rows[0][2] == 5900, rows  # one unit came back, one is refunded
    assert state(h, co.case_id) == "REFUNDED"


def test_not_received_before_the_expected_date_is_held_by_logistics_not_escalated_by_pickup(h):
    """One owner per clock: logistics takes the case while it waits for the
    parcel's expected delivery date, so intake's pickup clock (due long
    before that date) does not escalate it; the case keeps a live deadline
    and the buyer is told when the carrier will be asked."""
    common, _, _, _ = intake_pb(h)
    start_logistics(h)
    start_intake(h)
    cases_r, logi_r = h.reader(CASES_TOPIC), h.reader(LOGISTICS_TOPIC)
    order_id, buyer_id = f"o-{h.dbname[2:]}", f"b-{h.dbname[2:]}"
    expected = now_us() + 3 * DAY_US
    orders = dict(order_events(h, order_id, buyer_id, [("l1", "SKU-EAR", 39900, 1)]))
    orders["order_shipped"].order_shipped.expected_delivery_us = expected
    produce_orders(h, [(k, orders[k]) for k in ("order_placed", "order_paid", "order_shipped")])
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s", (order_id,)) and
               h.sql("SELECT 1 FROM logistics.parcels WHERE order_id = %s", (order_id,)),
               20 * SLOW, what="order projected by intake and logistics")
    produce_requests(h, [request_envelope(h, order_id, buyer_id, lines=(("l1", 1),),
                                          case_type=common.CASE_TYPE_LOGISTICS,
                                          reason=common.REASON_NOT_RECEIVED,
                                          preferred_outcome=common.OUTCOME_REFUND)])
    co = opened(h, cases_r, order_id)
    cid = co.case_id
    wait_until(lambda: h.sql("SELECT 1 FROM logistics.deadlines WHERE case_id = %s AND kind ="
                             " 'expected' AND fired_at IS NULL", (cid,)), 20 * SLOW,
               what="logistics waits for the expected date")
    # intake's pickup clock comes due (AS_INTAKE_REVIEW_HOURS, long before the date)
    h.sql("UPDATE intake.deadlines SET due_at = now() - interval '1 second'"
          " WHERE case_id = %s AND kind = 'pickup'", (cid,))
    wait_until(lambda: h.sql("SELECT 1 FROM intake.deadlines WHERE case_id = %s AND kind = 'pickup'"
                             " AND fired_at IS NOT NULL", (cid,)), 20 * SLOW, what="pickup fired")
    assert check_invariants(h, ("deadlines",)) == []
    assert state(h, cid) == "CARRIER_VERIFYING"
    assert not [p for _, p, _, _ in of_kind(events(h, cases_r), "sla_breached") if p.case_id == cid]
    (_, n, _, _), = wait_kind(h, logi_r, "tracking_notice", pred=lambda p: p.case_id == cid)
    assert (n.ask_carrier_at_us, n.buyer_id) == (expected, buyer_id)
    # the date comes: logistics asks the carrier, the case still its own
    fire(h, "expected", cid)
    (_, q, _, _), = wait_kind(h, logi_r, "carrier_verification_requested",
                              pred=lambda p: p.case_id == cid)
    assert q.tracking_number == orders["order_shipped"].order_shipped.tracking_number
    assert state(h, cid) == "CARRIER_VERIFYING"
    assert check_invariants(h, ("deadlines",)) == []
