"""The buyer's side of the fleet from outside (issue 14): a request goes in
on the requests topic as upstream sends it, intake acknowledges it, review
refunds it, and the buyer's phone and mailbox are real loopback gateways
(gateway.py). Nothing is inserted by hand: the contact comes from the
account system's topic, every message from the workers' own events."""

import json

import pytest

from conftest import (DLQ_TOPIC, SLOW, dead_letters, order_events, produce_orders,
                      produce_requests, request_envelope, settle, start_intake, wait_until)
from gateway import HttpSink, SmtpSink
from notification_helpers import NOTIFICATIONS_TOPIC, contact, npb, wait_contact
from review_helpers import events, of_kind, start_review, wait_state
from test_notification_send import SECRET, start_sender

PHONE, MAIL = "+8613912345678", "li.hua@example.cn"
TOLD = ("case.acknowledged", "review.approved", "refund.issued")


@pytest.fixture
def sinks(h):
    http, smtp = HttpSink(), SmtpSink()
    yield http, smtp
    http.close()
    smtp.close()
    for w in h.workers:  # the buyer's phone and e-mail reach the gateways only
        leaked = [v for v in (PHONE, MAIL, SECRET) if v in w.text()]
        assert not leaked, f"{w.name}'s log carries {leaked}"


def sms_by_template(http):
    out = {}
    for r in http.got("/sms"):
        m = json.loads(r["body"])
        out.setdefault(m["template_id"], []).append((r, m))
    return out


def test_a_request_is_acknowledged_and_its_refund_told_once_in_chinese_on_the_first_channel(h, sinks):
    http, smtp = sinks
    common = npb(h).m.common
    start_sender(h, sinks)
    start_review(h)
    start_intake(h)
    order_id, buyer = f"o-{h.dbname[2:]}", f"b-{h.dbname[2:]}"
    contact(h, buyer, locale="zh-CN", phone=PHONE, email=MAIL, channels=("sms", "email"))
    wait_contact(h, buyer)
    produce_orders(h, order_events(h, order_id, buyer, [("l1", "SKU-1", 500, 1)]))
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND delivered_at_us"
                             " IS NOT NULL", (order_id,)), 20 * SLOW, what="order projected")
    notes = h.reader(NOTIFICATIONS_TOPIC)
    req = request_envelope(h, order_id, buyer, lines=(("l1", 1),), declared_unused=True,
                           reason=common.REASON_SIZE_MISMATCH)
    produce_requests(h, [req, req, req])  # the storefront retried: one case, one answer
    case_id = wait_until(lambda: (h.sql("SELECT case_id FROM cases.cases WHERE order_id = %s",
                                        (order_id,)) or [[None]])[0][0], 20 * SLOW,
                         what="case opened")
    wait_state(h, case_id, "REFUNDED")
    number = h.scalar("SELECT case_number FROM cases.cases WHERE case_id = %s", (case_id,))

    def told():
        by = sms_by_template(http)
        return by if set(TOLD) <= set(by) else None

    by = wait_until(told, 30 * SLOW, what="the acknowledgement, the decision and the refund by SMS")
    # Each told once per channel, whatever was redelivered; the gateway sees
    # one idempotency key per message, a signed body, the buyer's number.
    for template in TOLD:
        assert len(by[template]) == 1, (template, by[template])
    (ack_r, ack), = by["case.acknowledged"]
    (ref_r, ref), = by["refund.issued"]
    assert ack["to"] == PHONE and ack["locale"] == "zh-CN" and ack["case_id"] == case_id
    assert number in ack["body"] and "已收到" in ack["body"], ack["body"]
    assert "¥5.00" in ref["body"], ref["body"]
    assert ack_r["headers"]["Idempotency-Key"] != ref_r["headers"]["Idempotency-Key"]
    (dec_r, _), = by["review.approved"]
    assert ack_r["at"] <= dec_r["at"] <= ref_r["at"], "a case's events are told in order"
    # NotificationSent on the topic for SMS and in-app; the e-mail was the
    # buyer's second choice, kept for an SMS failure and cancelled once the
    # SMS went.
    sent = wait_until(lambda: (lambda s: s if len(s) >= 6 else None)(
        [p for _, p, _, _ in of_kind(events(h, notes), "notification_sent")]), 20 * SLOW,
        what="NotificationSent for 3 templates x (SMS, in-app)")
    assert sorted((p.template_id, p.channel) for p in sent) == sorted(
        (t, ch) for t in TOLD for ch in (1, 4)), sent
    assert not smtp.messages
    assert h.scalar("SELECT count(*) FROM notification.deliveries WHERE case_id = %s"
                    " AND channel = 'email' AND status = 'cancelled'", (case_id,)) == 3
    assert h.workers[0].metric("as_notification_first_response_seconds_count") >= 1


def test_a_request_rejected_before_any_case_is_told_and_its_events_name_the_order(h, sinks):
    """No case exists for a request intake refuses: the buyer is still told
    why, and NotificationSent names the order (every envelope names a case
    or an order), so no consumer dead-letters it."""
    http, _ = sinks
    start_sender(h, sinks)
    start_intake(h)
    order_id, buyer = f"o-{h.dbname[2:]}", f"b-{h.dbname[2:]}"
    contact(h, buyer, locale="en", phone=PHONE, email=MAIL, channels=("sms",))
    wait_contact(h, buyer)
    produce_orders(h, order_events(h, order_id, buyer, [("l1", "SKU-1", 500, 2)]))
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND delivered_at_us"
                             " IS NOT NULL", (order_id,)), 20 * SLOW, what="order projected")
    notes, dlq = h.reader(NOTIFICATIONS_TOPIC), h.reader(DLQ_TOPIC)
    produce_requests(h, [request_envelope(h, order_id, buyer, lines=(("l1", 5),))])
    by = wait_until(lambda: (lambda b: b if "request.rejected" in b else None)(sms_by_template(http)),
                    30 * SLOW, what="the rejection by SMS")
    (_, m), = by["request.rejected"]
    assert m["to"] == PHONE and m["case_id"] == "" and m["locale"] == "en", m
    sent = wait_until(lambda: [e for k, p, _, e in of_kind(events(h, notes), "notification_sent")]
                      or None, 20 * SLOW, what="NotificationSent")
    assert all(e.order_id == order_id and e.case_id == "" for e in sent), sent
    settle(h)
    assert not dead_letters(h, dlq), dead_letters(h, dlq)
