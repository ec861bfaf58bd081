"""The notification worker's batch side (issue 14 items 1, 2, 3, 5): each
buyer-visible event to its template in the buyer's language, byte-exact,
with amounts and dates in the buyer's zone; fallbacks; one delivery per
event and channel whatever is redelivered; quiet hours; the frequency cap;
case order; the packaging SMS, the ship-by reminder and the survey fired by
the real scanner. Real protobuf bytes on the real topics, both brokers."""
import time
import uuid

from conftest import SLOW, wait_until
from notification_helpers import (CASES_TOPIC, INSPECTION_TOPIC, LOGISTICS_TOPIC,
                                  NOTIFICATIONS_TOPIC, REFUNDS_TOPIC, REVIEW_TOPIC, contact,
                                  deliveries, delivery_id, money, notification_id, now_us, npb,
                                  open_case, send, start_notification, wait_contact,
                                  wait_deliveries)
from review_helpers import events, of_kind

SHIP_BY = 1_796_896_800_000_000  # 2026-12-10 10:00 UTC (05:00 in New York, 18:00 in Shanghai)

# These tests read the deliveries as the batch side writes them, so the
# worker runs with AS_NOTIFICATION_SEND_CONCURRENCY=0 (it tells, no sender
# takes the rows); the sender has its own tests (test_notification_send.py).


def buyer(h, locale, tz, **kw):
    b = f"b-{uuid.uuid4().hex[:8]}"
    contact(h, b, locale=locale, tz=tz, **kw)
    wait_contact(h, b)
    return b


def by_template(rows, channel):
    return {r["template_id"]: r for r in rows if r["channel"] == channel}


def tell_all(h, case_id, buyer_id):
    """Every buyer-visible event of one case, in a case's order."""
    m = npb(h).m
    c = m.common
    t = now_us()
    send(h, CASES_TOPIC, "buyer_acknowledged",
         m.cases.BuyerAcknowledged(case_id=case_id, buyer_id=buyer_id, submitted_at_us=t), case_id)
    send(h, REVIEW_TOPIC, "review_decided",
         m.review.ReviewDecided(case_id=case_id, verdict=m.review.VERDICT_APPROVED,
                                approved_amount=money(h, 12900), decided_at_us=t), case_id)
    send(h, REVIEW_TOPIC, "return_instructions",
         m.review.ReturnInstructions(case_id=case_id, return_address="Dock 5 <B> & Co, Shanghai",
                                     packaging="original box, sealed",
                                     shipping_payer=c.PAYER_PARTY_PLATFORM, ship_by_us=SHIP_BY),
         case_id)
    send(h, REVIEW_TOPIC, "goodwill_offered",
         m.review.GoodwillOffered(case_id=case_id, offer_id="of-1", kind=c.OUTCOME_PARTIAL_REFUND,
                                  amount=money(h, 1290, "USD"), expires_at_us=SHIP_BY), case_id)
    send(h, REFUNDS_TOPIC, "refund_issued",
         m.refunds.RefundIssued(refund_id=str(uuid.uuid4()), case_id=case_id, buyer_id=buyer_id,
                                total=money(h, 1290, "JPY"), issued_at_us=t), case_id)
    send(h, REFUNDS_TOPIC, "exchange_requested",
         m.refunds.ExchangeRequested(exchange_id="ex-1", case_id=case_id), case_id)
    send(h, REFUNDS_TOPIC, "coupon_issued",
         m.refunds.CouponIssued(coupon_id="cp-1", case_id=case_id, buyer_id=buyer_id,
                                value=money(h, 1250, "KWD"), expires_at_us=SHIP_BY), case_id)
    send(h, INSPECTION_TOPIC, "inspection_completed",
         m.inspection.InspectionCompleted(case_id=case_id, defect_confirmed=True), case_id)
    send(h, INSPECTION_TOPIC, "compensation_granted",
         m.inspection.CompensationGranted(compensation_id="cg-1", case_id=case_id,
                                          buyer_id=buyer_id, amount=money(h, 5900)), case_id)
    send(h, LOGISTICS_TOPIC, "delivery_outcome",
         m.logistics.DeliveryOutcome(case_id=case_id,
                                     finding=m.logistics.DELIVERY_FINDING_LOST), case_id)
    send(h, LOGISTICS_TOPIC, "tracking_notice",
         m.logistics.TrackingNotice(case_id=case_id, buyer_id=buyer_id, carrier="SF",
                                    tracking_number="SF123",
                                    kind=m.logistics.TRACKING_NOTICE_KIND_STALLED), case_id)
    send(h, CASES_TOPIC, "case_state_changed",
         m.cases.CaseStateChanged(case_id=case_id, from_state=c.CASE_STATE_REFUNDED,
                                  to_state=c.CASE_STATE_CLOSED, version=9), case_id)


TOLD = ["case.acknowledged", "review.approved", "return.instructions", "return.packaging",
        "goodwill.offered", "refund.issued", "exchange.requested", "coupon.issued",
        "inspection.completed", "compensation.granted", "delivery.outcome", "tracking.notice",
        "case.closed"]

EXPECT_SMS = {
    "en": {
        "case.acknowledged": "We received your after-sales request AS-EN-1 and are handling it.",
        "review.approved": "Your request AS-EN-1 is approved (¥129.00).",
        "return.instructions":
            "Return for AS-EN-1: send to Dock 5 <B> & Co, Shanghai by 2026-12-10 05:00.",
        "return.packaging": "Return AS-EN-1: original box, sealed. Send to Dock 5 <B> & Co, "
                            "Shanghai by 2026-12-10 05:00. We pay the return shipping.",
        "goodwill.offered": "For request AS-EN-1 we offer $12.90; reply by 2026-12-10 05:00.",
        "refund.issued": "A refund of ¥1290 for AS-EN-1 is on its way to your original payment "
                         "method.",
        "coupon.issued": "A coupon of KWD 1.250 for AS-EN-1 is in your account, valid until "
                         "2026-12-10 05:00.",
        "inspection.completed": "The returned item of AS-EN-1 was inspected: the defect is "
                                "confirmed.",
        "compensation.granted": "For AS-EN-1 you are compensated with ¥59.00.",
        "delivery.outcome": "About the parcel of AS-EN-1: the carrier lost it.",
        "tracking.notice": "Parcel SF123 (SF): no scan for a while, we asked the carrier.",
        "case.closed": "Your request AS-EN-1 is closed. Thank you.",
    },
    "zh-CN": {
        "case.acknowledged": "您的售后申请 AS-ZH-1 已收到，我们正在处理。",
        "review.approved": "您的售后申请 AS-ZH-1 已通过（¥129.00）。",
        "return.instructions": "售后 AS-ZH-1 退货：请于 2026年12月10日 18:00 前寄至 Dock 5 <B> & Co, "
                               "Shanghai。",
        # review's packaging text is English only: the Chinese SMS says where to read it
        "return.packaging": "退货 AS-ZH-1：请按售后页面上的包装要求打包。请于 2026年12月10日 18:00 前寄至 "
                            "Dock 5 <B> & Co, Shanghai。退货运费由平台承担。",
        "goodwill.offered": "针对售后申请 AS-ZH-1，我们为您提供 $12.90，请于 2026年12月10日 18:00 前回复。",
        "refund.issued": "售后 AS-ZH-1 的退款 ¥1290 已原路退回。",
        "coupon.issued": "售后 AS-ZH-1 的 KWD 1.250 优惠券已到账，有效期至 2026年12月10日 18:00。",
        "inspection.completed": "售后 AS-ZH-1 的退回商品已质检：确认存在质量问题。",
        "compensation.granted": "售后 AS-ZH-1 补偿 ¥59.00 已发放。",
        "delivery.outcome": "关于售后 AS-ZH-1 的包裹：包裹已丢失。",
        "tracking.notice": "包裹 SF123（SF）：长时间未更新，我们已联系承运商。",
        "case.closed": "您的售后申请 AS-ZH-1 已完结，感谢您的耐心。",
    },
}

EXPECT_EMAIL = {
    "en": "Hello,\n\nPlease return the item of request AS-EN-1 by 2026-12-10 05:00.\n"
          "Address: Dock 5 &lt;B&gt; &amp; Co, Shanghai\nPackaging: original box, sealed\n"
          "Shipping: We pay the return shipping",
    "zh-CN": "您好：\n\n请于 2026年12月10日 18:00 前寄回售后申请 AS-ZH-1 的商品。\n"
             "地址：Dock 5 &lt;B&gt; &amp; Co, Shanghai\n包装要求：请按售后页面上的包装要求打包\n"
             "运费：退货运费由平台承担",
}


def test_each_event_told_in_both_languages_byte_exact(h):
    w = start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0")
    notices = h.reader(NOTIFICATIONS_TOPIC)
    for locale, tz, tag in (("en", "America/New_York", "EN"), ("zh-CN", "Asia/Shanghai", "ZH")):
        b = buyer(h, locale, tz, channels=("sms", "email"))
        case_id, _ = open_case(h, buyer_id=b, number=f"AS-{tag}-1")
        tell_all(h, case_id, b)
        rows = wait_deliveries(h, "case_id = %s", (case_id,), 3 * len(TOLD) - 2)
        sms, email, app = (by_template(rows, c) for c in ("sms", "email", "in_app"))
        assert sorted(sms) == sorted(TOLD), sorted(sms)
        assert sorted(app) == sorted(set(TOLD) - {"return.packaging"})
        for tmpl, want in EXPECT_SMS[locale].items():
            assert sms[tmpl]["body"] == want, (tmpl, sms[tmpl]["body"])
            assert sms[tmpl]["locale"] == locale and sms[tmpl]["template_version"] == "builtin-3"
        assert email["return.instructions"]["body"] == EXPECT_EMAIL[locale]
        for r in rows:
            assert "{" not in r["body"] and "{" not in r["subject"], r
        # the buyer's order: sms first and pending, e-mail standby, in-app sent at once
        assert {(r["channel"], r["rank"], r["status"]) for r in rows
                if r["template_id"] == "review.approved"} == {
            ("sms", 0, "pending"), ("email", 1, "standby"), ("in_app", 2, "sent")}
        ack = sms["case.acknowledged"]
        assert ack["submitted_at_us"] > 0  # the first response's clock
        assert ack["delivery_id"] == delivery_id(ack["notification_id"], "sms")
        assert sms["refund.issued"]["urgent"] and not sms["case.closed"]["urgent"]
        # case order: every notification its own (case_seq, case_arrival), the event's time
        # then the order read, increasing in the order the events happened (one event's two
        # notifications share its time)
        keys = [(sms[t]["case_seq"], sms[t]["case_arrival"]) for t in TOLD]
        assert len(set(keys)) == len(keys), keys
        assert sms["return.instructions"]["case_seq"] == sms["return.packaging"]["case_seq"]
        assert keys == sorted(keys), list(zip(TOLD, keys))
    evs = wait_until(lambda: (lambda e: e if len(of_kind(e, "in_app_notice")) >= 2 * (len(TOLD) - 1)
                              else None)(events(h, notices)), 20 * SLOW, what="in-app notices")
    zh = [e[1] for e in of_kind(evs, "in_app_notice") if e[1].template_id == "case.closed"
          and e[1].locale == "zh-CN"]
    assert [(n.title, n.body) for n in zh] == [("售后申请 AS-ZH-1 已完结", "售后申请 AS-ZH-1 已完结。")]
    sent = of_kind(evs, "notification_sent")
    assert len(sent) == 2 * (len(TOLD) - 1)
    assert all(s[1].idempotency_key == delivery_id(s[1].notification_id, "in_app") for s in sent)
    assert w.metric("as_notification_in_app_total") == 2 * (len(TOLD) - 1)


def test_reasons_in_words_approvals_without_amount_and_packaging_in_chinese(h):
    # issue 14 item 4: a rejection says why in the buyer's words (an unknown
    # code as it is), an approval that pays nothing names no amount, and a
    # zh-CN packaging text the event carries goes into the Chinese SMS.
    start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0")
    m = npb(h).m
    want = {
        "en": ["Your request AS-EN-2 was declined (the time to claim for this problem has "
               "passed).",
               "Your request AS-EN-2 was declined (some.new_rule).",
               "Your request AS-EN-2 is approved.",
               "Your request AS-EN-2 is approved.",
               "Your request AS-EN-2 is approved (¥0.01).",
               "Return AS-EN-2: bubble wrap. Send to Dock 5 by 2026-12-10 05:00. "
               "We pay the return shipping."],
        "zh-CN": ["您的售后申请 AS-ZH-2 未通过（已超过该问题的申请期限）。",
                  "您的售后申请 AS-ZH-2 未通过（some.new_rule）。",
                  "您的售后申请 AS-ZH-2 已通过。",
                  "您的售后申请 AS-ZH-2 已通过。",
                  "您的售后申请 AS-ZH-2 已通过（¥0.01）。",
                  "退货 AS-ZH-2：气泡膜包裹。请于 2026年12月10日 18:00 前寄至 Dock 5。退货运费由平台承担。"],
    }
    for locale, tz, tag in (("en", "America/New_York", "EN"), ("zh-CN", "Asia/Shanghai", "ZH")):
        b = buyer(h, locale, tz, channels=("sms",))
        case_id, _ = open_case(h, buyer_id=b, number=f"AS-{tag}-2")
        rejected, approved = m.review.VERDICT_REJECTED, m.review.VERDICT_APPROVED
        sent = [send(h, REVIEW_TOPIC, "return_instructions" if i == 5 else "review_decided", p,
                     case_id) for i, p in enumerate((
            m.review.ReviewDecided(case_id=case_id, verdict=rejected,
                                   reason_code="window.claim_expired"),
            m.review.ReviewDecided(case_id=case_id, verdict=rejected, reason_code="some.new_rule"),
            m.review.ReviewDecided(case_id=case_id, verdict=approved, reason_code="approve.exchange"),
            m.review.ReviewDecided(case_id=case_id, verdict=approved, approved_amount=money(h, 0),
                                   reason_code="mediation.buyer_upheld"),
            m.review.ReviewDecided(case_id=case_id, verdict=approved, approved_amount=money(h, 1),
                                   reason_code="approve.refund_only_cheap"),
            m.review.ReturnInstructions(case_id=case_id, return_address="Dock 5",
                                        packaging="bubble wrap", packaging_zh="气泡膜包裹",
                                        shipping_payer=m.common.PAYER_PARTY_PLATFORM,
                                        ship_by_us=SHIP_BY)))]
        rows = wait_deliveries(h, "case_id = %s AND channel = 'sms'", (case_id,), 7)
        body = {(str(r["source_event_id"]), r["template_id"]): r["body"] for r in rows}
        got = [body[(e.event_id, tmpl)] for e, tmpl in zip(sent, (
            "review.rejected", "review.rejected", "review.approved.no_amount",
            "review.approved.no_amount", "review.approved", "return.packaging"))]
        assert got == want[locale], got
        assert "bubble" not in "".join(got) or locale == "en"


def ack(h, case_id, buyer_id, event_id=None):
    m = npb(h).m
    return send(h, CASES_TOPIC, "buyer_acknowledged",
                m.cases.BuyerAcknowledged(case_id=case_id, buyer_id=buyer_id,
                                          submitted_at_us=now_us()), case_id, event_id=event_id)


def closed(h, case_id):
    m = npb(h).m
    c = m.common
    return send(h, CASES_TOPIC, "case_state_changed",
                m.cases.CaseStateChanged(case_id=case_id, from_state=c.CASE_STATE_REFUNDED,
                                         to_state=c.CASE_STATE_CLOSED, version=5), case_id)


def test_missing_locale_falls_back_and_no_contact_gets_in_app_only(h):
    start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0", AS_NOTIFICATION_DEFAULT_LOCALE="en")
    fr = buyer(h, "fr", "Europe/Paris", channels=("email",))
    case_fr, _ = open_case(h, buyer_id=fr, number="AS-FR-1")
    # zh-TW finds zh-CN by its language
    tw = buyer(h, "zh-TW", "Asia/Taipei", channels=("sms",))
    case_tw, _ = open_case(h, buyer_id=tw, number="AS-TW-1")
    case_none, nobody = open_case(h, number="AS-NO-1", locale="zh-CN")
    for c, b in ((case_fr, fr), (case_tw, tw), (case_none, nobody)):
        ack(h, c, b)
    (e,) = [r for r in wait_deliveries(h, "case_id = %s", (case_fr,), 2) if r["channel"] == "email"]
    assert (e["locale"], e["subject"]) == ("en", "We received your request AS-FR-1")
    (s,) = [r for r in wait_deliveries(h, "case_id = %s", (case_tw,), 2) if r["channel"] == "sms"]
    assert (s["locale"], s["body"]) == ("zh-CN", "您的售后申请 AS-TW-1 已收到，我们正在处理。")
    # no contact yet: the case's own locale, in-app only (nothing waits for a contact)
    rows = wait_deliveries(h, "case_id = %s", (case_none,), 1)
    assert [(r["channel"], r["status"], r["locale"]) for r in rows] == [("in_app", "sent", "zh-CN")]


def test_one_delivery_per_event_and_channel_whatever_is_redelivered(h):
    w = start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0")
    notices = h.reader(NOTIFICATIONS_TOPIC)
    b = buyer(h, "en", "UTC", channels=("sms", "email", "push"), push="tok-1")
    case_id, _ = open_case(h, buyer_id=b)
    env = ack(h, case_id, b)
    raw = env.SerializeToString()
    h.produce_many([(case_id, raw, None)] * 4, topic=CASES_TOPIC)  # the same event 5 times
    closed(h, case_id)  # a later event, to know the repeats were handled
    wait_deliveries(h, "case_id = %s AND template_id = 'case.closed'", (case_id,), 4)
    rows = deliveries(h, "case_id = %s AND template_id = 'case.acknowledged'", (case_id,))
    nid = notification_id(env.event_id, "case.acknowledged")
    assert sorted((r["channel"], r["rank"], r["status"], r["notification_id"]) for r in rows) == [
        ("email", 1, "standby", nid), ("in_app", 3, "sent", nid), ("push", 2, "standby", nid),
        ("sms", 0, "pending", nid)]
    def acks():
        return [e for e in of_kind(events(h, notices), "in_app_notice")
                if e[1].template_id in ("case.acknowledged", "case.closed")]
    wait_until(lambda: len(acks()) >= 2, 20 * SLOW, what="in-app notices published")
    assert sorted(e[1].template_id for e in acks()) == ["case.acknowledged", "case.closed"]
    # the same event told again by its source (another event id) is a new event; the same
    # notification asked twice by NotificationRequested is one
    n = npb(h)
    req = n.notification.NotificationRequested(notification_id=str(uuid.uuid4()), case_id=case_id,
                                               template_id="case.closed", locale="en")
    req.channels.append(n.notification.CHANNEL_SMS)
    for _ in range(2):
        send(h, NOTIFICATIONS_TOPIC, "notification_requested", req, case_id)
    rows = wait_deliveries(h, "notification_id = %s", (req.notification_id,), 1)
    time.sleep(1 * SLOW)
    rows = deliveries(h, "notification_id = %s", (req.notification_id,))
    assert [(r["channel"], r["template_id"]) for r in rows] == [("sms", "case.closed")]
    assert w.metric("as_notification_duplicates_total") >= 1


def test_quiet_hours_in_the_buyers_zone_hold_what_is_not_urgent(h):
    start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0")
    # quiet from an hour ago to an hour from now, in Tokyo
    tokyo = h.scalar("SELECT (extract(hour FROM now() AT TIME ZONE 'Asia/Tokyo') * 60"
                     " + extract(minute FROM now() AT TIME ZONE 'Asia/Tokyo'))::int")
    quiet = ((tokyo - 60) % 1440, (tokyo + 60) % 1440)
    b = buyer(h, "en", "Asia/Tokyo", channels=("sms",), quiet=quiet)
    case_id, _ = open_case(h, buyer_id=b)
    m = npb(h).m
    ack(h, case_id, b)
    send(h, REFUNDS_TOPIC, "refund_issued",
         m.refunds.RefundIssued(refund_id=str(uuid.uuid4()), case_id=case_id, buyer_id=b,
                                total=money(h, 100)), case_id)
    rows = wait_deliveries(h, "case_id = %s", (case_id,), 4)
    due = {(r["template_id"], r["channel"]): r["due_in_s"] for r in rows}
    # not urgent: at the end of quiet hours (an hour from now, to the minute)
    assert 3540 - 90 <= due[("case.acknowledged", "sms")] <= 3600 + 5, due
    assert due[("refund.issued", "sms")] <= 5, due  # urgent: now
    assert due[("case.acknowledged", "in_app")] <= 5, due  # the case page: now
    # a buyer outside quiet hours: now
    b2 = buyer(h, "en", "Asia/Tokyo", channels=("sms",), quiet=((tokyo + 60) % 1440,
                                                               (tokyo + 120) % 1440))
    c2, _ = open_case(h, buyer_id=b2)
    ack(h, c2, b2)
    rows = wait_deliveries(h, "case_id = %s AND channel = 'sms'", (c2,), 1)
    assert rows[0]["due_in_s"] <= 5


def test_frequency_cap_delays_what_is_over_it(h):
    w = start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0", AS_NOTIFICATION_CAP_PER_HOUR="2")
    b = buyer(h, "en", "UTC", channels=("sms",))
    cases = [open_case(h, buyer_id=b)[0] for _ in range(4)]
    for c in cases:
        ack(h, c, b)
    rows = wait_deliveries(h, "buyer_id = %s AND channel = 'sms'", (b,), 4)
    due = sorted(r["due_in_s"] for r in rows)
    assert due[0] <= 5 and due[1] <= 5, due
    assert all(3600 - 60 <= d <= 3600 + 5 for d in due[2:]), due
    assert w.metric("as_notification_deferred_total", reason="cap") == 2
    # urgent and in-app ones are not capped
    assert all(r["due_in_s"] <= 5 for r in deliveries(h, "buyer_id = %s AND channel = 'in_app'",
                                                      (b,)))


def fire_now(h, case_id, kind):
    h.sql("UPDATE notification.deadlines SET due_at = now() - interval '1 second'"
          " WHERE case_id = %s AND kind = %s", (case_id, kind))


def test_survey_after_close_fired_by_the_scanner_and_answer_recorded(h):
    w = start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0", AS_NOTIFICATION_SURVEY_DELAY_H="6")
    b = buyer(h, "zh-CN", "Asia/Shanghai", channels=("sms",))
    case_id, _ = open_case(h, buyer_id=b, number="AS-SV-1")
    closed(h, case_id)
    wait_deliveries(h, "case_id = %s AND template_id = 'case.closed'", (case_id,), 2)
    left = h.scalar("SELECT extract(epoch FROM due_at - now()) FROM notification.deadlines"
                    " WHERE case_id = %s AND kind = 'survey'", (case_id,))
    assert 6 * 3600 - 60 <= left <= 6 * 3600, left
    assert deliveries(h, "case_id = %s AND template_id = 'case.survey'", (case_id,)) == []
    fire_now(h, case_id, "survey")
    rows = wait_deliveries(h, "case_id = %s AND template_id = 'case.survey'", (case_id,), 2)
    sms = [r for r in rows if r["channel"] == "sms"][0]
    assert sms["body"] == "售后 AS-SV-1 处理得如何？请在 App 中为我们打 1-5 分。"
    assert sms["source_event_id"] == f"survey:{case_id}"
    n = npb(h)
    send(h, NOTIFICATIONS_TOPIC, "survey_answered",
         n.notification.SurveyAnswered(case_id=case_id, buyer_id=b, score=4, comment="ok",
                                       notification_id=sms["notification_id"],
                                       answered_at_us=now_us()), case_id)
    wait_until(lambda: h.sql("SELECT score, comment FROM notification.surveys WHERE case_id = %s",
                             (case_id,)) == [(4, "ok")], 20 * SLOW, what="survey answer")
    assert w.metric("as_notification_survey_answers_total", score="4") == 1


def instructions(h, case_id, ship_by):
    m = npb(h).m
    return send(h, REVIEW_TOPIC, "return_instructions",
                m.review.ReturnInstructions(case_id=case_id, return_address="WH-SH 12",
                                            packaging="box", ship_by_us=ship_by,
                                            shipping_payer=m.common.PAYER_PARTY_BUYER), case_id)


def test_packaging_sms_and_ship_by_reminder_unless_shipped(h):
    start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0", AS_NOTIFICATION_REMINDER_HOURS="24")
    b = buyer(h, "en", "UTC", channels=("email", "sms"))
    ship_by = now_us() + 72 * 3600 * 1_000_000
    waits, shipped = open_case(h, buyer_id=b)[0], open_case(h, buyer_id=b)[0]
    for c in (waits, shipped):
        instructions(h, c, ship_by)
    rows = wait_deliveries(h, "case_id = %s AND template_id = 'return.packaging'", (waits,), 1)
    assert [r["channel"] for r in rows] == ["sms"]  # by SMS only, even if e-mail comes first
    assert rows[0]["body"].startswith("Return ") and "box. Send to WH-SH 12 by " in rows[0]["body"]
    due = h.scalar("SELECT (extract(epoch FROM due_at) * 1e6)::bigint FROM notification.deadlines"
                   " WHERE case_id = %s AND kind = 'reminder'", (waits,))
    assert abs(due - (ship_by - 24 * 3600 * 1_000_000)) < 1_000_000
    m = npb(h).m
    send(h, LOGISTICS_TOPIC, "return_shipped",
         m.logistics.ReturnShipped(case_id=shipped, carrier="SF", tracking_number="SF9"), shipped)
    wait_until(lambda: h.scalar("SELECT cancelled_at IS NOT NULL FROM notification.deadlines"
                                " WHERE case_id = %s AND kind = 'reminder'", (shipped,)),
               20 * SLOW, what="reminder cancelled")
    for c in (waits, shipped):
        fire_now(h, c, "reminder")
    rows = wait_deliveries(h, "case_id = %s AND template_id = 'return.reminder'", (waits,), 3)
    assert sorted(r["channel"] for r in rows) == ["email", "in_app", "sms"]
    assert "WH-SH 12" in [r for r in rows if r["channel"] == "sms"][0]["body"]
    time.sleep(1 * SLOW)
    assert deliveries(h, "case_id = %s AND template_id = 'return.reminder'", (shipped,)) == []


def test_an_unknown_default_zone_is_said_once_and_utc_used(h):
    w = start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0", AS_NOTIFICATION_DEFAULT_TIME_ZONE="Mars/Olympus_Mons")
    case_id, b = open_case(h, number="AS-TZ-1", locale="en")
    m = npb(h).m
    for _ in range(2):
        send(h, REVIEW_TOPIC, "goodwill_offered",
             m.review.GoodwillOffered(case_id=case_id, offer_id="of-1", amount=money(h, 100),
                                      expires_at_us=SHIP_BY), case_id)
    rows = wait_deliveries(h, "case_id = %s", (case_id,), 2)
    assert {r["body"] for r in rows} == {"An offer of ¥1.00 for request AS-TZ-1."}
    assert len(w.logged("AS_NOTIFICATION_DEFAULT_TIME_ZONE is not a zone PostgreSQL knows;"
                        " UTC used")) == 1


def test_a_lost_parcel_no_one_complained_about_is_told_by_its_parcel(h):
    """Logistics' answer to a stalled parcel nobody had complained about
    (DeliveryOutcome with no case, naming the order and its buyer) reaches
    the buyer, in the buyer's language, with what the buyer can do now; one
    naming neither a case nor a buyer is dead-lettered with the reason."""
    from conftest import DLQ_TOPIC, dead_letters
    start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0")
    dlq = h.reader(DLQ_TOPIC)
    m = npb(h).m
    zh, en = buyer(h, "zh-CN", "Asia/Shanghai", channels=("sms",)), buyer(h, "en", "UTC",
                                                                          channels=("email",))
    sent = {}
    for b, tracking in ((zh, "SF100200300"), (en, "SF400500600")):
        order = f"o-{uuid.uuid4().hex[:8]}"
        e = m.logistics.DeliveryOutcome(finding=m.logistics.DELIVERY_FINDING_LOST, order_id=order,
                                        buyer_id=b, carrier="SF", tracking_number=tracking,
                                        rule="stalled.lost.refund",
                                        inquiry_id=str(uuid.uuid4()), decided_at_us=now_us())
        sent[b] = send(h, LOGISTICS_TOPIC, "delivery_outcome", e, order, case_id="", order_id=order)
    bad = m.logistics.DeliveryOutcome(finding=m.logistics.DELIVERY_FINDING_LOST, order_id="o-x",
                                      carrier="SF", tracking_number="SF1", decided_at_us=now_us())
    bad_env = send(h, LOGISTICS_TOPIC, "delivery_outcome", bad, "o-x", case_id="", order_id="o-x")
    (s,) = [r for r in wait_deliveries(h, "buyer_id = %s", (zh,), 2) if r["channel"] == "sms"]
    assert (s["template_id"], s["case_id"], s["body"]) == (
        "delivery.outcome.order", "",
        "包裹 SF100200300（SF）：包裹已丢失。您可在订单页申请退款或补发。")
    assert s["source_event_id"] == sent[zh].event_id
    (e,) = [r for r in wait_deliveries(h, "buyer_id = %s", (en,), 2) if r["channel"] == "email"]
    assert (e["subject"], e["locale"]) == ("Your parcel SF400500600", "en")
    assert "the carrier lost it. You can ask for a refund or a new parcel" in e["body"]
    dls = wait_until(lambda: (lambda d: d if d else None)(dead_letters(h, dlq)), 20 * SLOW,
                     what="the outcome naming no buyer dead-lettered")
    assert [(d.original_event_id, d.detail) for _, d, _ in dls] == [
        (bad_env.event_id, "neither a case nor a buyer")]
