"""Helpers of the review tests (tests/integration/test_review*.py).

start_review starts the worker (conftest.start_service); the rest builds crafted
CaseOpened envelopes (with the shared cases.cases row they need, written by
intake in production) and the human / logistics / inspection events review
consumes, and reads back what review published.
"""
import time
import uuid

from conftest import CASES_TOPIC, SLOW, dead_letters, start_service, wait_until

REVIEW_TOPIC = "aftersales.review.v1"
REFUNDS_TOPIC = "aftersales.refunds.v1"
DECISIONS_TOPIC = "aftersales.decisions.v1"
LOGISTICS_TOPIC = "aftersales.logistics.v1"
INSPECTION_TOPIC = "aftersales.inspection.v1"
DAY_US = 86400 * 1_000_000
HOUR_US = 3600 * 1_000_000


def now_us():
    return int(time.time() * 1e6)


def start_review(h, name=None, ready=True, **over):
    return start_service(h, "review", name, ready, **over)


class M:
    """The generated modules review tests need."""

    def __init__(self, h):
        _ = h.pb  # puts the generated modules on sys.path
        import cases_pb2
        import common_pb2
        import inspection_pb2
        import logistics_pb2
        import refunds_pb2
        import requests_pb2
        import review_pb2
        self.cases, self.common, self.review = cases_pb2, common_pb2, review_pb2
        self.refunds, self.logistics, self.inspection = refunds_pb2, logistics_pb2, inspection_pb2
        self.requests = requests_pb2


def pbm(h):
    if not hasattr(h, "_review_pb"):
        h._review_pb = M(h)
    return h._review_pb


_seq = [0]


def allocate(total, weights):
    """as_money_allocate: floor(total x w / W) each, then the units left over
    one each to the largest remainders, ties to the lower index."""
    W = sum(weights)
    if W == 0:
        return [0] * len(weights)
    out = [total * w // W for w in weights]
    rems = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % W), i))
    for i in rems[:total - sum(out)]:
        out[i] += 1
    return out


def paid_split(order_lines, shipping_fee, paid):
    """Intake's allocation of the amount paid: {line_id: share} over the
    order's lines [(line_id, unit_minor, purchased)] sorted by line id in byte
    order, and the shipping fee's share (last)."""
    lines = sorted(order_lines, key=lambda l: l[0].encode())
    shares = allocate(paid, [u * b for _, u, b in lines] + [shipping_fee])
    return {l[0]: s for l, s in zip(lines, shares)}, shares[-1]


def share(amount, part, whole):
    """as_money_share: floor(amount x part / whole)."""
    return amount * part // whole


def new_case(h, *, case_id=None, order_id=None, buyer_id=None, merchant_id="m-1",
             case_type="RETURN_REFUND", reason="CHANGED_MIND",
             lines=None, currency="CNY", delivered_at_us=None, submitted_at_us=None,
             declared_unused=True, evidence=(), region="CN-EAST", shipping_fee=800,
             payment_method="WALLET", payment_ref=None, first_order_at_us=None, orders=3, cases=0,
             claims_on_order=0, review_due_us=None, return_method="PICKUP", locale="zh-CN",
             other_lines=(), paid=None, route="review", preferred_outcome="REFUND"):
    """A crafted CaseOpened envelope (route review) and its shared-row spec.
    lines = [(line_id, sku, category, quantity, unit_minor, purchased_quantity)]:
    the claimed lines; other_lines = [(line_id, unit_minor, purchased)]: the
    order's lines not claimed; paid: OrderPaid.amount_paid (default: the
    order's total), allocated over all of them as intake does (paid_split).
    route "logistics": a case intake routes to the logistics worker (no
    review due time, as intake opens them)."""
    m = pbm(h)
    c = m.common
    tag = uuid.uuid4().hex[:10]
    _seq[0] += 1
    case_id = case_id or f"case-{tag}"
    order_id = order_id or f"o-{tag}"
    buyer_id = buyer_id or f"b-{tag}"
    now = now_us()
    if lines is None:
        lines = [("l1", "SKU-1", "apparel", 1, 3000, 1)]
    delivered_at_us = now - 2 * DAY_US if delivered_at_us is None else delivered_at_us
    submitted_at_us = now if submitted_at_us is None else submitted_at_us
    e = m.cases.CaseOpened(case_id=case_id, case_number=f"AS-T-{tag}", order_id=order_id,
                           buyer_id=buyer_id, merchant_id=merchant_id,
                           case_type=c.CaseType.Value("CASE_TYPE_" + case_type),
                           reason=c.Reason.Value("REASON_" + reason),
                           state=c.CASE_STATE_OPEN, route=route, request_id=f"r-{tag}",
                           review_due_us=(0 if route != "review" else now + 24 * HOUR_US)
                           if review_due_us is None else review_due_us,
                           preferred_outcome=c.Outcome.Value("OUTCOME_" + preferred_outcome),
                           return_method=c.ReturnMethod.Value("RETURN_METHOD_" + return_method),
                           declared_unused=declared_unused, locale=locale,
                           submitted_at_us=submitted_at_us)
    claimed = 0
    order_lines = [(l[0], l[4], l[5]) for l in lines] + list(other_lines)
    if paid is None:
        paid = sum(u * b for _, u, b in order_lines) + shipping_fee
    line_paid, ship_paid = paid_split(order_lines, shipping_fee, paid)
    for line_id, sku, cat, qty, unit, bought in lines:
        l = e.case_lines.add(line_id=line_id, sku=sku, category=cat, supplier_id="sup-1",
                             quantity=qty, purchased_quantity=bought)
        l.unit_price.amount_minor = unit
        l.unit_price.currency = currency
        l.paid_allocated.amount_minor = line_paid[line_id]
        l.paid_allocated.currency = currency
        e.lines.add(line_id=line_id, sku=sku, quantity=qty)
        claimed += qty * unit
    e.claimed_amount.amount_minor = claimed
    e.claimed_amount.currency = currency
    o = e.order
    o.placed_at_us = delivered_at_us - DAY_US if delivered_at_us else now - 3 * DAY_US
    o.delivered_at_us = delivered_at_us
    o.paid.amount_minor = paid
    o.paid.currency = currency
    o.shipping_paid.amount_minor = ship_paid
    o.shipping_paid.currency = currency
    o.payment_method = c.PaymentMethod.Value("PAYMENT_METHOD_" + payment_method)
    o.payment_ref = payment_ref or f"pay-{order_id}"
    o.region = region
    o.shipping_fee.amount_minor = shipping_fee
    o.shipping_fee.currency = currency
    bh = e.buyer_history
    bh.first_order_at_us = now - 400 * DAY_US if first_order_at_us is None else first_order_at_us
    bh.orders, bh.cases, bh.claims_on_order = orders, cases, claims_on_order
    for uri, mt in evidence:
        e.evidence.add(uri=uri, media_type=mt, size_bytes=1000, sha256="a" * 64)
    env = h.envelope("case_opened", e, case_id=case_id, order_id=order_id)
    return env


def insert_case_rows(h, envs, review_clock=True):
    """Writes the shared cases.cases and cases.case_lines (and cases.sla_clocks
    'review') rows of crafted CaseOpened envelopes, with the paid figures, as
    intake would, in one statement each."""
    rows, lines = [], []
    for env in envs:
        e = env.case_opened
        m = pbm(h)
        o = e.order
        paid = o.paid if o.HasField("paid") else None  # an unpaid order: NULL, as intake records it
        rows.append((e.case_id, e.case_number, m.common.CaseType.Name(e.case_type)[10:], e.order_id,
                     e.buyer_id, e.merchant_id, m.common.Reason.Name(e.reason)[7:],
                     e.claimed_amount.currency, min(e.claimed_amount.amount_minor, 2**63 - 1),
                     paid.amount_minor if paid else None, paid.currency if paid else None,
                     o.shipping_paid.amount_minor if o.HasField("shipping_paid") else None,
                     e.review_due_us, e.route))
        for l in e.case_lines:
            lines.append((e.case_id, e.order_id, l.line_id, l.sku, l.quantity, max(l.unit_price.amount_minor, 0),
                          l.unit_price.currency or "XXX",
                          l.paid_allocated.amount_minor if l.HasField("paid_allocated") else None,
                          l.purchased_quantity))
    if not rows:
        return
    cols = list(zip(*rows))
    h.sql("INSERT INTO cases.cases (case_id, case_number, case_type, state, order_id, buyer_id,"
          " merchant_id, reason, route, currency, claimed_minor, paid_minor, paid_currency, shipping_paid_minor)"
          " SELECT a, b, c, 'OPEN', d, e, f, g, r, h, i, j, k, l FROM unnest(%s::text[], %s::text[],"
          " %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[],"
          " %s::text[], %s::bigint[], %s::text[]) AS t(a, b, c, d, e, f, g, h, i, j, k, l, r)",
          [list(c) for c in cols[:12]] + [list(cols[13])])
    if lines:
        lc = list(zip(*lines))
        h.sql("INSERT INTO cases.case_lines (case_id, order_id, line_id, sku, quantity, unit_minor, currency,"
              " paid_minor, purchased) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
              " %s::int[], %s::bigint[], %s::text[], %s::bigint[], %s::int[])", [list(c) for c in lc])
    if review_clock:  # intake opens the review clock for cases routed to review only
        keep = [i for i, r in enumerate(rows) if r[13] == "review"]
        cols = [[c[i] for i in keep] for c in cols]
        h.sql("INSERT INTO cases.sla_clocks (case_id, clock, due_at)"
              " SELECT a, 'review', to_timestamp(d / 1e6) FROM unnest(%s::text[], %s::bigint[]) AS t(a, d)",
              [list(cols[0]), list(cols[12])])


def logistics_clock(h, case_id, kind):
    """The clock the logistics worker keeps on a case (carrier answer, return transit: a shipped
    return's transit is its clock, not review's), as a row in a stand-in schema when the worker does
    not run: the fleet's invariant wants every open case to have a pending deadline somewhere."""
    h.sql("CREATE SCHEMA IF NOT EXISTS logistics_standin;"
          " CREATE TABLE IF NOT EXISTS logistics_standin.deadlines (case_id text, kind text, due_at timestamptz,"
          " fired_at timestamptz, cancelled_at timestamptz);"
          " INSERT INTO logistics_standin.deadlines VALUES (%s, %s, now() + interval '2 days', NULL, NULL)",
          (case_id, kind))


def open_cases(h, envs, insert=True):
    """Inserts the shared rows and produces the CaseOpened envelopes on the
    cases topic keyed by case id."""
    if insert:
        insert_case_rows(h, envs)
    h.produce_many([(e.case_id, e.SerializeToString(), None) for e in envs], topic=CASES_TOPIC)


def events(h, reader):
    """[(payload name, payload, key, envelope)] read so far on a topic."""
    out = []
    for msg in reader.drain():
        env = h.decode(msg.value())
        kind = env.WhichOneof("payload")
        out.append((kind, getattr(env, kind), (msg.key() or b"").decode(), env))
    return out


def of_kind(evs, kind):
    return [e for e in evs if e[0] == kind]


def wait_events(h, reader, pred, timeout=20, what="events"):
    def ok():
        evs = events(h, reader)
        return evs if pred(evs) else None
    return wait_until(ok, timeout * SLOW, interval=0.2, what=what)


def decided(evs):
    """case_id -> [ReviewDecided] in order."""
    out = {}
    for k, p, _, _ in evs:
        if k == "review_decided":
            out.setdefault(p.case_id, []).append(p)
    return out


def wait_decided(h, reader, case_ids, n=1, timeout=30):
    """Waits until each case has n ReviewDecided; returns the events."""
    ids = set(case_ids)
    return wait_events(h, reader, lambda evs: all(len(decided(evs).get(c, [])) >= n for c in ids),
                       timeout=timeout, what=f"{n} ReviewDecided for {len(ids)} cases")


def state(h, case_id):
    r = h.sql("SELECT state FROM cases.cases WHERE case_id = %s", (case_id,))
    return r[0][0] if r else None


def wait_state(h, case_id, want, timeout=20):
    return wait_until(lambda: state(h, case_id) == want, timeout * SLOW, interval=0.1,
                      what=f"case {case_id} in {want} (now {state(h, case_id)})")


def produce_on(h, topic, field, payload, case_id, event_id=None, order_id=""):
    env = h.envelope(field, payload, case_id=case_id, event_id=event_id, order_id=order_id)
    h.produce_many([(case_id, env.SerializeToString(), None)], topic=topic)
    return env


def task_id(case_id, kind):
    """The inspection task's id (README, Identifiers): kind "return" or "evidence"."""
    root = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")
    return str(uuid.uuid5(uuid.uuid5(root, "aftersales.inspection_task"), f"{case_id}|{kind}"))


def claimed_lines(h, case_id):
    """[(line_id, sku, quantity)] the case claims, as review recorded them."""
    return h.sql("SELECT line_id, sku, quantity FROM review.case_lines WHERE case_id = %s ORDER BY line_id",
                 (case_id,))


def inspection_completed(h, case_id, resellable=True, defect=False, lines=None, kind="return", **kw):
    """An InspectionCompleted as the inspection worker publishes it: the
    units it counted (default: every claimed unit), its task id, the
    inspector."""
    m = pbm(h)
    ic = m.inspection.InspectionCompleted(case_id=case_id, defect_confirmed=defect, resellable=resellable,
                                          standard="apparel-v1", standard_version="1", completed_at_us=now_us(),
                                          task_id=task_id(case_id, kind), inspector_id=kw.pop("inspector_id", "qc-1"),
                                          evidence_only=kind == "evidence", **kw)
    for line_id, sku, qty in (claimed_lines(h, case_id) if lines is None else lines):
        ic.lines.add(line_id=line_id, sku=sku, quantity=qty)
    return ic


def returned_and_inspected(h, case_id, resellable=True, defect=False, event_ids=(None, None)):
    m = pbm(h)
    rr = m.logistics.ReturnReceived(case_id=case_id, warehouse_id="WH-CN-SH-01", tracking_number="SF1",
                                    received_at_us=now_us())
    produce_on(h, LOGISTICS_TOPIC, "return_received", rr, case_id, event_id=event_ids[0])
    ic = inspection_completed(h, case_id, resellable=resellable, defect=defect)
    produce_on(h, INSPECTION_TOPIC, "inspection_completed", ic, case_id, event_id=event_ids[1])


def refunds_db(h, case_id=None):
    q = ("SELECT refund_id::text, case_id, items_minor, shipping_minor, goodwill_minor, total_minor, reason_code"
         " FROM review.refunds")
    if case_id:
        return h.sql(q + " WHERE case_id = %s", (case_id,))
    return h.sql(q)


FINAL_STATES = ("CLOSED", "REJECTED", "REFUNDED", "EXCHANGED", "RESOLVED")


def cases_without_deadline(h, case_ids):
    """The cases of case_ids in a non-final state with no pending row in
    review's deadlines table (the fleet's invariant says: none)."""
    return h.sql("SELECT c.case_id, c.state FROM cases.cases c WHERE c.case_id = ANY(%s)"
                 " AND c.state <> ALL(%s) AND NOT EXISTS (SELECT 1 FROM review.deadlines d"
                 " WHERE d.case_id = c.case_id AND d.fired_at IS NULL AND d.cancelled_at IS NULL)",
                 (list(case_ids), list(FINAL_STATES)))


def pending_deadlines(h, case_id):
    return sorted(r[0] for r in h.sql("SELECT kind FROM review.deadlines WHERE case_id = %s AND fired_at IS NULL"
                                      " AND cancelled_at IS NULL", (case_id,)))


def refund_events(h, reader):
    """RefundIssued events read so far, per case id."""
    out = {}
    for _, p, _, _ in of_kind(events(h, reader), "refund_issued"):
        out.setdefault(p.case_id, []).append(p)
    return out


def wait_dead(h, reader, n, timeout=20):
    return wait_until(lambda: (lambda d: d if len(d) >= n else None)(dead_letters(h, reader)),
                      timeout * SLOW, what=f"{n} dead letters")
