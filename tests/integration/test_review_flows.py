"""Review after the first decision: goodwill offers and buyers' replies,
agents, disputes and rulings, the review SLA, exactly-once money under
redelivery and two instances, and the ledger's cap. Crafted CaseOpened events
(with their shared cases.cases rows) on a real broker and PostgreSQL.

Not covered here: the evidence / return / offer deadlines (the policy
refuses evidence_days, return_days < 1 day and offer_hours < 1 hour, too
long for a test).
"""
import uuid

import psycopg2
import pytest

from conftest import CASES_TOPIC, DLQ_TOPIC, SLOW, settle, wait_until
from review_helpers import (refund_events, wait_dead, DAY_US, DECISIONS_TOPIC, INSPECTION_TOPIC, LOGISTICS_TOPIC, REFUNDS_TOPIC,
                            REVIEW_TOPIC, decided, events, new_case, now_us, of_kind, open_cases, pbm,
                            inspection_completed, produce_on, refunds_db, start_review, state,
                            wait_decided, wait_events, wait_state)

PHOTO = (("https://img.example.com/p/1.jpg", "image/jpeg"),)


# ---- 3. goodwill ---------------------------------------------------------------------

def test_goodwill_offer_accepted_declined_coupon_and_wrong_offer(h):
    m = pbm(h)
    C, V = m.common, m.review
    start_review(h)
    review_r, refunds_r, dl = h.reader(REVIEW_TOPIC), h.reader(REFUNDS_TOPIC), h.reader(DLQ_TOPIC)
    D = now_us() - 45 * DAY_US  # past the 30 claim days, within the 30 goodwill days
    kw = dict(reason="QUALITY_DEFECT", evidence=PHOTO, delivered_at_us=D, submitted_at_us=now_us(),
              lines=[("l1", "S", "apparel", 1, 3001, 1)])
    accept, decline, wrong = (new_case(h, **kw) for _ in range(3))
    coupon = new_case(h, **dict(kw, reason="NOT_AS_DESCRIBED"))  # not severe: a coupon
    rookie = new_case(h, **dict(kw, first_order_at_us=now_us() - 10 * DAY_US))  # no tenure: a coupon
    cases = [accept, decline, wrong, coupon, rookie]
    open_cases(h, cases)
    evs = wait_events(h, review_r, lambda e: len(of_kind(e, "goodwill_offered")) >= 5, what="5 offers")
    offers = {p.case_id: p for _, p, _, _ in of_kind(evs, "goodwill_offered")}
    d = decided(evs)
    for e in cases:
        assert (d[e.case_id][0].verdict, d[e.case_id][0].reason_code) == \
            (V.VERDICT_GOODWILL_OFFER, "goodwill.out_of_window")
        assert state(h, e.case_id) == "GOODWILL_OFFERED"
    o = offers[accept.case_id]
    assert (o.kind, o.amount.amount_minor, o.amount.currency, o.percent, o.policy_version) == \
        (C.OUTCOME_PARTIAL_REFUND, 1500, "CNY", 50, "builtin-1")  # floor(3001 * 50%)
    assert o.expires_at_us - d[accept.case_id][0].decided_at_us == 72 * 3600 * 10**6
    assert (offers[coupon.case_id].kind, offers[coupon.case_id].amount.amount_minor) == (C.OUTCOME_COUPON, 600)
    assert (offers[rookie.case_id].kind, offers[rookie.case_id].amount.amount_minor) == (C.OUTCOME_COUPON, 600)
    assert len({p.offer_id for p in offers.values()}) == 5

    def reply(e, accepted, offer_id=None, buyer_id=None):
        r = V.BuyerReplied(case_id=e.case_id, offer_id=offer_id or offers[e.case_id].offer_id,
                           accepted=accepted, buyer_id=buyer_id or e.case_opened.buyer_id,
                           replied_at_us=now_us())
        produce_on(h, DECISIONS_TOPIC, "buyer_replied", r, e.case_id)

    reply(accept, True)
    reply(decline, False)
    reply(coupon, True)
    reply(wrong, True, offer_id=offers[accept.case_id].offer_id)  # another case's offer
    reply(rookie, True, buyer_id="b-someone-else")
    wait_state(h, accept.case_id, "REFUNDED")
    wait_state(h, decline.case_id, "CLOSED")
    wait_state(h, coupon.case_id, "CLOSED")
    letters = wait_dead(h, dl, 2)
    assert sorted(x.reason_code for _, x, _ in letters) == ["contract_violation"] * 2
    assert sorted(x.detail for _, x, _ in letters) == ["reply: not the case's buyer", "reply: offer id does not match"]
    assert state(h, wrong.case_id) == "GOODWILL_OFFERED" and state(h, rookie.case_id) == "GOODWILL_OFFERED"
    wait_events(h, refunds_r, lambda e: of_kind(e, "refund_issued") and of_kind(e, "coupon_issued"),
                what="refund and coupon")
    settle(h)  # the replies to the wrong offer and the wrong buyer pay nothing, even late
    evs = events(h, refunds_r)
    refs = [p for _, p, _, _ in of_kind(evs, "refund_issued")]
    assert [p.case_id for p in refs] == [accept.case_id]
    r = refs[0]
    assert (r.goodwill_amount.amount_minor, r.items_amount.amount_minor, r.shipping_amount.amount_minor,
            r.total.amount_minor, r.reason_code) == (1500, 0, 0, 1500, "goodwill.accepted")
    coupons = [p for _, p, _, _ in of_kind(evs, "coupon_issued")]
    assert [(p.case_id, p.value.amount_minor, p.buyer_id) for p in coupons] == \
        [(coupon.case_id, 600, coupon.case_opened.buyer_id)]
    assert refunds_db(h, decline.case_id) == [] and len(refunds_db(h)) == 1


# ---- 4. manual review, agents, disputes, rulings ------------------------------------------

def test_agent_decisions_disputes_and_final_ruling(h):
    m = pbm(h)
    C, V = m.common, m.review
    start_review(h)
    review_r, dl = h.reader(REVIEW_TOPIC), h.reader(DLQ_TOPIC)
    big = new_case(h, lines=[("l1", "S", "apparel", 1, 300000, 1)])
    big2 = new_case(h, lines=[("l1", "S", "apparel", 1, 250000, 1)])
    auto = new_case(h)
    open_cases(h, [big, big2, auto])
    evs = wait_decided(h, review_r, [big.case_id, big2.case_id, auto.case_id])
    d = decided(evs)
    assert d[big.case_id][0].verdict == V.VERDICT_MANUAL_REVIEW
    assert state(h, big.case_id) == "MANUAL_REVIEW" and state(h, auto.case_id) == "AWAITING_RETURN"

    def agent(e, verdict, amount=None, agent_id="agent-7"):
        a = V.AgentDecision(case_id=e.case_id, agent_id=agent_id, verdict=verdict, note="checked photos",
                            decided_at_us=now_us())
        if amount is not None:
            a.amount.amount_minor, a.amount.currency = amount, "CNY"
        produce_on(h, DECISIONS_TOPIC, "agent_decision", a, e.case_id)

    agent(big, V.VERDICT_APPROVED)
    agent(auto, V.VERDICT_APPROVED)               # not in manual review
    agent(big2, V.VERDICT_APPROVED, amount=250001)  # above the claim
    agent(new_case(h), V.VERDICT_APPROVED)        # review never heard of it
    evs = wait_decided(h, review_r, [big.case_id], n=2)
    rd = decided(evs)[big.case_id][1]
    assert (rd.verdict, rd.reason_code, rd.decided_by.kind, rd.decided_by.id) == \
        (V.VERDICT_APPROVED, "agent.approved", C.ACTOR_KIND_AGENT, "agent-7")
    assert rd.approved_amount.amount_minor == 300000
    wait_state(h, big.case_id, "AWAITING_RETURN")  # the agent's approval carries the return instructions
    assert [p for k, p, _, _ in evs if k == "return_instructions" and p.case_id == big.case_id]
    letters = wait_dead(h, dl, 3)
    details = sorted(x.detail for _, x, _ in letters)
    assert all(x.reason_code == "contract_violation" for _, x, _ in letters)
    assert details == sorted(["agent decision: case_not_in_manual_review",
                              "agent decision: amount above the claim, negative or in another currency",
                              "unknown_case: review holds no such case"]), details
    assert state(h, big2.case_id) == "MANUAL_REVIEW" and len(decided(events(h, review_r))[auto.case_id]) == 1

    # The seller disputes the approved case; the mediator upholds the seller: final.
    def dispute(e, seller="m-1"):
        produce_on(h, DECISIONS_TOPIC, "dispute_opened",
                   V.DisputeOpened(case_id=e.case_id, seller_id=seller, statement="worn, tags removed",
                                   opened_at_us=now_us()), e.case_id)

    dispute(auto, seller="m-other")
    wait_dead(h, dl, 4)
    assert state(h, auto.case_id) == "AWAITING_RETURN"
    dispute(auto)
    wait_state(h, auto.case_id, "DISPUTED")
    produce_on(h, DECISIONS_TOPIC, "mediation_ruling",
               V.MediationRuling(case_id=auto.case_id, mediator_id="med-1", in_favour_of_buyer=False,
                                 reasoning="photos show wear", ruled_at_us=now_us()), auto.case_id)
    wait_state(h, auto.case_id, "REJECTED")
    dispute(auto)
    letters = wait_dead(h, dl, 5)
    assert "dispute: ruling_final" in [x.detail for _, x, _ in letters]
    settle(h)
    assert state(h, auto.case_id) == "REJECTED"
    assert h.scalar("SELECT ruling_final FROM review.cases WHERE case_id = %s", (auto.case_id,)) is True
    assert h.sql("SELECT to_state, actor_kind, actor_id FROM cases.timeline WHERE case_id = %s"
                 " ORDER BY version DESC LIMIT 2", (auto.case_id,)) == \
        [("REJECTED", "agent", "med-1"), ("DISPUTED", "seller", "m-1")]
    assert refunds_db(h) == []


def test_mediation_for_buyer_refunds_once(h):
    m = pbm(h)
    V = m.review
    start_review(h)
    refunds_r, review_r = h.reader(REFUNDS_TOPIC), h.reader(REVIEW_TOPIC)
    e = new_case(h, reason="MISSING_PARTS", lines=[("l1", "S", "apparel", 2, 2500, 2)])
    open_cases(h, [e])
    wait_state(h, e.case_id, "AWAITING_RETURN")
    produce_on(h, DECISIONS_TOPIC, "dispute_opened",
               V.DisputeOpened(case_id=e.case_id, seller_id="m-1", statement="complete when shipped"), e.case_id)
    wait_state(h, e.case_id, "DISPUTED")
    ruling = V.MediationRuling(case_id=e.case_id, mediator_id="med-2", in_favour_of_buyer=True,
                               outcome=m.common.OUTCOME_REFUND, reasoning="parts missing on video")
    for _ in range(3):  # a ruling redelivered under new ids pays once
        produce_on(h, DECISIONS_TOPIC, "mediation_ruling", ruling, e.case_id)
    wait_state(h, e.case_id, "REFUNDED")
    wait_events(h, refunds_r, lambda ev: of_kind(ev, "refund_issued"), what="refund")
    settle(h)  # every redelivered ruling handled
    refs = refund_events(h, refunds_r)
    assert len(refs[e.case_id]) == 1
    r = refs[e.case_id][0]
    assert (r.items_amount.amount_minor, r.shipping_amount.amount_minor, r.total.amount_minor) == (5000, 800, 5800)
    # The buyer hears of the dispute and of the ruling (ReviewDecided with the case's new state).
    told = [(p.reason_code, m.common.CaseState.Name(p.case_state))
            for p in decided(wait_decided(h, review_r, [e.case_id], n=3))[e.case_id][1:]]
    assert told == [("dispute.opened", "CASE_STATE_DISPUTED"), ("mediation.buyer_upheld", "CASE_STATE_REFUNDED")]


# ---- SLA ---------------------------------------------------------------------------------

def test_review_sla_breach_escalates_manual_review_case(h):
    m = pbm(h)
    start_review(h)
    cases_r = h.reader(CASES_TOPIC)
    late = new_case(h, lines=[("l1", "S", "apparel", 1, 300000, 1)], review_due_us=now_us() - 1_000_000)
    ontime = new_case(h, lines=[("l1", "S", "apparel", 1, 300000, 1)])
    open_cases(h, [late, ontime])
    wait_until(lambda: state(h, ontime.case_id) == "MANUAL_REVIEW", 20 * SLOW, what="manual review")
    evs = wait_events(h, cases_r, lambda e: of_kind(e, "sla_breached"), timeout=15, what="SlaBreached")
    b = [p for _, p, _, _ in of_kind(evs, "sla_breached")]
    assert [(p.case_id, p.clock, p.due_at_us, p.escalated_to) for p in b] == \
        [(late.case_id, "review", late.case_opened.review_due_us, "review_supervisors")]
    wait_state(h, late.case_id, "ESCALATED")
    assert h.scalar("SELECT breached_at IS NOT NULL FROM cases.sla_clocks WHERE case_id = %s AND clock = 'review'",
                    (late.case_id,)) is True
    assert state(h, ontime.case_id) == "MANUAL_REVIEW"
    assert m is not None


# ---- 5. exactly-once money ----------------------------------------------------------------

def test_redelivered_events_pay_once(h):
    m = pbm(h)
    w = start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    cheap_same = new_case(h, lines=[("l1", "S", "apparel", 1, 900, 1)])
    cheap_new = new_case(h, lines=[("l1", "S", "apparel", 1, 800, 1)])
    ret_same, ret_new = new_case(h), new_case(h)
    open_cases(h, [ret_same, ret_new])
    wait_state(h, ret_same.case_id, "AWAITING_RETURN")
    wait_state(h, ret_new.case_id, "AWAITING_RETURN")
    # The refund-only CaseOpened 100 times: the same bytes, then 100 new event ids.
    from conftest import CASES_TOPIC as CT
    open_cases(h, [cheap_same, cheap_new])
    h.produce_many([(cheap_same.case_id, cheap_same.SerializeToString(), None)] * 99, topic=CT)
    recs = []
    for _ in range(100):
        env = type(cheap_new)()
        env.CopyFrom(cheap_new)
        env.event_id = str(uuid.uuid4())
        recs.append((cheap_new.case_id, env.SerializeToString(), None))
    h.produce_many(recs, topic=CT)
    # The return: ReturnReceived + InspectionCompleted, 100 times each.
    rr = m.logistics.ReturnReceived(case_id=ret_same.case_id, warehouse_id="WH", received_at_us=now_us())
    ic = inspection_completed(h, ret_same.case_id)
    rr_env = h.envelope("return_received", rr, case_id=ret_same.case_id)
    ic_env = h.envelope("inspection_completed", ic, case_id=ret_same.case_id)
    h.produce_many([(ret_same.case_id, rr_env.SerializeToString(), None)] * 100, topic=LOGISTICS_TOPIC)
    h.produce_many([(ret_same.case_id, ic_env.SerializeToString(), None)] * 100, topic=INSPECTION_TOPIC)
    rr.case_id = ret_new.case_id
    ic = inspection_completed(h, ret_new.case_id)
    h.produce_many([(ret_new.case_id, h.envelope("return_received", rr, case_id=ret_new.case_id)
                     .SerializeToString(), None) for _ in range(100)], topic=LOGISTICS_TOPIC)
    h.produce_many([(ret_new.case_id, h.envelope("inspection_completed", ic, case_id=ret_new.case_id)
                     .SerializeToString(), None) for _ in range(100)], topic=INSPECTION_TOPIC)
    all4 = [cheap_same, cheap_new, ret_same, ret_new]
    for e in all4:
        wait_state(h, e.case_id, "REFUNDED", timeout=40)
    wait_events(h, refunds_r, lambda ev: len(of_kind(ev, "refund_issued")) >= 4, what="4 refunds")
    # The worker finishes the redeliveries still queued behind.
    settle(h, timeout=40)
    refs = refund_events(h, refunds_r)
    assert {c: len(v) for c, v in refs.items()} == {e.case_id: 1 for e in all4}
    assert h.scalar("SELECT count(*) FROM review.refunds") == 4
    assert sorted((r[1], r[5]) for r in refunds_db(h)) == sorted(
        [(cheap_same.case_id, 900), (cheap_new.case_id, 800), (ret_same.case_id, 3000), (ret_new.case_id, 3000)])
    assert w.metric("as_review_refunds_total") == 4


def test_two_instances_never_refund_twice(h):
    group = f"review-{h.group}"
    w1 = start_review(h, name="r1", AS_GROUP_ID=group)
    w2 = start_review(h, name="r2", AS_GROUP_ID=group)
    w1.wait_assigned()
    w2.wait_assigned()
    refunds_r = h.reader(REFUNDS_TOPIC)
    envs = [new_case(h, lines=[("l1", "S", "apparel", 1, 100 + i % 900, 1)]) for i in range(300)]
    open_cases(h, envs)
    # The same cases again under new event ids, while both instances run.
    again = []
    for e in envs:
        x = type(e)()
        x.CopyFrom(e)
        x.event_id = str(uuid.uuid4())
        again.append(x)
    open_cases(h, again, insert=False)
    wait_until(lambda: h.scalar("SELECT count(*) FROM cases.cases WHERE state = 'REFUNDED'") == 300 or None,
               60 * SLOW, interval=0.3, what="300 refunded")
    wait_events(h, refunds_r, lambda ev: len(of_kind(ev, "refund_issued")) >= 300, timeout=40, what="300 refunds")
    settle(h, timeout=40)  # both instances done with the copies
    refs = refund_events(h, refunds_r)
    assert len(refs) == 300
    dup = {c: len(v) for c, v in refs.items() if len(v) != 1}
    assert not dup, dup
    assert h.scalar("SELECT count(*) FROM review.refunds") == 300
    assert h.scalar("SELECT count(DISTINCT case_id) FROM review.refunds") == 300
    assert w1.metric("as_review_refunds_total") + w2.metric("as_review_refunds_total") == 300
    assert w1.metric("as_review_refunds_total") > 0 and w2.metric("as_review_refunds_total") > 0


# ---- 6. the ledger's cap ----------------------------------------------------------------------

def test_two_cases_on_one_line_cannot_refund_more_than_paid(h):
    start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    order_id = f"o-{uuid.uuid4().hex[:10]}"
    line = [("l1", "S", "apparel", 1, 800, 1)]
    a = new_case(h, order_id=order_id, reason="MISSING_PARTS", lines=line)
    b = new_case(h, order_id=order_id, reason="MISSING_PARTS", lines=line, buyer_id=a.case_opened.buyer_id)
    open_cases(h, [a, b])
    wait_until(lambda: {state(h, a.case_id), state(h, b.case_id)} == {"REFUNDED", "CLOSED"} or None,
               20 * SLOW, what="one refunded, one closed")
    paid, refunded = h.sql("SELECT paid_minor, refunded_minor FROM review.ledger WHERE order_id = %s"
                           " AND line_id = 'l1'", (order_id,))[0]
    assert (paid, refunded) == (800, 800)
    assert h.sql("SELECT paid_minor, refunded_minor FROM review.ledger WHERE order_id = %s"
                 " AND line_id = '#shipping'", (order_id,)) == [(800, 800)]
    wait_events(h, refunds_r, lambda ev: of_kind(ev, "refund_issued"), what="refund")
    settle(h)
    refs = [p for _, p, _, _ in of_kind(events(h, refunds_r), "refund_issued")]
    assert len(refs) == 1 and refs[0].total.amount_minor == 1600, refs
    closed = a if state(h, a.case_id) == "CLOSED" else b
    assert h.scalar("SELECT reason FROM cases.timeline WHERE case_id = %s ORDER BY version DESC LIMIT 1",
                    (closed.case_id,)) == "refund.nothing_left"
    # The database refuses an overdraft whatever the code does.
    conn = h.pg.connect(h.dbname)
    conn.autocommit = False
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.CheckViolation):
            rid = str(uuid.uuid4())
            cur.execute("INSERT INTO review.refunds (refund_id, case_id, order_id, currency, items_minor,"
                        " shipping_minor, goodwill_minor, total_minor, reason_code)"
                        " VALUES (%s, %s, %s, 'CNY', 1, 0, 0, 1, 'crafted')", (rid, closed.case_id, order_id))
            cur.execute("INSERT INTO review.refund_lines (refund_id, order_id, line_id, amount_minor)"
                        " VALUES (%s, %s, 'l1', 1)", (rid, order_id))
        conn.rollback()
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.CheckViolation):
            rid = str(uuid.uuid4())
            cur.execute("INSERT INTO review.refunds (refund_id, case_id, order_id, currency, items_minor,"
                        " shipping_minor, goodwill_minor, total_minor, reason_code)"
                        " VALUES (%s, %s, %s, 'CNY', 1, 0, 0, 1, 'crafted')", (rid, closed.case_id, order_id))
            cur.execute("INSERT INTO review.refund_lines (refund_id, order_id, line_id, amount_minor)"
                        " VALUES (%s, %s, 'no-such-line', 1)", (rid, order_id))
        conn.rollback()
    finally:
        conn.close()
    assert h.scalar("SELECT refunded_minor FROM review.ledger WHERE order_id = %s AND line_id = 'l1'",
                    (order_id,)) == 800
