"""Helpers of the inspection tests (tests/integration/test_inspection*.py).

They publish what upstream, logistics, review and the QC agents would
(real protobuf bytes on the real topics): CaseOpened on the cases topic,
ReturnReceived on the logistics topic, InspectionRequested, QcVerdict and
RectificationConfirmed on the inspection topic; and read back what the
inspection worker published. The ids are recomputed here as the README's
"Identifiers" section says, in Python.
"""
import uuid

from conftest import CASES_TOPIC, SLOW, dead_letters, wait_until
from review_helpers import INSPECTION_TOPIC, LOGISTICS_TOPIC, now_us, of_kind, pbm, produce_on

ROOT_NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")
APPAREL = ("colourfast", "seams_intact", "size_label", "tags_attached")
ELECTRONICS = ("powers_on", "performance", "no_scratches", "accessories")


def ns_id(ns, name):
    return str(uuid.uuid5(uuid.uuid5(ROOT_NS, ns), name))


def task_id(case_id, kind="return"):
    return ns_id("aftersales.inspection_task", f"{case_id}|{kind}")


def alert_id(supplier, sku, lot, code, window_start_us):
    return ns_id("aftersales.supplier_alert", f"{supplier}|{sku}|{lot}|{code}|{window_start_us}")


def compensation_id(alert, case_id):
    return ns_id("aftersales.compensation", f"{alert}|{case_id}")


def case_opened(h, case_id=None, buyer_id=None, lines=None, reason="QUALITY_DEFECT",
                evidence=True, currency="CNY"):
    """A CaseOpened as intake publishes it. lines = [(line_id, sku, category,
    supplier, lot, purchased, claimed, paid_minor)]."""
    m = pbm(h)
    c = m.common
    tag = uuid.uuid4().hex[:10]
    case_id = case_id or f"case-{tag}"
    buyer_id = buyer_id or f"b-{tag}"
    order_id = f"o-{case_id}"
    if lines is None:
        lines = [("l1", "SKU-TEE", "apparel", "sup-1", "LOT-7", 1, 1, 5900)]
    e = m.cases.CaseOpened(case_id=case_id, case_number=f"AS-T-{tag}", order_id=order_id,
                           buyer_id=buyer_id, merchant_id="m-1",
                           case_type=c.CASE_TYPE_QUALITY_CLAIM if reason == "QUALITY_DEFECT"
                           else c.CASE_TYPE_RETURN_REFUND,
                           reason=c.Reason.Value("REASON_" + reason), state=c.CASE_STATE_OPEN,
                           route="review", submitted_at_us=now_us())
    for line_id, sku, cat, sup, lot, bought, qty, paid in lines:
        l = e.case_lines.add(line_id=line_id, sku=sku, category=cat, supplier_id=sup, lot_id=lot,
                             quantity=qty, purchased_quantity=bought)
        l.unit_price.amount_minor = paid // bought
        l.unit_price.currency = currency
        l.paid_allocated.amount_minor = paid
        l.paid_allocated.currency = currency
        e.lines.add(line_id=line_id, sku=sku, quantity=qty)
    if evidence:
        e.evidence.add(uri="https://img.example/p.jpg", media_type="image/jpeg", size_bytes=1000,
                       sha256="a" * 64)
    return h.envelope("case_opened", e, case_id=case_id, order_id=order_id)


def open_cases(h, envs):
    h.produce_many([(e.case_id, e.SerializeToString(), None) for e in envs], topic=CASES_TOPIC)
    ids = [e.case_id for e in envs]
    wait_until(lambda: h.scalar("SELECT count(*) FROM inspection.cases WHERE case_id = ANY(%s)",
                                (ids,)) == len(ids), 20 * SLOW, what="cases projected")


def receive(h, case_id, lines=(("l1", 1),), condition="opened", event_id=None):
    m = pbm(h)
    rr = m.logistics.ReturnReceived(case_id=case_id, warehouse_id="WH-CN-SH-01", tracking_number="SF1",
                                    received_at_us=now_us(), condition=condition)
    for line_id, qty in lines:
        rr.lines.add(line_id=line_id, quantity=qty)
    return produce_on(h, LOGISTICS_TOPIC, "return_received", rr, case_id, event_id=event_id)


def request_evidence(h, case_id, lines=(), tid=None):
    m = pbm(h)
    r = m.inspection.InspectionRequested(case_id=case_id, task_id=tid or task_id(case_id, "evidence"),
                                         requested_at_us=now_us())
    for line_id, qty in lines:
        r.lines.add(line_id=line_id, quantity=qty)
    return produce_on(h, INSPECTION_TOPIC, "inspection_requested", r, case_id)


def verdict_env(h, case_id, failed=(), items=APPAREL, kind="return", lines=None, inspector="qc-7",
                defect_confirmed=None, defect_code="", tid=None, event_id=None):
    m = pbm(h)
    v = m.inspection.QcVerdict(case_id=case_id, inspector_id=inspector, task_id=tid or task_id(case_id, kind),
                               defect_confirmed=bool(failed) if defect_confirmed is None else defect_confirmed,
                               defect_code=defect_code, inspected_at_us=now_us(), notes="checked")
    for code in items:
        v.items.add(item_code=code, passed=code not in failed)
    for line_id, qty in lines or ():
        v.lines.add(line_id=line_id, quantity=qty)
    return h.envelope("qc_verdict", v, case_id=case_id, event_id=event_id)


def verdict(h, case_id, **kw):
    env = verdict_env(h, case_id, **kw)
    h.produce_many([(case_id, env.SerializeToString(), None)], topic=INSPECTION_TOPIC)
    return env


def rectified(h, alert, agent="qa-lead-1"):
    m = pbm(h)
    r = m.inspection.RectificationConfirmed(alert_id=alert, agent_id=agent, note="supplier fixed the dye",
                                            confirmed_at_us=now_us())
    return produce_on(h, INSPECTION_TOPIC, "rectification_confirmed", r, alert)


def events(h, reader):
    """[(payload name, payload, key, envelope)] read so far on a topic,
    skipping what does not decode (the hostile input tests put it there)."""
    out = []
    for msg in reader.drain():
        env = h.pb.Envelope()
        try:
            env.ParseFromString(msg.value())
        except Exception:
            continue
        kind = env.WhichOneof("payload")
        if kind:
            out.append((kind, getattr(env, kind), (msg.key() or b"").decode(), env))
    return out


def insp_events(h, reader, kind=None):
    evs = events(h, reader)
    return of_kind(evs, kind) if kind else evs


def wait_kind(h, reader, kind, n=1, timeout=20, pred=None):
    def ok():
        got = [e for e in of_kind(events(h, reader), kind) if pred is None or pred(e[1])]
        return got if len(got) >= n else None
    return wait_until(ok, timeout * SLOW, interval=0.2, what=f"{n} {kind}")


def completed(h, reader, case_id, timeout=20):
    return wait_kind(h, reader, "inspection_completed", pred=lambda p: p.case_id == case_id,
                     timeout=timeout)[0][1]


def wait_dead(h, reader, n, timeout=20):
    return wait_until(lambda: (lambda d: d if len(d) >= n else None)(dead_letters(h, reader)),
                      timeout * SLOW, what=f"{n} dead letters")


def dead_reasons(h, reader):
    return [(d.reason_code, d.detail) for _, d, _ in dead_letters(h, reader)]
