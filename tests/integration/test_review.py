"""Review: automatic decisions under the return policy, end to end through
intake and with crafted CaseOpened events; policy reload; a finance consumer
in another process. Real PostgreSQL, real broker, real protobuf bytes.
(Goodwill, agents, disputes, money exactly-once, the ledger cap and the SLA:
test_review_flows.py.)
"""
import ast
import json
import re
import signal
import subprocess
from pathlib import Path

from conftest import (CASES_TOPIC, DLQ_TOPIC, ROOT, SLOW, dead_letters, intake_pb, order_events, produce_orders,
                      produce_requests, request_envelope, settle, start_intake, wait_until)
from review_helpers import (DAY_US, INSPECTION_TOPIC, LOGISTICS_TOPIC, REFUNDS_TOPIC, REVIEW_TOPIC, decided, events, new_case, now_us,
                            of_kind, open_cases, pbm, produce_on, refunds_db, returned_and_inspected, start_review,
                            state, wait_decided, wait_events, wait_state)

PHOTO = (("https://img.example.com/p/1.jpg", "image/jpeg"),)


def default_policy_text():
    """review_policy_default, read out of the C source."""
    src = (ROOT / "services/review/review_policy.c").read_text()
    body = src.split("const char review_policy_default[] =", 1)[1].split(";\n", 1)[0]
    return "".join(ast.literal_eval(s) for s in re.findall(r'"(?:[^"\\]|\\.)*"', body))


# ---- 1. end to end through intake -------------------------------------------

def test_intake_to_review_return_refund_and_cheap_refund_only(h):
    common, _, _, _ = intake_pb(h)
    m = pbm(h)
    start_review(h)
    start_intake(h)
    order_id, buyer_id = f"o-{h.dbname[2:]}", f"b-{h.dbname[2:]}"
    produce_orders(h, order_events(h, order_id, buyer_id,
                                   [("l1", "SKU-1", 1999, 2), ("l2", "SKU-2", 500, 1)]))
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND delivered_at_us IS NOT NULL",
                             (order_id,)), 20 * SLOW, what="order projected")
    cases_r, review_r, refunds_r = h.reader(CASES_TOPIC), h.reader(REVIEW_TOPIC), h.reader(REFUNDS_TOPIC)
    big = request_envelope(h, order_id, buyer_id, lines=(("l1", 2),), declared_unused=True,
                           reason=common.REASON_CHANGED_MIND)
    cheap = request_envelope(h, order_id, buyer_id, lines=(("l2", 1),), declared_unused=True,
                             reason=common.REASON_SIZE_MISMATCH)
    t_sent = now_us()
    produce_requests(h, [big, cheap])
    evs = wait_events(h, cases_r, lambda e: len(of_kind(e, "case_opened")) >= 2, what="2 cases opened")
    opened = {p.request_id: p for _, p, _, _ in of_kind(evs, "case_opened")}
    big_case = opened[big.aftersales_requested.request_id]
    cheap_case = opened[cheap.aftersales_requested.request_id]
    assert big_case.route == "review" and cheap_case.route == "review"
    evs = wait_decided(h, review_r, [big_case.case_id, cheap_case.case_id])
    d = decided(evs)
    rd = d[big_case.case_id][0]
    assert (rd.verdict, rd.outcome, rd.reason_code, rd.policy_version) == \
        (m.review.VERDICT_APPROVED, common.OUTCOME_REFUND, "approve.return_refund", "builtin-1")
    assert rd.shipping_payer == common.PAYER_PARTY_BUYER
    assert (rd.approved_amount.amount_minor, rd.approved_amount.currency) == (3998, "CNY")
    assert rd.decided_by.kind == common.ACTOR_KIND_SYSTEM
    ri = [p for k, p, key, _ in evs if k == "return_instructions" and p.case_id == big_case.case_id]
    assert len(ri) == 1, ri
    ri = ri[0]
    assert ri.warehouse_id == "WH-CN-HZ-01" and ri.return_address.startswith("杭州市")  # region CN-31: [region *]
    assert ri.packaging == "original packaging, tags attached"
    assert ri.method == common.RETURN_METHOD_PICKUP and ri.shipping_payer == common.PAYER_PARTY_BUYER
    assert t_sent + 7 * DAY_US <= ri.ship_by_us <= now_us() + 7 * DAY_US
    assert ri.locale == "zh-CN"
    # The cheap one is refunded at once, without a return.
    rc = d[cheap_case.case_id][0]
    assert (rc.verdict, rc.reason_code) == (m.review.VERDICT_APPROVED, "approve.refund_only_cheap")
    assert not [p for k, p, _, _ in evs if k == "return_instructions" and p.case_id == cheap_case.case_id]
    wait_state(h, cheap_case.case_id, "REFUNDED")
    assert state(h, big_case.case_id) == "AWAITING_RETURN"
    # Goods come back and pass inspection: one refund, with the payment's method and reference.
    returned_and_inspected(h, big_case.case_id, resellable=True)
    wait_state(h, big_case.case_id, "REFUNDED")
    wait_events(h, refunds_r, lambda e: len(of_kind(e, "refund_issued")) >= 2, what="2 refunds")
    settle(h)  # a third refund, late, would be on the topic by now
    refs = of_kind(events(h, refunds_r), "refund_issued")
    by_case = {}
    for _, p, key, _ in refs:
        by_case.setdefault(p.case_id, []).append(p)
        assert key == p.case_id
    assert sorted(by_case) == sorted([big_case.case_id, cheap_case.case_id])
    assert all(len(v) == 1 for v in by_case.values()), by_case
    r = by_case[big_case.case_id][0]
    assert (r.items_amount.amount_minor, r.shipping_amount.amount_minor, r.goodwill_amount.amount_minor,
            r.total.amount_minor, r.total.currency) == (3998, 0, 0, 3998, "CNY")
    assert [(l.line_id, l.quantity, l.amount.amount_minor) for l in r.lines] == [("l1", 2, 3998)]
    assert r.method == common.PAYMENT_METHOD_WALLET and r.payment_ref == "pay-" + order_id
    assert r.order_id == order_id and r.buyer_id == buyer_id and r.reason_code == "return.inspected"
    c = by_case[cheap_case.case_id][0]
    assert (c.items_amount.amount_minor, c.shipping_amount.amount_minor, c.total.amount_minor) == (500, 0, 500)
    assert c.method == common.PAYMENT_METHOD_WALLET
    assert sorted(x[1:] for x in refunds_db(h)) == sorted(
        [(big_case.case_id, 3998, 0, 0, 3998, "return.inspected"),
         (cheap_case.case_id, 500, 0, 0, 500, "approve.refund_only_cheap")])
    # The review clock of both cases is met, not breached.
    assert h.sql("SELECT count(*) FROM cases.sla_clocks WHERE clock = 'review' AND met_at IS NOT NULL"
                 " AND breached_at IS NULL AND case_id = ANY(%s)",
                 ([big_case.case_id, cheap_case.case_id],))[0][0] == 2


# ---- 2. table-driven boundaries -----------------------------------------------

def test_decision_boundaries_table(h):
    m = pbm(h)
    V, C = m.review, m.common
    start_review(h)
    D = now_us() - 100 * DAY_US  # a fixed delivery time; decisions read no clock
    ex = "approve.return_refund"
    table = [
        # (name, new_case kwargs, verdict, rule, shipping payer or None, state)
        ("day7_edge", dict(delivered_at_us=D, submitted_at_us=D + 7 * DAY_US), "APPROVED", ex, "BUYER",
         "AWAITING_RETURN"),
        ("day7_plus_1us", dict(delivered_at_us=D, submitted_at_us=D + 7 * DAY_US + 1), "REJECTED",
         "window.no_reason_expired", None, "REJECTED"),
        ("not_unused", dict(declared_unused=False), "REJECTED", "no_reason.not_unused", None, "REJECTED"),
        ("manual_minus1", dict(lines=[("l1", "S", "apparel", 1, 199999, 1)]), "APPROVED", ex, "BUYER", None),
        ("manual_eq", dict(lines=[("l1", "S", "apparel", 1, 200000, 1)]), "APPROVED", ex, "BUYER", None),
        ("manual_plus1", dict(lines=[("l1", "S", "apparel", 1, 200001, 1)]), "MANUAL_REVIEW",
         "amount.manual_threshold", None, "MANUAL_REVIEW"),
        ("manual_plus1_two_lines", dict(lines=[("l1", "S", "apparel", 1, 100000, 1),
                                               ("l2", "S", "apparel", 1, 100001, 2)]),
         "MANUAL_REVIEW", "amount.manual_threshold", None, None),
        ("usd_manual_plus1", dict(currency="USD", lines=[("l1", "S", "apparel", 1, 30001, 1)]),
         "MANUAL_REVIEW", "amount.manual_threshold", None, None),
        ("currency_unknown", dict(currency="CHF"), "MANUAL_REVIEW", "policy.currency_unknown", None, None),
        ("cheap_eq", dict(lines=[("l1", "S", "apparel", 1, 1000, 1)]), "APPROVED", "approve.refund_only_cheap",
         "BUYER", "REFUNDED"),
        ("cheap_plus1", dict(lines=[("l1", "S", "apparel", 1, 1001, 1)]), "APPROVED", ex, "BUYER",
         "AWAITING_RETURN"),
        ("fresh_produce", dict(lines=[("l1", "S", "fresh_produce", 1, 3000, 1)]), "REJECTED",
         "category.non_returnable", None, "REJECTED"),
        ("custom_made", dict(lines=[("l1", "S", "custom_made", 1, 3000, 1)]), "REJECTED",
         "category.non_returnable", None, "REJECTED"),
        ("custom_made_mixed", dict(lines=[("l1", "S", "apparel", 1, 3000, 1),
                                          ("l2", "S", "custom_made", 1, 3000, 1)]),
         "REJECTED", "category.non_returnable", None, None),
        ("fresh_produce_quality", dict(reason="QUALITY_DEFECT", evidence=PHOTO,
                                       lines=[("l1", "S", "fresh_produce", 1, 3000, 1)]),
         "APPROVED", ex, "SELLER", None),
        ("evidence_missing", dict(reason="QUALITY_DEFECT"), "AWAITING_EVIDENCE", "evidence.required", None,
         "AWAITING_EVIDENCE"),
        ("evidence_pdf_only", dict(reason="DAMAGED_IN_TRANSIT",
                                   evidence=(("https://x.example.com/a.pdf", "application/pdf"),)),
         "AWAITING_EVIDENCE", "evidence.required", None, None),
        ("evidence_video", dict(reason="NOT_AS_DESCRIBED",
                                evidence=(("https://x.example.com/a.mp4", "video/mp4"),)),
         "APPROVED", ex, "SELLER", None),
        ("missing_parts_no_photo", dict(reason="MISSING_PARTS"), "APPROVED", ex, "SELLER", None),
        ("claim_day30", dict(reason="QUALITY_DEFECT", evidence=PHOTO, delivered_at_us=D,
                             submitted_at_us=D + 30 * DAY_US), "APPROVED", ex, "SELLER", None),
        ("claim_day30_plus1us", dict(reason="QUALITY_DEFECT", evidence=PHOTO, delivered_at_us=D,
                                     submitted_at_us=D + 30 * DAY_US + 1),
         "GOODWILL_OFFER", "goodwill.out_of_window", None, "GOODWILL_OFFERED"),
        ("goodwill_day60", dict(reason="QUALITY_DEFECT", evidence=PHOTO, delivered_at_us=D,
                                submitted_at_us=D + 60 * DAY_US), "GOODWILL_OFFER", "goodwill.out_of_window",
         None, None),
        ("goodwill_day60_plus1us", dict(reason="QUALITY_DEFECT", evidence=PHOTO, delivered_at_us=D,
                                        submitted_at_us=D + 60 * DAY_US + 1),
         "REJECTED", "window.claim_expired", None, "REJECTED"),
        ("not_delivered", dict(delivered_at_us=0), "MANUAL_REVIEW", "order.not_delivered", None, None),
        ("claims_on_order_2", dict(claims_on_order=2), "MANUAL_REVIEW", "abuse.repeated_claims", None, None),
        ("claims_on_order_1", dict(claims_on_order=1), "APPROVED", ex, "BUYER", None),
        ("rate_over", dict(orders=5, cases=3), "MANUAL_REVIEW", "abuse.return_rate", None, None),
        ("rate_few_orders", dict(orders=4, cases=3), "APPROVED", ex, "BUYER", None),
        ("rate_at_50", dict(orders=10, cases=5), "APPROVED", ex, "BUYER", None),
        ("exchange", dict(case_type="EXCHANGE"), "APPROVED", "approve.exchange", "BUYER", "AWAITING_RETURN"),
        ("refund_only_type_expensive", dict(case_type="REFUND_ONLY"), "APPROVED", "approve.return_required",
         "BUYER", "AWAITING_RETURN"),
        ("logistics_type", dict(case_type="LOGISTICS"), "MANUAL_REVIEW", "type.not_reviewable", None, None),
    ]
    payers = {"SIZE_MISMATCH": "BUYER", "COLOUR_DIFFERS": "BUYER", "CHANGED_MIND": "BUYER", "OTHER": "BUYER",
              "QUALITY_DEFECT": "SELLER", "DAMAGED_IN_TRANSIT": "SELLER", "NOT_AS_DESCRIBED": "SELLER",
              "MISSING_PARTS": "SELLER", "NOT_RECEIVED": "SELLER", "DELIVERED_NOT_RECEIVED": "SELLER",
              "TRACKING_STALLED": "SELLER"}
    for reason, payer in payers.items():
        table.append((f"payer_{reason}", dict(reason=reason, evidence=PHOTO), "APPROVED", ex, payer, None))
    envs = {name: new_case(h, **kw) for name, kw, *_ in table}
    review_r = h.reader(REVIEW_TOPIC)
    open_cases(h, list(envs.values()))
    ids = [e.case_id for e in envs.values()]
    evs = wait_decided(h, review_r, ids, timeout=40)
    d = decided(evs)
    bad = []
    for name, kw, verdict, rule, payer, st in table:
        cid = envs[name].case_id
        got = d[cid]
        if len(got) != 1:
            bad.append((name, "decisions", len(got)))
            continue
        rd = got[0]
        want = (verdict, rule) + ((payer,) if payer else ())
        have = (V.Verdict.Name(rd.verdict)[8:], rd.reason_code) + \
            ((C.PayerParty.Name(rd.shipping_payer)[12:],) if payer else ())
        if want != have:
            bad.append((name, want, have))
        if st:
            have_st = wait_until(lambda: state(h, cid) if state(h, cid) != "APPROVED" else None, 10 * SLOW)
            if have_st != st:
                bad.append((name, "state", st, have_st))
    assert not bad, bad
    # Evidence: the decision says until when; approvals carry the claimed amount.
    rd = d[envs["evidence_missing"].case_id][0]
    assert rd.evidence_due_us == rd.decided_at_us + 7 * DAY_US
    rd = d[envs["manual_eq"].case_id][0]
    assert rd.approved_amount.amount_minor == 200000 and rd.approved_amount.currency == "CNY"
    assert d[envs["manual_plus1"].case_id][0].approved_amount.amount_minor == 0
    rd = d[envs["exchange"].case_id][0]
    assert rd.outcome == C.OUTCOME_EXCHANGE
    # The review decision row holds the rule and the policy version.
    assert h.sql("SELECT rule, policy_version FROM review.cases WHERE case_id = %s",
                 (envs["day7_plus_1us"].case_id,)) == [("window.no_reason_expired", "builtin-1")]
    # Manual review keeps the review clock running; every other decision meets it.
    clocks = dict(h.sql("SELECT case_id, met_at IS NOT NULL FROM cases.sla_clocks WHERE clock = 'review'"))
    for name, kw, verdict, *_ in table:
        assert clocks[envs[name].case_id] == (verdict != "MANUAL_REVIEW"), name


# ---- 7. policy reload -------------------------------------------------------------

def test_policy_file_reload_and_refusal(h, tmp_path):
    m = pbm(h)
    base = default_policy_text()
    assert "version = builtin-1" in base and "no_reason_days = 7" in base
    pol = tmp_path / "policy.ini"
    pol.write_text(base.replace("version = builtin-1", "version = test-30d")
                   .replace("no_reason_days = 7", "no_reason_days = 30"))
    w = start_review(h, AS_REVIEW_POLICY_FILE=str(pol))
    review_r = h.reader(REVIEW_TOPIC)
    D = now_us() - 20 * DAY_US  # day 20: only the 30-day policy approves it

    def decide_one():
        e = new_case(h, delivered_at_us=D, submitted_at_us=D + 20 * DAY_US)
        open_cases(h, [e])
        return decided(wait_decided(h, review_r, [e.case_id]))[e.case_id][0]

    rd = decide_one()
    assert (rd.verdict, rd.reason_code, rd.policy_version) == \
        (m.review.VERDICT_APPROVED, "approve.return_refund", "test-30d")
    # Garbage: refused, the policy in force stays.
    pol.write_text("version = broken\n[default]\nno_reason_dayz = 7\nthis is not a policy\n")
    w.proc.send_signal(signal.SIGHUP)
    refused = wait_until(lambda: w.logged("policy refused, the previous one stays in force"), 10 * SLOW,
                         what="refusal logged")
    assert refused[-1].get("in_force") == "test-30d", refused[-1]
    assert "line" in refused[-1].get("detail", ""), refused[-1]
    rd = decide_one()
    assert (rd.verdict, rd.policy_version) == (m.review.VERDICT_APPROVED, "test-30d")
    assert w.proc.poll() is None
    # A valid new version is taken.
    pol.write_text(base.replace("version = builtin-1", "version = test-7d"))
    n_loaded = len(w.logged("policy loaded"))
    w.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(w.logged("policy loaded")) > n_loaded, 10 * SLOW, what="reload logged")
    assert w.logged("policy loaded")[-1].get("version") == "test-7d"
    rd = decide_one()
    assert (rd.verdict, rd.reason_code, rd.policy_version) == \
        (m.review.VERDICT_REJECTED, "window.no_reason_expired", "test-7d")
    assert w.metric("as_review_policy_reloads_total", result="refused") == 1
    assert w.metric("as_review_policy_reloads_total", result="ok") == 1  # the SIGHUP one (init is not counted)


def test_policy_file_refused_at_start(h, tmp_path):
    pol = tmp_path / "bad.ini"
    pol.write_text(default_policy_text().replace("no_reason_days = 7", "no_reason_days = -1"))
    w = start_review(h, ready=False, AS_REVIEW_POLICY_FILE=str(pol))
    rc = w.wait_exit(30)
    assert rc != 0
    assert w.logged("policy refused"), w.tail()


# ---- 8. finance consumer in another process -----------------------------------------

FINANCE = r"""
import sys
sys.path.insert(0, sys.argv[1])
import envelope_pb2
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[2], "group.id": "finance-" + sys.argv[3],
              "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 2})
parts = [TopicPartition("aftersales.refunds.v1", p, 0) for p in range(12)]
highs = [c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
c.assign(parts)
pos = [0] * 12
raw = None
import time
deadline = time.time() + 30
while any(pos[p] < highs[p] for p in range(12)) and time.time() < deadline:
    m = c.poll(0.2)
    if m is None or m.error():
        continue
    pos[m.partition()] = m.offset() + 1
    e = envelope_pb2.Envelope()
    e.ParseFromString(m.value())
    if e.WhichOneof("payload") != "refund_issued":
        continue
    r = e.refund_issued
    raw = m.value()
    print(r.refund_id, r.case_id, r.total.amount_minor, r.total.currency, r.items_amount.amount_minor,
          r.shipping_amount.amount_minor, r.goodwill_amount.amount_minor, flush=True)
c.close()
if raw is not None:
    open(sys.argv[4], "wb").write(raw)
"""


def test_finance_consumer_in_another_process(h, tmp_path):
    m = pbm(h)
    start_review(h)
    envs = [new_case(h, lines=[("l1", "S", "apparel", 1, 700 + i, 1)], reason=r)
            for i, r in enumerate(["SIZE_MISMATCH", "MISSING_PARTS", "CHANGED_MIND"])]
    open_cases(h, envs)
    for e in envs:
        wait_state(h, e.case_id, "REFUNDED")
    # REFUNDED is committed with the outbox row; wait until the relay published them.
    wait_events(h, h.reader(REFUNDS_TOPIC), lambda e: len(of_kind(e, "refund_issued")) >= 3, what="3 refunds")
    gen = str(Path(m.refunds.__file__).parent)
    raw = tmp_path / "raw.bin"
    out = subprocess.run(["/usr/bin/python3", "-c", FINANCE, gen, h.bootstrap, h.group, str(raw)],
                         capture_output=True, text=True, timeout=60 * SLOW)
    assert out.returncode == 0, out.stderr
    rows = [l.split() for l in out.stdout.splitlines()]
    assert len(rows) == 3, out.stdout
    ids = [r[0] for r in rows]
    assert len(set(ids)) == 3
    seen = {r[1]: r for r in rows}
    for i, e in enumerate(envs):
        rid, _, total, cur, items, ship, gw = seen[e.case_id]
        assert cur == "CNY" and int(total) == int(items) + int(ship) + int(gw)
        assert int(items) == 700 + i
        # MISSING_PARTS is the seller's fault: the shipping fee comes back too.
        assert int(ship) == (800 if i == 1 else 0)
        assert refunds_db(h, e.case_id)[0][0] == rid
    # protoc reads the same bytes with nothing but the .proto files.
    dec = subprocess.run(["protoc", "--decode", "aftersales.v1.Envelope", "-Iproto", "proto/envelope.proto"],
                         cwd=ROOT, input=raw.read_bytes(), capture_output=True, timeout=30)
    assert dec.returncode == 0, dec.stderr
    text = dec.stdout.decode()
    assert "refund_issued {" in text and f'refund_id: "{rows[-1][0]}"' in text, text
    assert json.dumps(rows[-1][3]) in text


def test_events_review_has_no_route_for_are_ignored_not_claimed_nor_dead_lettered(h):
    """Others' events on review's topics (and its own, read back) change
    nothing: they are committed past, counted in as_messages_ignored_total,
    kept out of the inbox (no row per message that changes nothing) and
    never dead-lettered; review then still decides what it does route."""
    m = pbm(h)
    w = start_review(h)
    dlq = h.reader(DLQ_TOPIC)
    before = w.metric("as_messages_ignored_total")
    scan = produce_on(h, LOGISTICS_TOPIC, "tracking_scan", m.logistics.TrackingScan(), "case-x-1")
    asked = produce_on(h, INSPECTION_TOPIC, "inspection_requested", m.inspection.InspectionRequested(),
                       "case-x-2")
    env = new_case(h, lines=[("l1", "S", "apparel", 1, 700, 1)], reason="SIZE_MISMATCH")
    open_cases(h, [env])
    wait_state(h, env.case_id, "REFUNDED")
    settle(h)
    assert w.metric("as_messages_ignored_total") - before >= 2
    claimed = {r[0] for r in h.sql("SELECT event_id::text FROM review.inbox")}
    assert scan.event_id not in claimed and asked.event_id not in claimed, claimed
    assert dead_letters(h, dlq) == []
