"""Return parcels through the topics: the expected return from review's
ReturnInstructions, the parcel linked by ReturnShipped, warehouse receipts
matched by tracking number and by the label's case id (only the units of
the claimed lines, capped, partial, late), a repeated receipt, a carrier's
"delivered" scan that is not a receipt, an unmatched receipt queued and
released by an agent, and the return-transit clock: the carrier asked, a
lost (or unanswered) return refunded, one still moving waited for again.
Review, which owns these cases' ship-by clock, does not run here."""
import pytest

from conftest import DLQ_TOPIC, SLOW, settle, wait_until
from logistics_helpers import (DAY_US, LOGISTICS_TOPIC, answer, dead_reasons, events, fire,
                               instructions, inquiry_id, linked, now_us, of_kind, pbm, receipt,
                               return_shipped, review_case, scan_env, scans, start_logistics, tag,
                               wait_dead, wait_kind)

pytestmark = pytest.mark.invariants_exempt(
    "review, which keeps these cases' deadlines (ship-by, inspection), does not run here",
    checks=("deadlines",))

LINES = [("l1", "SKU-TEE", "apparel", 2, 3000, 2), ("l2", "SKU-CAP", "apparel", 1, 2000, 1)]


def lines_of(p):
    return [(l.line_id, l.quantity) for l in p]


def received(h, r, case_id, n=1):
    return [p for _, p, _, _ in wait_kind(h, r, "return_received", n) if p.case_id == case_id][-1]


def test_receipts_matched_by_tracking_number_and_by_label(h):
    w = start_logistics(h)
    r = h.reader(LOGISTICS_TOPIC)
    by_track, by_label = review_case(h, LINES), review_case(h, LINES)
    wait_until(lambda: h.scalar("SELECT count(*) FROM logistics.cases") == 2, 20 * SLOW, what="cases")
    instructions(h, by_track)
    instructions(h, by_label, ship_by=now_us() - DAY_US)  # its ship-by date has passed
    wait_until(lambda: h.scalar("SELECT count(*) FROM logistics.returns") == 2, 20 * SLOW, what="returns")
    yt = f"YT{tag()}"
    return_shipped(h, by_track, yt)
    wait_until(lambda: h.scalar("SELECT tracking_number FROM logistics.returns WHERE case_id = %s",
                                (by_track,)) == yt, 20 * SLOW, what="linked")
    # the carrier's "delivered to warehouse" scan is not a receipt
    scans(h, [scan_env(h, yt, "delivered", carrier="YTO", location="WH-CN-SH-01")])
    # one of the two tees back, plus a line the case never claimed
    rid = f"rc-{tag()}"
    first = receipt(h, lines=(("l1", 1), ("l9", 3)), tracking=yt, receipt_id=rid, condition="opened")
    p = received(h, r, by_track)
    assert lines_of(p.lines) == [("l1", 1)] and lines_of(p.expected_lines) == [("l1", 2), ("l2", 1)]
    assert (p.partial, p.late, p.matched_by, p.receipt_id, p.tracking_number, p.condition) == \
        (True, False, "tracking_number", rid, yt, "opened")
    assert p.warehouse_id == "WH-CN-SH-01"
    # more than claimed, by the label only: capped at what was claimed; late
    receipt(h, lines=(("l1", 2), ("l2", 5)), label=by_label)
    q = received(h, r, by_label, 2)
    assert lines_of(q.lines) == [("l1", 2), ("l2", 1)]
    assert (q.partial, q.late, q.matched_by) == (False, True, "label")
    # the same receipt again (another event, same receipt id): harmless
    receipt(h, lines=(("l1", 1),), tracking=yt, receipt_id=rid)
    h.produce_many([(yt, first.SerializeToString(), None)], topic=LOGISTICS_TOPIC)
    settle(h)
    assert len(of_kind(events(h, r), "return_received")) == 2
    assert w.metric("as_logistics_receipts_total", result="repeated") == 1
    assert w.metric("as_logistics_receipts_total", result="matched") == 2
    # matched: no transit clock left for the parcel that came
    assert h.scalar("SELECT count(*) FROM logistics.deadlines WHERE case_id = %s AND kind = 'return_transit'"
                    " AND fired_at IS NULL AND cancelled_at IS NULL", (by_track,)) == 0


def test_unmatched_receipt_queued_then_released_by_an_agent(h):
    w = start_logistics(h)
    r, dlq = h.reader(LOGISTICS_TOPIC), h.reader(DLQ_TOPIC)
    case_id, done = review_case(h, LINES), review_case(h, LINES)
    instructions(h, case_id)
    instructions(h, done)
    wait_until(lambda: h.scalar("SELECT count(*) FROM logistics.returns") == 2, 20 * SLOW, what="returns")
    receipt(h, lines=(("l2", 1),), label=done)
    received(h, r, done)
    # no label, an unknown tracking number: the exception queue
    rid = f"rc-{tag()}"
    receipt(h, lines=(("l1", 2),), tracking="ZZ404", receipt_id=rid)
    # a second parcel for a case already received: queued too
    other = f"rc-{tag()}"
    receipt(h, lines=(("l1", 1),), label=done, receipt_id=other)
    u = {p.receipt_id: p for _, p, _, _ in wait_kind(h, r, "receipt_unmatched", 2)}
    assert (u[rid].reason, u[rid].tracking_number, lines_of(u[rid].lines)) == ("no_match", "ZZ404", [("l1", 2)])
    assert (u[other].reason, u[other].label_case_id) == ("case_not_awaiting_return", done)
    wait_until(lambda: w.metric("as_logistics_receipt_exceptions") == 2, 10 * SLOW, what="queue gauge")
    assert h.scalar("SELECT count(*) FROM logistics.receipts WHERE case_id IS NULL") == 2
    # an agent links it: released as if matched
    linked(h, rid, case_id)
    p = received(h, r, case_id, 2)
    assert (lines_of(p.lines), p.matched_by, p.receipt_id, p.partial) == ([("l1", 2)], "agent", rid, True)
    wait_until(lambda: w.metric("as_logistics_receipt_exceptions") == 1, 10 * SLOW, what="queue gauge")
    # linking it again, or to a case not awaiting its return: refused, the queue keeps it
    linked(h, rid, case_id)
    linked(h, other, done)
    wait_dead(h, dlq, 2)
    settle(h)
    assert sorted(d for _, d in dead_reasons(h, dlq)) == [
        "link_refused: case_not_awaiting_return", "receipt_not_queued: matched or linked already"]
    assert len(of_kind(events(h, r), "return_received")) == 2
    assert w.metric("as_logistics_receipts_total", result="released") == 1


def test_a_receipt_read_before_its_shipment_is_released_by_the_shipment(h):
    """The warehouse's receipt (keyed by tracking number) and the buyer's
    ReturnShipped (keyed by case) travel on different partitions: the
    receipt read first waits in the exception queue, and the shipment that
    names its tracking number releases it, no agent needed."""
    w = start_logistics(h)
    r = h.reader(LOGISTICS_TOPIC)
    case_id = review_case(h, LINES)
    instructions(h, case_id)
    wait_until(lambda: h.scalar("SELECT count(*) FROM logistics.returns") == 1, 20 * SLOW, what="return")
    rid, tracking = f"rc-{tag()}", f"YT{tag()}"
    receipt(h, lines=(("l1", 2), ("l2", 1)), tracking=tracking, receipt_id=rid)
    (_, u, _, _), = wait_kind(h, r, "receipt_unmatched")
    assert (u.receipt_id, u.reason) == (rid, "no_match")
    return_shipped(h, case_id, tracking)
    p = received(h, r, case_id)
    assert (p.receipt_id, p.matched_by, lines_of(p.lines), p.partial) == (
        rid, "tracking_number", [("l1", 2), ("l2", 1)], False)
    wait_until(lambda: w.metric("as_logistics_receipt_exceptions") == 0, 10 * SLOW, what="queue gauge")
    assert h.scalar("SELECT count(*) FROM logistics.receipts WHERE case_id IS NULL") == 0


def test_return_shipped_not_received_in_time_asks_the_carrier(h):
    start_logistics(h)
    r = h.reader(LOGISTICS_TOPIC)
    m, c = pbm(h).logistics, pbm(h).common
    lost, silent, moving = (review_case(h, LINES) for _ in range(3))
    for case_id in (lost, silent, moving):
        instructions(h, case_id)
    wait_until(lambda: h.scalar("SELECT count(*) FROM logistics.returns") == 3, 20 * SLOW, what="returns")
    # shipped 11 days ago: the 10-day transit time has passed
    track = {}
    for case_id in (lost, silent, moving):
        track[case_id] = f"YT{tag()}"
        return_shipped(h, case_id, track[case_id], at=now_us() - 11 * DAY_US)
    asked = {p.case_id: p for _, p, _, _ in wait_kind(h, r, "carrier_verification_requested", 3)}
    q = asked[lost]
    assert (q.kind, q.direction, q.tracking_number, q.carrier) == \
        (m.INQUIRY_KIND_RETURN_TRANSIT, m.PARCEL_DIRECTION_RETURN, track[lost], "YTO")
    assert q.inquiry_id == inquiry_id("return_transit", lost, 1)
    notices = [p for _, p, _, _ in wait_kind(h, r, "tracking_notice", 3)]
    assert {n.kind for n in notices} == {m.TRACKING_NOTICE_KIND_RETURN_LATE}
    answer(h, inquiry=q.inquiry_id, finding="LOST")
    answer(h, inquiry=asked[moving].inquiry_id, finding="IN_TRANSIT")
    fire(h, "answer", silent)
    outs = {p.case_id: p for _, p, _, _ in wait_kind(h, r, "delivery_outcome", 2)}
    for case_id, defaulted in ((lost, False), (silent, True)):
        o = outs[case_id]
        assert (o.finding, o.remedy, o.rule, o.defaulted) == \
            (m.DELIVERY_FINDING_LOST, c.OUTCOME_REFUND, "return.lost.refund", defaulted)
        assert (o.kind, o.direction) == (m.INQUIRY_KIND_RETURN_TRANSIT, m.PARCEL_DIRECTION_RETURN)
    # still moving: a new wait of the transit time, no outcome
    wait_until(lambda: h.scalar("SELECT count(*) FROM logistics.deadlines WHERE case_id = %s"
                                " AND kind = 'return_transit' AND fired_at IS NULL", (moving,)) == 1,
               20 * SLOW, what="waiting again")
    settle(h)
    assert moving not in {p.case_id for _, p, _, _ in of_kind(events(h, r), "delivery_outcome")}
    assert len(of_kind(events(h, r), "delivery_outcome")) == 2
