"""Supplier defect clusters, through the topics: confirmed defects of one
supplier, SKU, lot and defect code counted by distinct buyers (4 buyers no
alert, the same buyer twice counts once, the 5th raises exactly one alert
naming the cases and the demand), every case of the cluster compensated
exactly once (before the alert and after it), unjudged evidenced claims
reaching the watch level, the alert closed by a rectification or by a
window with no new defect, and two instances on 300 verdicts delivered
twice: one alert, one grant per case."""
import uuid

from conftest import DLQ_TOPIC, SLOW, settle, start_inspection, wait_until
from inspection_helpers import (alert_id, case_opened, compensation_id, dead_reasons, insp_events,
                                open_cases, receive, rectified, verdict, verdict_env, wait_dead,
                                wait_kind)
from review_helpers import INSPECTION_TOPIC, of_kind

LOT = ("sup-fade", "SKU-DRESS", "LOT-2026-11")


def tee(buyer, paid=12900, lot=LOT):
    return case_opened(h_global[0], buyer_id=buyer, lines=[
        ("l1", lot[1], "apparel", lot[0], lot[2], 2, 1, paid),
        ("l2", "SKU-SOCKS", "apparel", "sup-other", "", 1, 1, 900)])


h_global = [None]


def faded(h, reader, cases):
    """Receives one unit of each case's dress and judges it not colourfast."""
    for c in cases:
        receive(h, c.case_id)
    wait_kind(h, reader, "inspection_task_opened", len(cases),
              pred=lambda p: p.case_id in {c.case_id for c in cases})
    for c in cases:
        verdict(h, c.case_id, failed=("colourfast",))


def grants(h, reader):
    out = {}
    for _, p, _, _ in of_kind(insp_events(h, reader), "compensation_granted"):
        out.setdefault(p.case_id, []).append(p)
    return out


def test_four_buyers_no_alert_fifth_raises_one_sixth_compensated(h):
    h_global[0] = h
    w = start_inspection(h)
    r = h.reader(INSPECTION_TOPIC)
    tag = uuid.uuid4().hex[:6]
    first = [tee(f"b-{tag}-{i}") for i in range(4)]
    again = tee(f"b-{tag}-0")          # buyer 0's second case: counts once
    other_lot = tee(f"b-{tag}-x", lot=(LOT[0], LOT[1], "LOT-OTHER"))
    open_cases(h, first + [again, other_lot])
    faded(h, r, first + [again, other_lot])
    wait_kind(h, r, "inspection_completed", 6)
    settle(h)
    assert not of_kind(insp_events(h, r), "supplier_quality_alert")
    assert not grants(h, r)
    fifth = tee(f"b-{tag}-4")
    open_cases(h, [fifth])
    faded(h, r, [fifth])
    a = wait_kind(h, r, "supplier_quality_alert")[0][1]
    start = h.scalar("SELECT min(confirmed_at_us) FROM inspection.defects WHERE lot_id = %s", (LOT[2],))
    assert a.alert_id == alert_id(*LOT, "colourfast", start)
    assert (a.supplier_id, a.sku, a.lot_id, a.defect_code, a.category) == (*LOT, "colourfast", "apparel")
    assert a.distinct_buyers == 5 and a.confirmed_cases == 6
    cluster = {c.case_id for c in first + [again, fifth]}
    assert set(a.case_ids) == cluster
    assert "rectification" in a.demand and a.window_start_us == start
    wait_until(lambda: len(grants(h, r)) == 6, 20 * SLOW, what="6 grants")
    # a 6th buyer after the alert is compensated too
    sixth = tee(f"b-{tag}-5", paid=13100)
    open_cases(h, [sixth])
    faded(h, r, [sixth])
    wait_until(lambda: len(grants(h, r)) == 7, 20 * SLOW, what="7 grants")
    settle(h)
    g = grants(h, r)
    assert set(g) == cluster | {sixth.case_id}
    for case_id, ps in g.items():
        assert len(ps) == 1, (case_id, ps)
        p = ps[0]
        assert p.compensation_id == compensation_id(a.alert_id, case_id) and p.alert_id == a.alert_id
        assert [(l.line_id, l.sku, l.quantity) for l in p.lines] == [("l1", LOT[1], 2)]  # all units bought
        assert p.amount.amount_minor == (13100 if case_id == sixth.case_id else 12900)
        assert (p.amount.currency, p.coupon.amount_minor, p.coupon.currency) == ("CNY", 2000, "CNY")
        assert p.order_id == f"o-{case_id}" and p.kind == 1
    assert len(of_kind(insp_events(h, r), "supplier_quality_alert")) == 1
    assert w.metric("as_inspection_alerts_total", event="raised") == 1
    assert w.metric("as_inspection_compensations_total") == 7


def test_unjudged_evidenced_claims_reach_the_watch_level(h):
    h_global[0] = h
    w = start_inspection(h)
    r = h.reader(INSPECTION_TOPIC)
    tag = uuid.uuid4().hex[:6]
    judged = [tee(f"b-{tag}-{i}") for i in range(3)]
    waiting = [tee(f"b-{tag}-w{i}") for i in range(2)]       # photos, no verdict yet
    no_photo = tee(f"b-{tag}-n")
    no_photo.case_opened.ClearField("evidence")
    open_cases(h, judged + waiting[:1] + [no_photo])
    faded(h, r, judged[:2])
    wait_kind(h, r, "inspection_completed", 2)
    settle(h)
    # 2 confirmed + 2 unjudged with photos (judged[2], waiting[0]) < 5
    assert w.metric("as_inspection_clusters_watched_total") == 0
    open_cases(h, waiting[1:])
    faded(h, r, judged[2:])  # 3 confirmed + 2 unjudged = 5
    wait_until(lambda: w.metric("as_inspection_clusters_watched_total") == 1, 20 * SLOW,
               what="watch level")
    settle(h)
    assert not of_kind(insp_events(h, r), "supplier_quality_alert")


def raise_alert(h, r, tag, n=5):
    cases = [tee(f"b-{tag}-{i}") for i in range(n)]
    open_cases(h, cases)
    faded(h, r, cases)
    return wait_kind(h, r, "supplier_quality_alert")[0][1], cases


def test_alert_closes_on_rectification_then_a_new_cluster_starts_afresh(h):
    h_global[0] = h
    start_inspection(h)
    r, dlq = h.reader(INSPECTION_TOPIC), h.reader(DLQ_TOPIC)
    a, _ = raise_alert(h, r, uuid.uuid4().hex[:6])
    rectified(h, a.alert_id)
    c = wait_kind(h, r, "supplier_quality_alert_closed")[0][1]
    assert (c.alert_id, c.reason, c.agent_id) == (a.alert_id, "rectified", "qa-lead-1")
    rectified(h, a.alert_id)                 # closed already
    rectified(h, str(uuid.uuid4()))          # no such alert
    wait_dead(h, dlq, 2)
    assert sorted(d for _, d in dead_reasons(h, dlq)) == [
        "alert_closed: the alert was closed already", "unknown_alert: no such alert"]
    # after the close, the old defects no longer count: one new case, no alert, no grant
    late = tee("b-late")
    open_cases(h, [late])
    faded(h, r, [late])
    wait_kind(h, r, "inspection_completed", 6)
    settle(h)
    assert len(of_kind(insp_events(h, r), "supplier_quality_alert")) == 1
    assert late.case_id not in grants(h, r)


def test_alert_closes_when_the_window_passes_with_no_new_defect(h):
    h_global[0] = h
    w = start_inspection(h)
    r = h.reader(INSPECTION_TOPIC)
    a, _ = raise_alert(h, r, uuid.uuid4().hex[:6])
    assert h.scalar("SELECT due_at > now() + interval '29 days' FROM inspection.deadlines"
                    " WHERE case_id = %s AND kind = 'cluster:window'", (a.alert_id,))
    h.sql("UPDATE inspection.deadlines SET due_at = now() - interval '1 second'"
          " WHERE case_id = %s AND kind = 'cluster:window'", (a.alert_id,))
    c = wait_kind(h, r, "supplier_quality_alert_closed")[0][1]
    assert (c.alert_id, c.reason, c.agent_id) == (a.alert_id, "window_passed", "")
    assert w.metric("as_inspection_alerts_total", event="window_passed") == 1


def test_two_instances_300_verdicts_delivered_twice_one_alert_one_grant_per_case(h):
    h_global[0] = h
    w1 = start_inspection(h, name="insp-a")
    w2 = start_inspection(h, name="insp-b")
    w1.wait_assigned()
    w2.wait_assigned()
    r = h.reader(INSPECTION_TOPIC)
    tag = uuid.uuid4().hex[:6]
    cases = [tee(f"b-{tag}-{i}") for i in range(300)]
    open_cases(h, cases)
    for c in cases:
        receive(h, c.case_id)
    wait_until(lambda: h.scalar("SELECT count(*) FROM inspection.tasks") == 300, 60 * SLOW,
               what="300 tasks")
    envs = [verdict_env(h, c.case_id, failed=("colourfast",)) for c in cases]
    recs = [(e.case_id, e.SerializeToString(), None) for e in envs]
    h.produce_many(recs + recs, topic=INSPECTION_TOPIC)
    wait_until(lambda: h.scalar("SELECT count(*) FROM inspection.grants") == 300, 90 * SLOW,
               what="300 grants")
    settle(h, timeout=60)
    evs = insp_events(h, r)
    alerts = {p.alert_id for _, p, _, _ in of_kind(evs, "supplier_quality_alert")}
    assert len(alerts) == 1
    g = {}
    for _, p, _, _ in of_kind(evs, "compensation_granted"):
        g.setdefault(p.case_id, set()).add(p.compensation_id)
    assert set(g) == {c.case_id for c in cases}
    assert all(len(ids) == 1 for ids in g.values())
    done = {}
    for _, p, _, _ in of_kind(evs, "inspection_completed"):
        done[p.case_id] = done.get(p.case_id, 0) + 1
    # one InspectionCompleted event per case (the wire may repeat an event id, never a new one)
    assert len({e[3].event_id for e in of_kind(evs, "inspection_completed")}) == 300
