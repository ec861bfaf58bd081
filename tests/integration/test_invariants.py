"""The suite-wide invariant checker (conftest.check_invariants) tested on
states built by hand to break each promise, so that it cannot pass by luck:
for every check, a violating state must be reported, and the nearest
state that keeps the promise must not be.

Each test migrates the fleet's schemas by starting as-intake and as-review
once (then stops them: with no live worker, settle() has nothing to wait
for), then writes rows and produces events directly. They break the
invariants on purpose, so they are exempt from the after-test check.
"""
import uuid

import pytest

from conftest import (CASES_TOPIC, DLQ_TOPIC, REQUESTS_TOPIC, SLOW, check_invariants, intake_pb,
                      order_events, produce_orders, produce_requests, request_envelope, start_intake,
                      start_service, wait_until)

pytestmark = pytest.mark.invariants_exempt("builds violating states to test the checker itself")


@pytest.fixture
def fleet(h):
    """h with the cases, intake and review schemas migrated and no worker left running."""
    for w in (start_intake(h), start_service(h, "review")):
        assert w.terminate() == 0
    return h


def new_case(h, state, version=1, order_id=None, paid=None, currency="CNY"):
    cid = f"case-{uuid.uuid4().hex[:10]}"
    h.sql("INSERT INTO cases.cases (case_id, case_number, case_type, state, version, order_id,"
          " buyer_id, paid_minor, paid_currency) VALUES (%s, %s, 'RETURN_REFUND', %s, %s, %s, 'b-1', %s, %s)",
          (cid, "AS-T-" + cid, state, version, order_id or f"o-{cid}", paid, currency if paid else None))
    return cid


def timeline(h, cid, version, from_state, to_state):
    h.sql("INSERT INTO cases.timeline (case_id, version, from_state, to_state, actor_kind, actor_id,"
          " reason) VALUES (%s, %s, %s, %s, 'system', 'pytest', 'built by hand')",
          (cid, version, from_state, to_state))


def state_changed(h, cid, version, from_state, to_state, event_id=None):
    """The envelope of a CaseStateChanged (states by name, None for UNSPECIFIED)."""
    common, _, _, cases = intake_pb(h)
    st = lambda n: common.CaseState.Value("CASE_STATE_" + n) if n else 0
    p = cases.CaseStateChanged(case_id=cid, from_state=st(from_state), to_state=st(to_state),
                               version=version, reason="built by hand")
    return h.envelope("case_state_changed", p, case_id=cid, event_id=event_id)


def produce(h, topic, *envs):
    h.produce_many([(e.case_id or e.order_id or "k", e.SerializeToString(), None) for e in envs],
                   topic=topic)


def only(violations, kind):
    return [v for v in violations if v.startswith(kind + ":")]


def test_nothing_to_check_without_the_case_tables(h):
    assert check_invariants(h) == []


def test_money_refunded_above_paid(fleet):
    h = fleet
    assert only(check_invariants(h), "money") == []
    # The ledger's cap adds up to more than the order's payment.
    order = f"o-{uuid.uuid4().hex[:8]}"
    new_case(h, "CLOSED", order_id=order, paid=8000)
    h.sql("INSERT INTO review.ledger (order_id, line_id, currency, paid_minor, refunded_minor)"
          " VALUES (%s, 'l1', 'CNY', 10000, 0)", (order,))
    got = only(check_invariants(h), "money")
    assert len(got) == 1 and f"order {order}: cap 10000 CNY above the payment 8000 CNY" in got[0], got
    # Within the payment: nothing to say.
    h.sql("UPDATE review.ledger SET paid_minor = 8000 WHERE order_id = %s", (order,))
    assert only(check_invariants(h), "money") == []
    # A ledger row refunded above its paid figure (the CHECK dropped to build it).
    h.sql("ALTER TABLE review.ledger DROP CONSTRAINT ledger_check")
    h.sql("UPDATE review.ledger SET refunded_minor = 8001 WHERE order_id = %s", (order,))
    got = only(check_invariants(h), "money")
    assert len(got) == 1 and f"line l1: refunded 8001 CNY > paid 8000" in got[0], got
    h.sql("UPDATE review.ledger SET refunded_minor = 0 WHERE order_id = %s", (order,))
    # Refunds of the order above the payment, and one in a currency never paid.
    h.sql("ALTER TABLE review.refunds DROP CONSTRAINT refunds_case_id_fkey")
    ins = ("INSERT INTO review.refunds (refund_id, case_id, order_id, currency, items_minor,"
           " shipping_minor, goodwill_minor, total_minor, reason_code) VALUES (%s, %s, %s, %s, %s, 0, 0, %s, 'x')")
    h.sql(ins, (str(uuid.uuid4()), "c-a", order, "CNY", 5000, 5000))
    assert only(check_invariants(h), "money") == []
    h.sql(ins, (str(uuid.uuid4()), "c-b", order, "CNY", 3001, 3001))
    got = only(check_invariants(h), "money")
    assert len(got) == 1 and f"order {order}: refunded 8001 CNY, paid 8000 CNY" in got[0], got
    h.sql(ins, (str(uuid.uuid4()), "c-c", order, "USD", 1, 1))
    got = only(check_invariants(h), "money")
    assert len(got) == 2 and any("refunded 1 USD, paid 8000 CNY" in g for g in got), got


def test_non_final_case_without_live_deadline(fleet):
    h = fleet
    waiting = new_case(h, "AWAITING_RETURN")
    for final in ("CLOSED", "REJECTED", "REFUNDED", "EXCHANGED", "RESOLVED"):
        new_case(h, final)
    got = only(check_invariants(h, ("deadlines",)), "deadlines")
    assert len(got) == 1 and f"case {waiting} in AWAITING_RETURN" in got[0], got
    # A fired or a cancelled deadline is no clock at all; a pending one, in any schema, is.
    h.sql("INSERT INTO review.deadlines (case_id, kind, due_at, fired_at) VALUES (%s, 'x', now(), now())",
          (waiting,))
    h.sql("INSERT INTO intake.deadlines (case_id, kind, due_at, cancelled_at)"
          " VALUES (%s, 'y', now() + interval '1 day', now())", (waiting,))
    assert len(only(check_invariants(h, ("deadlines",)), "deadlines")) == 1
    h.sql("INSERT INTO intake.deadlines (case_id, kind, due_at) VALUES (%s, 'z', now() + interval '1 day')",
          (waiting,))
    assert check_invariants(h, ("deadlines",)) == []


def test_timeline_rows_and_case_state_changed(fleet):
    h = fleet
    cid = new_case(h, "APPROVED", version=2)
    timeline(h, cid, 1, None, "OPEN")
    timeline(h, cid, 2, "OPEN", "APPROVED")
    got = only(check_invariants(h, ("state_changes",)), "state_changes")
    assert len(got) == 2 and all("has no CaseStateChanged" in g for g in got), got
    # v1 on the wire (twice with one event id: a duplicate the consumers drop);
    # v2 committed in an outbox, not yet sent: it is on its way.
    birth = state_changed(h, cid, 1, None, "OPEN")
    produce(h, CASES_TOPIC, birth, birth)
    move = state_changed(h, cid, 2, "OPEN", "APPROVED")
    h.sql("INSERT INTO intake.outbox (event_id, topic, msg_key, payload) VALUES (%s, %s, %s, %s)",
          (move.event_id, CASES_TOPIC, cid, move.SerializeToString()))
    assert check_invariants(h, ("state_changes",)) == []
    # A second CaseStateChanged for v2 under another event id.
    produce(h, CASES_TOPIC, state_changed(h, cid, 2, "OPEN", "APPROVED"))
    got = only(check_invariants(h, ("state_changes",)), "state_changes")
    assert len(got) == 1 and f"{cid} v2 has 2 CaseStateChanged with distinct event ids" in got[0], got
    # A CaseStateChanged whose move differs from the timeline's.
    other = new_case(h, "IN_REVIEW", version=2)
    timeline(h, other, 1, None, "OPEN")
    timeline(h, other, 2, "OPEN", "IN_REVIEW")
    produce(h, CASES_TOPIC, state_changed(h, other, 1, None, "OPEN"),
            state_changed(h, other, 2, "OPEN", "REJECTED"))
    got = only(check_invariants(h, ("state_changes",)), "state_changes")
    assert any(f"{other} v2 is ('OPEN', 'IN_REVIEW') but its CaseStateChanged says ('OPEN', 'REJECTED')"
               in g for g in got), got
    # One for a version the case passed with no timeline row for it; one for
    # a version the case has not reached (a move committed after the
    # snapshot) is no violation.
    ghost = new_case(h, "IN_REVIEW", version=3)
    for v, f, t in ((1, None, "OPEN"), (2, "OPEN", "AWAITING_EVIDENCE")):
        timeline(h, ghost, v, f, t)
        produce(h, CASES_TOPIC, state_changed(h, ghost, v, f, t))
    produce(h, CASES_TOPIC, state_changed(h, ghost, 3, "AWAITING_EVIDENCE", "IN_REVIEW"),
            state_changed(h, ghost, 4, "IN_REVIEW", "APPROVED"))
    got = only(check_invariants(h, ("state_changes",)), "state_changes")
    assert any(f"CaseStateChanged {ghost} v3" in g and "has no timeline row" in g for g in got), got
    assert not any(f"{ghost} v4" in g for g in got), got


def claim(h, env, partition=0, offset=0):
    """Records env's event id in intake's inbox, as intake does when it takes a request in."""
    h.sql("INSERT INTO intake.inbox (event_id, topic, kpartition, koffset) VALUES (%s, %s, %s, %s)",
          (env.event_id, REQUESTS_TOPIC, partition, offset))


def answer(h, kind, request_id, buyer_id="b-1"):
    _, _, _, cases = intake_pb(h)
    field = {"ack": "buyer_acknowledged", "reject": "request_rejected"}[kind]
    p = (cases.BuyerAcknowledged(case_id="case-x", buyer_id=buyer_id, request_id=request_id) if kind == "ack"
         else cases.RequestRejected(request_id=request_id, buyer_id=buyer_id, reason_code="x"))
    return h.envelope(field, p, case_id="case-x")


def test_every_request_has_one_answer(fleet):
    h = fleet
    reqs = [request_envelope(h, "o-1", "b-1") for _ in range(6)]
    cut = request_envelope(h, "o-1", "b-1\0x")
    produce(h, REQUESTS_TOPIC, *reqs, cut)
    rid = [r.aftersales_requested.request_id for r in reqs]
    # Taken in and never answered.
    claim(h, reqs[0])
    got = only(check_invariants(h, ("answers",)), "answers")
    assert len(got) == 1 and f"request {rid[0]} (buyer b-1) has 0 answers" in got[0], got
    # One answer is what is due; a second one (other event id) is one too many.
    produce(h, CASES_TOPIC, answer(h, "ack", rid[0]))
    assert check_invariants(h, ("answers",)) == []
    produce(h, CASES_TOPIC, answer(h, "reject", rid[0]))
    got = only(check_invariants(h, ("answers",)), "answers")
    assert len(got) == 1 and f"request {rid[0]} (buyer b-1) has 2 answers" in got[0], got
    # An answer for another buyer's request of the same id does not count.
    claim(h, reqs[1])
    produce(h, CASES_TOPIC, answer(h, "ack", rid[1], buyer_id="b-2"))
    got = only(check_invariants(h, ("answers",)), "answers")
    assert any(f"request {rid[1]} (buyer b-1) has 0 answers" in g for g in got), got
    # Dead-lettered is no excuse (intake answers what the runtime refuses),
    # not even when no inbox took it in; a buyer id with a NUL (nobody to
    # answer), held for its order, or not taken in yet: no answer owed.
    dl = h.pb.DeadLetter(reason_code="string_nul", source_topic=REQUESTS_TOPIC,
                         original_event_id=reqs[2].event_id)
    produce(h, DLQ_TOPIC, h.envelope("dead_letter", dl, case_id="", order_id="o-1"))
    claim(h, reqs[3])
    h.sql("INSERT INTO intake.held_requests (request_id, order_id, buyer_id, idempotency_key, envelope)"
          " VALUES (%s, 'o-1', 'b-1', %s, '\\x00')", (rid[3], reqs[3].aftersales_requested.idempotency_key))
    claim(h, cut)
    got = only(check_invariants(h, ("answers",)), "answers")
    assert any(f"request {rid[2]} (buyer b-1) has 0 answers" in g for g in got), got
    assert not any(r in g for g in got for r in rid[3:] + [cut.aftersales_requested.request_id]), got
    assert len(got) == 3, got


def test_settle_waits_for_live_workers(h):
    """Called right after producing, the check must first let intake take the
    requests in and answer them (else it would report them unanswered, or
    pass over them as never taken in)."""
    start_intake(h)
    order_id, buyer_id = f"o-{uuid.uuid4().hex[:10]}", f"b-{uuid.uuid4().hex[:8]}"
    produce_orders(h, order_events(h, order_id, buyer_id, [("l1", "SKU-1", 1999, 2)]))
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND delivered_at_us"
                             " IS NOT NULL", (order_id,)), 20 * SLOW, what="order projected")
    reqs = [request_envelope(h, order_id, buyer_id, lines=(("l1", 1),)) for _ in range(2)]
    produce_requests(h, reqs)
    assert check_invariants(h, ("answers", "state_changes")) == []
    ids = [r.event_id for r in reqs]
    assert h.scalar("SELECT count(*) FROM intake.inbox WHERE event_id = ANY(%s::uuid[])", (ids,)) == 2
