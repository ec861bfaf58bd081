"""make run's demonstration: sends a few events into the running fleet and
prints what comes out, decoded, so a newcomer sees it at work.

- intake: an order (placed, paid, delivered), a valid return request in
  Chinese (sent twice: one case), a quality claim without a photo (opens
  awaiting evidence), a request for too many units (rejected) and a
  refund-only claim for missing socks;
- review: decides each case under the default policy: the return is
  approved with return instructions, the quality claim waits for evidence,
  the socks are refunded at once; the demo then plays the warehouse and the
  inspector for the returned T-shirt, and its refund follows;
- the runtime, through the probe worker: synthetic probes (one twice, to
  show the inbox dedupe), one malformed message and one that breaks the
  probe's contract (the dead-letter path).
It prints the case, review, refund, echo and dead-letter events as they arrive.
"""
import argparse
import os
import sys
import time
import uuid

sys.path.insert(0, os.environ.get("AS_GEN_PY", "build/gen/py"))
import common_pb2  # noqa: E402
import envelope_pb2  # noqa: E402
import review_pb2  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402


def probe(probe_id, seq, amount):
    e = envelope_pb2.Envelope(event_id=str(uuid.uuid4()), event_type="SyntheticProbe",
                              schema_version=1, case_id=probe_id,
                              occurred_at_us=int(time.time() * 1e6), trace_id=uuid.uuid4().hex)
    e.producer.service = "demo"
    e.producer.instance = "make-run"
    e.synthetic_probe.probe_id = probe_id
    e.synthetic_probe.seq = seq
    e.synthetic_probe.amount_minor = amount
    return e


def envelope(field, payload, order_id="", case_id=""):
    e = envelope_pb2.Envelope(event_id=str(uuid.uuid4()), schema_version=1, order_id=order_id,
                              case_id=case_id, occurred_at_us=int(time.time() * 1e6),
                              trace_id=uuid.uuid4().hex)
    e.producer.service = "demo"
    e.producer.instance = "make-run"
    getattr(e, field).CopyFrom(payload)
    e.event_type = type(payload).DESCRIPTOR.name
    return e


def order_events(oid, buyer, now, sku, unit, qty):
    """OrderPlaced, OrderPaid, OrderDelivered (yesterday) for one line."""
    placed = envelope_pb2.Envelope().order_placed.__class__(
        order_id=oid, buyer_id=buyer, merchant_id="demo-merchant", placed_at_us=now - 3 * 86400 * 10**6,
        region="CN-31")
    line = placed.lines.add(line_id="l1", sku=sku, category="apparel", supplier_id="sup-7",
                            quantity=qty, title=sku)
    line.unit_price.amount_minor, line.unit_price.currency = unit, "CNY"
    placed.shipping_fee.amount_minor, placed.shipping_fee.currency = 800, "CNY"
    paid = envelope_pb2.Envelope().order_paid.__class__(
        order_id=oid, payment_method=common_pb2.PAYMENT_METHOD_WALLET, payment_ref="pay-" + oid,
        paid_at_us=now - 3 * 86400 * 10**6)
    paid.amount_paid.amount_minor, paid.amount_paid.currency = unit * qty + 800, "CNY"
    delivered = envelope_pb2.Envelope().order_delivered.__class__(
        order_id=oid, shipment_id="s1", delivered_at_us=now - 86400 * 10**6, proof="locker")
    return [envelope("order_placed", placed, oid), envelope("order_paid", paid, oid),
            envelope("order_delivered", delivered, oid)]


def order_and_requests():
    """Two orders (two T-shirts; a pair of socks) and five requests about them."""
    oid, socks, buyer, now = ("demo-o-" + uuid.uuid4().hex[:8], "demo-o-" + uuid.uuid4().hex[:8],
                              "demo-buyer-" + uuid.uuid4().hex[:6], int(time.time() * 1e6))
    orders = order_events(oid, buyer, now, "TSHIRT-RED-M", 5900, 2) + order_events(socks, buyer, now,
                                                                                   "SOCKS-GREY", 900, 1)

    def request(order, key, qty, case_type, reason, comment):
        r = envelope_pb2.Envelope().aftersales_requested.__class__(
            request_id="demo-r-" + uuid.uuid4().hex[:8], idempotency_key=key + "-" + buyer, order_id=order,
            buyer_id=buyer, case_type=case_type, reason=reason, comment=comment,
            preferred_outcome=common_pb2.OUTCOME_REFUND, return_method=common_pb2.RETURN_METHOD_PICKUP,
            submitted_at_us=int(time.time() * 1e6), locale="zh-CN", declared_unused=True)
        r.lines.add(line_id="l1", quantity=qty)
        return envelope("aftersales_requested", r, order)

    ret = request(oid, "k-return", 1, common_pb2.CASE_TYPE_RETURN_REFUND, common_pb2.REASON_SIZE_MISMATCH,
                  "尺码偏小，想退货 👕")
    requests = [ret, ret,
                request(oid, "k-quality", 1, common_pb2.CASE_TYPE_QUALITY_CLAIM, common_pb2.REASON_QUALITY_DEFECT,
                        "洗后严重掉色"),
                request(oid, "k-too-many", 5, common_pb2.CASE_TYPE_RETURN_REFUND, common_pb2.REASON_CHANGED_MIND,
                        ""),
                request(socks, "k-socks", 1, common_pb2.CASE_TYPE_REFUND_ONLY, common_pb2.REASON_MISSING_PARTS,
                        "only one sock in the parcel")]
    return oid, orders, requests


def return_arrives(case_id):
    """The warehouse receives the parcel and inspection finds it resellable."""
    now = int(time.time() * 1e6)
    got = envelope_pb2.Envelope().return_received.__class__(
        case_id=case_id, warehouse_id="wh-demo", tracking_number="SFDEMO1", received_at_us=now)
    ok = envelope_pb2.Envelope().inspection_completed.__class__(
        case_id=case_id, defect_confirmed=False, resellable=True, standard="apparel-v1", completed_at_us=now)
    return [("aftersales.logistics.v1", envelope("return_received", got, case_id=case_id)),
            ("aftersales.inspection.v1", envelope("inspection_completed", ok, case_id=case_id))]


def describe(env):
    kind = env.WhichOneof("payload")
    body = getattr(env, kind)
    if kind == "dead_letter":
        return "dead letter: reason=%s detail=%r from %s[%d]@%d" % (
            body.reason_code, body.detail, body.source_topic, body.source_partition, body.source_offset)
    if kind == "case_opened":
        return "case opened: %s %s %s route=%s state=%s claimed=%d %s comment=%r" % (
            body.case_number, common_pb2.CaseType.Name(body.case_type), common_pb2.Reason.Name(body.reason),
            body.route, common_pb2.CaseState.Name(body.state), body.claimed_amount.amount_minor,
            body.claimed_amount.currency, body.comment)
    if kind == "buyer_acknowledged":
        return "buyer acknowledged: %s (first response)" % body.case_number
    if kind == "request_rejected":
        return "request rejected: %s / %s / %s" % (body.reason_code, body.message_en, body.message_zh)
    if kind == "review_decided":
        return "review decided: %s rule=%s policy=%s shipping paid by %s" % (
            review_pb2.Verdict.Name(body.verdict), body.reason_code, body.policy_version,
            common_pb2.PayerParty.Name(body.shipping_payer))
    if kind == "return_instructions":
        return "return instructions: send to %s (%s), %s, by %s" % (
            body.warehouse_id, body.return_address, common_pb2.ReturnMethod.Name(body.method),
            time.strftime("%Y-%m-%d", time.gmtime(body.ship_by_us / 1e6)))
    if kind == "refund_issued":
        return "refund issued: %s total=%d %s (items %d, shipping %d, goodwill %d) to %s %s" % (
            body.refund_id, body.total.amount_minor, body.total.currency, body.items_amount.amount_minor,
            body.shipping_amount.amount_minor, body.goodwill_amount.amount_minor,
            common_pb2.PaymentMethod.Name(body.method), body.payment_ref)
    if kind == "case_state_changed":
        return "case %s: %s -> %s (v%d, %s: %s)" % (
            body.case_number or body.case_id, common_pb2.CaseState.Name(body.from_state),
            common_pb2.CaseState.Name(body.to_state), body.version, body.actor_kind or body.actor.id,
            body.reason)
    if kind == "probe_echoed":
        return "probe echoed: probe_id=%s seq=%d count=%d total_minor=%d" % (
            body.probe_id, body.seq, body.count, body.total_minor)
    return "%s: %s" % (kind, str(body).replace("\n", " "))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--dsn", default="")
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()

    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "demo-" + uuid.uuid4().hex[:8],
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["aftersales.probe-echo.v1", "aftersales.deadletter.v1", "aftersales.cases.v1",
                 "aftersales.review.v1", "aftersales.refunds.v1"])
    p = Producer({"bootstrap.servers": args.bootstrap})
    bins = os.environ.get("AS_BIN_DIR", "build/bin")
    intake = os.path.exists(os.path.join(bins, "as-intake"))
    review = intake and os.path.exists(os.path.join(bins, "as-review"))
    if intake:
        oid, orders, requests = order_and_requests()
        for e in orders:
            p.produce("aftersales.orders.v1", key=oid, value=e.SerializeToString())
        p.flush(10)
        for e in requests:
            p.produce("aftersales.requests.v1", key=oid, value=e.SerializeToString())
        print("demo: sent order %s (2 T-shirts, paid, delivered), an order of socks, and 5 requests: a return"
              " in Chinese (twice), a quality claim without a photo, a return of 5 units, missing socks" % oid)
    run = uuid.uuid4().hex[:6]
    sent = [probe("demo-%s-%d" % (run, i), i, 100 * (i + 1)) for i in range(3)]
    for e in sent:
        p.produce("aftersales.probe.v1", key=e.synthetic_probe.probe_id, value=e.SerializeToString())
    p.produce("aftersales.probe.v1", key=sent[0].synthetic_probe.probe_id,
              value=sent[0].SerializeToString())  # a redelivery
    p.produce("aftersales.probe.v1", key="demo-bad", value=b"\x08not a protobuf envelope")
    p.produce("aftersales.probe.v1", key="demo-neg", value=probe("demo-neg", 9, -5).SerializeToString())
    p.flush(10)
    print("demo: sent 3 probes, one of them twice, 1 malformed message, 1 probe with a negative amount")

    # What must be seen, by kind. Probes: 3 echoes + 2 dead letters.
    # Intake: 3 cases opened, 3 acknowledgements, 1 rejection (the repeated
    # request adds nothing). Review: the return's instructions, the socks'
    # refund at once and the T-shirt's refund once the demo returns it.
    # Decisions and every case state change are shown as they come.
    want = {"probe_echoed": 3, "dead_letter": 2}
    if intake:
        want.update(case_opened=3, buyer_acknowledged=3, request_rejected=1)
    if review:
        want.update(return_instructions=1, refund_issued=2)
    got = {k: 0 for k in want}
    deadline, quiet_until = time.time() + args.seconds, None
    while time.time() < deadline and (quiet_until is None or time.time() < quiet_until):
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        env = envelope_pb2.Envelope()
        env.ParseFromString(m.value())
        kind = env.WhichOneof("payload")
        print("demo: %-26s %s" % (m.topic(), describe(env)))
        if kind in got:
            got[kind] += 1
        if kind == "return_instructions":
            for topic, e in return_arrives(env.return_instructions.case_id):
                p.produce(topic, key=env.return_instructions.case_id, value=e.SerializeToString())
            p.flush(10)
            print("demo: (the parcel reaches the warehouse and passes inspection)")
        if quiet_until is None and all(got[k] >= want[k] for k in want):
            quiet_until = time.time() + 1.5  # the trailing state changes
    c.close()
    ok = all(got[k] == want[k] for k in want)
    print("demo: %s: %s (the repeated request and probe had no effect)"
          % ("all expected events seen" if ok else "NOT as expected",
             ", ".join("%s %d/%d" % (k, got[k], want[k]) for k in want)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
