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
        "return.packaging": "退货 AS-ZH-1：original box, sealed。请于 2026年12月10日 18:00 前寄至 "
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
             "地址：Dock 5 &lt;B&gt; &amp; Co, Shanghai\n包装要求：original box, sealed\n"
             "运费：退货运费由平台承担",
}


def test_each_event_told_in_both_languages_byte_exact(h):
    w = start_notification(h)
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
            assert sms[tmpl]["locale"] == locale and sms[tmpl]["template_version"] == "builtin-1"
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
        # case order: every event its own case_seq, increasing in the order told (within
        # a topic: events of different topics arrive in either order)
        seqs = [sms[t]["case_seq"] for t in TOLD]
        assert len(set(seqs)) == len(seqs), seqs
        for run in (("review.approved", "return.instructions", "return.packaging",
                     "goodwill.offered"), ("refund.issued", "exchange.requested", "coupon.issued"),
                    ("case.acknowledged", "case.closed")):
            assert [sms[t]["case_seq"] for t in run] == sorted(sms[t]["case_seq"] for t in run)
    evs = wait_until(lambda: (lambda e: e if len(of_kind(e, "in_app_notice")) >= 2 * (len(TOLD) - 1)
                              else None)(events(h, notices)), 20 * SLOW, what="in-app notices")
    zh = [e[1] for e in of_kind(evs, "in_app_notice") if e[1].template_id == "case.closed"
          and e[1].locale == "zh-CN"]
    assert [(n.title, n.body) for n in zh] == [("售后申请 AS-ZH-1 已完结", "售后申请 AS-ZH-1 已完结。")]
    sent = of_kind(evs, "notification_sent")
    assert len(sent) == 2 * (len(TOLD) - 1)
    assert all(s[1].idempotency_key == delivery_id(s[1].notification_id, "in_app") for s in sent)
    assert w.metric("as_notification_in_app_total") == 2 * (len(TOLD) - 1)
