"""Review and issue 8: refunds capped by what was paid (the amount paid
allocated over the lines and the shipping fee), checked arithmetic, the
integrity check of CaseOpened against intake's record, cases that cannot be
decided handed to a person, every buyer-visible outcome on the wire, and a
live deadline for every case review leaves waiting. Crafted CaseOpened
events with their shared rows (intake's record), a real broker and
PostgreSQL, real protobuf bytes; run with AS_BIN_DIR at the ASan+UBSan build
too (the overflow test is the one that aborted there).
"""
import uuid

from conftest import CASES_TOPIC, DLQ_TOPIC, SLOW, dead_letters, settle, wait_until
from review_helpers import (refund_events, wait_dead, DECISIONS_TOPIC, INSPECTION_TOPIC, LOGISTICS_TOPIC, REFUNDS_TOPIC, REVIEW_TOPIC,
                            cases_without_deadline, decided, events, insert_case_rows, new_case, now_us, of_kind,
                            inspection_completed, open_cases, paid_split, pbm, pending_deadlines, produce_on, refunds_db,
                            returned_and_inspected, share, start_review, state, wait_decided, wait_events,
                            wait_state)
from test_review import default_policy_text


def refunds_by_case(h, reader, n, timeout=20):
    """Every RefundIssued on the topic once the fleet is at rest, per case:
    a refund published twice shows as two."""
    wait_events(h, reader, lambda ev: len(of_kind(ev, "refund_issued")) >= n, timeout=timeout,
                what=f"{n} refunds")
    settle(h)
    return refund_events(h, reader)


def refunded_per_order(h, order_id):
    """Refunded / paid for an order over the whole ledger (lines + shipping)."""
    return h.sql("SELECT sum(refunded_minor)::bigint, sum(paid_minor)::bigint FROM review.ledger"
                 " WHERE order_id = %s", (order_id,))[0]


# ---- item 1: the cap is what was paid ---------------------------------------------------

def test_coupon_paid_line_refunds_what_was_paid_not_the_list_price(h):
    """One 10,000 line paid 8,000 (a checkout coupon), changed mind: 8,000 back."""
    start_review(h)
    review_r, refunds_r = h.reader(REVIEW_TOPIC), h.reader(REFUNDS_TOPIC)
    e = new_case(h, lines=[("l1", "S", "apparel", 1, 10000, 1)], shipping_fee=0, paid=8000)
    open_cases(h, [e])
    rd = decided(wait_decided(h, review_r, [e.case_id]))[e.case_id][0]
    assert (rd.reason_code, rd.approved_amount.amount_minor) == ("approve.return_refund", 8000)
    wait_state(h, e.case_id, "AWAITING_RETURN")
    returned_and_inspected(h, e.case_id, resellable=True)
    wait_state(h, e.case_id, "REFUNDED")
    (r,) = refunds_by_case(h, refunds_r, 1)[e.case_id]
    assert (r.items_amount.amount_minor, r.shipping_amount.amount_minor, r.total.amount_minor) == (8000, 0, 8000)
    assert h.sql("SELECT paid_minor, refunded_minor, purchased, refunded_units FROM review.ledger"
                 " WHERE order_id = %s AND line_id = 'l1'", (e.order_id,)) == [(8000, 8000, 1, 1)]


def test_refund_only_units_of_a_discounted_order_refund_fen_and_add_up_to_the_line(h):
    """800 x 3 + 5,000, shipping 800, paid 100: one unit back refunds a few
    fen (never 800); the other two later complete the line's allocation."""
    start_review(h)
    refunds_r = h.reader(REFUNDS_TOPIC)
    order_id, buyer = f"o-{uuid.uuid4().hex[:10]}", f"b-{uuid.uuid4().hex[:8]}"
    other = [("l2", 5000, 1)]
    kw = dict(order_id=order_id, buyer_id=buyer, case_type="REFUND_ONLY", shipping_fee=800, paid=100,
              other_lines=other)
    one = new_case(h, lines=[("l1", "S", "apparel", 1, 800, 3)], **kw)
    line_paid, ship_paid = paid_split([("l1", 800, 3)] + other, 800, 100)
    assert (line_paid, ship_paid) == ({"l1": 29, "l2": 61}, 10)  # as_money_allocate's rule, by hand
    open_cases(h, [one])
    wait_state(h, one.case_id, "REFUNDED")
    r1 = refunds_by_case(h, refunds_r, 1)[one.case_id][0]
    assert r1.total.amount_minor == share(29, 1, 3) == 9
    two = new_case(h, lines=[("l1", "S", "apparel", 2, 800, 3)], claims_on_order=1, **kw)
    open_cases(h, [two])
    wait_state(h, two.case_id, "REFUNDED")
    r2 = refunds_by_case(h, refunds_r, 2)[two.case_id][0]
    assert r2.total.amount_minor == 29 - 9  # the refund completing the line gets what the floors left
    assert [(l.line_id, l.quantity, l.amount.amount_minor) for l in r2.lines] == [("l1", 2, 20)]
    refunded, paid = refunded_per_order(h, order_id)
    assert (refunded, paid) == (29, 29 + 10)  # l2 never claimed: no ledger row; shipping untouched
    assert refunded <= 100


def shipping_policy(tmp_path):
    pol = tmp_path / "policy.ini"
    pol.write_text(default_policy_text().replace("version = builtin-1", "version = ship-test")
                   + "\n[merchant m-whole]\nshipping_refund = whole\n"
                   + "\n[merchant m-none]\nshipping_refund = none\n")
    return pol


def test_shipping_refund_policy_whole_pro_rata_none(h, tmp_path):
    """A seller-fault refund of one of two lines returns the whole fee, its
    pro-rata share or nothing; the refund completing the order returns the
    rest of the fee, so each order ends with exactly its fee back."""
    start_review(h, AS_REVIEW_POLICY_FILE=str(shipping_policy(tmp_path)))
    refunds_r = h.reader(REFUNDS_TOPIC)
    orders = {}
    for merchant in ("m-1", "m-whole", "m-none"):
        oid = f"o-{uuid.uuid4().hex[:10]}"
        kw = dict(order_id=oid, buyer_id=f"b-{oid}", merchant_id=merchant, reason="MISSING_PARTS",
                  shipping_fee=800, paid=1000 + 1000 + 800)
        first = new_case(h, lines=[("l1", "S", "apparel", 1, 1000, 1)], other_lines=[("l2", 1000, 1)], **kw)
        second = new_case(h, lines=[("l2", "S", "apparel", 1, 1000, 1)], other_lines=[("l1", 1000, 1)],
                          claims_on_order=1, **kw)
        orders[merchant] = (first, second)
    open_cases(h, [f for f, _ in orders.values()])
    refs = refunds_by_case(h, refunds_r, 3)
    ship = {m: refs[f.case_id][0].shipping_amount.amount_minor for m, (f, _) in orders.items()}
    assert ship == {"m-1": share(800, 1000, 2000), "m-whole": 800, "m-none": 0}, ship
    assert all(refs[f.case_id][0].items_amount.amount_minor == 1000 for f, _ in orders.values())
    open_cases(h, [s for _, s in orders.values()])
    refs = refunds_by_case(h, refunds_r, 6)
    ship2 = {m: refs[s.case_id][0].shipping_amount.amount_minor for m, (_, s) in orders.items()}
    assert ship2 == {"m-1": 400, "m-whole": 0, "m-none": 800}, ship2
    for f, _ in orders.values():
        assert refunded_per_order(h, f.order_id) == (2800, 2800)
    assert h.scalar("SELECT count(DISTINCT shipping_refund) FROM review.cases") == 3


# ---- item 2: checked arithmetic ----------------------------------------------------------

def test_overflowing_case_opened_is_refused_and_the_worker_lives(h):
    """Unit price 2^62 x 2 and x 4 bought: a contract violation (dead-lettered
    with the reason), the real case goes to a person, the worker goes on."""
    w = start_review(h)
    review_r, dl = h.reader(REVIEW_TOPIC), h.reader(DLQ_TOPIC)
    big = [new_case(h, lines=[("l1", "S", "apparel", 1, 2**62, n)], paid=5000) for n in (2, 4)]
    open_cases(h, big)
    letters = wait_dead(h, dl, 2)
    assert sorted((x.reason_code, x.detail) for _, x, _ in letters) == \
        [("contract_violation", "amount overflows: the case goes to manual review")] * 2
    d = decided(wait_decided(h, review_r, [e.case_id for e in big]))
    for e in big:
        assert (d[e.case_id][0].verdict, d[e.case_id][0].reason_code) == \
            (pbm(h).review.VERDICT_MANUAL_REVIEW, "amount.overflow")
        wait_state(h, e.case_id, "MANUAL_REVIEW")
        assert pending_deadlines(h, e.case_id) == ["sla:review"]
    assert h.sql("SELECT count(*) FROM review.ledger WHERE order_id = ANY(%s)", ([e.order_id for e in big],)) \
        == [(0,)]
    ok = new_case(h)
    open_cases(h, [ok])
    wait_state(h, ok.case_id, "AWAITING_RETURN")
    assert w.proc.poll() is None and not w.sanitizer_report()


# ---- item 3: integrity -----------------------------------------------------------------

def test_forged_case_opened_refused_and_the_real_one_refunds_the_real_amount(h):
    w = start_review(h)
    refunds_r, dl = h.reader(REFUNDS_TOPIC), h.reader(DLQ_TOPIC)
    real = new_case(h, lines=[("l1", "S", "apparel", 1, 900, 1)])
    # Someone else's CaseOpened for the real case id, paid figures cut to 1
    # fen, and one for a case intake never opened on the same order.
    forged = type(real)()
    forged.CopyFrom(real)
    forged.event_id = str(uuid.uuid4())
    forged.case_opened.case_lines[0].paid_allocated.amount_minor = 1
    forged.case_opened.order.shipping_paid.amount_minor = 1
    ghost = new_case(h, order_id=real.order_id, buyer_id=real.case_opened.buyer_id,
                     lines=[("l1", "S", "apparel", 1, 900, 1)], paid=2)
    h.produce_many([(forged.case_id, forged.SerializeToString(), None),
                    (ghost.case_id, ghost.SerializeToString(), None)], topic=CASES_TOPIC)
    letters = wait_dead(h, dl, 2)
    insert_case_rows(h, [real])
    h.produce_many([(real.case_id, real.SerializeToString(), None)], topic=CASES_TOPIC)
    wait_state(h, real.case_id, "REFUNDED")
    (r,) = refunds_by_case(h, refunds_r, 1)[real.case_id]
    assert r.total.amount_minor == 900
    assert sorted(x.detail for _, x, _ in letters) == sorted([
        "unknown case: not in the shared case table for that order and buyer"] * 2)
    # The real case's row exists now: the same forgery is refused as a mismatch.
    again = type(forged)()
    again.CopyFrom(forged)
    again.event_id = str(uuid.uuid4())
    h.produce_many([(again.case_id, again.SerializeToString(), None)], topic=CASES_TOPIC)
    letters = wait_dead(h, dl, 3)
    assert "paid figures disagree with intake's record of the case" in [x.detail for _, x, _ in letters]
    # A second case on the order whose record disagrees with the ledger.
    other = new_case(h, order_id=real.order_id, buyer_id=real.case_opened.buyer_id,
                     lines=[("l1", "S", "apparel", 1, 900, 1)], paid=700, claims_on_order=1)
    open_cases(h, [other])
    letters = wait_dead(h, dl, 4)
    assert "paid figures disagree with the ledger's for the order" in [x.detail for _, x, _ in letters]
    assert h.sql("SELECT paid_minor FROM review.ledger WHERE order_id = %s AND line_id = 'l1'",
                 (real.order_id,)) == [(900,)]
    assert h.scalar("SELECT count(*) FROM review.cases WHERE case_id = %s", (ghost.case_id,)) == 0
    # The second case is real (intake's record): a person decides it, nothing is seeded.
    wait_state(h, other.case_id, "MANUAL_REVIEW")
    assert h.scalar("SELECT reason FROM cases.timeline WHERE case_id = %s ORDER BY version DESC LIMIT 1",
                    (other.case_id,)) == "paid.ledger_mismatch"
    assert pending_deadlines(h, other.case_id) == ["sla:review"]
    assert w.metric("as_review_integrity_refused_total", why="unknown_case") == 2
    assert w.metric("as_review_integrity_refused_total", why="intake_mismatch") == 1
    assert w.metric("as_review_integrity_refused_total", why="ledger_mismatch") == 1


# ---- item 4: never drop a real case; a live deadline everywhere --------------------------

def test_case_that_cannot_be_decided_goes_to_a_person_with_the_reason(h):
    m = pbm(h)
    start_review(h)
    review_r, dl = h.reader(REVIEW_TOPIC), h.reader(DLQ_TOPIC)
    usd = new_case(h)  # lines in CNY, paid in USD
    usd.case_opened.order.paid.currency = "USD"
    usd.case_opened.order.shipping_paid.currency = "USD"
    unpaid = new_case(h)
    unpaid.case_opened.order.ClearField("paid")
    unpaid.case_opened.order.ClearField("shipping_paid")
    for l in unpaid.case_opened.case_lines:
        l.ClearField("paid_allocated")
    open_cases(h, [usd, unpaid])
    d = decided(wait_decided(h, review_r, [usd.case_id, unpaid.case_id]))
    want = {usd.case_id: "currency.mismatch", unpaid.case_id: "order.unpaid"}
    for cid, rule in want.items():
        rd = d[cid][0]
        assert (rd.verdict, rd.reason_code, rd.case_state) == (m.review.VERDICT_MANUAL_REVIEW, rule,
                                                               m.common.CASE_STATE_MANUAL_REVIEW)
        wait_state(h, cid, "MANUAL_REVIEW")
        assert h.scalar("SELECT reason FROM cases.timeline WHERE case_id = %s ORDER BY version DESC LIMIT 1",
                        (cid,)) == rule
        assert pending_deadlines(h, cid) == ["sla:review"]
    assert dead_letters(h, dl) == []
    # A person can still decide it (nothing can be refunded before they do).
    a = m.review.AgentDecision(case_id=usd.case_id, agent_id="agent-1", verdict=m.review.VERDICT_REJECTED,
                               note="paid in another currency")
    produce_on(h, DECISIONS_TOPIC, "agent_decision", a, usd.case_id)
    wait_state(h, usd.case_id, "REJECTED")
    assert refunds_db(h) == []


def expire(h, case_id, kind):
    return h.sql("UPDATE review.deadlines SET due_at = now() - interval '1 second'"
                 " WHERE case_id = %s AND kind = %s AND fired_at IS NULL AND cancelled_at IS NULL"
                 " RETURNING id", (case_id, kind))


def test_escalated_and_waiting_cases_keep_a_live_deadline(h):
    start_review(h)
    cases_r = h.reader(CASES_TOPIC)
    late = new_case(h, lines=[("l1", "S", "apparel", 1, 300000, 1)], review_due_us=now_us() - 1_000_000)
    shipped = new_case(h)
    open_cases(h, [late, shipped])
    wait_state(h, late.case_id, "ESCALATED")
    wait_until(lambda: pending_deadlines(h, late.case_id) == ["sla:escalated"], 10 * SLOW,
               what="escalation follow-up armed")
    wait_state(h, shipped.case_id, "AWAITING_RETURN")
    assert pending_deadlines(h, shipped.case_id) == ["return"]
    # The follow-up fires: the desk hears of the case again, and re-arms (twin kind). (A shipped
    # return's transit is the logistics worker's clock: test_review_logistics.py.)
    assert len(expire(h, late.case_id, "sla:escalated")) == 1
    wait_until(lambda: pending_deadlines(h, late.case_id) == ["sla:escalated+"], 10 * SLOW, what="re-armed")
    evs = wait_events(h, cases_r, lambda e: len(of_kind(e, "sla_breached")) >= 2, what="2 SlaBreached")
    got = sorted((p.case_id == late.case_id, p.clock, p.escalated_to) for _, p, _, _ in of_kind(evs, "sla_breached"))
    assert got == [(True, "review", "review_supervisors"), (True, "review", "review_supervisors")], got
    assert state(h, late.case_id) == "ESCALATED" and state(h, shipped.case_id) == "AWAITING_RETURN"
    assert cases_without_deadline(h, [late.case_id, shipped.case_id]) == []


# ---- item 7: every buyer-visible outcome on the wire -------------------------------------

def test_outcomes_and_moves_are_published(h):
    m = pbm(h)
    V, C = m.review, m.common
    start_review(h)
    review_r = h.reader(REVIEW_TOPIC)
    worn = new_case(h, lines=[("l1", "S", "apparel", 1, 5000, 1)])
    disputed = new_case(h, lines=[("l1", "S", "apparel", 1, 5000, 1)])
    order_id = f"o-{uuid.uuid4().hex[:10]}"
    a = new_case(h, order_id=order_id, reason="MISSING_PARTS", lines=[("l1", "S", "apparel", 1, 800, 1)])
    b = new_case(h, order_id=order_id, reason="MISSING_PARTS", lines=[("l1", "S", "apparel", 1, 800, 1)],
                 buyer_id=a.case_opened.buyer_id)
    open_cases(h, [worn, disputed, a, b])
    wait_state(h, worn.case_id, "AWAITING_RETURN")
    wait_state(h, disputed.case_id, "AWAITING_RETURN")
    # A return received, then a failed inspection.
    rr = m.logistics.ReturnReceived(case_id=worn.case_id, warehouse_id="WH", received_at_us=now_us())
    produce_on(h, LOGISTICS_TOPIC, "return_received", rr, worn.case_id)
    wait_state(h, worn.case_id, "INSPECTING")
    assert pending_deadlines(h, worn.case_id) == []  # the inspection's clock is the inspection worker's
    ic = inspection_completed(h, worn.case_id, resellable=False)
    produce_on(h, INSPECTION_TOPIC, "inspection_completed", ic, worn.case_id)
    wait_state(h, worn.case_id, "REJECTED")
    # A dispute, then the mediator rules for the seller.
    produce_on(h, DECISIONS_TOPIC, "dispute_opened",
               V.DisputeOpened(case_id=disputed.case_id, seller_id="m-1", statement="worn"), disputed.case_id)
    wait_state(h, disputed.case_id, "DISPUTED")
    assert pending_deadlines(h, disputed.case_id) == ["mediation"]
    produce_on(h, DECISIONS_TOPIC, "mediation_ruling",
               V.MediationRuling(case_id=disputed.case_id, mediator_id="med-1", in_favour_of_buyer=False,
                                 reasoning="worn"), disputed.case_id)
    wait_state(h, disputed.case_id, "REJECTED")
    wait_until(lambda: {state(h, a.case_id), state(h, b.case_id)} == {"REFUNDED", "CLOSED"} or None,
               20 * SLOW, what="one refunded, one closed")
    closed = a if state(h, a.case_id) == "CLOSED" else b
    evs = wait_decided(h, review_r, [worn.case_id, disputed.case_id, closed.case_id], n=2)
    d = decided(evs)
    S = C.CaseState.Name
    got = {cid: [(V.Verdict.Name(p.verdict), p.reason_code, S(p.case_state)) for p in d[cid][1:]]
           for cid in (worn.case_id, disputed.case_id, closed.case_id)}
    assert got[worn.case_id] == [("VERDICT_UNSPECIFIED", "return.received", "CASE_STATE_RETURN_RECEIVED"),
                                 ("VERDICT_UNSPECIFIED", "inspection.awaited", "CASE_STATE_INSPECTING"),
                                 ("VERDICT_REJECTED", "inspection.failed", "CASE_STATE_REJECTED")], got
    assert got[disputed.case_id] == [("VERDICT_MANUAL_REVIEW", "dispute.opened", "CASE_STATE_DISPUTED"),
                                     ("VERDICT_REJECTED", "mediation.seller_upheld", "CASE_STATE_REJECTED")], got
    assert got[closed.case_id] == [("VERDICT_REJECTED", "refund.nothing_left", "CASE_STATE_CLOSED")], got
    last = d[disputed.case_id][-1]
    assert (last.decided_by.kind, last.decided_by.id) == (C.ACTOR_KIND_AGENT, "med-1")
    assert pending_deadlines(h, worn.case_id) == [] and pending_deadlines(h, disputed.case_id) == []
    assert refunded_per_order(h, order_id) == (1600, 1600)
