"""The logistics worker through the topics: the tracking projection (scans
before the shipment, out of order, repeated; 10,000 scans one row of
state), delivered-not-received verification (each finding to its outcome
by the rules, the default outcome at the deadline fired by the real
scanner, a second answer, unknown inquiries and cases), not-received cases
and the cases logistics has no flow for."""
from conftest import CASES_TOPIC, DLQ_TOPIC, SLOW, settle, wait_until
from logistics_helpers import (DAY_US, HOUR_US, LOGISTICS_TOPIC, answer, delivered, events, fire,
                               inquiry_id, logistics_case, now_us, of_kind, parcel, pbm,
                               produce_orders, scan_env, scans, ship_order, shipped,
                               start_logistics, tag, wait_dead, dead_reasons, wait_kind)
from review_helpers import state, wait_state


def test_projection_scans_before_shipment_out_of_order_and_repeated(h):
    start_logistics(h)
    t = tag()
    order, tracking = f"o-{t}", f"SF{t}"
    t0 = now_us() - 3600 * 10**6
    a, b, c = (scan_env(h, tracking, "picked_up", t0), scan_env(h, tracking, "in_transit", t0 + 10),
               scan_env(h, tracking, "out_for_delivery", t0 + 20))
    # the newest first, the oldest last; one of them three times
    scans(h, [c, a, b, b, b])
    wait_until(lambda: (parcel(h, "SF", tracking) or [0] * 6)[5] == 3, 20 * SLOW, what="scans kept")
    p = parcel(h, "SF", tracking)
    assert p[1] is None and p[2] == "out_for_delivery" and p[3] == t0 + 20  # not shipped yet
    # the shipment arrives: the parcel row is matched, not duplicated
    produce_orders(h, [shipped(h, order, tracking)])
    wait_until(lambda: parcel(h, "SF", tracking)[1] == order, 20 * SLOW, what="matched")
    # an older scan arriving late does not move last_*; delivery does
    scans(h, [scan_env(h, tracking, "sorted", t0 + 5),
              scan_env(h, tracking, "delivered", t0 + 30, proof="photo:abc")])
    wait_until(lambda: parcel(h, "SF", tracking)[5] == 5, 20 * SLOW, what="5 scans")
    p = parcel(h, "SF", tracking)
    assert (p[2], p[3], p[4]) == ("delivered", t0 + 30, t0 + 30)
    assert h.scalar("SELECT proof FROM logistics.parcels WHERE tracking_number = %s", (tracking,)) \
        == "photo:abc"
    assert h.scalar("SELECT count(*) FROM logistics.parcels WHERE tracking_number = %s", (tracking,)) == 1
    assert h.scalar("SELECT count(*) FROM logistics.scans WHERE tracking_number = %s", (tracking,)) == 5
    # delivered: no stall clock left
    settle(h)
    assert h.scalar("SELECT count(*) FROM logistics.deadlines WHERE kind = 'stall'"
                    " AND fired_at IS NULL AND cancelled_at IS NULL") == 0


def test_ten_thousand_scans_of_one_parcel_stay_one_row(h):
    w = start_logistics(h)
    order, _, tracking = ship_order(h)
    t0 = now_us() - 10_000_000
    envs = [scan_env(h, tracking, "in_transit", t0 + i) for i in range(10_000)]
    for i in range(0, len(envs), 2000):
        scans(h, envs[i:i + 2000])
    wait_until(lambda: (parcel(h, "SF", tracking) or [0] * 6)[5] == 10_000, 60 * SLOW,
               what="10,000 scans")
    assert h.scalar("SELECT count(*) FROM logistics.parcels") == 1
    assert parcel(h, "SF", tracking)[3] == t0 + 9999
    # the stall clock is one row, moved by every batch (not one per scan)
    assert h.scalar("SELECT count(*) FROM logistics.deadlines WHERE kind = 'stall'") == 1
    due = h.scalar("SELECT extract(epoch FROM due_at) * 1e6 FROM logistics.deadlines WHERE kind = 'stall'")
    assert abs(due - (t0 + 9999 + 48 * HOUR_US)) < 2
    wait_until(lambda: w.metric("as_logistics_scans_total", result="new") == 10_000, 10 * SLOW,
               what="counted")


def dbnr(h, preferred="REFUND", reason="DELIVERED_NOT_RECEIVED"):
    order, buyer, tracking = ship_order(h)
    produce_orders(h, [delivered(h, order)])
    wait_until(lambda: (parcel(h, "SF", tracking) or [0] * 5)[4] is not None, 20 * SLOW,
               what="delivered")
    case_id = logistics_case(h, order, buyer, reason=reason, preferred=preferred)
    return case_id, order, buyer, tracking


def test_dbnr_asks_the_carrier_and_each_finding_gives_its_outcome(h):
    start_logistics(h)
    r, cases_r = h.reader(LOGISTICS_TOPIC), h.reader(CASES_TOPIC)
    m = pbm(h).logistics
    c = pbm(h).common
    ok, redo, lost, reship = dbnr(h), dbnr(h), dbnr(h), dbnr(h, preferred="RESHIP")
    asked = wait_kind(h, r, "carrier_verification_requested", 4)
    q = {p.case_id: p for _, p, _, _ in asked}
    p = q[ok[0]]
    assert p.inquiry_id == inquiry_id("delivered_not_received", ok[0], 1)
    assert (p.carrier, p.tracking_number, p.order_id) == ("SF", ok[3], ok[1])
    assert p.kind == m.INQUIRY_KIND_DELIVERED_NOT_RECEIVED and p.direction == m.PARCEL_DIRECTION_FORWARD
    assert list(p.checks) == [m.VERIFICATION_CHECK_PROXY_SIGNATURE, m.VERIFICATION_CHECK_LOCKER,
                              m.VERIFICATION_CHECK_NEIGHBOUR, m.VERIFICATION_CHECK_PHOTO,
                              m.VERIFICATION_CHECK_GPS]
    assert abs(p.answer_due_us - p.requested_at_us - 48 * HOUR_US) == 0 and p.question
    for case_id, *_ in (ok, redo, lost, reship):
        wait_state(h, case_id, "CARRIER_VERIFYING")
    notices = wait_kind(h, r, "tracking_notice", 4)
    n = {p.case_id: p for _, p, _, _ in notices}[ok[0]]
    assert (n.kind, n.buyer_id, n.inquiry_id) == (m.TRACKING_NOTICE_KIND_CARRIER_VERIFYING, ok[2],
                                                 p.inquiry_id)
    moved = [p for _, p, _, _ in of_kind(events(h, cases_r), "case_state_changed")
             if p.case_id == ok[0] and p.reason == "carrier.verification_requested"]
    assert len(moved) == 1 and moved[0].actor.id == "logistics"
    # the carrier answers, by inquiry id or (older carriers) by case id only
    answer(h, inquiry=q[ok[0]].inquiry_id, finding="DELIVERED_CONFIRMED", proof="signed: neighbour 3B")
    answer(h, case_id=redo[0], finding="REDELIVERY")
    answer(h, inquiry=q[lost[0]].inquiry_id, finding="LOST")
    answer(h, inquiry=q[reship[0]].inquiry_id, finding="LOST")
    outs = {p.case_id: p for _, p, _, _ in wait_kind(h, r, "delivery_outcome", 4)}
    want = {ok[0]: (m.DELIVERY_FINDING_DELIVERED_CONFIRMED, c.OUTCOME_NONE, "carrier.delivered_confirmed"),
            redo[0]: (m.DELIVERY_FINDING_REDELIVERY, c.OUTCOME_NONE, "carrier.redelivery"),
            lost[0]: (m.DELIVERY_FINDING_LOST, c.OUTCOME_REFUND, "carrier.lost.refund"),
            reship[0]: (m.DELIVERY_FINDING_LOST, c.OUTCOME_RESHIP, "carrier.lost.reship")}
    for case_id, (finding, remedy, rule) in want.items():
        o = outs[case_id]
        assert (o.finding, o.remedy, o.rule, o.defaulted) == (finding, remedy, rule, False), o
        assert o.inquiry_id == inquiry_id("delivered_not_received", case_id, 1)
        assert o.kind == m.INQUIRY_KIND_DELIVERED_NOT_RECEIVED and o.carrier == "SF"
    assert outs[ok[0]].proof == "signed: neighbour 3B"
    settle(h)
    # exactly one outcome per inquiry; the answer deadlines are gone
    assert len(of_kind(events(h, r), "delivery_outcome")) == 4
    assert h.scalar("SELECT count(*) FROM logistics.deadlines WHERE kind = 'answer'"
                    " AND fired_at IS NULL AND cancelled_at IS NULL") == 0


def test_no_answer_by_the_deadline_decides_for_the_buyer(h):
    w = start_logistics(h)
    r, cases_r, dlq = h.reader(LOGISTICS_TOPIC), h.reader(CASES_TOPIC), h.reader(DLQ_TOPIC)
    m, c = pbm(h).logistics, pbm(h).common
    refund, reship = dbnr(h), dbnr(h, preferred="RESHIP")
    asked = {p.case_id: p for _, p, _, _ in wait_kind(h, r, "carrier_verification_requested", 2)}
    for case_id in (refund[0], reship[0]):
        fire(h, "answer", case_id)
    outs = {p.case_id: p for _, p, _, _ in wait_kind(h, r, "delivery_outcome", 2)}
    assert (outs[refund[0]].finding, outs[refund[0]].remedy, outs[refund[0]].rule) == \
        (m.DELIVERY_FINDING_LOST, c.OUTCOME_REFUND, "deadline.buyer_favour.refund")
    assert (outs[reship[0]].remedy, outs[reship[0]].rule) == (c.OUTCOME_RESHIP, "deadline.buyer_favour.reship")
    assert outs[refund[0]].defaulted and outs[reship[0]].defaulted
    b = {p.case_id: p for _, p, _, _ in wait_kind(h, cases_r, "sla_breached", 2)}
    assert (b[refund[0]].clock, b[refund[0]].escalated_to) == ("carrier_answer", "logistics_desk")
    assert b[refund[0]].due_at_us == asked[refund[0]].answer_due_us
    wait_until(lambda: w.metric("as_logistics_verifications_total", result="defaulted") == 2,
               10 * SLOW, what="defaults counted")
    # the carrier's late answer after the default: refused, nothing decided twice
    answer(h, inquiry=asked[refund[0]].inquiry_id, finding="DELIVERED_CONFIRMED")
    wait_dead(h, dlq, 1)
    settle(h)
    assert dead_reasons(h, dlq) == [("contract_violation",
                                     "already_answered: the inquiry was answered or closed already")]
    assert len(of_kind(events(h, r), "delivery_outcome")) == 2


def test_second_answer_unknown_inquiry_and_unknown_case(h):
    w = start_logistics(h)
    r, dlq = h.reader(LOGISTICS_TOPIC), h.reader(DLQ_TOPIC)
    case_id, *_ = dbnr(h)
    q = wait_kind(h, r, "carrier_verification_requested")[0][1]
    first = answer(h, inquiry=q.inquiry_id, finding="LOST")
    wait_kind(h, r, "delivery_outcome")
    # the same answer redelivered: skipped by the inbox; another answer: refused
    h.produce_many([(q.inquiry_id, first.SerializeToString(), None)], topic=LOGISTICS_TOPIC)
    answer(h, inquiry=q.inquiry_id, finding="DELIVERED_CONFIRMED")
    answer(h, inquiry=inquiry_id("delivered_not_received", "case-nobody", 1), finding="LOST")
    answer(h, case_id="case-nobody", finding="LOST")
    answer(h, inquiry="not-a-uuid", finding="LOST")
    wait_dead(h, dlq, 4)
    settle(h)
    details = sorted(d for _, d in dead_reasons(h, dlq))
    assert details == sorted(["already_answered: the inquiry was answered or closed already",
                              "unknown_inquiry: no inquiry with this id",
                              "unknown_case: no inquiry for this case",
                              "unknown_inquiry: inquiry id not a UUID"]), details
    assert len(of_kind(events(h, r), "delivery_outcome")) == 1
    assert w.metric("as_logistics_answers_refused_total") == 4
    assert w.metric("as_logistics_verifications_total", result="answered_in_time") == 1
    assert w.metric("as_logistics_verifications_answered_in_time_ratio") == 1.0


def test_not_received_before_and_after_the_expected_date(h):
    start_logistics(h)
    r = h.reader(LOGISTICS_TOPIC)
    m = pbm(h).logistics
    # past the expected date: asked at once
    o1, b1, t1 = ship_order(h, expected=now_us() - DAY_US)
    late = logistics_case(h, o1, b1, reason="NOT_RECEIVED")
    # before it: a deadline at the expected date, then the same
    expected = now_us() + 3 * DAY_US
    o2, b2, t2 = ship_order(h, expected=expected)
    early = logistics_case(h, o2, b2, reason="NOT_RECEIVED")
    q = wait_kind(h, r, "carrier_verification_requested")[0][1]
    assert (q.case_id, q.kind, list(q.checks)) == (late, m.INQUIRY_KIND_NOT_RECEIVED,
                                                   [m.VERIFICATION_CHECK_LOCATION])
    assert q.inquiry_id == inquiry_id("not_received", late, 1)
    wait_state(h, late, "CARRIER_VERIFYING")
    wait_until(lambda: h.scalar("SELECT extract(epoch FROM due_at) * 1e6 FROM logistics.deadlines"
                                " WHERE case_id = %s AND kind = 'expected'", (early,)), 20 * SLOW,
               what="expected-date deadline")
    assert abs(h.scalar("SELECT extract(epoch FROM due_at) * 1e6 FROM logistics.deadlines"
                        " WHERE case_id = %s AND kind = 'expected'", (early,)) - expected) < 2
    # taken at once (intake's pickup clock is met), the buyer told when the carrier is asked
    wait_state(h, early, "CARRIER_VERIFYING")
    assert h.scalar("SELECT reason FROM cases.timeline WHERE case_id = %s AND to_state ="
                    " 'CARRIER_VERIFYING'", (early,)) == "carrier.awaiting_expected_delivery"
    w = [p for _, p, _, _ in wait_kind(h, r, "tracking_notice", 2) if p.case_id == early]
    assert [(x.kind, x.ask_carrier_at_us, x.inquiry_id) for x in w] == [
        (m.TRACKING_NOTICE_KIND_UNSPECIFIED, expected, "")]
    fire(h, "expected", early)
    q2 = wait_kind(h, r, "carrier_verification_requested", 2)[1][1]
    assert (q2.case_id, q2.tracking_number) == (early, t2)
    wait_state(h, early, "CARRIER_VERIFYING")
    n = [p for _, p, _, _ in wait_kind(h, r, "tracking_notice", 3) if p.case_id == early][1]
    assert n.kind == m.TRACKING_NOTICE_KIND_LATE and n.buyer_id == b2 and n.ask_carrier_at_us == 0
    # the carrier finds it moving: no outcome yet, asked again later
    answer(h, inquiry=q2.inquiry_id, finding="IN_TRANSIT")
    wait_until(lambda: h.scalar("SELECT count(*) FROM logistics.deadlines WHERE case_id = %s"
                                " AND kind = 'expected' AND fired_at IS NULL", (early,)) == 1,
               20 * SLOW, what="asked again later")
    settle(h)
    assert not of_kind(events(h, r), "delivery_outcome")


def test_a_reason_without_a_flow_or_an_unknown_parcel_is_escalated(h):
    w = start_logistics(h)
    cases_r = h.reader(CASES_TOPIC)
    o, b, _ = ship_order(h)
    damaged = logistics_case(h, o, b, reason="DAMAGED_IN_TRANSIT")
    nowhere = logistics_case(h, f"o-{tag()}", b, reason="DELIVERED_NOT_RECEIVED")
    wait_state(h, damaged, "ESCALATED")
    wait_state(h, nowhere, "ESCALATED")
    b = {p.case_id: p for _, p, _, _ in wait_kind(h, cases_r, "sla_breached", 2)}
    assert (b[damaged].clock, b[damaged].escalated_to) == ("logistics", "logistics_desk")
    moved = {p.case_id: p.reason for _, p, _, _ in of_kind(events(h, cases_r), "case_state_changed")}
    wait_until(lambda: w.metric("as_logistics_cases_escalated_total") == 2, 10 * SLOW, what="counted")
    _ = moved
    rows = h.sql("SELECT case_id, reason FROM cases.timeline WHERE case_id = ANY(%s) AND to_state = 'ESCALATED'",
                 ([damaged, nowhere],))
    assert dict(rows) == {damaged: "logistics.unhandled_reason", nowhere: "logistics.no_parcel"}
