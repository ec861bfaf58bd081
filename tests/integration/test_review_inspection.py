"""Issue 12, review's side of inspection: a quality claim QC judges from its
evidence (InspectionRequested, the case INSPECTING), InspectionCompleted
refunding only the units inspection counted and naming the inspector, and
CompensationGranted (a supplier alert's reporter) refunding what is left of
the affected lines once per compensation id, in any state, with a coupon.
Real review, PostgreSQL and broker; the inspection worker's events are
crafted as it publishes them (real protobuf bytes on its topic)."""
import uuid

from conftest import CASES_TOPIC, DLQ_TOPIC, SLOW, wait_until
from review_helpers import (DECISIONS_TOPIC, INSPECTION_TOPIC, LOGISTICS_TOPIC, REFUNDS_TOPIC, REVIEW_TOPIC,
                            decided, events, inspection_completed, new_case, now_us, of_kind, open_cases, pbm,
                            pending_deadlines, produce_on, refund_events, start_review, state, task_id, wait_dead,
                            wait_decided, wait_events, wait_state)

PHOTO = (("https://img.example.com/p/1.jpg", "image/jpeg"),)
ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")


def aftersales_id(ns, name):
    return str(uuid.uuid5(uuid.uuid5(ROOT, ns), name))


def last_row(h, case_id):
    return h.sql("SELECT from_state, to_state, actor_kind, actor_id, reason, detail FROM cases.timeline"
                 " WHERE case_id = %s ORDER BY version DESC LIMIT 1", (case_id,))[0]


def received(h, case_id, lines):
    m = pbm(h)
    rr = m.logistics.ReturnReceived(case_id=case_id, warehouse_id="WH-CN-SH-01", received_at_us=now_us())
    for line_id, sku, qty in lines:
        rr.lines.add(line_id=line_id, sku=sku, quantity=qty)
    produce_on(h, LOGISTICS_TOPIC, "return_received", rr, case_id)


def grant(h, e, lines, amount=None, coupon=500, alert="alert-1", currency="CNY", **kw):
    """A CompensationGranted as the inspection worker publishes it."""
    m = pbm(h)
    co = e.case_opened
    g = m.inspection.CompensationGranted(
        compensation_id=kw.pop("compensation_id", aftersales_id("aftersales.compensation", f"{alert}|{co.case_id}")),
        case_id=kw.pop("case_id", co.case_id), alert_id=alert, kind=m.common.OUTCOME_REFUND,
        buyer_id=co.buyer_id, order_id=co.order_id, granted_at_us=now_us())
    for line_id, sku, qty in lines:
        g.lines.add(line_id=line_id, sku=sku, quantity=qty)
    g.amount.amount_minor = sum(l.paid_allocated.amount_minor for l in co.case_lines) if amount is None else amount
    g.amount.currency = currency
    g.coupon.amount_minor, g.coupon.currency = coupon, kw.pop("coupon_currency", currency)
    return g


def produce_grant(h, g, event_id=None):
    return produce_on(h, INSPECTION_TOPIC, "compensation_granted", g, g.case_id, event_id=event_id)


def uniq(evs):
    """One entry per event id: the wire may repeat an event (consumers dedupe)."""
    return list({env.event_id: (k, p, key, env) for k, p, key, env in evs}.values())


def wait_refunds(h, reader, case_id, n=1):
    """The case's RefundIssued once n are on the topic (the relay publishes
    after the move commits)."""
    got = {}

    def ok():
        for c, rs in refund_events(h, reader).items():
            got.setdefault(c, []).extend(r for r in rs if r not in got.get(c, []))
        return len(got.get(case_id, [])) >= n or None
    wait_until(ok, 20 * SLOW, what=f"{n} RefundIssued for {case_id}")
    return got[case_id]


def order_refunded(h, order_id):
    return h.scalar("SELECT coalesce(sum(total_minor), 0) FROM review.refunds WHERE order_id = %s", (order_id,))


def test_route_to_qc_publishes_inspection_requested_and_a_confirmed_defect_refunds_the_judged_units(h):
    m = pbm(h)
    start_review(h)
    review_r, insp_r, refunds_r = h.reader(REVIEW_TOPIC), h.reader(INSPECTION_TOPIC), h.reader(REFUNDS_TOPIC)
    e = new_case(h, case_type="REFUND_ONLY", reason="QUALITY_DEFECT", evidence=PHOTO, shipping_fee=0,
                 lines=[("l1", "TEE-RED", "apparel", 2, 1000, 2)])
    e.case_opened.case_lines[0].lot_id = "LOT-7"
    open_cases(h, [e])
    cid = e.case_id
    wait_state(h, cid, "INSPECTING")
    (rd,) = decided(wait_decided(h, review_r, [cid]))[cid]
    assert (rd.verdict, rd.reason_code, rd.case_state) == (m.review.VERDICT_MANUAL_REVIEW, "qc.evidence",
                                                          m.common.CASE_STATE_INSPECTING)
    evs = wait_events(h, insp_r, lambda ev: of_kind(ev, "inspection_requested"), what="InspectionRequested")
    ((_, ir, key, _),) = of_kind(uniq(evs), "inspection_requested")
    assert key == cid
    assert ir.task_id == task_id(cid, "evidence") == aftersales_id("aftersales.inspection_task", f"{cid}|evidence")
    assert (ir.case_id, ir.order_id, ir.buyer_id, ir.sku, ir.category, ir.supplier_id, ir.lot_id, ir.reason) == (
        cid, e.order_id, e.case_opened.buyer_id, "TEE-RED", "apparel", "sup-1", "LOT-7", m.common.REASON_QUALITY_DEFECT)
    assert [(l.line_id, l.sku, l.quantity) for l in ir.lines] == [("l1", "TEE-RED", 2)]
    assert [a.uri for a in ir.evidence] == [PHOTO[0][0]]
    # QC's clock is the inspection worker's: review arms none, and met its own review SLA.
    assert pending_deadlines(h, cid) == []
    assert h.scalar("SELECT met_at IS NOT NULL FROM cases.sla_clocks WHERE case_id = %s AND clock = 'review'",
                    (cid,)) is True
    # QC confirms the defect on one of the two units it was asked about: one unit is refunded.
    ic = inspection_completed(h, cid, defect=True, resellable=False, kind="evidence", lines=[("l1", "TEE-RED", 1)],
                              inspector_id="qc-7", defect_code="colour_fading", severity=3)
    produce_on(h, INSPECTION_TOPIC, "inspection_completed", ic, cid)
    wait_state(h, cid, "REFUNDED")
    (r,) = wait_refunds(h, refunds_r, cid)
    assert (r.items_amount.amount_minor, r.total.amount_minor, r.reason_code) == (1000, 1000, "inspection.evidence")
    assert [(l.line_id, l.quantity, l.amount.amount_minor) for l in r.lines] == [("l1", 1, 1000)]
    frm, to, kind, who, why, detail = last_row(h, cid)
    assert (frm, to, kind, who, why) == ("INSPECTING", "REFUNDED", "agent", "qc-7", "inspection.passed")
    assert detail["counted"] == {"l1": 1} and detail["task_id"] == ic.task_id


def test_evidence_added_later_routes_the_claim_to_qc_with_that_evidence(h):
    m = pbm(h)
    start_review(h)
    insp_r = h.reader(INSPECTION_TOPIC)
    e = new_case(h, case_type="REFUND_ONLY", reason="NOT_AS_DESCRIBED", lines=[("l1", "LAMP", "homeware", 1, 900, 1)])
    open_cases(h, [e])
    cid = e.case_id
    wait_state(h, cid, "AWAITING_EVIDENCE")
    photo = m.requests.EvidenceAdded(case_id=cid, buyer_id=e.case_opened.buyer_id, added_at_us=now_us())
    photo.evidence.add(uri="https://img.example.com/p/2.jpg", media_type="image/jpeg", size_bytes=10, sha256="b" * 64)
    produce_on(h, CASES_TOPIC, "evidence_added", photo, cid)
    wait_state(h, cid, "INSPECTING")
    evs = wait_events(h, insp_r, lambda ev: of_kind(ev, "inspection_requested"), what="InspectionRequested")
    ((_, ir, _, _),) = of_kind(uniq(evs), "inspection_requested")
    assert (ir.task_id, [a.uri for a in ir.evidence]) == (task_id(cid, "evidence"), ["https://img.example.com/p/2.jpg"])
    # QC does not confirm the defect: rejected, no money.
    ic = inspection_completed(h, cid, defect=False, resellable=False, kind="evidence", inspector_id="qc-3",
                              failed_items=["matches_listing"])
    produce_on(h, INSPECTION_TOPIC, "inspection_completed", ic, cid)
    wait_state(h, cid, "REJECTED")
    assert last_row(h, cid)[2:5] == ("agent", "qc-3", "inspection.failed")
    assert h.scalar("SELECT count(*) FROM review.refunds WHERE case_id = %s", (cid,)) == 0


def test_return_received_two_of_three_and_passed_refunds_two_units_only(h):
    start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    e = new_case(h, lines=[("l1", "MUG", "homeware", 3, 1000, 3)], shipping_fee=0)
    open_cases(h, [e])
    cid = e.case_id
    wait_state(h, cid, "AWAITING_RETURN")
    received(h, cid, [("l1", "MUG", 2)])
    wait_state(h, cid, "INSPECTING")
    assert pending_deadlines(h, cid) == []  # review's own inspection follow-up is retired
    # A follow-up armed before the retirement fires and does nothing: no SlaBreached, nothing re-armed.
    cases_r = h.reader(CASES_TOPIC)
    h.sql("INSERT INTO review.deadlines (case_id, kind, due_at) VALUES (%s, 'inspection', now() - interval '1s')",
          (cid,))
    wait_until(lambda: h.scalar("SELECT fired_at IS NOT NULL FROM review.deadlines WHERE case_id = %s"
                                " AND kind = 'inspection'", (cid,)), 20 * SLOW, what="old follow-up fired")
    assert pending_deadlines(h, cid) == [] and state(h, cid) == "INSPECTING"
    assert not of_kind(events(h, cases_r), "sla_breached")
    ic = inspection_completed(h, cid, resellable=True, lines=[("l1", "MUG", 2)], inspector_id="qc-2")
    produce_on(h, INSPECTION_TOPIC, "inspection_completed", ic, cid)
    wait_state(h, cid, "REFUNDED")
    (r,) = wait_refunds(h, refunds_r, cid)
    assert (r.items_amount.amount_minor, r.total.amount_minor) == (2000, 2000)
    assert [(l.line_id, l.quantity, l.amount.amount_minor) for l in r.lines] == [("l1", 2, 2000)]
    assert h.sql("SELECT refunded_minor, refunded_units FROM review.ledger WHERE order_id = %s AND line_id = 'l1'",
                 (e.order_id,)) == [(2000, 2)]
    assert last_row(h, cid)[2:5] == ("agent", "qc-2", "inspection.passed")


def test_failed_inspection_rejects_and_names_the_inspector(h):
    m = pbm(h)
    start_review(h)
    review_r = h.reader(REVIEW_TOPIC)
    e = new_case(h, lines=[("l1", "TEE", "apparel", 1, 3000, 1)])
    auto = new_case(h, lines=[("l1", "TEE", "apparel", 1, 3000, 1)])
    open_cases(h, [e, auto])
    for c in (e, auto):
        wait_state(h, c.case_id, "AWAITING_RETURN")
    # The finding first, the goods after (either order).
    ic = inspection_completed(h, e.case_id, resellable=False, inspector_id="qc-9", failed_items=["seams_intact"],
                              severity=2, grade=m.inspection.QC_GRADE_C)
    produce_on(h, INSPECTION_TOPIC, "inspection_completed", ic, e.case_id)
    wait_until(lambda: h.scalar("SELECT inspection_passed IS NOT NULL FROM review.cases WHERE case_id = %s",
                                (e.case_id,)), 20 * SLOW, what="finding recorded")
    received(h, e.case_id, [("l1", "TEE", 1)])
    wait_state(h, e.case_id, "REJECTED")
    frm, to, kind, who, why, detail = last_row(h, e.case_id)
    assert (frm, to, kind, who, why) == ("INSPECTING", "REJECTED", "agent", "qc-9", "inspection.failed")
    assert detail["failed_items"] == ["seams_intact"] and detail["severity"] == 2
    # Passed by the standard's rule, no human: the system "inspection" is named.
    received(h, auto.case_id, [("l1", "TEE", 1)])
    wait_state(h, auto.case_id, "INSPECTING")
    ic = inspection_completed(h, auto.case_id, resellable=True, inspector_id="", auto_passed=True)
    produce_on(h, INSPECTION_TOPIC, "inspection_completed", ic, auto.case_id)
    wait_state(h, auto.case_id, "REFUNDED")
    assert last_row(h, auto.case_id)[2:5] == ("system", "inspection", "inspection.passed")
    last = {c: ps[-1] for c, ps in decided(wait_decided(h, review_r, [e.case_id], n=2)).items()}
    assert (last[e.case_id].verdict, last[e.case_id].reason_code) == (m.review.VERDICT_REJECTED, "inspection.failed")


def test_compensation_tops_up_a_partly_refunded_case_to_what_was_paid_and_never_more(h):
    w = start_review(h)
    refunds_r, cases_r = h.reader(REFUNDS_TOPIC), h.reader(CASES_TOPIC)
    e = new_case(h, lines=[("l1", "TEE-RED", "apparel", 3, 1000, 3)], shipping_fee=800, paid=3500)
    open_cases(h, [e])
    cid = e.case_id
    line_paid = e.case_opened.case_lines[0].paid_allocated.amount_minor
    paid = e.case_opened.order.paid.amount_minor
    wait_state(h, cid, "AWAITING_RETURN")
    received(h, cid, [("l1", "TEE-RED", 1)])
    ic = inspection_completed(h, cid, resellable=True, lines=[("l1", "TEE-RED", 1)])
    produce_on(h, INSPECTION_TOPIC, "inspection_completed", ic, cid)
    wait_state(h, cid, "REFUNDED")
    first = order_refunded(h, e.order_id)
    assert 0 < first < line_paid
    # The alert's grant: all three units of the line. What is left of it comes back, and a coupon.
    g = grant(h, e, [("l1", "TEE-RED", 3)], coupon=500)
    produce_grant(h, g)
    evs = wait_events(h, refunds_r, lambda ev: len(of_kind(ev, "refund_issued")) >= 2 and of_kind(ev, "coupon_issued"),
                      what="top-up refund and coupon")
    evs = uniq(evs)
    refs = [p for _, p, _, _ in of_kind(evs, "refund_issued")]
    top = [r for r in refs if r.reason_code == "compensation.granted"]
    assert len(top) == 1
    assert top[0].refund_id == aftersales_id("aftersales.refund", f"{cid}|{g.compensation_id}")
    assert top[0].total.amount_minor == line_paid - first
    assert [(l.line_id, l.quantity) for l in top[0].lines] == [("l1", 2)]
    assert sum(r.total.amount_minor for r in refs) == line_paid <= paid  # the line's paid share, never more
    ((_, cp, _, _),) = of_kind(evs, "coupon_issued")
    assert (cp.coupon_id, cp.value.amount_minor, cp.value.currency) == (
        aftersales_id("aftersales.coupon", f"{cid}|{g.compensation_id}"), 500, "CNY")
    # A second alert's grant on the same case: nothing is left to refund; only its coupon.
    g2 = grant(h, e, [("l1", "TEE-RED", 3)], coupon=300, alert="alert-2")
    produce_grant(h, g2)
    wait_until(lambda: w.metric("as_review_compensations_total", result="granted") == 2, 20 * SLOW,
               what="second grant")
    assert order_refunded(h, e.order_id) == line_paid
    assert h.scalar("SELECT refunded_minor FROM review.ledger WHERE order_id = %s AND line_id = 'l1'",
                    (e.order_id,)) == line_paid
    assert state(h, cid) == "REFUNDED"
    rows = h.sql("SELECT from_state, to_state, actor_id, reason, (detail->>'refunded_minor')::bigint"
                 " FROM cases.timeline WHERE case_id = %s AND reason = 'compensation.granted' ORDER BY version", (cid,))
    assert rows == [("REFUNDED", "REFUNDED", "review", "compensation.granted", line_paid - first),
                    ("REFUNDED", "REFUNDED", "review", "compensation.granted", 0)]
    notes = [p for _, p, _, _ in of_kind(events(h, cases_r), "case_state_changed") if p.reason == "compensation.granted"]
    assert len(notes) == 2 and all(p.from_state == p.to_state for p in notes)


def test_the_same_grant_three_times_pays_once_and_issues_one_coupon(h):
    w = start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    # A case still with a person (third claim on its order): compensation happens in any state.
    e = new_case(h, lines=[("l1", "TEE-RED", "apparel", 1, 3000, 1)], claims_on_order=2)
    open_cases(h, [e])
    wait_state(h, e.case_id, "MANUAL_REVIEW")
    g = grant(h, e, [("l1", "TEE-RED", 1)], coupon=800)
    produce_grant(h, g)
    produce_grant(h, g)
    produce_grant(h, g)
    wait_until(lambda: w.metric("as_review_compensations_total", result="repeated") == 2, 20 * SLOW,
               what="two repeats counted")
    evs = wait_events(h, refunds_r, lambda ev: of_kind(ev, "refund_issued") and of_kind(ev, "coupon_issued"),
                      what="refund and coupon")
    evs += events(h, refunds_r)
    evs = uniq(evs)
    assert h.scalar("SELECT count(*) FROM review.coupons WHERE case_id = %s", (e.case_id,)) == 1
    assert [p.total.amount_minor for _, p, _, _ in of_kind(evs, "refund_issued")] == [3000]
    assert [p.value.amount_minor for _, p, _, _ in of_kind(evs, "coupon_issued")] == [800]
    assert h.scalar("SELECT count(*) FROM review.refunds WHERE case_id = %s", (e.case_id,)) == 1
    assert state(h, e.case_id) == "MANUAL_REVIEW"


def test_a_closed_case_is_compensated_with_a_timeline_row_and_not_reopened(h):
    start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    e = new_case(h, case_type="QUALITY_CLAIM", reason="DAMAGED_IN_TRANSIT",
                 lines=[("l1", "VASE", "homeware", 1, 4000, 1)])
    open_cases(h, [e])
    cid = e.case_id
    wait_state(h, cid, "AWAITING_EVIDENCE")
    h.sql("UPDATE review.deadlines SET due_at = now() - interval '1 second' WHERE case_id = %s AND kind = 'evidence'",
          (cid,))
    wait_state(h, cid, "CLOSED")
    produce_grant(h, grant(h, e, [("l1", "VASE", 1)], coupon=500))
    evs = wait_events(h, refunds_r, lambda ev: of_kind(ev, "refund_issued") and of_kind(ev, "coupon_issued"),
                      what="refund and coupon of a closed case")
    ((_, r, _, _),) = of_kind(uniq(evs), "refund_issued")
    assert (r.case_id, r.total.amount_minor, r.reason_code) == (cid, 4000, "compensation.granted")
    wait_until(lambda: last_row(h, cid)[4] == "compensation.granted", 20 * SLOW, what="timeline row")
    assert last_row(h, cid)[:5] == ("CLOSED", "CLOSED", "system", "review", "compensation.granted")
    assert state(h, cid) == "CLOSED"


def test_hostile_findings_and_grants_are_dead_lettered_and_the_partition_moves_on(h):
    start_review(h)
    dlq_r, refunds_r = h.reader(DLQ_TOPIC), h.reader(REFUNDS_TOPIC)
    e = new_case(h, lines=[("l1", "TEE", "apparel", 2, 1500, 2)], shipping_fee=0)
    open_cases(h, [e])
    cid = e.case_id
    wait_state(h, cid, "AWAITING_RETURN")
    received(h, cid, [("l1", "TEE", 2)])
    wait_state(h, cid, "INSPECTING")
    bad_ic = [
        (inspection_completed(h, cid, lines=[("l9", "X", 1)]), "line not on the case"),
        (inspection_completed(h, cid, lines=[("l1", "TEE", 3)]), "more than claimed"),
        (inspection_completed(h, cid, lines=[("l1", "TEE", -1)]), "negative"),
        (inspection_completed(h, cid, lines=[]), "counted no units"),
        (inspection_completed(h, cid, kind="other"), "task id is not this case's"),
        (inspection_completed(h, cid, inspector_id="qc 1"), "inspector id"),
        (inspection_completed(h, cid, resellable=False, failed_items=['seams"}']), "failed item code"),
        (inspection_completed(h, cid, severity=-2), "severity outside"),
    ]
    bad_g = [
        (grant(h, e, [("l1", "TEE", 2)], amount=-1), "amount negative"),
        (grant(h, e, [("l1", "TEE", 2)], currency="USD"), "another currency"),
        (grant(h, e, [("l1", "TEE", 2)], coupon=-5), "coupon negative"),
        (grant(h, e, [("l1", "TEE", 2)], coupon_currency="EUR"), "coupon negative or in another currency"),
        (grant(h, e, [("l7", "TEE", 2)]), "line not on the case"),
        (grant(h, e, [("l1", "TEE", 2)], compensation_id=str(uuid.uuid4())), "compensation id is not"),
        (grant(h, e, [("l1", "TEE", 2)], case_id="case-nobody-holds"), "unknown_case"),
    ]
    for ic, _ in bad_ic:
        produce_on(h, INSPECTION_TOPIC, "inspection_completed", ic, cid)
    for g, _ in bad_g:
        produce_grant(h, g)
    # Behind them on the same partition: the real finding settles the case.
    produce_on(h, INSPECTION_TOPIC, "inspection_completed", inspection_completed(h, cid), cid)
    wait_state(h, cid, "REFUNDED")
    dead = wait_dead(h, dlq_r, len(bad_ic) + len(bad_g))
    details = [d.detail for _, d, _ in dead]
    assert all(d.reason_code == "contract_violation" for _, d, _ in dead)
    for _, want in bad_ic + bad_g:
        assert any(want in d for d in details), (want, details)
    (r,) = wait_refunds(h, refunds_r, cid)
    assert r.total.amount_minor == 3000
    assert h.scalar("SELECT count(*) FROM review.compensations WHERE case_id = %s", (cid,)) == 0
