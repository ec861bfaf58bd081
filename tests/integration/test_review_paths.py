"""Review paths the other review tests leave out: evidence arriving later,
exchanges, failed inspections, a return shipped in time, and the deadlines
that close a case (evidence, return, offer). Deadlines are days long, so the
tests move a deadline row's due time into the past and let the worker's
scanner find it, which is the path a real expiry takes."""
import pytest

from conftest import DLQ_TOPIC, SLOW, dead_letters, wait_until
from review_helpers import (DAY_US, DECISIONS_TOPIC, LOGISTICS_TOPIC, REFUNDS_TOPIC, REVIEW_TOPIC, decided,
                            insert_case_rows, logistics_clock, new_case, now_us, of_kind, open_cases, pbm, produce_on, refunds_db,
                            returned_and_inspected, start_review, state, wait_decided, wait_events, wait_state)

PHOTO = ("https://img.example.com/p/1.jpg", "image/jpeg")


def expire(h, case_id, kind):
    """Moves a pending deadline into the past; returns how many rows moved."""
    return h.sql("UPDATE review.deadlines SET due_at = now() - interval '1 second'"
                 " WHERE case_id = %s AND kind = %s AND fired_at IS NULL AND cancelled_at IS NULL"
                 " RETURNING id", (case_id, kind))


def test_evidence_added_later_redecides_the_case(h):
    m = pbm(h)
    start_review(h)
    review_r = h.reader(REVIEW_TOPIC)
    e = new_case(h, case_type="QUALITY_CLAIM", reason="QUALITY_DEFECT", lines=[("l1", "S", "apparel", 1, 5000, 1)])
    open_cases(h, [e])
    wait_state(h, e.case_id, "AWAITING_EVIDENCE")
    assert h.scalar("SELECT count(*) FROM review.deadlines WHERE case_id = %s AND kind = 'evidence'"
                    " AND fired_at IS NULL AND cancelled_at IS NULL", (e.case_id,)) == 1
    # A document is not a photo: nothing changes.
    doc = m.requests.EvidenceAdded(case_id=e.case_id, buyer_id=e.case_opened.buyer_id, added_at_us=now_us())
    doc.evidence.add(uri="https://x.example.com/a.pdf", media_type="application/pdf", size_bytes=10, sha256="a" * 64)
    produce_on(h, "aftersales.cases.v1", "evidence_added", doc, e.case_id)
    photo = m.requests.EvidenceAdded(case_id=e.case_id, buyer_id=e.case_opened.buyer_id, added_at_us=now_us())
    photo.evidence.add(uri=PHOTO[0], media_type=PHOTO[1], size_bytes=10, sha256="b" * 64)
    produce_on(h, "aftersales.cases.v1", "evidence_added", photo, e.case_id)
    wait_state(h, e.case_id, "AWAITING_RETURN")
    evs = wait_decided(h, review_r, [e.case_id], n=2)
    verdicts = [p.verdict for p in decided(evs)[e.case_id]]
    assert verdicts == [m.review.VERDICT_AWAITING_EVIDENCE, m.review.VERDICT_APPROVED]
    assert h.scalar("SELECT cancelled_at IS NOT NULL FROM review.deadlines WHERE case_id = %s AND kind = 'evidence'",
                    (e.case_id,)) is True


def test_exchange_failed_inspection_and_shipped_return(h):
    m = pbm(h)
    start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    exch = new_case(h, case_type="EXCHANGE", reason="SIZE_MISMATCH", lines=[("l1", "TEE-M", "apparel", 1, 5000, 1)])
    worn = new_case(h, lines=[("l1", "S", "apparel", 1, 5000, 1)])
    shipped = new_case(h, lines=[("l1", "S", "apparel", 1, 5000, 1)])
    open_cases(h, [exch, worn, shipped])
    for c in (exch, worn, shipped):
        wait_state(h, c.case_id, "AWAITING_RETURN")
    returned_and_inspected(h, exch.case_id, resellable=True)
    returned_and_inspected(h, worn.case_id, resellable=False)
    rs = m.logistics.ReturnShipped(case_id=shipped.case_id, carrier="SF", tracking_number="SF9",
                                   shipped_at_us=now_us())
    produce_on(h, LOGISTICS_TOPIC, "return_shipped", rs, shipped.case_id)
    logistics_clock(h, shipped.case_id, "return_transit")
    wait_state(h, exch.case_id, "EXCHANGED")
    wait_state(h, worn.case_id, "REJECTED")
    evs = wait_events(h, refunds_r, lambda ev: of_kind(ev, "exchange_requested"), what="ExchangeRequested")
    ex = [p for _, p, _, _ in of_kind(evs, "exchange_requested")]
    assert [(p.case_id, [(l.line_id, l.sku, l.quantity) for l in p.replacement_lines]) for p in ex] == \
        [(exch.case_id, [("l1", "TEE-M", 1)])]
    assert refunds_db(h, worn.case_id) == [] and refunds_db(h, exch.case_id) == []
    wait_until(lambda: h.scalar("SELECT cancelled_at IS NOT NULL FROM review.deadlines WHERE case_id = %s"
                                " AND kind = 'return'", (shipped.case_id,)), 20 * SLOW, what="return clock stopped")
    assert expire(h, shipped.case_id, "return") == []  # a shipped return is not closed for lateness
    assert state(h, shipped.case_id) == "AWAITING_RETURN"


def test_deadlines_close_cases_and_tell_the_buyer(h):
    m = pbm(h)
    start_review(h)
    review_r = h.reader(REVIEW_TOPIC)
    dlq_r = h.reader(DLQ_TOPIC)
    no_photo = new_case(h, case_type="QUALITY_CLAIM", reason="DAMAGED_IN_TRANSIT")
    no_parcel = new_case(h)
    late = new_case(h, case_type="QUALITY_CLAIM", reason="QUALITY_DEFECT", evidence=[PHOTO],
                    delivered_at_us=now_us() - 40 * DAY_US)
    open_cases(h, [no_photo, no_parcel, late])
    wait_state(h, no_photo.case_id, "AWAITING_EVIDENCE")
    wait_state(h, no_parcel.case_id, "AWAITING_RETURN")
    wait_state(h, late.case_id, "GOODWILL_OFFERED")
    assert len(expire(h, no_photo.case_id, "evidence")) == 1
    assert len(expire(h, no_parcel.case_id, "return")) == 1
    assert len(expire(h, late.case_id, "offer")) == 1
    for c in (no_photo, no_parcel, late):
        wait_state(h, c.case_id, "CLOSED")
    evs = wait_decided(h, review_r, [no_photo.case_id, no_parcel.case_id, late.case_id], n=2)
    last = {cid: ps[-1] for cid, ps in decided(evs).items()}
    assert {cid: (p.verdict, p.reason_code) for cid, p in last.items()} == {
        no_photo.case_id: (m.review.VERDICT_REJECTED, "evidence.deadline_passed"),
        no_parcel.case_id: (m.review.VERDICT_REJECTED, "return.not_shipped"),
        late.case_id: (m.review.VERDICT_REJECTED, "goodwill.expired"),
    }
    # The timeline says who closed it and why.
    rows = h.sql("SELECT actor_id, reason FROM cases.timeline WHERE case_id = %s ORDER BY version DESC LIMIT 1",
                 (no_parcel.case_id,))
    assert rows == [("review:deadline", "return.not_shipped")]
    # A reply after the offer expired is refused, and pays nothing.
    reply = m.review.BuyerReplied(case_id=late.case_id, offer_id="x", accepted=True,
                                  buyer_id=late.case_opened.buyer_id)
    produce_on(h, DECISIONS_TOPIC, "buyer_replied", reply, late.case_id)
    dead = wait_until(lambda: dead_letters(h, dlq_r), 20 * SLOW, what="dead letter")
    assert [d.reason_code for _, d, _ in dead] == ["contract_violation"]
    assert "no open offer" in dead[0][1].detail
    assert refunds_db(h, late.case_id) == []


def test_agent_partial_approval_pays_only_the_approved_amount(h):
    m = pbm(h)
    start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    # Cheap (refund without return) but the third claim on its order: manual.
    e = new_case(h, lines=[("l1", "S", "apparel", 1, 400, 1), ("l2", "T", "apparel", 1, 500, 1)], claims_on_order=2)
    open_cases(h, [e])
    wait_state(h, e.case_id, "MANUAL_REVIEW")
    a = m.review.AgentDecision(case_id=e.case_id, agent_id="agent-7", verdict=m.review.VERDICT_APPROVED,
                               outcome=m.common.OUTCOME_REFUND, note="half, the buyer kept one sock")
    a.amount.amount_minor, a.amount.currency = 450, "CNY"
    produce_on(h, DECISIONS_TOPIC, "agent_decision", a, e.case_id)
    wait_state(h, e.case_id, "REFUNDED")
    evs = wait_events(h, refunds_r, lambda ev: of_kind(ev, "refund_issued"), what="refund")
    (r,) = [p for _, p, _, _ in of_kind(evs, "refund_issued")]
    assert (r.items_amount.amount_minor, r.shipping_amount.amount_minor, r.total.amount_minor) == (450, 0, 450)
    assert sorted((l.line_id, l.amount.amount_minor) for l in r.lines) == [("l1", 200), ("l2", 250)]
    assert h.scalar("SELECT actor_id FROM cases.timeline WHERE case_id = %s AND to_state = 'APPROVED'",
                    (e.case_id,)) == "agent-7"


@pytest.mark.invariants_exempt("the refused crafted case stays OPEN with no deadline: intake,"
                               " which would have armed one, never saw it", checks=("deadlines",))
def test_case_opened_with_an_unstorable_due_time_is_refused_before_sql(h):
    """A CaseOpened that passes the integrity check but whose review_due_us
    PostgreSQL cannot store as a timestamp (it becomes the sla:review
    deadline of a case left to a person) is refused by review's validator
    as contract_violation, with a reason, before any SQL: the batch does not
    fail in the database (no handler_failed, nothing bisected), and the
    good case beside it is decided."""
    start_review(h)
    dlq_r = h.reader(DLQ_TOPIC)
    review_r = h.reader(REVIEW_TOPIC)
    manual = [("l1", "S", "apparel", 1, 200001, 1)]  # above the manual threshold
    bad = new_case(h, lines=manual, review_due_us=-(2**63) + 1)
    good = new_case(h, lines=manual)
    insert_case_rows(h, [bad], review_clock=False)
    insert_case_rows(h, [good])
    open_cases(h, [bad, good], insert=False)
    wait_decided(h, review_r, [good.case_id])
    wait_state(h, good.case_id, "MANUAL_REVIEW")
    dead = wait_until(lambda: dead_letters(h, dlq_r), 20 * SLOW, what="dead letter")
    assert [(d.reason_code, d.original_event_id) for _, d, _ in dead] == \
        [("contract_violation", bad.event_id)]
    assert "review_due_us" in dead[0][1].detail
    w = h.workers[0]
    assert w.metric("as_batch_handler_failures_total") == 0
    assert w.metric("as_messages_deadlettered_total", reason="handler_failed") == 0
    assert state(h, bad.case_id) == "OPEN"
