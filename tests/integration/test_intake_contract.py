"""Intake's side of issue 8, through the real topics: the amount paid
allocated over the lines and the shipping fee (CaseOpened and the shared case
tables), overflowing amounts refused, unpaid orders held then rejected,
payments in another currency rejected, submission stamps judged, Stripe's
idempotency semantics with exactly one answer per request id, and the
deadlines that keep every case intake opens moving (complaint resolution,
pickup, escalation follow-up)."""
import time
import uuid

from conftest import (DLQ_TOPIC, SLOW, case_events, dead_letters, intake_pb, produce_orders,
                      produce_requests, request_envelope, start_intake, wait_until)
from intake_helpers import (CASES_TOPIC, DAY_US, answers, opened_by_request, order, project,
                            wait_answers)


def ids(prefix="o"):
    tag = uuid.uuid4().hex[:8]
    return f"{prefix}-{tag}", f"b-{tag}"


def rid(env):
    return env.aftersales_requested.request_id


def verdict(ans, env):
    (kind, p), = ans[rid(env)]
    return "opened" if kind == "buyer_acknowledged" else p.reason_code


def test_paid_amount_is_allocated_over_lines_and_shipping(h):
    start_intake(h)
    coupon, b1 = ids()
    tiny, b2 = ids()
    disc, b3 = ids()
    # One 10,000 CNY line paid 8,000 (a checkout coupon), no shipping fee.
    project(h, coupon, b1, [("l1", 10000, 1)], shipping=None, paid=8000)
    # 800 x 2 + 5,000, shipping 800, paid 100 CNY. Line ids out of byte order on purpose.
    project(h, tiny, b2, [("lb", 800, 2), ("la", 5000, 1)], shipping=800, paid=100)
    # A line discount lowers the line's weight: 1,000 x 2 - 500 and 500, paid in full.
    project(h, disc, b3, [("l1", 1000, 2, 500), ("l2", 500, 1)], shipping=0)
    reader = h.reader(CASES_TOPIC)
    r1 = request_envelope(h, coupon, b1, lines=(("l1", 1),), reason=intake_pb(h)[0].REASON_CHANGED_MIND)
    r2 = request_envelope(h, tiny, b2, lines=(("lb", 1),))
    r3 = request_envelope(h, tiny, b2, lines=(("la", 1),))
    r4 = request_envelope(h, disc, b3, lines=(("l1", 1), ("l2", 1)))
    produce_requests(h, [r1, r2, r3, r4])
    evs = wait_answers(h, reader, [rid(r) for r in (r1, r2, r3, r4)])
    op = opened_by_request(evs)
    assert set(op) == {rid(r) for r in (r1, r2, r3, r4)}, answers(evs)

    def paid(p):
        return ([(c.line_id, c.paid_allocated.amount_minor, c.paid_allocated.currency, c.purchased_quantity)
                 for c in p.case_lines],
                (p.order.paid.amount_minor, p.order.shipping_paid.amount_minor, p.order.shipping_paid.currency))
    assert paid(op[rid(r1)]) == ([("l1", 8000, "CNY", 1)], (8000, 0, "CNY"))
    # weights la 5,000 / lb 1,600 / shipping 800 over 100: 67 / 21 / 10 and the two
    # units left to the largest remainders (shipping .81, lb .62): lb 22, shipping 11.
    assert paid(op[rid(r2)]) == ([("lb", 22, "CNY", 2)], (100, 11, "CNY"))
    assert paid(op[rid(r3)]) == ([("la", 67, "CNY", 1)], (100, 11, "CNY"))
    assert paid(op[rid(r4)]) == ([("l1", 1500, "CNY", 2), ("l2", 500, "CNY", 1)], (2000, 0, "CNY"))
    # The shared tables hold exactly what the CaseOpened says (review checks against them).
    for r in (r1, r2, r3, r4):
        p = op[rid(r)]
        assert h.sql("SELECT paid_minor, paid_currency, shipping_paid_minor FROM cases.cases WHERE case_id = %s",
                     (p.case_id,)) == [(p.order.paid.amount_minor, p.order.paid.currency,
                                        p.order.shipping_paid.amount_minor)]
        assert h.sql("SELECT line_id, paid_minor, purchased FROM cases.case_lines WHERE case_id = %s"
                     " ORDER BY line_id", (p.case_id,)) == \
            sorted((c.line_id, c.paid_allocated.amount_minor, c.purchased_quantity) for c in p.case_lines)
    assert h.scalar("SELECT discount_minor FROM intake.order_lines WHERE order_id = %s AND line_id = 'l1'",
                    (disc,)) == 500


def test_overflowing_amounts_are_refused(h):
    start_intake(h)
    big, b1 = ids()
    wide, b2 = ids()
    fine, b3 = ids()
    dl = h.reader(DLQ_TOPIC)
    produce_orders(h, order(h, big, b1, [("l1", 2 ** 62, 2)], paid=None, delivered=False))
    produce_orders(h, order(h, wide, b2, [("l1", 2 ** 62, 1), ("l2", 2 ** 62, 1)], paid=None,
                            delivered=False))
    project(h, fine, b3, [("l1", 1000, 2)])
    letters = wait_until(lambda: (lambda d: d if len(d) == 2 else None)(dead_letters(h, dl)), 20 * SLOW,
                         what="dead letters")
    assert sorted(d.reason_code for _, d, _ in letters) == ["amount_overflow"] * 2
    assert {h.decode(d.original).order_id for _, d, _ in letters} == {big, wide}
    assert h.scalar("SELECT count(*) FROM intake.orders WHERE order_id IN (%s, %s)", (big, wide)) == 0
    # Amounts projected before the check (or by a bug) still never overflow a claim.
    h.sql("UPDATE intake.order_lines SET unit_minor = %s WHERE order_id = %s", (2 ** 62, fine))
    reader = h.reader(CASES_TOPIC)
    r = request_envelope(h, fine, b3, lines=(("l1", 2),))
    produce_requests(h, [r])
    ans = answers(wait_answers(h, reader, [rid(r)]))
    assert verdict(ans, r) == "amount_overflow"


def test_unpaid_order_is_held_then_rejected_or_opened_once_paid(h):
    w = start_intake(h, AS_INTAKE_HOLD_MS=6000)
    never, b1 = ids()
    later, b2 = ids()
    usd, b3 = ids()
    paid_later = order(h, later, b2, [("l1", 1999, 1)])
    project(h, never, b1, [("l1", 1999, 1)], paid=None)
    produce_orders(h, [e for e in paid_later if e[0] != "order_paid"])
    project(h, usd, b3, [("l1", 1999, 1)], paid_currency="USD")
    reader = h.reader(CASES_TOPIC)
    a = request_envelope(h, never, b1)
    b = request_envelope(h, later, b2)
    c = request_envelope(h, usd, b3)
    produce_requests(h, [a, b, c])
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.held_requests") == 2, 20 * SLOW,
               what="unpaid requests held")
    assert w.metric("as_intake_requests_held_total") == 2
    produce_orders(h, [e for e in paid_later if e[0] == "order_paid"])
    evs = wait_answers(h, reader, [rid(a), rid(b), rid(c)], timeout=40)
    ans = answers(evs)
    assert verdict(ans, a) == "order_not_paid"
    assert verdict(ans, b) == "opened"
    assert verdict(ans, c) == "currency_mismatch"
    assert opened_by_request(evs)[rid(b)].case_lines[0].paid_allocated.amount_minor == 1999
    assert h.scalar("SELECT count(*) FROM cases.cases WHERE order_id IN (%s, %s)", (never, usd)) == 0
    assert h.scalar("SELECT count(*) FROM intake.held_requests") == 0


def test_submission_stamps_are_judged(h):
    start_intake(h)
    oid, buyer = ids()
    now = int(time.time() * 1e6)
    t0 = now - 20 * DAY_US
    project(h, oid, buyer, [("l1", 100, 5)], t0=t0)
    reader = h.reader(CASES_TOPIC)
    before = request_envelope(h, oid, buyer, submitted_at_us=t0 - 1)
    future = request_envelope(h, oid, buyer, submitted_at_us=now + 3600 * 1_000_000)
    stale = request_envelope(h, oid, buyer, submitted_at_us=now - 10 * DAY_US)
    fresh = request_envelope(h, oid, buyer, submitted_at_us=now - 5_000_000)
    envs = [before, future, stale, fresh]
    produce_requests(h, envs)
    evs = wait_answers(h, reader, [rid(e) for e in envs])
    ans = answers(evs)
    assert [verdict(ans, e) for e in envs] == ["submitted_before_order", "submitted_in_future", "opened",
                                               "opened"]
    op = opened_by_request(evs)
    arrived = time.time() * 1e6
    # 10 days in the past is no time the platform vouches for: judged on arrival.
    assert abs(op[rid(stale)].submitted_at_us - arrived) < 60 * 1_000_000
    assert op[rid(fresh)].submitted_at_us == fresh.aftersales_requested.submitted_at_us


def test_idempotency_key_semantics_and_one_answer_per_request(h):
    w = start_intake(h)
    oid, buyer = ids()
    project(h, oid, buyer, [("l1", 1999, 2), ("l2", 500, 1)])
    reader = h.reader(CASES_TOPIC)
    key = "k-" + uuid.uuid4().hex
    first = request_envelope(h, oid, buyer, key=key, lines=(("l1", 1),))
    produce_requests(h, [first])
    wait_answers(h, reader, [rid(first)])
    other = request_envelope(h, oid, buyer, key=key, lines=(("l2", 1),))
    retry = request_envelope(h, oid, buyer, key=key, lines=(("l1", 1),))
    resend = h.decode(first.SerializeToString())
    resend.event_id = str(uuid.uuid4())  # the same request id under a new event id
    produce_requests(h, [other, retry, resend])
    evs = wait_answers(h, reader, [rid(other), rid(retry)])
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.inbox WHERE event_id = %s", (resend.event_id,)),
               20 * SLOW)
    ans = answers(case_events(h, reader))
    case = opened_by_request(evs)[rid(first)]
    assert verdict(ans, other) == "idempotency_key_reused"
    (_, ack), = ans[rid(retry)]
    assert (ack.case_id, ack.case_number, ack.request_id) == (case.case_id, case.case_number, rid(retry))
    assert len(ans[rid(first)]) == 1
    assert w.metric("as_intake_requests_repeated_total") == 1
    # The same within one batch: the intake is stopped while they queue.
    w.terminate()
    key2 = "k-" + uuid.uuid4().hex
    a = request_envelope(h, oid, buyer, key=key2, lines=(("l1", 1),))
    a_retry = request_envelope(h, oid, buyer, key=key2, lines=(("l1", 1),))
    a_other = request_envelope(h, oid, buyer, key=key2, lines=(("l2", 1),))
    a_again = h.decode(a.SerializeToString())
    a_again.event_id = str(uuid.uuid4())
    produce_requests(h, [a, a_retry, a_other, a_again])
    w2 = start_intake(h, name="again")
    evs = wait_answers(h, reader, [rid(a), rid(a_retry), rid(a_other)])
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.inbox WHERE event_id = %s", (a_again.event_id,)),
               20 * SLOW)
    assert w2.metric("as_batch_size_count") == 1
    ans = answers(case_events(h, reader))
    case2 = opened_by_request(evs)[rid(a)]
    assert verdict(ans, a) == "opened" and len(ans[rid(a)]) == 1
    (_, ack2), = ans[rid(a_retry)]
    assert (ack2.case_id, ack2.request_id) == (case2.case_id, rid(a_retry))
    assert verdict(ans, a_other) == "idempotency_key_reused"
    # Every request id got exactly one answer; one case per key.
    assert all(len(v) == 1 for v in ans.values()), ans
    assert h.scalar("SELECT count(*) FROM cases.cases WHERE order_id = %s", (oid,)) == 2


def fire(h, case_id, kind):
    """Moves one of intake's deadlines of the case into the past."""
    h.sql("UPDATE intake.deadlines SET due_at = now() - interval '1 second' WHERE case_id = %s AND kind = %s"
          " AND fired_at IS NULL AND cancelled_at IS NULL", (case_id, kind))


def breaches(h, reader, case_id, n):
    def ok():
        b = [p for k, p, _, _ in case_events(h, reader) if k == "sla_breached" and p.case_id == case_id]
        return b if len(b) >= n else None
    return wait_until(ok, 20 * SLOW, interval=0.2, what="SlaBreached")


def test_every_case_intake_opens_has_a_clock_that_escalates_it(h):
    common, _, requests, _ = intake_pb(h)
    start_intake(h)
    oid, buyer = ids()
    project(h, oid, buyer, [("l1", 1999, 2)])
    reader = h.reader(CASES_TOPIC)
    compl = request_envelope(h, oid, buyer, lines=(), case_type=common.CASE_TYPE_COMPLAINT,
                             complaint_type=requests.COMPLAINT_TYPE_CASE_HANDLING)
    logi = request_envelope(h, oid, buyer, lines=(("l1", 1),), case_type=common.CASE_TYPE_LOGISTICS,
                            reason=common.REASON_DELIVERED_NOT_RECEIVED)
    rev = request_envelope(h, oid, buyer, lines=(("l1", 1),))  # no review worker runs: nobody picks it up
    produce_requests(h, [compl, logi, rev])
    op = opened_by_request(wait_answers(h, reader, [rid(compl), rid(logi), rid(rev)]))
    c, lg, rv = op[rid(compl)], op[rid(logi)], op[rid(rev)]
    due = dict(((cid, k), d) for cid, k, d in h.sql(
        "SELECT case_id, kind, (extract(epoch FROM due_at) * 1e6)::bigint FROM intake.deadlines"
        " WHERE fired_at IS NULL AND cancelled_at IS NULL"))
    assert abs(due[(c.case_id, "resolution")] - c.resolution_due_us) <= 1
    assert abs(due[(rv.case_id, "pickup")] - rv.review_due_us) <= 1
    assert (lg.case_id, "pickup") in due
    # The complaint's resolution clock runs out: escalated to its department.
    fire(h, c.case_id, "resolution")
    b, = breaches(h, reader, c.case_id, 1)
    # due_at_us is the clock's own due time, not the moved deadline's
    assert (b.clock, b.escalated_to) == ("resolution", "quality_assurance")
    assert abs(b.due_at_us - c.resolution_due_us) <= 1
    assert h.scalar("SELECT state FROM cases.cases WHERE case_id = %s", (c.case_id,)) == "ESCALATED"
    assert h.scalar("SELECT breached_at IS NOT NULL FROM cases.sla_clocks WHERE case_id = %s AND clock = 'resolution'",
                    (c.case_id,))
    assert h.sql("SELECT from_state, to_state, actor_kind, actor_id FROM cases.timeline WHERE case_id = %s"
                 " AND version = 2", (c.case_id,)) == [("OPEN", "ESCALATED", "system", "intake")]
    # The escalated case keeps a live deadline; its follow-up reminds the duty manager.
    assert h.scalar("SELECT count(*) FROM intake.deadlines WHERE case_id = %s AND kind = 'escalation_followup:1'"
                    " AND fired_at IS NULL AND due_at > now() + interval '23 hours'", (c.case_id,)) == 1
    fire(h, c.case_id, "escalation_followup:1")
    b1, b2 = breaches(h, reader, c.case_id, 2)
    assert (b2.clock, b2.escalated_to) == ("escalation", "aftersales_duty_manager")
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.deadlines WHERE case_id = %s"
                                " AND kind = 'escalation_followup:2' AND fired_at IS NULL"
                                " AND due_at > now() + interval '23 hours'", (c.case_id,)) == 1, 20 * SLOW)
    # Nobody picked up the logistics and the review case: escalated too.
    fire(h, lg.case_id, "pickup")
    fire(h, rv.case_id, "pickup")
    bl, = breaches(h, reader, lg.case_id, 1)
    br, = breaches(h, reader, rv.case_id, 1)
    assert (bl.clock, bl.escalated_to) == ("pickup", "logistics_supervisors")
    assert (br.clock, br.escalated_to) == ("review", "review_supervisors")
    assert h.sql("SELECT state FROM cases.cases WHERE case_id IN (%s, %s)", (lg.case_id, rv.case_id)) == \
        [("ESCALATED",), ("ESCALATED",)]
    assert h.scalar("SELECT breached_at IS NOT NULL FROM cases.sla_clocks WHERE case_id = %s AND clock = 'review'",
                    (rv.case_id,))


def test_pickup_leaves_a_case_review_took_alone(h):
    start_intake(h)
    oid, buyer = ids()
    project(h, oid, buyer, [("l1", 1999, 2)])
    reader = h.reader(CASES_TOPIC)
    r = request_envelope(h, oid, buyer, lines=(("l1", 1),))
    produce_requests(h, [r])
    p = opened_by_request(wait_answers(h, reader, [rid(r)]))[rid(r)]
    h.sql("UPDATE cases.cases SET state = 'CLOSED' WHERE case_id = %s", (p.case_id,))  # review decided it
    fire(h, p.case_id, "pickup")
    wait_until(lambda: h.scalar("SELECT fired_at IS NOT NULL FROM intake.deadlines WHERE case_id = %s"
                                " AND kind = 'pickup'", (p.case_id,)), 20 * SLOW)
    assert h.scalar("SELECT state FROM cases.cases WHERE case_id = %s", (p.case_id,)) == "CLOSED"
    assert not [1 for k, q, _, _ in case_events(h, reader) if k == "sla_breached"]
