"""make run's demonstration: plays everyone outside the fleet (the storefront,
buyers, the warehouse, the inspector, agents, a seller, a mediator, and for
the SLA the clock), prints what the fleet does, one timeline per case in
case-number order, and checks it: each scenario's states, decisions and
money. Exits 1, saying what differed, when the fleet did not do its job.

Scenarios (one case each):
  return     a T-shirt returned for size, comment in Chinese, the request
             delivered twice (one case): approved with return instructions;
             the parcel reaches the warehouse and passes inspection; refunded
  evidence   a quality claim without a photo waits for evidence; the buyer
             adds one; approved with return instructions
  socks      refund only for a missing sock: approved and paid at once
  too_many   a return of 5 T-shirts out of 2: rejected, no case
  agent      a down jacket above the manual-review threshold: an agent
             approves it (AgentDecision), return instructions follow
  sla        a TV left in manual review until its review deadline passes:
             escalated (SlaBreached to the supervisors); a supervisor rejects
  goodwill   a sweater pilling 45 days after delivery, past the 30 claim
             days, from a buyer of long standing: a 50 % goodwill refund is
             offered, the buyer accepts, it is paid
  dispute    a dress not as described, approved; the seller disputes; the
             mediator rules for the buyer; refunded with the shipping fee
  fade1..5   five buyers of the same dress report it fading after one wash
             (photos): each is approved, the warehouse receives the dress,
             the inspector fails it on "colourfast"; the fifth distinct
             buyer's confirmed defect raises one SupplierQualityAlert for the
             supplier and SKU, and every one of the five cases gets its
             CompensationGranted (the full refund of the dress and a coupon;
             review's own refund of each follows its inspection)
and the runtime through the probe worker: probes (one twice: the inbox
dedupe), a malformed message and a probe breaking the contract (dead letters).

With as-logistics built, the demo then plays a carrier and a warehouse
(logistics_demo): a delivered-not-received case the carrier verifies
(delivered, signed by a neighbour: DeliveryOutcome carrier.delivered_confirmed),
a parcel shipped three days ago with no scan, caught as stalled before its
buyer asks (the carrier asked, the buyer told; the carrier's next scan closes
it), and with review a return parcel shipped and matched by its tracking
number at the warehouse (ReturnReceived).

With as-inspection built, the warehouse's ReturnReceived opens an
inspection task and the demo's inspector answers it with a QcVerdict (the
checklist of the apparel standard); without it the demo plays the
inspection's InspectionCompleted itself.

The review SLA cannot expire within a demo: intake sets it
AS_INTAKE_REVIEW_HOURS (at least 1) after opening. The demo moves that case's
review deadline in review.deadlines to now, as if the hours had passed; the
worker's deadline scanner does the rest exactly as it would.
"""
import argparse
import json
import hashlib
import itertools
import os
import sys
import time
import uuid

sys.path.insert(0, os.environ.get("AS_GEN_PY", "build/gen/py"))
import common_pb2 as C  # noqa: E402
import envelope_pb2  # noqa: E402
import review_pb2 as R  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402

DAY_US = 86400 * 10**6
MERCHANT = "demo-merchant"
TOPICS = {"orders": "aftersales.orders.v1", "requests": "aftersales.requests.v1",
          "cases": "aftersales.cases.v1", "review": "aftersales.review.v1",
          "refunds": "aftersales.refunds.v1", "decisions": "aftersales.decisions.v1",
          "logistics": "aftersales.logistics.v1", "inspection": "aftersales.inspection.v1",
          "probe": "aftersales.probe.v1", "echo": "aftersales.probe-echo.v1",
          "contacts": "aftersales.contacts.v1",
          "dlq": "aftersales.deadletter.v1"}
# Who the demo plays, by the payload it sends (its timeline lines say so).
ROLES = {"agent_decision": "agent*", "dispute_opened": "seller*", "mediation_ruling": "mediator*",
         "buyer_replied": "buyer*", "return_received": "warehouse*", "qc_verdict": "inspector*"}
# The apparel checklist of the inspection standards' built-in default.
APPAREL = ("colourfast", "seams_intact", "size_label", "tags_attached")
PHOTO = C.Attachment(uri="https://img.example.com/demo/claim-1.jpg", media_type="image/jpeg",
                     size_bytes=245760, sha256=hashlib.sha256(b"demo photo").hexdigest())


def now_us():
    return int(time.time() * 1e6)


def name(enum, value, prefix):
    return enum.Name(value)[len(prefix):] if value in enum.values() else str(value)


def state(v):
    return name(C.CaseState, v, "CASE_STATE_")


def verdict(v):
    return name(R.Verdict, v, "VERDICT_")


def money(m):
    return "%d.%02d %s" % (m.amount_minor // 100, m.amount_minor % 100, m.currency) if m.currency else "-"


def envelope(field, payload, order_id="", case_id=""):
    e = envelope_pb2.Envelope(event_id=str(uuid.uuid4()), schema_version=1, order_id=order_id,
                              case_id=case_id, occurred_at_us=now_us(), trace_id=uuid.uuid4().hex)
    e.producer.service = "demo"
    e.producer.instance = "make-run"
    getattr(e, field).CopyFrom(payload)
    e.event_type = type(payload).DESCRIPTOR.name
    return e


def probe(probe_id, seq, amount):
    e = envelope_pb2.Envelope(event_id=str(uuid.uuid4()), event_type="SyntheticProbe",
                              schema_version=1, case_id=probe_id, occurred_at_us=now_us(),
                              trace_id=uuid.uuid4().hex)
    e.producer.service = "demo"
    e.producer.instance = "make-run"
    e.synthetic_probe.probe_id = probe_id
    e.synthetic_probe.seq = seq
    e.synthetic_probe.amount_minor = amount
    return e


def order_events(oid, buyer, lines, placed_days, delivered_days, region="CN-31"):
    """OrderPlaced, OrderPaid, OrderDelivered; lines are (sku, category, qty, unit)."""
    now, E = now_us(), envelope_pb2.Envelope()
    placed = type(E.order_placed)(order_id=oid, buyer_id=buyer, merchant_id=MERCHANT,
                                  placed_at_us=now - placed_days * DAY_US, region=region)
    total = 800
    for i, (sku, category, qty, unit) in enumerate(lines):
        line = placed.lines.add(line_id="l%d" % (i + 1), sku=sku, category=category, supplier_id="sup-7",
                                quantity=qty, title=sku)
        line.unit_price.amount_minor, line.unit_price.currency = unit, "CNY"
        total += qty * unit
    placed.shipping_fee.amount_minor, placed.shipping_fee.currency = 800, "CNY"
    paid = type(E.order_paid)(order_id=oid, payment_method=C.PAYMENT_METHOD_WALLET, payment_ref="pay-" + oid,
                              paid_at_us=placed.placed_at_us)
    paid.amount_paid.amount_minor, paid.amount_paid.currency = total, "CNY"
    delivered = type(E.order_delivered)(order_id=oid, shipment_id="s1", proof="locker",
                                        delivered_at_us=now - delivered_days * DAY_US)
    return [envelope("order_placed", placed, oid), envelope("order_paid", paid, oid),
            envelope("order_delivered", delivered, oid)]


def request(oid, buyer, qty, case_type, reason, comment, evidence=()):
    r = type(envelope_pb2.Envelope().aftersales_requested)(
        request_id="demo-r-" + uuid.uuid4().hex[:8], idempotency_key="k-" + uuid.uuid4().hex[:8], order_id=oid,
        buyer_id=buyer, case_type=case_type, reason=reason, comment=comment, preferred_outcome=C.OUTCOME_REFUND,
        return_method=C.RETURN_METHOD_PICKUP, submitted_at_us=now_us(), locale="zh-CN", declared_unused=True)
    r.lines.add(line_id="l1", quantity=qty)
    r.evidence.extend(evidence)
    return envelope("aftersales_requested", r, oid)


class Scenario:
    """One request and what must become of it. states: the case's path
    (CaseStateChanged to_state by version); counts: how many events of each
    kind the case gets, exactly; told: ReviewDecided (verdict, rule) the
    buyer must hear, in this order; refunds: RefundIssued totals, in order;
    react(demo, scenario, kind, body): what the demo does when the fleet
    tells it something; extra(scenario): any further check, a problem or
    None."""

    def __init__(self, key, title, states, counts, told=(), refunds=(), react=None, extra=None):
        self.key, self.title, self.states, self.counts = key, title, states, counts
        self.told, self.refunds, self.react, self.extra = list(told), list(refunds), react, extra
        self.request = None          # the AfterSalesRequested envelope
        self.case_id = self.number = None
        self.timeline = []           # (occurred_at_us, arrival seq, who, kind, body, text)
        self.acted = set()
        self.problem = None

    def label(self):
        return self.number or "request " + self.request.aftersales_requested.request_id

    def of(self, kind):
        return [body for _, _, _, k, body, _ in sorted(self.timeline, key=lambda x: x[:2]) if k == kind]

    def path(self):
        changes = sorted(self.of("case_state_changed"), key=lambda b: b.version)
        return [state(b.to_state) for b in changes], [b.version for b in changes]

    def diverged(self):
        """The case already left the expected path: waiting longer is pointless."""
        s, versions = self.path()
        return versions == list(range(1, len(s) + 1)) and s != self.states[:len(s)]

    def done(self):
        """Everything expected has arrived (exact counts are judged later)."""
        return (self.path()[0] == self.states and all(len(self.of(k)) >= n for k, n in self.counts.items())
                and len(self.of("refund_issued")) >= len(self.refunds) and not self.missing_told())

    def missing_told(self):
        want = list(self.told)
        for b in self.of("review_decided"):
            if want and (verdict(b.verdict), b.reason_code) == want[0]:
                want.pop(0)
        return want

    def check(self, db_state):
        s, versions = self.path()
        if self.number is None and self.states:
            return "no CaseOpened for request %s" % self.request.aftersales_requested.request_id
        if s != self.states:
            return "states %s, expected %s" % (" > ".join(s) or "none", " > ".join(self.states))
        if versions != list(range(1, len(versions) + 1)):
            return "state change versions %s, expected one per version from 1" % versions
        for k, n in sorted(self.counts.items()):
            if len(self.of(k)) != n:
                return "%d %s event(s), expected %d" % (len(self.of(k)), k, n)
        if self.missing_told():
            return "the buyer was not told %s" % ", ".join("%s (%s)" % t for t in self.missing_told())
        paid = [b.total.amount_minor for b in self.of("refund_issued")]
        if paid != self.refunds:
            return "refunds %s, expected %s (minor units)" % (paid, self.refunds)
        if self.of("dead_letter"):
            return "a dead letter: %s" % self.of("dead_letter")[0].detail
        if self.states and db_state != self.states[-1]:
            return "cases.cases says %s, the events %s" % (db_state, self.states[-1])
        return self.extra(self) if self.extra else None


class Demo:
    def __init__(self, args):
        self.args = args
        self.p = Producer({"bootstrap.servers": args.bootstrap})
        self.db = None
        self.seq = itertools.count()  # ties in occurred_at_us keep arrival order
        self.started_us = now_us()
        self.by_request, self.by_case, self.pending = {}, {}, {}
        self.probes, self.strays = [], []
        self.alerts = {}  # alert id -> SupplierQualityAlert
        self.inspection = False  # as-inspection runs: the demo is the inspector, not the inspection

    def send(self, topic, key, env):
        self.p.produce(TOPICS[topic], key=key, value=env.SerializeToString())

    def sql(self, query, params):
        if self.db is None:
            import psycopg2  # only the demo's clock needs the database
            self.db = psycopg2.connect(self.args.dsn)
            self.db.autocommit = True
        with self.db.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else cur.rowcount

    # ---- what arrives, routed to its scenario
    def take(self, topic, env):
        kind = env.WhichOneof("payload")
        body = getattr(env, kind)
        if topic == TOPICS["echo"]:
            return self.probes.append((kind, body))
        if kind == "dead_letter":
            if body.source_topic == TOPICS["probe"]:
                return self.probes.append((kind, body))
            orig = envelope_pb2.Envelope()
            try:
                orig.ParseFromString(body.original)
            except DecodeError:  # cut or not an envelope: about no case, so a stray
                pass
            inner = orig.WhichOneof("payload")
            return self.route(orig.case_id or (getattr(getattr(orig, inner), "case_id", "") if inner else ""),
                              env, kind, body)
        if kind == "supplier_quality_alert":  # keyed by the alert: told to every case it names
            self.alerts[body.alert_id] = body
            named = [self.by_case[c] for c in body.case_ids if c in self.by_case]
            for s in named:
                self.attach(s, env, kind, body)
            return None if named else self.stray(env, kind, body)
        if kind == "request_rejected":
            s = self.by_request.get(body.request_id)
            return self.attach(s, env, kind, body) if s else self.stray(env, kind, body)
        if kind == "case_opened" and body.request_id in self.by_request:
            s = self.by_request[body.request_id]
            s.case_id, s.number = body.case_id, body.case_number
            self.by_case[body.case_id] = s
            self.attach(s, env, kind, body)
            for e, k, b in self.pending.pop(body.case_id, []):
                self.attach(s, e, k, b)
            return None
        return self.route(env.case_id or getattr(body, "case_id", ""), env, kind, body)

    def stray(self, env, kind, body):
        """About nothing the demo asked for. Earlier events (the demo run
        again on the same broker) are history; newer ones are news."""
        if env.occurred_at_us >= self.started_us:
            self.strays.append((kind, body))

    def route(self, case_id, env, kind, body):
        if case_id in self.by_case:
            return self.attach(self.by_case[case_id], env, kind, body)
        self.pending.setdefault(case_id, []).append((env, kind, body))
        return None

    def attach(self, s, env, kind, body, text=None):
        who = ROLES.get(kind, env.producer.service or "?") if env is not None else "clock*"
        at = env.occurred_at_us if env is not None else now_us()
        s.timeline.append((at, next(self.seq), who, kind, body, text or describe(kind, body)))
        if s.react and not s.problem:
            try:
                s.react(self, s, kind, body)
            except Exception as e:  # a failed reaction (the database ...) fails its scenario, not the demo
                s.problem = "the demo could not play its part: %s" % e
        return None

    def act(self, s, once, topic, field, payload):
        """Sends payload about s's case once per name `once`."""
        if once in s.acted:
            return
        s.acted.add(once)
        self.send(topic, s.case_id if topic != "requests" else s.request.order_id,
                  envelope(field, payload, s.request.order_id, s.case_id))
        self.p.flush(10)


def wait_applied(dsn, schema, ids, seconds=30):
    """Waits until schema's inbox holds every event id of ids."""
    import psycopg2
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with psycopg2.connect(dsn) as db, db.cursor() as cur:
                cur.execute("SELECT count(*) FROM %s.inbox WHERE event_id = ANY(%%s::uuid[])" % schema, (ids,))
                if cur.fetchone()[0] == len(ids):
                    return True
        except psycopg2.Error:
            pass
        time.sleep(0.2)
    return False


# ---- the logistics worker's part: the demo plays a carrier and a warehouse
def logistics_demo(args, have_review):
    """With as-logistics built: a delivered-not-received case verified by the
    carrier and decided (DeliveryOutcome), a stalled parcel caught before
    the buyer asks (the carrier asked, the buyer told, a scan closes it) and,
    with review, a return parcel shipped, matched by its tracking number and
    received (ReturnReceived). Own orders, own consumer, after the other
    scenarios; returns a list of problems (empty: as expected)."""
    E, tag = envelope_pb2.Envelope(), uuid.uuid4().hex[:6]
    p = Producer({"bootstrap.servers": args.bootstrap})
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "demo-logistics-" + tag,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([TOPICS["logistics"], TOPICS["cases"], TOPICS["review"]])
    buyer = "demo-buyer-l-" + tag
    dbnr, stall, ret = ("demo-o-%s-%s" % (k, tag) for k in ("parcel", "stalled", "return"))
    track = {dbnr: "SF" + tag + "1", stall: "SF" + tag + "2", ret: "YT" + tag + "3"}

    def shipped(oid, days_ago):
        return envelope("order_shipped", type(E.order_shipped)(
            order_id=oid, shipment_id="s1", carrier="SF", tracking_number=track[oid],
            shipped_at_us=now_us() - days_ago * DAY_US), oid)

    shipped_ev = []  # the ReturnShipped sent: the warehouse's parcel arrives after it

    def send(topic, key, field, payload, oid="", case_id=""):
        e = envelope(field, payload, oid, case_id or key)
        if field == "return_shipped":
            shipped_ev.append(e)
        p.produce(TOPICS[topic], key=key, value=e.SerializeToString())
        p.flush(10)

    orders = order_events(dbnr, buyer, [("EARBUDS-PRO", "electronics", 1, 39900)], 4, 1)
    orders.insert(2, shipped(dbnr, 3))
    orders += order_events(stall, buyer, [("LAMP-DESK", "home", 1, 12900)], 5, 0)[:2] + [shipped(stall, 3)]
    orders += order_events(ret, buyer, [("TSHIRT-BLUE-L", "apparel", 1, 5900)], 3, 1)
    for e in orders:
        p.produce(TOPICS["orders"], key=e.order_id, value=e.SerializeToString())
    p.flush(10)
    wait_applied(args.dsn, "intake", [e.event_id for e in orders])  # orders before requests, as a storefront
    for oid, ct, why in ((dbnr, C.CASE_TYPE_LOGISTICS, C.REASON_DELIVERED_NOT_RECEIVED),
                         (ret, C.CASE_TYPE_RETURN_REFUND, C.REASON_SIZE_MISMATCH)):
        if oid == ret and not have_review:
            continue
        r = request(oid, buyer, 1, ct, why, "显示已签收但我没有收到" if oid == dbnr else "尺码偏大")
        p.produce(TOPICS["requests"], key=oid, value=r.SerializeToString())
    p.flush(10)
    seen, case_of, acted, lines = {}, {}, set(), []
    deadline = time.time() + args.seconds

    def say(text):
        lines.append(text)
        print("demo: [logistics] " + text)

    def done():
        want = {"dbnr_outcome", "stall_asked", "stall_told", "moving_again"}
        return want | ({"received"} if have_review else set()) <= set(seen)

    pending = []  # about a case whose CaseOpened (another topic) is not read yet

    def handle(kind, b):
        if kind in ("carrier_verification_requested", "delivery_outcome", "return_instructions",
                    "return_received") and b.case_id and b.case_id not in case_of:
            return pending.append((kind, b))
        if kind == "case_opened" and b.order_id in (dbnr, ret):
            case_of[b.case_id] = b.order_id
            for k, x in [e for e in pending if e[1].case_id == b.case_id]:
                pending.remove((k, x))
                handle(k, x)
        elif kind == "request_rejected" and b.order_id in (dbnr, ret):
            say("request rejected: %s %s" % (b.reason_code, b.message_en))
        elif kind == "carrier_verification_requested" and case_of.get(b.case_id) == dbnr and "ans" not in acted:
            acted.add("ans")
            say("carrier asked (%s %s, checks %s), answer due in %.0f h" % (
                b.carrier, b.tracking_number, len(b.checks), (b.answer_due_us - b.requested_at_us) / 3.6e9))
            a = type(E.carrier_verification_answered)(
                case_id=b.case_id, carrier=b.carrier, tracking_number=b.tracking_number, inquiry_id=b.inquiry_id,
                finding=1,  # DELIVERY_FINDING_DELIVERED_CONFIRMED
                proof="signed by neighbour, flat 3B; photo at the door", answered_at_us=now_us())
            send("logistics", b.case_id, "carrier_verification_answered", a, dbnr, b.case_id)
            say("carrier* answers: delivered, signed by a neighbour (photo)")
        elif kind == "delivery_outcome" and case_of.get(b.case_id) == dbnr:
            seen["dbnr_outcome"] = b
            say("delivery outcome: %s, rule %s, proof shown to the buyer" % (
                "delivered_confirmed" if b.finding == 1 else b.finding, b.rule))
        elif kind == "carrier_verification_requested" and b.tracking_number == track[stall]:
            seen["stall_asked"] = b
            say("parcel %s stalled (no scan for the stall time): carrier asked where it is" % b.tracking_number)
        elif kind == "tracking_notice" and b.order_id == stall:
            seen["stall_told" if b.kind == 1 else "moving_again"] = b
            say("buyer told: %s" % ("we asked the carrier about your parcel" if b.kind == 1
                                    else "your parcel is moving again (%s)" % b.last_status))
            if b.kind == 1 and "scan" not in acted:
                acted.add("scan")
                sc = type(E.tracking_scan)(carrier="SF", tracking_number=track[stall], status="in_transit",
                                           location="Hangzhou sorting centre", scanned_at_us=now_us())
                send("logistics", track[stall], "tracking_scan", sc)
                say("carrier* scans the parcel at the Hangzhou sorting centre")
        elif kind == "return_instructions" and case_of.get(b.case_id) == ret and "ship" not in acted:
            acted.add("ship")
            rs = type(E.return_shipped)(case_id=b.case_id, carrier="YTO", tracking_number=track[ret],
                                        shipped_at_us=now_us())
            send("logistics", b.case_id, "return_shipped", rs, ret, b.case_id)
            wait_applied(args.dsn, "logistics", [shipped_ev[0].event_id]) if shipped_ev else None
            wr = type(E.warehouse_receipt)(warehouse_id=b.warehouse_id, tracking_number=track[ret],
                                           condition="sealed", received_at_us=now_us(), receipt_id="rc-" + tag)
            wr.lines.add(line_id="l1", quantity=1)
            send("logistics", track[ret], "warehouse_receipt", wr)
            say("buyer* ships the return (YTO %s); warehouse* receives 1 unit" % track[ret])
        elif kind == "return_received" and case_of.get(b.case_id) == ret and b.receipt_id == "rc-" + tag:
            seen["received"] = b
            say("return matched by %s: %s unit(s) received%s" % (
                b.matched_by, sum(x.quantity for x in b.lines), ", partial" if b.partial else ""))

    while time.time() < deadline and not done():
        m = c.poll(0.3)
        if m is None or m.error():
            continue
        env = envelope_pb2.Envelope()
        try:
            env.ParseFromString(m.value())
        except DecodeError:
            continue
        kind = env.WhichOneof("payload")
        if kind:
            handle(kind, getattr(env, kind))
    c.close()
    problems = []
    o = seen.get("dbnr_outcome")
    if not o or (o.finding, o.remedy, o.rule) != (1, C.OUTCOME_NONE, "carrier.delivered_confirmed"):
        problems.append("delivered-not-received: no DeliveryOutcome carrier.delivered_confirmed")
    for k, what in (("stall_asked", "stalled parcel: carrier not asked"), ("stall_told", "stalled parcel: buyer not told"),
                    ("moving_again", "stalled parcel: the scan did not close the inquiry")):
        if k not in seen:
            problems.append(what)
    if have_review and ("received" not in seen or seen["received"].matched_by != "tracking_number"):
        problems.append("return: no ReturnReceived matched by tracking number")
    print("demo: logistics %s [carrier and warehouse] %s" % (
        "ok" if not problems else "FAILED", "; ".join(problems) or
        "a delivered-not-received case verified and decided, a stalled parcel caught before the buyer asked"
        + (", a return matched and received" if have_review else "")))
    return problems


# ---- what the demo does in each scenario when the fleet tells it something
def inspector(d, s, kind, body, failed=()):
    """The warehouse receives the return; the inspector judges the task
    as-inspection opens (every item of the apparel checklist, failed ones
    as given)."""
    E, t = envelope_pb2.Envelope(), now_us()
    if kind == "return_instructions":
        rr = type(E.return_received)(case_id=s.case_id, warehouse_id=body.warehouse_id,
                                     tracking_number="SF" + s.case_id[-8:], received_at_us=t, condition="opened")
        rr.lines.add(line_id="l1", quantity=1)
        d.act(s, "received", "logistics", "return_received", rr)
        if not d.inspection:  # no inspection worker: the demo plays its result
            d.act(s, "inspected", "inspection", "inspection_completed", type(E.inspection_completed)(
                case_id=s.case_id, defect_confirmed=False, resellable=True, standard="apparel-v1",
                completed_at_us=t))
    if kind == "inspection_task_opened":
        v = type(E.qc_verdict)(case_id=s.case_id, task_id=body.task_id, inspector_id="qc-chen",
                               defect_confirmed=bool(failed), defect_code=failed[0] if failed else "",
                               inspected_at_us=t, notes="洗后对比色卡" if failed else "")
        for code in APPAREL:
            v.items.add(item_code=code, passed=code not in failed)
        d.act(s, "verdict", "inspection", "qc_verdict", v)


def returned(d, s, kind, body):
    inspector(d, s, kind, body)


def faded(d, s, kind, body):
    inspector(d, s, kind, body, failed=("colourfast",))


def adds_photo(d, s, kind, body):
    if kind == "review_decided" and body.verdict == R.VERDICT_AWAITING_EVIDENCE:
        r = s.request.aftersales_requested
        d.act(s, "photo", "requests", "evidence_added", type(envelope_pb2.Envelope().evidence_added)(
            case_id=s.case_id, buyer_id=r.buyer_id, evidence=[PHOTO], comment="褪色照片", added_at_us=now_us()))


def agent_approves(d, s, kind, body):
    if kind == "review_decided" and body.verdict == R.VERDICT_MANUAL_REVIEW:
        d.act(s, "agent", "decisions", "agent_decision", R.AgentDecision(
            case_id=s.case_id, agent_id="agent-li", verdict=R.VERDICT_APPROVED, outcome=C.OUTCOME_REFUND,
            note="unworn, tags on (photos in the chat)", decided_at_us=now_us()))


def nobody_decides(d, s, kind, body):
    if kind == "review_decided" and body.verdict == R.VERDICT_MANUAL_REVIEW and "clock" not in s.acted:
        s.acted.add("clock")
        n = d.sql("UPDATE review.deadlines SET due_at = now() WHERE case_id = %s AND kind = 'sla:review'"
                  " AND fired_at IS NULL AND cancelled_at IS NULL", (s.case_id,))
        if n != 1:
            raise RuntimeError("review.deadlines has no pending sla:review deadline for the case")
        d.attach(s, None, "clock", None, "nobody decides: the demo moves the case's review deadline to now"
                 " (as if AS_INTAKE_REVIEW_HOURS had passed)")
    if kind == "sla_breached":
        d.act(s, "supervisor", "decisions", "agent_decision", R.AgentDecision(
            case_id=s.case_id, agent_id="supervisor-wang", verdict=R.VERDICT_REJECTED,
            note="opened and wall-mounted: not unused", decided_at_us=now_us()))


def accepts_offer(d, s, kind, body):
    if kind == "goodwill_offered":
        d.act(s, "reply", "decisions", "buyer_replied", R.BuyerReplied(
            case_id=s.case_id, offer_id=body.offer_id, accepted=True,
            buyer_id=s.request.aftersales_requested.buyer_id, replied_at_us=now_us()))


def disputed(d, s, kind, body):
    if kind == "return_instructions":
        d.act(s, "dispute", "decisions", "dispute_opened", R.DisputeOpened(
            case_id=s.case_id, seller_id=MERCHANT, statement="the colour matches the listing; warm light in the"
            " buyer's photo", evidence=[PHOTO], opened_at_us=now_us()))
    if kind == "review_decided" and body.case_state == C.CASE_STATE_DISPUTED:
        d.act(s, "ruling", "decisions", "mediation_ruling", R.MediationRuling(
            case_id=s.case_id, mediator_id="mediator-zhao", in_favour_of_buyer=True, outcome=C.OUTCOME_REFUND,
            reasoning="the listing photo and the delivered dress differ in daylight too", ruled_at_us=now_us()))


def sla_breach_ok(s):
    b = s.of("sla_breached")[0]
    if (b.clock, b.escalated_to) != ("review", "review_supervisors"):
        return "SlaBreached clock %r to %r, expected 'review' to 'review_supervisors'" % (b.clock, b.escalated_to)
    return None


def goodwill_ok(s):
    o, r = s.of("goodwill_offered")[0], s.of("refund_issued")[0]
    if (o.kind, o.percent, o.amount.amount_minor) != (C.OUTCOME_PARTIAL_REFUND, 50, 19950):
        return "offer %s %d%% %s, expected PARTIAL_REFUND 50%% 199.50 CNY" % (
            name(C.Outcome, o.kind, "OUTCOME_"), o.percent, money(o.amount))
    if r.goodwill_amount.amount_minor != 19950:
        return "refund books %s as goodwill, expected 199.50 CNY" % money(r.goodwill_amount)
    return None


def cluster_ok(s):
    alerts = {b.alert_id for b in s.of("supplier_quality_alert")}
    if len(alerts) != 1:
        return "%d supplier quality alerts name the case, expected 1" % len(alerts)
    a, g = s.of("supplier_quality_alert")[0], s.of("compensation_granted")[0]
    if (a.sku, a.defect_code, a.distinct_buyers) != ("DRESS-FADE-M", "colourfast", 5):
        return "alert on %s/%s by %d buyers, expected DRESS-FADE-M/colourfast by 5" % (
            a.sku, a.defect_code, a.distinct_buyers)
    if (g.amount.amount_minor, g.coupon.amount_minor, g.alert_id) != (25800, 2000, a.alert_id):
        return "compensation %s + coupon %s, expected 258.00 CNY + 20.00 CNY under the alert" % (
            money(g.amount), money(g.coupon))
    return None


def scenarios(inspection=False):
    """The orders to send first, and the scenarios (each with its request);
    with inspection, the fading dress's five buyers too."""
    a, b, c, g, e = ("demo-buyer-%s-%s" % (x, uuid.uuid4().hex[:6]) for x in "abcge")
    oid = {k: "demo-o-%s-%s" % (k, uuid.uuid4().hex[:6]) for k in ("tshirt", "socks", "jacket", "tv", "scarf",
                                                                      "sweater", "dress")}
    orders = (order_events(oid["tshirt"], a, [("TSHIRT-RED-M", "apparel", 2, 5900)], 3, 1)
              + order_events(oid["socks"], a, [("SOCKS-GREY", "apparel", 1, 900)], 3, 1)
              + order_events(oid["jacket"], b, [("DOWN-JACKET-L", "apparel", 1, 259900)], 4, 2)
              + order_events(oid["tv"], c, [("TV-55-4K", "electronics", 1, 329900)], 5, 2)
              + order_events(oid["scarf"], g, [("SCARF-WOOL", "apparel", 1, 9900)], 200, 195)
              + order_events(oid["sweater"], g, [("SWEATER-WOOL-M", "apparel", 1, 39900)], 48, 45)
              + order_events(oid["dress"], e, [("DRESS-SILK-S", "apparel", 1, 49900)], 6, 3, region="CN-EAST"))
    OPEN, AP, AR = "OPEN", "APPROVED", "AWAITING_RETURN"
    one = dict(case_opened=1, buyer_acknowledged=1)
    S = [
        Scenario("return", "a T-shirt returned for size, the request delivered twice",
                 [OPEN, AP, AR, "RETURN_RECEIVED", "INSPECTING", "REFUNDED"],
                 dict(one, return_instructions=1, refund_issued=1), [("APPROVED", "approve.return_refund")],
                 [5900], returned),
        Scenario("evidence", "a quality claim waits for a photo, then is approved",
                 ["AWAITING_EVIDENCE", AP, AR], dict(one, evidence_added=1, return_instructions=1),
                 [("AWAITING_EVIDENCE", "evidence.required"), ("APPROVED", "approve.return_refund")],
                 react=adds_photo),
        Scenario("socks", "refund only for a missing sock, paid at once", [OPEN, AP, "REFUNDED"],
                 dict(one, refund_issued=1), [("APPROVED", "approve.refund_only_cheap")], [1700]),
        Scenario("too_many", "a return of 5 T-shirts out of 2 is rejected, no case", [],
                 dict(request_rejected=1, case_opened=0)),
        Scenario("agent", "a jacket above the threshold goes to an agent, who approves it",
                 [OPEN, "MANUAL_REVIEW", AP, AR], dict(one, agent_decision=1, return_instructions=1),
                 [("MANUAL_REVIEW", "amount.manual_threshold"), ("APPROVED", "agent.approved")],
                 react=agent_approves),
        Scenario("sla", "a TV nobody decides in time is escalated; a supervisor rejects it",
                 [OPEN, "MANUAL_REVIEW", "ESCALATED", "REJECTED"], dict(one, sla_breached=1, agent_decision=1),
                 [("MANUAL_REVIEW", "amount.manual_threshold"), ("REJECTED", "agent.rejected")],
                 react=nobody_decides, extra=sla_breach_ok),
        Scenario("goodwill", "a sweater past the claim window: 50% goodwill offered, accepted, paid",
                 [OPEN, "GOODWILL_OFFERED", "REFUNDED"], dict(one, goodwill_offered=1, buyer_replied=1,
                                                                 refund_issued=1),
                 [("GOODWILL_OFFER", "goodwill.out_of_window")], [19950], accepts_offer, goodwill_ok),
        Scenario("dispute", "the seller disputes an approved claim; the mediator rules for the buyer",
                 [OPEN, AP, AR, "DISPUTED", "REFUNDED"], dict(one, dispute_opened=1, mediation_ruling=1,
                                                             refund_issued=1),
                 [("APPROVED", "approve.return_refund"), ("MANUAL_REVIEW", "dispute.opened"),
                  ("APPROVED", "mediation.buyer_upheld")], [50700], disputed),
    ]
    RR, QC = C.CASE_TYPE_RETURN_REFUND, C.CASE_TYPE_QUALITY_CLAIM
    reqs = {"return": (oid["tshirt"], a, 1, RR, C.REASON_SIZE_MISMATCH, "尺码偏小，想退货 👕"),
            "evidence": (oid["tshirt"], a, 1, QC, C.REASON_QUALITY_DEFECT, "洗后严重掉色"),
            "socks": (oid["socks"], a, 1, C.CASE_TYPE_REFUND_ONLY, C.REASON_MISSING_PARTS,
                      "only one sock in the parcel"),
            "too_many": (oid["tshirt"], a, 5, RR, C.REASON_CHANGED_MIND, ""),
            "agent": (oid["jacket"], b, 1, RR, C.REASON_SIZE_MISMATCH, "too big"),
            "sla": (oid["tv"], c, 1, RR, C.REASON_CHANGED_MIND, "changed my mind"),
            "goodwill": (oid["sweater"], g, 1, QC, C.REASON_QUALITY_DEFECT, "起球严重", [PHOTO]),
            "dispute": (oid["dress"], e, 1, RR, C.REASON_NOT_AS_DESCRIBED, "颜色与图片不符", [PHOTO])}
    if inspection:
        for i in range(1, 6):
            buyer, o = "demo-buyer-f%d-%s" % (i, uuid.uuid4().hex[:6]), "demo-o-fade%d-%s" % (i, uuid.uuid4().hex[:6])
            # Two dresses bought, one sent back: the compensation refunds the
            # other in full (the seed: every reporter refunded in full and
            # given a coupon); the case stays REFUNDED, with a timeline row.
            orders += order_events(o, buyer, [("DRESS-FADE-M", "apparel", 2, 12900)], 6, 3, region="CN-EAST")
            S.append(Scenario("fade%d" % i, "a dress fading after one wash, buyer %d of 5" % i,
                              [OPEN, AP, AR, "RETURN_RECEIVED", "INSPECTING", "REFUNDED", "REFUNDED"],
                              dict(one, return_instructions=1, inspection_task_opened=1, qc_verdict=1,
                                   inspection_completed=1, supplier_quality_alert=1, compensation_granted=1,
                                   coupon_issued=1),
                              [("APPROVED", "approve.return_refund")], [13300, 12900], faded, cluster_ok))
            reqs["fade%d" % i] = (o, buyer, 1, QC, C.REASON_QUALITY_DEFECT, "洗一次就严重褪色", [PHOTO])
    for s in S:
        s.request = request(*reqs[s.key])
    return orders, S


def describe(kind, b):
    """One event, in words (the case number is printed in front)."""
    if kind == "case_opened":
        return "opened: %s %s, %d unit(s), claimed %s, route %s, state %s, comment %r" % (
            name(C.CaseType, b.case_type, "CASE_TYPE_"), name(C.Reason, b.reason, "REASON_"),
            sum(x.quantity for x in b.lines), money(b.claimed_amount), b.route, state(b.state), b.comment)
    if kind == "buyer_acknowledged":
        return "buyer acknowledged (first response), request %s" % b.request_id
    if kind == "request_rejected":
        return "rejected: %s / %s / %s" % (b.reason_code, b.message_en, b.message_zh)
    if kind == "case_state_changed":
        return "%s -> %s (v%d, %s: %s)" % (state(b.from_state), state(b.to_state), b.version,
                                            "/".join(x for x in (b.actor_kind, b.actor.id) if x), b.reason)
    if kind == "review_decided":
        extra = ", shipping paid by %s" % name(C.PayerParty, b.shipping_payer, "PAYER_PARTY_") \
            if b.shipping_payer else ""
        if b.approved_amount.amount_minor:
            extra += ", approved %s" % money(b.approved_amount)
        if not b.verdict:  # progress told to the buyer, not a decision
            return "told the buyer: %s, case %s" % (b.reason_code, state(b.case_state))
        return "decided %s (%s, policy %s), case %s%s" % (verdict(b.verdict), b.reason_code, b.policy_version,
                                                         state(b.case_state), extra)
    if kind == "return_instructions":
        return "return instructions: send to %s (%s), %s, by %s" % (
            b.warehouse_id, b.return_address, name(C.ReturnMethod, b.method, "RETURN_METHOD_"),
            time.strftime("%Y-%m-%d", time.gmtime(b.ship_by_us / 1e6)))
    if kind == "refund_issued":
        return "refund %s (items %s, shipping %s, goodwill %s) to %s %s [%s]" % (
            money(b.total), money(b.items_amount), money(b.shipping_amount), money(b.goodwill_amount),
            name(C.PaymentMethod, b.method, "PAYMENT_METHOD_"), b.payment_ref, b.reason_code)
    if kind == "coupon_issued":
        return "coupon %s for the buyer, valid until %s" % (
            money(b.value), time.strftime("%Y-%m-%d", time.gmtime(b.expires_at_us / 1e6)))
    if kind == "goodwill_offered":
        return "goodwill offered: %s %d%% = %s, answer within %.0f h" % (
            name(C.Outcome, b.kind, "OUTCOME_"), b.percent, money(b.amount), (b.expires_at_us - now_us()) / 3.6e9)
    if kind == "buyer_replied":
        return "%s the offer" % ("accepts" if b.accepted else "declines")
    if kind == "agent_decision":
        return "%s decides %s%s: %r" % (b.agent_id, verdict(b.verdict),
                                        " " + name(C.Outcome, b.outcome, "OUTCOME_") if b.outcome else "", b.note)
    if kind == "dispute_opened":
        return "%s disputes: %r" % (b.seller_id, b.statement)
    if kind == "mediation_ruling":
        return "%s rules for the %s: %s, %r (final)" % (b.mediator_id, "buyer" if b.in_favour_of_buyer else "seller",
                                                       name(C.Outcome, b.outcome, "OUTCOME_"), b.reasoning)
    if kind == "sla_breached":
        return "SLA breached: %s clock, due %s, escalated to %s" % (
            b.clock, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(b.due_at_us / 1e6)), b.escalated_to)
    if kind == "evidence_added":
        return "evidence added: %d attachment(s), comment %r" % (len(b.evidence), b.comment)
    if kind == "return_received":
        return "parcel %s received at %s" % (b.tracking_number, b.warehouse_id)
    if kind == "inspection_completed":
        return "inspection (%s%s): %s, %s%s" % (
            b.standard, " " + b.standard_version if b.standard_version else "",
            "defect confirmed: %s (severity %d)" % (b.defect_code, b.severity) if b.defect_confirmed
            else "no defect", "resellable" if b.resellable else "not resellable",
            ", grade %s" % "-ABCD"[b.grade] if 0 < b.grade < 5 else "")
    if kind == "inspection_task_opened":
        return "inspection task opened (%s %s, %s), due %s" % (
            b.standard_id, b.standard_version, "evidence only" if b.evidence_only else
            "%d unit(s) received" % sum(x.quantity for x in b.lines),
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(b.due_at_us / 1e6)))
    if kind == "qc_verdict":
        failed = [x.item_code for x in b.items if not x.passed]
        return "%s judges the task: %s" % (b.inspector_id, "failed " + ", ".join(failed) if failed
                                           else "every item passed")
    if kind == "supplier_quality_alert":
        return "SUPPLIER QUALITY ALERT %s: %s %s %s, %d cases from %d buyers; demand: %s" % (
            b.alert_id[:8], b.supplier_id, b.sku, b.defect_code, b.confirmed_cases, b.distinct_buyers, b.demand)
    if kind == "compensation_granted":
        return "compensation granted: refund %s + coupon %s (alert %s)" % (
            money(b.amount), money(b.coupon), b.alert_id[:8])
    if kind == "dead_letter":
        return "dead letter: %s %r from %s[%d]@%d" % (b.reason_code, b.detail, b.source_topic, b.source_partition,
                                                     b.source_offset)
    if kind == "probe_echoed":
        return "echoed: seq %d, count %d, total_minor %d" % (b.seq, b.count, b.total_minor)
    return "%s: %s" % (kind, str(b).replace("\n", " "))


def print_case(s, verdict_line):
    t0 = s.request.aftersales_requested.submitted_at_us
    print("demo: %s ---- [%s] %s" % (s.label(), s.key, s.title))
    for at, _, who, kind, body, text in sorted(s.timeline, key=lambda x: x[:2]):
        print("demo: %s %+7.2fs %-10s %s" % (s.label(), (at - t0) / 1e6, who, text))
    print("demo: %s %s" % (s.label(), verdict_line))


def mask(to):
    """An address as a demo may show it: enough to tell buyers apart."""
    to = ", ".join(to) if isinstance(to, list) else str(to or "")
    return to[:3] + "***" + to[-2:] if len(to) > 6 else "***"


def print_received(path, wait_s=5.0):
    """What the buyers received, as the loopback gateways recorded it (SMS
    and push webhooks, e-mail over SMTP), in the languages it was written
    in. Waits a little for the notification worker's last sends."""
    seen, deadline = -1, time.time() + wait_s
    rows = []
    while time.time() < deadline:
        try:
            with open(path, encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
        except OSError:
            rows = []
        if rows and len(rows) == seen:
            break
        seen = len(rows)
        time.sleep(1.0)
    if not rows:
        print("demo: received nothing at the SMS, push and e-mail gateways (no notification rendered)")
        return 0
    print("demo: received %d message(s) at the gateways, as the buyers read them:" % len(rows))
    for r in rows:
        if r.get("gateway") == "email":
            print("demo: received e-mail to %s  %s  %s" % (mask(r.get("to")), r.get("subject"),
                                                   " ".join((r.get("html") or "").split())[:160]))
            continue
        m = r.get("message") or {}
        print("demo: received %s to %s  [%s %s] %s%s" % (r.get("gateway"), mask(m.get("to")), m.get("locale"),
                                                 m.get("template_id"),
                                                 (m.get("title") + ": ") if m.get("title") else "",
                                                 m.get("body")))
    return len(rows)


def contacts(d, orders):
    """The account system publishes each demo buyer's contact: every other
    buyer reads English, the rest Chinese; SMS first, e-mail if the SMS
    fails (the demo's numbers and addresses are made up, and masked when
    printed)."""
    import contacts_pb2
    import notification_pb2 as N
    buyers = sorted({e.order_placed.buyer_id for e in orders if e.WhichOneof("payload") == "order_placed"})
    for i, b in enumerate(buyers):
        c = contacts_pb2.BuyerContactUpdated(
            buyer_id=b, locale="en" if i % 2 else "zh-CN", time_zone="Europe/London" if i % 2 else "Asia/Shanghai",
            phone="+86139%08d" % (10000000 + i), email="buyer%d@demo.example" % i,
            channels_allowed=[N.CHANNEL_SMS, N.CHANNEL_EMAIL], updated_at_us=now_us())
        d.send("contacts", b, envelope("buyer_contact_updated", c, case_id=b))
    return len(buyers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--dsn", required=True, help="the fleet's database (for the SLA clock and the final states)")
    ap.add_argument("--seconds", type=float, default=45, help="longest wait for the fleet")
    ap.add_argument("--gateway-record", help="the JSON lines the loopback gateways wrote (make run)")
    args = ap.parse_args()
    d = Demo(args)
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "demo-" + uuid.uuid4().hex[:8],
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([TOPICS[t] for t in ("cases", "review", "refunds", "decisions", "logistics", "inspection",
                                     "echo", "dlq")])
    bins = os.environ.get("AS_BIN_DIR", "build/bin")
    have = {w: os.path.exists(os.path.join(bins, "as-" + w)) for w in ("intake", "review", "inspection")}
    d.inspection = have["inspection"]
    orders, S = scenarios(have["inspection"] and have["review"]) if have["intake"] else ([], [])
    if not have["review"]:  # intake alone: what it decides by itself
        S = [s for s in S if s.key == "too_many"]
    started = time.time()
    if os.path.exists(os.path.join(bins, "as-notification")):
        contacts(d, orders)
    for e in orders:
        d.send("orders", e.order_id, e)
    d.p.flush(10)
    # Orders and requests travel on two topics, read in no fixed order: a
    # request read before the buyer's older orders would see a shorter
    # history (the goodwill buyer's tenure). A storefront takes orders
    # long before their after-sales requests; the demo waits until intake
    # has applied every order event, then sends the requests.
    ids = [e.event_id for e in orders]
    deadline = time.time() + 30
    while ids and time.time() < deadline:
        try:
            if d.sql("SELECT count(*) FROM intake.inbox WHERE event_id = ANY(%s::uuid[])", (ids,))[0][0] == len(ids):
                break
        except Exception:  # intake's schema may not be migrated yet
            d.db = None
        time.sleep(0.1)
    else:
        if ids:
            print("demo: FAILED: intake did not apply the %d order events within 30 s" % len(ids))
            return 1
    for s in S:
        d.by_request[s.request.aftersales_requested.request_id] = s
        d.send("requests", s.request.order_id, s.request)
        if s.key == "return":  # delivered twice (the same event): one case, one answer
            d.send("requests", s.request.order_id, s.request)
    run = uuid.uuid4().hex[:6]
    probes = [probe("demo-%s-%d" % (run, i), i, 100 * (i + 1)) for i in range(3)]
    for e in probes:
        d.send("probe", e.synthetic_probe.probe_id, e)
    d.send("probe", probes[0].synthetic_probe.probe_id, probes[0])  # a redelivery
    d.p.produce(TOPICS["probe"], key="demo-bad", value=b"\x08not a protobuf envelope")
    d.send("probe", "demo-neg", probe("demo-neg", 9, -5))
    d.p.flush(10)
    print("demo: sent %d orders, %d requests (%s) and 6 probe messages; waiting for the fleet (at most %.0f s)"
          % (len(orders) // 3, len(S), ", ".join(s.key for s in S), args.seconds))

    def probes_done():
        return sum(k == "probe_echoed" for k, _ in d.probes) >= 3 and sum(k == "dead_letter" for k, _ in d.probes) >= 2

    deadline, quiet_until = started + args.seconds, None
    while time.time() < deadline and (quiet_until is None or time.time() < quiet_until):
        m = c.poll(0.3)
        if m is not None and not m.error():
            env = envelope_pb2.Envelope()
            try:
                env.ParseFromString(m.value())
            except DecodeError:
                d.strays.append(("undecodable", "%d bytes on %s" % (len(m.value()), m.topic())))
                continue
            d.take(m.topic(), env)
        if quiet_until is None and probes_done() and all(s.done() or s.problem or s.diverged() for s in S):
            quiet_until = time.time() + 1.5  # anything extra (a second refund ...) shows up here
    c.close()

    states = dict(d.sql("SELECT case_id, state FROM cases.cases WHERE case_id = ANY(%s)",
                        ([s.case_id for s in S if s.case_id],))) if any(s.case_id for s in S) else {}
    failed = []
    for s in sorted(S, key=lambda x: (x.number is None, x.number or "")):
        s.problem = s.problem or s.check(states.get(s.case_id))
        print_case(s, "FAILED [%s]: %s" % (s.key, s.problem) if s.problem else
                   "ok [%s] %s" % (s.key, " > ".join(s.states) if s.states else "rejected, no case"))
        if s.problem:
            failed.append(s)
    echoes = sorted((b for k, b in d.probes if k == "probe_echoed"), key=lambda b: b.seq)
    dead = sorted(b.reason_code for k, b in d.probes if k == "dead_letter")
    for b in echoes:
        print("demo: probe %s %s" % (b.probe_id, describe("probe_echoed", b)))
    for k, b in d.probes:
        if k == "dead_letter":
            print("demo: probe topic %s" % describe(k, b))
    probe_ok = ([(b.seq, b.count) for b in echoes] == [(0, 1), (1, 1), (2, 1)]
                and dead == ["contract_violation", "decode_failed"])
    print("demo: probes %s [runtime] 3 echoes (the redelivered probe counted once), 2 dead letters%s" % (
        "ok" if probe_ok else "FAILED", "" if probe_ok else ": saw echoes %s, dead letters %s" % (
            [(b.probe_id, b.seq, b.count) for b in echoes], dead)))
    for evs in d.pending.values():
        for e, k, b in evs:
            d.stray(e, k, b)
    strays = d.strays
    for k, b in strays:  # events about nothing the demo asked for: a case that should not exist
        print("demo: unexpected %s" % describe(k, b))
    if os.path.exists(os.path.join(bins, "as-logistics")) and have["intake"]:
        failed += ["logistics"] if logistics_demo(args, have["review"]) else []
    if args.gateway_record and not print_received(args.gateway_record) and \
            os.path.exists(os.path.join(bins, "as-notification")):
        failed.append("notification")  # the buyers heard nothing
    took = time.time() - started
    if failed or not probe_ok or strays:
        print("demo: FAILED after %.1f s: %s%s%s" % (
            took, ", ".join("[%s] %s" % (s.key, s.problem) if not isinstance(s, str) else "[%s]" % s for s in failed),
            "; probes" if not probe_ok else "", "; %d unexpected event(s)" % len(strays) if strays else ""))
        return 1
    print("demo: all %d scenarios and the runtime as expected, in %.1f s" % (len(S), took))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
