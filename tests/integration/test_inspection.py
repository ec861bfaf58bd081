"""The inspection worker's tasks and verdicts, through the topics: goods
received then judged (pass, fail, a partial receipt judged on the received
units only), an evidence-only task, the auto-pass rule, a verdict that
contradicts its items, late and duplicate verdicts, the SLA breach fired by
the real deadline scanner, and every verdict the contract refuses."""
from conftest import CASES_TOPIC, DLQ_TOPIC, ROOT, SLOW, settle, start_inspection, wait_until
from inspection_helpers import (ELECTRONICS, case_opened, completed, dead_reasons, insp_events,
                                open_cases, receive, request_evidence, task_id, verdict,
                                verdict_env, wait_dead, wait_kind)
from review_helpers import INSPECTION_TOPIC, LOGISTICS_TOPIC, of_kind, pbm, produce_on


def test_goods_received_then_verdict_pass_fail_partial(h):
    start_inspection(h)
    r = h.reader(INSPECTION_TOPIC)
    ok, bad = case_opened(h), case_opened(h)
    part = case_opened(h, lines=[("l1", "SKU-TEE", "apparel", "sup-1", "LOT-7", 3, 3, 17700),
                                 ("l2", "SKU-CAP", "apparel", "sup-2", "", 1, 1, 2000)])
    open_cases(h, [ok, bad, part])
    receive(h, ok.case_id)
    receive(h, bad.case_id)
    receive(h, part.case_id, lines=(("l1", 2),))  # 2 of the 3 claimed tees, no cap
    opened = wait_kind(h, r, "inspection_task_opened", 3)
    t = {p.case_id: p for _, p, _, _ in opened}
    assert t[ok.case_id].task_id == task_id(ok.case_id)
    assert not t[ok.case_id].evidence_only and t[ok.case_id].standard_id == "apparel"
    assert t[ok.case_id].standard_version == "builtin-1"
    assert t[ok.case_id].due_at_us - t[ok.case_id].opened_at_us == 48 * 3600 * 10**6
    assert [(l.line_id, l.quantity) for l in t[part.case_id].lines] == [("l1", 2)]
    verdict(h, ok.case_id)
    verdict(h, bad.case_id, failed=("colourfast", "tags_attached"), inspector="qc-9")
    verdict(h, part.case_id)
    p = completed(h, r, ok.case_id)
    assert (p.defect_confirmed, p.grade, p.disposition, p.resellable) == (False, 1, 1, True)
    assert p.task_id == task_id(ok.case_id) and p.inspector_id == "qc-7" and not p.auto_passed
    assert (p.standard, p.standard_version, p.sku, p.supplier_id, p.lot_id) == \
        ("apparel", "builtin-1", "SKU-TEE", "sup-1", "LOT-7")
    f = completed(h, r, bad.case_id)
    assert f.defect_confirmed and f.defect_code == "colourfast" and f.severity == 3
    assert list(f.failed_items) == ["colourfast", "tags_attached"]
    m = pbm(h).inspection
    assert f.grade == m.QC_GRADE_C and f.disposition == m.DISPOSITION_RETURN_TO_SUPPLIER
    assert not f.resellable and f.inspector_id == "qc-9"
    q = completed(h, r, part.case_id)
    assert [(l.line_id, l.sku, l.quantity) for l in q.lines] == [("l1", "SKU-TEE", 2)]
    settle(h)
    # judged tasks have no SLA deadline left
    assert h.scalar("SELECT count(*) FROM inspection.deadlines WHERE fired_at IS NULL"
                    " AND cancelled_at IS NULL") == 0


def test_evidence_only_task_and_fresh_produce(h):
    start_inspection(h)
    r, dlq = h.reader(INSPECTION_TOPIC), h.reader(DLQ_TOPIC)
    fresh = case_opened(h, lines=[("l1", "SKU-PEACH", "fresh_produce", "farm-1", "", 2, 2, 3000)])
    open_cases(h, [fresh])
    # goods of a category judged on evidence only open no task
    receive(h, fresh.case_id, lines=(("l1", 2),))
    request_evidence(h, fresh.case_id, tid=task_id(fresh.case_id, "return"))  # the wrong form
    wait_dead(h, dlq, 1)
    assert "task_id_mismatch" in dead_reasons(h, dlq)[0][1]
    request_evidence(h, fresh.case_id)
    t = wait_kind(h, r, "inspection_task_opened")[0][1]
    assert t.evidence_only and t.task_id == task_id(fresh.case_id, "evidence")
    assert [(l.line_id, l.quantity) for l in t.lines] == [("l1", 2)]  # every claimed unit
    verdict(h, fresh.case_id, kind="evidence", items=("fresh", "weight"), failed=("fresh",))
    p = completed(h, r, fresh.case_id)
    assert p.evidence_only and p.defect_confirmed and p.defect_code == "fresh"
    assert p.disposition == pbm(h).inspection.DISPOSITION_DESTROY
    settle(h)
    assert len(of_kind(insp_events(h, r), "inspection_task_opened")) == 1
    assert h.scalar("SELECT count(*) FROM inspection.tasks WHERE case_id = %s", (fresh.case_id,)) == 1


def test_sealed_change_of_mind_passes_without_a_human(h):
    w = start_inspection(h)
    r = h.reader(INSPECTION_TOPIC)
    cm = case_opened(h, reason="CHANGED_MIND", evidence=False)
    opened = case_opened(h, reason="CHANGED_MIND", evidence=False)
    open_cases(h, [cm, opened])
    receive(h, cm.case_id, condition="sealed")
    receive(h, opened.case_id, condition="opened")
    p = completed(h, r, cm.case_id)
    assert p.auto_passed and p.inspector_id == "" and p.grade == 1 and p.resellable
    assert [(l.line_id, l.quantity) for l in p.lines] == [("l1", 1)]
    wait_kind(h, r, "inspection_task_opened", 2)
    settle(h)
    assert not [e for e in insp_events(h, r, "inspection_completed") if e[1].case_id == opened.case_id]
    assert w.metric("as_inspection_auto_passed_total") == 1


def test_verdict_contradicting_its_items_is_judged_by_the_items(h):
    w = start_inspection(h)
    r = h.reader(INSPECTION_TOPIC)
    lies, hides = case_opened(h), case_opened(h)
    open_cases(h, [lies, hides])
    receive(h, lies.case_id)
    receive(h, hides.case_id)
    wait_kind(h, r, "inspection_task_opened", 2)
    verdict(h, lies.case_id, defect_confirmed=True, defect_code="colour_fading")  # every item passed
    verdict(h, hides.case_id, failed=("seams_intact",), defect_confirmed=False)
    assert not completed(h, r, lies.case_id).defect_confirmed
    p = completed(h, r, hides.case_id)
    assert p.defect_confirmed and p.defect_code == "seams_intact"
    wait_until(lambda: w.metric("as_inspection_verdict_contradictions_total") == 2, 10 * SLOW,
               what="contradictions counted")


def test_late_and_duplicate_verdicts(h):
    w = start_inspection(h)
    r, cases_r, dlq = h.reader(INSPECTION_TOPIC), h.reader(CASES_TOPIC), h.reader(DLQ_TOPIC)
    c = case_opened(h)
    open_cases(h, [c])
    receive(h, c.case_id)
    wait_kind(h, r, "inspection_task_opened")
    # the SLA passes first: the real scanner escalates the task
    h.sql("UPDATE inspection.deadlines SET due_at = now() - interval '1 second'"
          " WHERE case_id = %s AND kind = 'sla:return'", (c.case_id,))
    b = wait_kind(h, cases_r, "sla_breached")[0][1]
    assert (b.case_id, b.clock, b.escalated_to) == (c.case_id, "inspection", "qc_supervisor")
    assert h.scalar("SELECT escalated_at_us IS NOT NULL FROM inspection.tasks WHERE case_id = %s",
                    (c.case_id,))
    wait_until(lambda: w.metric("as_inspection_sla_breaches_total") == 1, 10 * SLOW, what="breach counted")
    # a late verdict is still judged
    first = verdict(h, c.case_id)
    assert not completed(h, r, c.case_id).defect_confirmed
    # the same verdict redelivered (same bytes): skipped by the inbox
    h.produce_many([(c.case_id, first.SerializeToString(), None)], topic=INSPECTION_TOPIC)
    # a second verdict (another event): refused
    verdict(h, c.case_id, failed=("colourfast",))
    wait_dead(h, dlq, 1)
    settle(h)
    assert dead_reasons(h, dlq) == [("contract_violation", "second_verdict: the task was judged already")]
    assert len(of_kind(insp_events(h, r), "inspection_completed")) == 1
    assert len(of_kind(insp_events(h, cases_r), "sla_breached")) == 1


def test_refused_verdicts_and_receipts_are_dead_lettered_and_the_partition_moves(h):
    start_inspection(h)
    r, dlq = h.reader(INSPECTION_TOPIC), h.reader(DLQ_TOPIC)
    c = case_opened(h, lines=[("l1", "SKU-PHONE", "electronics", "sup-9", "L1", 2, 2, 400000)])
    open_cases(h, [c])
    receive(h, c.case_id, lines=(("l1", 3),))              # more than claimed
    receive(h, "case-nobody", lines=(("l1", 1),))          # unknown case
    receive(h, c.case_id, lines=(("l9", 1),))              # a line the case did not claim
    receive(h, c.case_id, lines=(("l1", 1),))              # 1 of the 2 phones arrives
    wait_kind(h, r, "inspection_task_opened")
    receive(h, c.case_id, lines=(("l1", 1),))              # a second receipt: the task exists
    tid = task_id(c.case_id)
    verdict(h, c.case_id, items=ELECTRONICS, tid=task_id("case-other"))        # unknown task
    verdict(h, c.case_id, items=ELECTRONICS, lines=(("l1", 2),))              # 2 units, 1 received
    verdict(h, c.case_id, items=ELECTRONICS + ("colourfast",))                # not in the standard
    verdict(h, c.case_id, items=ELECTRONICS[:3])                              # incomplete
    verdict(h, c.case_id, items=ELECTRONICS, tid="not-a-uuid")
    verdict(h, c.case_id, items=ELECTRONICS, failed=("no_scratches",), lines=(("l1", 1),))
    p = completed(h, r, c.case_id)
    assert p.grade == pbm(h).inspection.QC_GRADE_B and not p.defect_confirmed and p.resellable
    assert p.task_id == tid and [(l.line_id, l.quantity) for l in p.lines] == [("l1", 1)]
    wait_dead(h, dlq, 9)
    reasons = dead_reasons(h, dlq)
    assert all(code == "contract_violation" for code, _ in reasons), reasons
    details = " | ".join(d for _, d in reasons)
    for want in ("units_not_claimed: line l1: 3 units, allowed 1 to 2", "unknown_case",
                 "units_not_claimed: line l9 is not among the units allowed",
                 "task_exists: the case's return was received already",
                 "unknown_task: no task with this id",
                 "units_not_received: line l1: 2 units, allowed 1 to 1",
                 "item_not_in_standard: \"colourfast\"", "items_incomplete: \"accessories\"",
                 "unknown_task: task id not a UUID"):
        assert want in details, (want, reasons)


def test_hostile_input_on_every_consumed_topic(h):
    start_inspection(h)
    r, dlq = h.reader(INSPECTION_TOPIC), h.reader(DLQ_TOPIC)
    m = pbm(h)
    # undecodable bytes on each topic the worker consumes
    for topic in (CASES_TOPIC, LOGISTICS_TOPIC, INSPECTION_TOPIC):
        h.produce_many([("k", b"\xff\x00garbage", None)], topic=topic)
    # CaseOpened: unsafe ids, negative paid amount, more claimed than bought, bad currency
    bad_id = case_opened(h)
    bad_id.case_opened.buyer_id = "b 1; DROP"
    neg = case_opened(h, lines=[("l1", "S", "apparel", "sup-1", "", 1, 1, -5)])
    over = case_opened(h, lines=[("l1", "S", "apparel", "sup-1", "", 1, 2, 100)])
    cur = case_opened(h, currency="cny")
    huge = case_opened(h, lines=[("l1", "S", "apparel", "sup-1", "", 1, 1, 2**62)])
    h.produce_many([(e.case_id, e.SerializeToString(), None) for e in (bad_id, neg, over, cur, huge)],
                   topic=CASES_TOPIC)
    good = case_opened(h)
    open_cases(h, [good])
    # ReturnReceived: control bytes in the condition, no lines
    rr = m.logistics.ReturnReceived(case_id=good.case_id, condition="sealed\x01", received_at_us=1)
    rr.lines.add(line_id="l1", quantity=1)
    produce_on(h, LOGISTICS_TOPIC, "return_received", rr, good.case_id)
    produce_on(h, LOGISTICS_TOPIC, "return_received",
               m.logistics.ReturnReceived(case_id=good.case_id), good.case_id)
    # InspectionRequested for an unknown case; QcVerdict with an unsafe inspector, huge notes
    request_evidence(h, "case-unknown")
    receive(h, good.case_id)
    wait_kind(h, r, "inspection_task_opened")
    verdict(h, good.case_id, inspector="qc 7")
    v = verdict_env(h, good.case_id)
    v.qc_verdict.notes = "x" * 5000
    h.produce_many([(good.case_id, v.SerializeToString(), None)], topic=INSPECTION_TOPIC)
    # RectificationConfirmed: not a UUID, unsafe agent
    rc = m.inspection.RectificationConfirmed(alert_id="nope", agent_id="a-1")
    produce_on(h, INSPECTION_TOPIC, "rectification_confirmed", rc, "nope")
    rc = m.inspection.RectificationConfirmed(alert_id=task_id("x"), agent_id="")
    produce_on(h, INSPECTION_TOPIC, "rectification_confirmed", rc, "x")
    # and the partition keeps moving: a good verdict is judged
    verdict(h, good.case_id)
    assert not completed(h, r, good.case_id).defect_confirmed
    wait_dead(h, dlq, 15)
    settle(h)
    reasons = dead_reasons(h, dlq)
    assert sorted(c for c, _ in reasons).count("decode_failed") == 3, reasons
    details = " | ".join(d for _, d in reasons)
    for want in ("case, order or buyer id missing or unsafe", "paid_allocated missing, negative",
                 "claimed units outside 1..purchased", "currency not ISO 4217",
                 "paid_allocated too large",
                 "condition or warehouse id too long or has control bytes",
                 "units_not_claimed: no lines", "unknown_case", "inspector id missing or unsafe",
                 "notes too long", "unknown_alert: not a UUID", "agent id missing or unsafe"):
        assert want in details, (want, reasons)
    assert len(reasons) == 15, reasons
    assert h.scalar("SELECT count(*) FROM inspection.cases") == 1


def test_standards_file_reloaded_on_sighup_and_a_bad_one_refused(h):
    import signal
    from inspection_helpers import receive as rcv
    f = h.logdir / "standards.txt"
    base = (ROOT / "README.md").read_text().split("<!-- standards:begin -->\n```\n", 1)[1]
    base = base.split("```\n<!-- standards:end -->", 1)[0]
    f.write_text(base.replace("version = builtin-1", "version = qa-2026-11"))
    w = start_inspection(h, AS_INSPECTION_STANDARDS_FILE=str(f))
    r = h.reader(INSPECTION_TOPIC)
    a, b, c = case_opened(h), case_opened(h), case_opened(h)
    open_cases(h, [a, b, c])
    rcv(h, a.case_id)
    assert wait_kind(h, r, "inspection_task_opened")[0][1].standard_version == "qa-2026-11"
    # a refused file: logged, counted, the standards in force stay
    f.write_text(base.replace("version = builtin-1", "version = broken").replace("severe_from = 4",
                                                                               "severe_from = 9"))
    w.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: w.metric("as_inspection_standards_reloads_total", result="refused") == 1,
               10 * SLOW, what="refused reload")
    assert any("line 7: severe_from must be an integer from 1 to 5" in (l.get("detail") or "")
               for l in w.logged("standards refused, the previous ones stay in force"))
    rcv(h, b.case_id)
    wait_kind(h, r, "inspection_task_opened", 2)
    assert {p.case_id: p.standard_version for _, p, _, _ in insp_events(h, r, "inspection_task_opened")}[
        b.case_id] == "qa-2026-11"
    # a good one replaces them
    f.write_text(base.replace("version = builtin-1", "version = qa-2026-12"))
    w.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: w.metric("as_inspection_standards_reloads_total", result="ok") == 1,
               10 * SLOW, what="reload")
    rcv(h, c.case_id)
    wait_kind(h, r, "inspection_task_opened", 3)
    assert {p.case_id: p.standard_version for _, p, _, _ in insp_events(h, r, "inspection_task_opened")}[
        c.case_id] == "qa-2026-12"
    verdict(h, c.case_id)
    assert completed(h, r, c.case_id).standard_version == "qa-2026-12"


def test_a_bad_standards_file_stops_the_worker_at_start(h):
    f = h.logdir / "bad.txt"
    f.write_text("version = x\nbogus = 1\n")
    w = start_inspection(h, ready=False, AS_INSPECTION_STANDARDS_FILE=str(f))
    assert w.wait_exit(20) == 2
    assert 'bad.txt: line 2: key \\"bogus\\" outside a section' in w.text(), w.tail()
