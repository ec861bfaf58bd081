"""Issue 12 item 5: proactive outreach to the buyers of a flawed lot.

Real intake and review on the broker and PostgreSQL, every input as real
protobuf bytes as upstream (orders, requests, buyers' replies) and the
inspection worker (SupplierQualityAlert on aftersales.inspection.v1) would
publish them. Intake keeps OrderLine.lot_id in its projection and carries it
as CaseLine.lot_id; an alert naming a lot opens one proactive case per order
line of that (supplier, sku, lot) whose buyer has not complained (paid,
shipped or delivered, not cancelled), bounded per alert and once per alert;
review offers what the policy's proactive_* keys say and the buyer's reply
settles it.
"""
import time
import uuid

from conftest import (CASES_TOPIC, DLQ_TOPIC, SLOW, case_events, dead_letters, intake_pb,
                      produce_orders, produce_requests, request_envelope, settle, start_intake,
                      wait_case_events, wait_until)
from review_helpers import (DECISIONS_TOPIC, INSPECTION_TOPIC, REFUNDS_TOPIC, REVIEW_TOPIC,
                            allocate, events, now_us, of_kind, pbm, produce_on, refunds_db,
                            start_review, wait_dead, wait_events, wait_state)

ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")
DAY_US = 86400 * 1_000_000
SHA = "a" * 64
PHOTO = ("https://img.example.com/p/1.jpg", "image/jpeg", 123456, SHA)
UNIT, QTY, OTHER_UNIT, FEE, PAID = 3000, 2, 1000, 800, 7000


def aftersales_id(ns, name):
    return str(uuid.uuid5(uuid.uuid5(ROOT, ns), name))


class Lot:
    """A supplier's SKU from one lot, and the orders that bought it."""

    def __init__(self, h):
        tag = uuid.uuid4().hex[:8]
        self.h, self.tag = h, tag
        self.supplier, self.sku, self.lot = f"sup-{tag}", f"SKU-{tag}", f"LOT-{tag}"
        self.window_start = now_us() - 5 * DAY_US

    def order(self, i, lot=None, paid=True, shipped=True, delivered=True, cancelled=False):
        """Order o-<tag>-<i> of buyer b-<tag>-<i>: line l1 (2 units of the lot's
        SKU) and l2 (another SKU, no lot), a shipping fee, PAID paid."""
        common, orders, _, _ = intake_pb(self.h)
        oid, buyer = f"o-{self.tag}-{i}", f"b-{self.tag}-{i}"
        t0 = now_us() - 3 * DAY_US
        placed = orders.OrderPlaced(order_id=oid, buyer_id=buyer, merchant_id="m-1",
                                    placed_at_us=t0, region="CN-31")
        placed.shipping_fee.amount_minor, placed.shipping_fee.currency = FEE, "CNY"
        l1 = placed.lines.add(line_id="l1", sku=self.sku, category="apparel",
                              supplier_id=self.supplier, quantity=QTY, title="T-shirt",
                              lot_id=self.lot if lot is None else lot)
        l1.unit_price.amount_minor, l1.unit_price.currency = UNIT, "CNY"
        l2 = placed.lines.add(line_id="l2", sku="SKU-other", category="apparel",
                              supplier_id=self.supplier, quantity=1, title="Socks")
        l2.unit_price.amount_minor, l2.unit_price.currency = OTHER_UNIT, "CNY"
        evs = [("order_placed", placed)]
        if paid:
            p = orders.OrderPaid(order_id=oid, payment_method=common.PAYMENT_METHOD_WALLET,
                                 payment_ref="pay-" + oid, paid_at_us=t0 + 1000)
            p.amount_paid.amount_minor, p.amount_paid.currency = PAID, "CNY"
            evs.append(("order_paid", p))
        if shipped:
            evs.append(("order_shipped", orders.OrderShipped(
                order_id=oid, shipment_id="s-1", carrier="SF", tracking_number="SF" + oid[-8:],
                shipped_at_us=t0 + 2000)))
        if delivered:
            evs.append(("order_delivered", orders.OrderDelivered(
                order_id=oid, shipment_id="s-1", delivered_at_us=t0 + 3000, proof="locker")))
        if cancelled:
            evs.append(("order_cancelled", orders.OrderCancelled(
                order_id=oid, reason="buyer", cancelled_at_us=t0 + 4000)))
        produce_orders(self.h, [(f, self.h.envelope(f, p, case_id="", order_id=oid)) for f, p in evs])
        return oid, buyer

    def alert(self, lot=None, case_ids=(), defect="colour_fades", **over):
        """A SupplierQualityAlert envelope whose id is its cluster's (README, Identifiers)."""
        m = pbm(self.h)
        lot = self.lot if lot is None else lot
        a = m.inspection.SupplierQualityAlert(
            supplier_id=self.supplier, sku=self.sku, lot_id=lot, defect_code=defect,
            confirmed_cases=5, window_start_us=self.window_start, window_end_us=now_us(),
            case_ids=list(case_ids), demand="rectify the dye process", distinct_buyers=5,
            category="apparel", raised_at_us=now_us())
        a.alert_id = aftersales_id("aftersales.supplier_alert",
                                   f"{a.supplier_id}|{a.sku}|{a.lot_id}|{a.defect_code}|{a.window_start_us}")
        for k, v in over.items():
            setattr(a, k, v)
        # The envelope needs a case or an order id: an alert names many cases,
        # so the alert id stands in (it is the record key too).
        return self.h.envelope("supplier_quality_alert", a, case_id=a.alert_id or "alert")

    def publish(self, *envs, key=None):
        self.h.produce_many([(key or e.supplier_quality_alert.alert_id or "k", e.SerializeToString(), None)
                             for e in envs], topic=INSPECTION_TOPIC)


def projected(h, order_ids):
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.orders WHERE order_id = ANY(%s)"
                                " AND placed_at_us IS NOT NULL", (list(order_ids),)) == len(order_ids),
               30 * SLOW, what="orders projected")


def proactive(evs):
    """order id -> the proactive CaseOpened events for it."""
    m = {}
    for k, p, _, _ in evs:
        if k == "case_opened" and p.origin == 2:  # CASE_ORIGIN_PROACTIVE
            m.setdefault(p.order_id, []).append(p)
    return m


def l1_paid():
    """Intake's allocation of PAID over l1, l2 and the fee: l1's share."""
    return allocate(PAID, [UNIT * QTY, OTHER_UNIT, FEE])[0]


def complain(h, lot, oid, buyer):
    common, _, _, _ = intake_pb(h)
    return request_envelope(h, oid, buyer, lines=(("l1", 1),), case_type=common.CASE_TYPE_QUALITY_CLAIM,
                            reason=common.REASON_QUALITY_DEFECT, evidence=[PHOTO])


def test_alert_opens_one_proactive_case_and_one_offer_per_silent_buyer(h):
    common, _, _, _ = intake_pb(h)
    m = pbm(h)
    intake = start_intake(h)
    review = start_review(h)
    lot = Lot(h)
    # 20 buyers of the lot; the last one's parcel is shipped, not delivered yet.
    buyers = [lot.order(i, delivered=i != 19) for i in range(20)]
    other_lot = lot.order(20, lot=f"LOT-other-{lot.tag}")
    cancelled = lot.order(21, cancelled=True)
    unpaid = lot.order(22, paid=False)
    not_shipped = lot.order(23, shipped=False, delivered=False)
    projected(h, [o for o, _ in buyers + [other_lot, cancelled, unpaid, not_shipped]])
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.orders WHERE order_id = %s"
                                " AND cancelled_at_us IS NOT NULL", (cancelled[0],)) == 1, 20 * SLOW)
    cases_r, review_r, refunds_r = h.reader(CASES_TOPIC), h.reader(REVIEW_TOPIC), h.reader(REFUNDS_TOPIC)

    # Three buyers complained themselves; their CaseOpened carries the lot.
    reqs = [complain(h, lot, o, b) for o, b in buyers[:3]]
    produce_requests(h, reqs)
    rids = {e.aftersales_requested.request_id for e in reqs}
    evs = wait_case_events(h, cases_r, lambda e: rids <= {p.request_id for k, p, _, _ in e
                                                          if k == "case_opened"}, timeout=30)
    own = [p for k, p, _, _ in evs if k == "case_opened" and p.request_id in rids]
    for p in own:
        assert p.origin in (0, 1) and not p.alert_id
        assert [(cl.line_id, cl.lot_id) for cl in p.case_lines] == [("l1", lot.lot)]
        assert h.sql("SELECT line_id, lot_id FROM cases.case_lines WHERE case_id = %s",
                     (p.case_id,)) == [("l1", lot.lot)]

    lot.publish(lot.alert(case_ids=[p.case_id for p in own]))
    expected = {o for o, _ in buyers[3:]}
    evs = wait_case_events(h, cases_r, lambda e: set(proactive(e)) >= expected, timeout=40,
                           what="17 proactive cases")
    settle(h)
    evs = case_events(h, cases_r)
    pro = proactive(evs)
    assert set(pro) == expected, sorted(set(pro) ^ expected)
    alert_id = lot.alert().supplier_quality_alert.alert_id
    by_case = {}
    for oid, (o,) in ((k, v) for k, v in pro.items()):
        buyer = oid.replace("o-", "b-", 1)
        assert o.case_id == aftersales_id("aftersales.proactive_case", f"{alert_id}|{oid}|l1")
        assert (o.alert_id, o.route, o.buyer_id, o.merchant_id) == (alert_id, "review", buyer, "m-1")
        assert (o.case_type, o.reason, o.state) == (common.CASE_TYPE_QUALITY_CLAIM,
                                                    common.REASON_QUALITY_DEFECT, common.CASE_STATE_OPEN)
        assert [(l.line_id, l.sku, l.quantity) for l in o.lines] == [("l1", lot.sku, QTY)]
        (cl,) = o.case_lines
        assert (cl.line_id, cl.sku, cl.supplier_id, cl.lot_id, cl.quantity, cl.purchased_quantity) == \
            ("l1", lot.sku, lot.supplier, lot.lot, QTY, QTY)
        assert (cl.unit_price.amount_minor, cl.paid_allocated.amount_minor, cl.paid_allocated.currency) == \
            (UNIT, l1_paid(), "CNY")
        assert (o.order.paid.amount_minor, o.order.shipping_paid.amount_minor) == \
            (PAID, allocate(PAID, [UNIT * QTY, OTHER_UNIT, FEE])[2])
        assert (o.claimed_amount.amount_minor, o.claimed_amount.currency) == (UNIT * QTY, "CNY")
        assert not o.request_id
        by_case[o.case_id] = o
    # No request behind them: no acknowledgement; the shared tables know them.
    assert not [p for k, p, _, _ in evs if k == "buyer_acknowledged" and p.case_id in by_case]
    assert h.scalar("SELECT count(*) FROM cases.case_lines WHERE case_id = ANY(%s) AND quantity = %s"
                    " AND purchased = %s AND paid_minor = %s AND lot_id = %s",
                    (list(by_case), QTY, QTY, l1_paid(), lot.lot)) == 17
    assert h.scalar("SELECT count(*) FROM cases.timeline WHERE case_id = ANY(%s) AND version = 1"
                    " AND actor_kind = 'system' AND actor_id = 'intake' AND reason = 'proactive outreach'",
                    (list(by_case),)) == 17
    assert intake.metric("as_intake_outreach_cases_total") == 17
    assert h.sql("SELECT opened, over_bound FROM intake.outreach_alerts WHERE alert_id = %s",
                 (alert_id,)) == [(17, 0)]

    # Review offers each one what the policy says, once.
    revs = wait_events(h, review_r, lambda e: {p.case_id for _, p, _, _ in of_kind(e, "goodwill_offered")}
                       >= set(by_case), timeout=30, what="17 offers")
    offers = {}
    for _, p, _, _ in of_kind(revs, "goodwill_offered"):
        offers.setdefault(p.case_id, []).append(p)
    want = l1_paid() * 20 // 100
    for cid in by_case:
        (o,) = offers[cid]
        assert (o.kind, o.amount.amount_minor, o.amount.currency, o.percent) == \
            (common.OUTCOME_PARTIAL_REFUND, want, "CNY", 20)
        assert o.offer_id == aftersales_id("aftersales.goodwill-offer", cid)
        assert h.scalar("SELECT state FROM cases.cases WHERE case_id = %s", (cid,)) == "GOODWILL_OFFERED"
    decided = {p.case_id: p for _, p, _, _ in of_kind(revs, "review_decided") if p.case_id in by_case}
    assert {(p.verdict, p.reason_code) for p in decided.values()} == {(m.review.VERDICT_GOODWILL_OFFER,
                                                                       "proactive.offer")}

    # The same alert again (another event id), and an alert without a lot:
    # nothing new.
    lot.publish(lot.alert(case_ids=[p.case_id for p in own]), lot.alert(lot=""))
    wait_until(lambda: intake.metric("as_intake_outreach_alerts_ignored_total", why="replayed") == 1 and
               intake.metric("as_intake_outreach_alerts_ignored_total", why="no_lot") == 1, 20 * SLOW,
               what="replay and no-lot alert handled")
    settle(h)
    assert sum(len(v) for v in proactive(case_events(h, cases_r)).values()) == 17
    assert h.scalar("SELECT count(*) FROM cases.cases WHERE order_id LIKE %s", (f"o-{lot.tag}-%",)) == 20

    # Accepted: the offered amount is refunded once; declined: closed.
    accept, decline = sorted(by_case)[:2]
    dl = h.reader(DLQ_TOPIC)

    def reply(cid, accepted):
        r = m.review.BuyerReplied(case_id=cid, offer_id=offers[cid][0].offer_id, accepted=accepted,
                                  buyer_id=by_case[cid].buyer_id, replied_at_us=now_us())
        produce_on(h, DECISIONS_TOPIC, "buyer_replied", r, cid)

    reply(accept, True)
    reply(decline, False)
    wait_state(h, accept, "REFUNDED")
    wait_state(h, decline, "CLOSED")
    reply(accept, True)  # again: no open offer, no second refund
    (letter,) = [x for _, x, _ in wait_dead(h, dl, 1)]
    assert (letter.reason_code, letter.detail) == ("contract_violation", "reply: no open offer on the case")
    settle(h)
    refunds = [p for _, p, _, _ in of_kind(events(h, refunds_r), "refund_issued")]
    assert [(p.case_id, p.total.amount_minor, p.goodwill_amount.amount_minor) for p in refunds] == \
        [(accept, want, want)]
    assert [r[1] for r in refunds_db(h)] == [accept]
    assert h.scalar("SELECT refunded_minor FROM review.ledger WHERE order_id = %s AND line_id = 'l1'",
                    (by_case[accept].order_id,)) == want
    assert review.metric("as_review_refunds_total") == 1


def test_alert_beyond_the_bound_counts_the_lines_left(h):
    common, _, _, _ = intake_pb(h)
    intake = start_intake(h, AS_INTAKE_OUTREACH_MAX=3)
    lot = Lot(h)
    orders = [lot.order(i) for i in range(6)]
    projected(h, [o for o, _ in orders])
    cases_r = h.reader(CASES_TOPIC)
    # Buyer 0 reported on the order's other line: the alert names that case,
    # so the order is the buyer's complaint already, whatever line it is on.
    req = request_envelope(h, orders[0][0], orders[0][1], lines=(("l2", 1),),
                           case_type=common.CASE_TYPE_QUALITY_CLAIM, reason=common.REASON_QUALITY_DEFECT,
                           evidence=[PHOTO])
    produce_requests(h, [req])
    evs = wait_case_events(h, cases_r, lambda e: any(k == "case_opened" for k, *_ in e), timeout=30)
    (own,) = [p for k, p, _, _ in evs if k == "case_opened"]
    env = lot.alert(case_ids=[own.case_id])
    lot.publish(env)
    alert_id = env.supplier_quality_alert.alert_id
    wait_until(lambda: h.sql("SELECT opened, over_bound FROM intake.outreach_alerts WHERE alert_id = %s",
                             (alert_id,)) == [(3, 2)], 20 * SLOW, what="alert handled")
    settle(h)
    pro = proactive(case_events(h, cases_r))
    assert sorted(pro) == sorted(o for o, _ in orders[1:])[:3]
    assert intake.metric("as_intake_outreach_over_bound_total") == 2
    assert intake.metric("as_intake_outreach_cases_total") == 3
    assert intake.logged("outreach: lines beyond AS_INTAKE_OUTREACH_MAX not contacted")
    # Once per alert: the same alert again does not reach the two left out.
    lot.publish(lot.alert(case_ids=[own.case_id]))
    wait_until(lambda: intake.metric("as_intake_outreach_alerts_ignored_total", why="replayed") == 1,
               20 * SLOW)
    settle(h)
    assert len(proactive(case_events(h, cases_r))) == 3


def test_accepted_exchange_offer_requests_the_exchange(h):
    path = h.logdir / "proactive-policy.ini"
    path.write_text("version = proactive-exchange-1\n[default]\nproactive_offer = exchange\n"
                    "proactive_offer_hours = 24\n[region *]\nwarehouse = WH-1\naddress = somewhere\n")
    common, _, _, _ = intake_pb(h)
    m = pbm(h)
    start_intake(h)
    start_review(h, AS_REVIEW_POLICY_FILE=str(path))
    lot = Lot(h)
    oid, buyer = lot.order(0)
    projected(h, [oid])
    review_r, refunds_r = h.reader(REVIEW_TOPIC), h.reader(REFUNDS_TOPIC)
    lot.publish(lot.alert())
    revs = wait_events(h, review_r, lambda e: of_kind(e, "goodwill_offered"), timeout=30, what="offer")
    (_, o, _, _), = of_kind(revs, "goodwill_offered")
    assert (o.kind, o.amount.amount_minor, o.percent, o.policy_version) == \
        (common.OUTCOME_EXCHANGE, 0, 0, "proactive-exchange-1")
    (d,) = [p for _, p, _, _ in of_kind(revs, "review_decided")]
    assert o.expires_at_us - d.decided_at_us == 24 * 3600 * 10**6
    produce_on(h, DECISIONS_TOPIC, "buyer_replied",
               m.review.BuyerReplied(case_id=o.case_id, offer_id=o.offer_id, accepted=True,
                                     buyer_id=buyer, replied_at_us=now_us()), o.case_id)
    wait_state(h, o.case_id, "EXCHANGED")
    settle(h)
    evs = events(h, refunds_r)
    (_, ex, _, _), = of_kind(evs, "exchange_requested")
    assert (ex.case_id, ex.order_id) == (o.case_id, oid)
    assert [(l.line_id, l.quantity) for l in ex.replacement_lines] == [("l1", QTY)]
    assert not of_kind(evs, "refund_issued")
    assert h.sql("SELECT to_state, actor_kind, reason FROM cases.timeline WHERE case_id = %s"
                 " ORDER BY version", (o.case_id,))[-2:] == \
        [("APPROVED", "buyer", "proactive.exchange_accepted"), ("EXCHANGED", "buyer", "exchange.requested")]


def test_hostile_alerts_are_dead_lettered_and_the_partition_moves_on(h):
    intake = start_intake(h)
    lot = Lot(h)
    oid, _ = lot.order(0)
    projected(h, [oid])
    cases_r, dl = h.reader(CASES_TOPIC), h.reader(DLQ_TOPIC)
    m = pbm(h)
    good = lot.alert()
    bad = [
        lot.alert(sku=""),                                  # empty sku (the id no longer matches either)
        lot.alert(sku=lot.sku + "\x01"),                    # a control character
        lot.alert(supplier_id="s" * 300),                   # longer than any supplier id kept
        lot.alert(alert_id=str(uuid.uuid4())),              # not its cluster's id
        lot.alert(case_ids=["c-1", "c 2; DROP"]),           # an unsafe case id
        lot.alert(lot="LOT|x"),                             # an unsafe lot
    ]
    # Someone else's event on the topic is ignored by intake, not refused.
    other = h.envelope("inspection_completed", m.inspection.InspectionCompleted(
        case_id="c-x", defect_confirmed=True, completed_at_us=now_us()), case_id="c-x")
    key = "one-partition"
    h.produce_many([(key, e.SerializeToString(), None) for e in bad + [other, good]],
                   topic=INSPECTION_TOPIC)
    wait_case_events(h, cases_r, lambda e: oid in proactive(e), timeout=30, what="the valid alert handled")
    settle(h)
    letters = dead_letters(h, dl)
    assert len(letters) == len(bad), [(x.reason_code, x.detail) for _, x, _ in letters]
    assert {x.reason_code for _, x, _ in letters} == {"contract_violation"}
    assert {x.original_event_id for _, x, _ in letters} == {e.event_id for e in bad}
    assert {x.source_topic for _, x, _ in letters} == {INSPECTION_TOPIC}
    assert all(x.detail.startswith("SupplierQualityAlert: ") for _, x, _ in letters)
    details = sorted(x.detail for _, x, _ in letters)
    assert "SupplierQualityAlert: sku missing or invalid" in details
    assert "SupplierQualityAlert: a case id is unsafe" in details
    assert "SupplierQualityAlert: lot_id unsafe" in details
    assert any("is not the id of its" in d for d in details)
    assert intake.metric("as_messages_ignored_total") >= 1
    assert h.scalar("SELECT count(*) FROM intake.outreach_alerts") == 1
