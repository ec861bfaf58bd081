"""Inspection and review together, as finance sees them: six buyers return
a dress that fades (one unit of the two each bought, paid below list price
with an order-wide coupon); review approves each return, the warehouse
receives the unit, a QC agent fails it as not colourfast (every verdict
delivered twice, two inspection instances). Inspection counts the five
distinct buyers, raises one SupplierQualityAlert, and grants every one of
the six cases a compensation; review refunds the inspected unit and then
the rest of the dress line, with one coupon each. Per case: exactly two
refunds (distinct ids), the dress line refunded to exactly what was paid
for it and never above, nothing of the other line, no shipping in the
compensation, one coupon; per order never more than OrderPaid. protoc, with only the .proto
files, decodes the new events as they are on the wire."""
import subprocess
import uuid

from conftest import ROOT, SLOW, settle, start_inspection, wait_until
from inspection_helpers import receive, verdict_env
from review_helpers import (INSPECTION_TOPIC, REFUNDS_TOPIC, events, new_case, of_kind, open_cases,
                            start_review, wait_state)

DRESS = ("sup-fade", "SKU-DRESS", "LOT-2026-11")


def dress_case(h, buyer):
    # Two dresses at 12,900 and a scarf at 3,000, shipping 800, paid 90 %.
    listed = 2 * 12900 + 3000 + 800
    env = new_case(h, buyer_id=buyer, case_type="RETURN_REFUND", reason="QUALITY_DEFECT",
                   lines=[("l1", DRESS[1], "apparel", 1, 12900, 2)], other_lines=[("l2", 3000, 1)],
                   evidence=[("https://img.example/fade.jpg", "image/jpeg")],
                   declared_unused=False, paid=listed * 9 // 10)
    line = env.case_opened.case_lines[0]
    line.supplier_id, line.lot_id = DRESS[0], DRESS[2]
    return env


def test_a_fading_dress_six_buyers_two_refunds_and_a_coupon_each_never_above_what_was_paid(h):
    review = start_review(h)
    insp = [start_inspection(h, name="insp-a"), start_inspection(h, name="insp-b")]
    for w in insp:
        w.wait_assigned()
    refunds_r, insp_r = h.reader(REFUNDS_TOPIC), h.reader(INSPECTION_TOPIC)
    raw_r = h.reader(INSPECTION_TOPIC)
    tag = uuid.uuid4().hex[:6]
    cases = [dress_case(h, f"b-{tag}-{i}") for i in range(6)]
    open_cases(h, cases)
    for c in cases:
        wait_state(h, c.case_id, "AWAITING_RETURN", timeout=30)
    wait_until(lambda: h.scalar("SELECT count(*) FROM inspection.cases WHERE case_id = ANY(%s)",
                                ([c.case_id for c in cases],)) == 6, 20 * SLOW, what="cases projected")
    for c in cases:
        receive(h, c.case_id)
    wait_until(lambda: h.scalar("SELECT count(*) FROM inspection.tasks WHERE case_id = ANY(%s)",
                                ([c.case_id for c in cases],)) == 6, 30 * SLOW, what="six tasks")
    verdicts = [verdict_env(h, c.case_id, failed=("colourfast",)) for c in cases]
    recs = [(v.case_id, v.SerializeToString(), None) for v in verdicts]
    h.produce_many(recs + recs, topic=INSPECTION_TOPIC)

    def paid_twice():
        got = {}
        for _, p, _, _ in of_kind(events(h, refunds_r), "refund_issued"):
            got.setdefault(p.case_id, {})[p.refund_id] = p
        return got if len(got) == 6 and all(len(v) == 2 for v in got.values()) else None
    refunds = wait_until(paid_twice, 60 * SLOW, interval=0.5, what="two refunds per case")
    settle(h, timeout=60)

    ins = events(h, insp_r)
    assert len({p.alert_id for _, p, _, _ in of_kind(ins, "supplier_quality_alert")}) == 1
    grants = {}
    for _, p, _, _ in of_kind(ins, "compensation_granted"):
        grants.setdefault(p.case_id, set()).add(p.compensation_id)
    assert {k: len(v) for k, v in grants.items()} == {c.case_id: 1 for c in cases}
    wire = events(h, refunds_r)
    coupons = {}
    for _, p, _, _ in of_kind(wire, "coupon_issued"):
        coupons.setdefault(p.case_id, set()).add(p.coupon_id)
    assert {k: len(v) for k, v in coupons.items() if k in grants} == {c.case_id: 1 for c in cases}
    for c in cases:
        e = c.case_opened
        dress_paid = e.case_lines[0].paid_allocated.amount_minor
        got = list({p.refund_id: p for _, p, _, _ in of_kind(wire, "refund_issued")
                    if p.case_id == e.case_id}.values())
        assert len(got) == 2, (e.case_id, got)
        assert sorted(p.reason_code for p in got) == ["compensation.granted", "return.inspected"]
        for p in got:
            assert p.goodwill_amount.amount_minor == 0
            assert [l.line_id for l in p.lines] == ["l1"]
            assert p.total.currency == "CNY"
        # The return's refund carries the shipping share the policy gives a
        # seller's fault; the compensation pays items only.
        assert [p.shipping_amount.amount_minor for p in got if p.reason_code == "compensation.granted"] == [0]
        assert sum(l.quantity for p in got for l in p.lines) == 2
        assert sum(p.items_amount.amount_minor for p in got) == dress_paid, (e.case_id, dress_paid, got)
        assert sum(p.total.amount_minor for p in got) <= e.order.paid.amount_minor
    assert set(refunds) == {c.case_id for c in cases}
    assert review.metric("as_messages_deadlettered_total") == 0
    assert sum(w.metric("as_messages_deadlettered_total") for w in insp) == 0

    # Google's protoc, with nothing but the .proto files, reads every new
    # event the inspection worker wrote, byte for byte as it is on the wire.
    seen = {}
    for m in raw_r.drain():
        kind = h.decode(m.value()).WhichOneof("payload")
        seen.setdefault(kind, m.value())
    want = {"inspection_task_opened": "standard_version", "inspection_completed": "grade: QC_GRADE_",
            "supplier_quality_alert": 'lot_id: "LOT-2026-11"', "compensation_granted": "coupon {"}
    assert set(want) <= set(seen), sorted(seen)
    for kind, field in want.items():
        dec = subprocess.run(["protoc", "--decode=aftersales.v1.Envelope", "-Iproto", "proto/envelope.proto"],
                             cwd=ROOT, input=seen[kind], capture_output=True, timeout=30)
        assert dec.returncode == 0, dec.stderr.decode()
        assert f"{kind} {{" in dec.stdout.decode() and field in dec.stdout.decode(), dec.stdout.decode()
