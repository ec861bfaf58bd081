"""Issue 9: every derived id is a standard name-based UUID v5 that a client
recomputes with Python's uuid.uuid5 from what it sees on the topics (README,
Identifiers): namespace uuid5(ROOT, ns) with ROOT = uuid5(NAMESPACE_URL,
"urn:aftersales"), name as listed there. Real intake and review on a real
broker and PostgreSQL: a case opened from a request (its case id from the
buyer id and idempotency key the storefront sent), its answers, its
republished message, its state changes and its refund; review's goodwill
offer, coupon and exchange; intake's dead letters.
"""
import time
import uuid

from conftest import (CASES_TOPIC, DLQ_TOPIC, REQUESTS_TOPIC, SLOW, case_events, dead_letters, intake_pb,
                      order_events, produce_orders, produce_requests, request_envelope, start_intake,
                      wait_case_events, wait_until)
from review_helpers import (DAY_US, DECISIONS_TOPIC, INSPECTION_TOPIC, REFUNDS_TOPIC, REVIEW_TOPIC, events,
                            inspection_completed, new_case, now_us,
                            of_kind, open_cases, pbm, produce_on, refunds_db, returned_and_inspected,
                            start_review, wait_events, wait_state)

ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")


def aftersales_id(ns, name):
    """What finance runs: the README's recipe, nothing of ours."""
    return str(uuid.uuid5(uuid.uuid5(ROOT, ns), name))


def is_v5(s):
    u = uuid.UUID(s)
    return u.version == 5 and u.variant == uuid.RFC_4122 and str(u) == s


def test_root_is_the_documented_constant():
    assert str(ROOT) == "a1d6b285-f6cf-56a1-a505-0d3655a064fa"


def test_case_answer_message_state_and_refund_ids_recompute_from_the_wire(h):
    common, _, requests, _ = intake_pb(h)
    start_review(h)
    start_intake(h)
    order_id, buyer_id = f"o-{h.dbname[2:]}", f"b-{h.dbname[2:]}"
    produce_orders(h, order_events(h, order_id, buyer_id, [("l1", "SKU-1", 500, 1)]))
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND delivered_at_us IS NOT NULL",
                             (order_id,)), 20 * SLOW, what="order projected")
    cases_r, refunds_r = h.reader(CASES_TOPIC), h.reader(REFUNDS_TOPIC)
    key = f"checkout|{uuid.uuid4().hex}"  # a bar in the key: the name is the bytes as sent
    req = request_envelope(h, order_id, buyer_id, key=key, lines=(("l1", 1),), declared_unused=True)
    produce_requests(h, [req])
    evs = wait_case_events(h, cases_r, lambda e: of_kind(e, "case_opened") and of_kind(e, "buyer_acknowledged"),
                           what="case opened and acknowledged")
    ((_, opened, _, opened_env),) = of_kind(evs, "case_opened")
    case_id = opened.case_id

    # The case id: the buyer id and idempotency key of the request the storefront sent.
    assert case_id == aftersales_id("aftersales.case", f"{buyer_id}|{key}")
    assert is_v5(case_id)
    assert opened_env.event_id == aftersales_id("aftersales.intake.event", f"{case_id}|CaseOpened")

    # A retry (new request id, same content): the same case, an answer of its own.
    retry = requests.AfterSalesRequested()
    retry.CopyFrom(req.aftersales_requested)
    retry.request_id = f"r-{uuid.uuid4().hex[:12]}"
    produce_requests(h, [h.envelope("aftersales_requested", retry, case_id="", order_id=order_id)])
    # A buyer's message on the case: republished on the cases topic under an id of the source event.
    msg = h.envelope("buyer_message", requests.BuyerMessage(case_id=case_id, buyer_id=buyer_id, text="hi",
                                                            sent_at_us=now_us()),
                     case_id=case_id, order_id=order_id)
    produce_requests(h, [msg], key=order_id)
    wait_state(h, case_id, "REFUNDED")  # cheap, unused: refunded at once, no return
    evs = wait_case_events(h, cases_r, lambda e: len(of_kind(e, "buyer_acknowledged")) >= 2
                           and of_kind(e, "buyer_message"), what="two answers and the message")
    acks = of_kind(evs, "buyer_acknowledged")
    assert sorted(p.request_id for _, p, _, _ in acks) == sorted([req.aftersales_requested.request_id,
                                                                  retry.request_id])
    for _, p, _, env in acks:
        assert p.case_id == case_id
        assert env.event_id == aftersales_id("aftersales.intake.event",
                                             f"{case_id}|BuyerAcknowledged|{p.request_id}")
    ((_, _, _, repub),) = of_kind(evs, "buyer_message")
    assert repub.causation_id == msg.event_id
    assert repub.event_id == aftersales_id("aftersales.intake.event", f"{repub.causation_id}|republished")

    # Every state change of the case (intake's birth, review's moves): case id and version.
    wait_case_events(h, cases_r, lambda e: [p for _, p, _, _ in of_kind(e, "case_state_changed")
                                            if p.case_id == case_id and p.to_state == common.CASE_STATE_REFUNDED],
                     what="the move to REFUNDED on the wire")
    changes = [(p, env) for _, p, _, env in of_kind(case_events(h, cases_r), "case_state_changed")
               if p.case_id == case_id]
    assert sorted({p.version for p, _ in changes}) == list(range(1, max(p.version for p, _ in changes) + 1))
    assert len(changes) >= 2
    for p, env in changes:
        assert env.event_id == aftersales_id("aftersales.case_state_changed", f"{case_id}|{p.version}")

    # The refund id finance books: the case id alone.
    evs = wait_events(h, refunds_r, lambda e: of_kind(e, "refund_issued"), what="RefundIssued")
    ((_, refund, key_seen, _),) = of_kind(evs, "refund_issued")
    assert (refund.case_id, key_seen, refund.total.amount_minor) == (case_id, case_id, 500)
    assert refund.refund_id == aftersales_id("aftersales.refund", refund.case_id)
    assert is_v5(refund.refund_id)
    assert [r[0] for r in refunds_db(h, case_id)] == [refund.refund_id]


def test_offer_coupon_and_exchange_ids_recompute_from_the_case_id(h):
    m = pbm(h)
    start_review(h)
    review_r, refunds_r = h.reader(REVIEW_TOPIC), h.reader(REFUNDS_TOPIC)
    coupon = new_case(h, reason="NOT_AS_DESCRIBED", evidence=(("https://img.example.com/p/1.jpg", "image/jpeg"),),
                      delivered_at_us=now_us() - 45 * DAY_US,  # past the claim days: a goodwill coupon
                      lines=[("l1", "S", "apparel", 1, 3001, 1)])
    exchange = new_case(h, case_type="EXCHANGE", reason="SIZE_MISMATCH", lines=[("l1", "TEE-M", "apparel", 1, 5000, 1)])
    open_cases(h, [coupon, exchange])
    evs = wait_events(h, review_r, lambda e: of_kind(e, "goodwill_offered"), what="the offer")
    ((_, offer, _, _),) = of_kind(evs, "goodwill_offered")
    assert (offer.case_id, offer.kind) == (coupon.case_id, m.common.OUTCOME_COUPON)
    assert offer.offer_id == aftersales_id("aftersales.goodwill-offer", offer.case_id)
    produce_on(h, DECISIONS_TOPIC, "buyer_replied",
               m.review.BuyerReplied(case_id=coupon.case_id, offer_id=offer.offer_id, accepted=True,
                                     buyer_id=coupon.case_opened.buyer_id, replied_at_us=now_us()),
               coupon.case_id)
    wait_state(h, exchange.case_id, "AWAITING_RETURN")
    returned_and_inspected(h, exchange.case_id, resellable=True)
    evs = wait_events(h, refunds_r, lambda e: of_kind(e, "coupon_issued") and of_kind(e, "exchange_requested"),
                      what="coupon and exchange")
    ((_, c, _, _),) = of_kind(evs, "coupon_issued")
    ((_, x, _, _),) = of_kind(evs, "exchange_requested")
    assert c.case_id == coupon.case_id and c.coupon_id == aftersales_id("aftersales.coupon", c.case_id)
    assert x.case_id == exchange.case_id and x.exchange_id == aftersales_id("aftersales.exchange", x.case_id)
    assert len({offer.offer_id, c.coupon_id, x.exchange_id, coupon.case_id, exchange.case_id}) == 5
    assert all(is_v5(i) for i in (offer.offer_id, c.coupon_id, x.exchange_id))


def test_inspection_task_and_compensation_refund_and_coupon_ids_recompute(h):
    """Issue 12: the evidence-only task id from the case id; a compensation's
    refund and coupon ids from the case id and the compensation id, which is
    itself a name of the alert and the case."""
    from test_review_inspection import grant, produce_grant, uniq
    start_review(h)
    insp_r, refunds_r = h.reader(INSPECTION_TOPIC), h.reader(REFUNDS_TOPIC)
    qc = new_case(h, case_type="REFUND_ONLY", reason="QUALITY_DEFECT",
                  evidence=(("https://img.example.com/p/1.jpg", "image/jpeg"),))
    open_cases(h, [qc])
    evs = wait_events(h, insp_r, lambda e: of_kind(e, "inspection_requested"), what="InspectionRequested")
    ((_, ir, _, _),) = of_kind(uniq(evs), "inspection_requested")
    assert ir.task_id == aftersales_id("aftersales.inspection_task", f"{ir.case_id}|evidence") and is_v5(ir.task_id)
    g = grant(h, qc, [(l.line_id, l.sku, l.purchased_quantity) for l in qc.case_opened.case_lines], alert="a-9")
    assert g.compensation_id == aftersales_id("aftersales.compensation", f"a-9|{qc.case_id}")
    produce_grant(h, g)
    evs = wait_events(h, refunds_r, lambda e: of_kind(e, "refund_issued") and of_kind(e, "coupon_issued"),
                      what="compensation refund and coupon")
    ((_, r, _, _),) = of_kind(uniq(evs), "refund_issued")
    ((_, c, _, _),) = of_kind(uniq(evs), "coupon_issued")
    assert r.refund_id == aftersales_id("aftersales.refund", f"{r.case_id}|{g.compensation_id}")
    assert c.coupon_id == aftersales_id("aftersales.coupon", f"{c.case_id}|{g.compensation_id}")
    assert r.refund_id != aftersales_id("aftersales.refund", r.case_id) and is_v5(r.refund_id) and is_v5(c.coupon_id)
    # the case waits on QC: its finding closes it (no deadline of review's would)
    produce_on(h, INSPECTION_TOPIC, "inspection_completed",
               inspection_completed(h, qc.case_id, defect=False, resellable=False, kind="evidence"), qc.case_id)
    wait_state(h, qc.case_id, "REJECTED")


def test_dead_letter_id_recomputes_from_the_dead_letter(h):
    start_intake(h)
    at = h.produce_many([("k-a", b"\x0fnot protobuf", 1), ("k-b", b"\x0fnor this", 2),
                         ("k-b", b"\x0fnor that", 2)], topic=REQUESTS_TOPIC)
    dl = h.reader(DLQ_TOPIC)
    wait_until(lambda: len(dead_letters(h, dl)) >= 3, 20 * SLOW, what="3 dead letters")
    time.sleep(0.5)  # a fourth would be a bug: read what came since
    letters = dead_letters(h, dl)
    assert sorted((d.source_partition, d.source_offset) for _, d, _ in letters) == sorted(at)
    for env, d, _ in letters:
        assert (d.reason_code, d.source_topic, d.consumer_group) == ("decode_failed", REQUESTS_TOPIC,
                                                                     f"intake-{h.group}")
        assert env.event_id == aftersales_id(
            "aftersales.deadletter", f"{d.consumer_group}|{d.source_topic}|{d.source_partition}|{d.source_offset}")
        assert is_v5(env.event_id)
    assert len({env.event_id for env, _, _ in letters}) == 3


def test_inspection_task_alert_and_compensation_ids_recompute_from_the_wire(h):
    """as-inspection's ids (README, Identifiers): the task ids from the case
    id, the alert id from its key and window start, the compensation id
    from the alert and case ids, with the finance recipe above."""
    from conftest import start_inspection
    from inspection_helpers import case_opened, insp_events, open_cases, receive, request_evidence, verdict
    from review_helpers import INSPECTION_TOPIC
    start_inspection(h, AS_INSPECTION_CLUSTER_MIN="2")
    r = h.reader(INSPECTION_TOPIC)
    cases = [case_opened(h) for _ in range(2)]
    open_cases(h, cases)
    for c in cases:
        receive(h, c.case_id)
    request_evidence(h, cases[0].case_id)
    tasks = wait_events(h, r, lambda e: len(of_kind(e, "inspection_task_opened")) == 3, what="3 tasks")
    got = {(p.case_id, p.evidence_only): p.task_id for _, p, _, _ in of_kind(tasks, "inspection_task_opened")}
    for (case_id, evidence), tid in got.items():
        assert tid == aftersales_id("aftersales.inspection_task",
                                    f"{case_id}|{'evidence' if evidence else 'return'}") and is_v5(tid)
    for c in cases:
        verdict(h, c.case_id, failed=("colourfast",))
    # the alert and the grants are keyed apart (alert id, case ids): on a real
    # broker their partitions may be read in either order
    evs = wait_events(h, r, lambda e: len(of_kind(e, "compensation_granted")) == 2
                      and of_kind(e, "supplier_quality_alert"), what="2 grants and the alert")
    ((_, a, key, _),) = of_kind(evs, "supplier_quality_alert")
    assert key == a.alert_id
    assert a.alert_id == aftersales_id("aftersales.supplier_alert", "|".join(
        (a.supplier_id, a.sku, a.lot_id, a.defect_code, str(a.window_start_us))))
    for _, g, key, _ in of_kind(evs, "compensation_granted"):
        assert key == g.case_id
        assert g.compensation_id == aftersales_id("aftersales.compensation", f"{a.alert_id}|{g.case_id}")
    assert insp_events(h, r, "inspection_completed")
