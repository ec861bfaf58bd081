"""The notification worker and personal data (issue 14 item 1 and the
privacy tests): no phone, e-mail or push token in any log line or dead
letter, a refused contact's included (its dead letter carries the event
with those fields redacted); erasure deletes the contact, scrubs what was
rendered for the buyer and cancels what is not sent; a contact older than
the one kept, or than an erasure, is ignored. Hostile input on every topic
the worker consumes is dead-lettered with a reason and the partition keeps
moving. The templates file is reloaded on SIGHUP, a bad one refused."""
import signal
import uuid

from conftest import DLQ_TOPIC, ROOT, SLOW, dead_letters, wait_until
from notification_helpers import (CASES_TOPIC, CONTACTS_TOPIC, INSPECTION_TOPIC,
                                  LOGISTICS_TOPIC, NOTIFICATIONS_TOPIC, REFUNDS_TOPIC,
                                  REVIEW_TOPIC, contact, deliveries, money, now_us, npb, open_case,
                                  send, start_notification, wait_contact, wait_deliveries)

PHONE, EMAIL, TOKEN = "+8613912345678", "secret.buyer@example.org", "tok-SECRET-77"
BAD_PHONE, BAD_EMAIL = "+8613987654321", "refused.buyer@example.org"
ADDRESS = "Secret Lane 42, Pudong"

# These tests read the deliveries as the batch side writes them, so the
# worker runs with AS_NOTIFICATION_SEND_CONCURRENCY=0 (it tells, no sender
# takes the rows); the sender has its own tests (test_notification_send.py).


def ack(h, case_id, buyer_id):
    m = npb(h).m
    return send(h, CASES_TOPIC, "buyer_acknowledged",
                m.cases.BuyerAcknowledged(case_id=case_id, buyer_id=buyer_id), case_id)


def test_no_personal_data_in_logs_or_dead_letters(h):
    w = start_notification(h, AS_LOG_LEVEL="debug")
    dlq = h.reader(DLQ_TOPIC)
    b = f"b-{uuid.uuid4().hex[:8]}"
    contact(h, b, phone=PHONE, email=EMAIL, push=TOKEN, channels=("sms", "email", "push"))
    wait_contact(h, b)
    case_id, _ = open_case(h, buyer_id=b)
    ack(h, case_id, b)
    m = npb(h).m
    send(h, REVIEW_TOPIC, "return_instructions",
         m.review.ReturnInstructions(case_id=case_id, return_address=ADDRESS, packaging="box",
                                     ship_by_us=now_us() + 3600 * 10**6), case_id)
    # refused contacts: an unknown zone, a bad phone (personal data in the refused field)
    rb = f"b-{uuid.uuid4().hex[:8]}"
    refused = [contact(h, rb, phone=BAD_PHONE, email=BAD_EMAIL, push=TOKEN, tz="Mars/Olympus"),
               contact(h, rb, phone="+86-139-BAD", email=BAD_EMAIL, tz="UTC")]
    rows = wait_deliveries(h, "case_id = %s", (case_id,), 9)
    assert any(ADDRESS in r["body"] for r in rows)  # the buyer is told it, the logs are not
    dls = wait_until(lambda: (lambda d: d if len(d) >= 2 else None)(dead_letters(h, dlq)),
                     20 * SLOW, what="two dead letters")
    assert sorted(d.detail for _, d, _ in dls) == ["phone is not E.164", "time_zone unknown"]
    for env, d, msg in dls:
        assert d.reason_code == "contract_violation"
        assert d.source_topic == CONTACTS_TOPIC and msg.key() == CONTACTS_TOPIC.encode()
        orig = h.decode(d.original)
        assert orig.event_id in {e.event_id for e in refused}
        c = orig.buyer_contact_updated
        assert (c.phone, c.email, c.push_token) in {("[redacted]", "[redacted]", "[redacted]"),
                                                    ("[redacted]", "[redacted]", "")}
        assert c.buyer_id == rb and c.time_zone in ("Mars/Olympus", "UTC")
    assert h.scalar("SELECT count(*) FROM notification.contacts WHERE buyer_id = %s", (rb,)) == 0
    assert w.metric("as_messages_deadlettered_total", reason="contract_violation") == 2
    assert w.metric("as_notification_contacts_total", result="refused") == 2
    logs = w.text()
    wire = b"".join(msg.value() for _, _, msg in dead_letters(h, dlq))
    for secret in (PHONE, EMAIL, TOKEN, BAD_PHONE, BAD_EMAIL, ADDRESS, "+86-139-BAD"):
        assert secret not in logs, secret
        assert secret.encode() not in wire, secret
    exposed = str(w.metrics())
    assert PHONE not in exposed and EMAIL not in exposed and b not in exposed


def test_erasure_removes_the_contact_and_scrubs_what_was_told(h):
    w = start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0")
    b = f"b-{uuid.uuid4().hex[:8]}"
    contact(h, b, phone=PHONE, email=EMAIL, channels=("sms", "email"),
            updated_at_us=now_us() - 10 * 10**6)
    wait_contact(h, b)
    case_id, _ = open_case(h, buyer_id=b, number="AS-ER-1")
    ack(h, case_id, b)
    rows = wait_deliveries(h, "buyer_id = %s", (b,), 3)
    assert {r["status"] for r in rows} == {"pending", "standby", "sent"}
    n = npb(h)
    at = now_us()
    send(h, CONTACTS_TOPIC, "buyer_erased",
         n.contacts.BuyerErased(buyer_id=b, request_id="er-1", erased_at_us=at), b)
    wait_until(lambda: h.scalar("SELECT count(*) FROM notification.erasures WHERE buyer_id = %s",
                                (b,)) == 1, 20 * SLOW, what="erasure recorded")
    assert h.scalar("SELECT count(*) FROM notification.contacts WHERE buyer_id = %s", (b,)) == 0
    rows = deliveries(h, "buyer_id = %s", (b,))
    assert {(r["channel"], r["subject"], r["body"], r["status"]) for r in rows} == {
        ("sms", "[erased]", "[erased]", "cancelled"), ("email", "[erased]", "[erased]", "cancelled"),
        ("in_app", "[erased]", "[erased]", "sent")}
    # a late redelivery of an older contact does not bring the data back
    contact(h, b, phone=PHONE, email=EMAIL, updated_at_us=at - 1)
    contact(h, "b-marker", phone="+8613000000000")  # same topic, to know the first was handled
    wait_contact(h, "b-marker")
    assert h.scalar("SELECT count(*) FROM notification.contacts WHERE buyer_id = %s", (b,)) == 0
    assert w.metric("as_notification_contacts_total", result="stale") >= 1
    assert w.metric("as_notification_erasures_total") == 1
    # an older update than the one kept is ignored too
    contact(h, "b-marker", phone="+8613000000001", updated_at_us=1)
    contact(h, "b-marker2")
    wait_contact(h, "b-marker2")
    assert h.scalar("SELECT phone FROM notification.contacts WHERE buyer_id = 'b-marker'") == \
        "+8613000000000"


def test_hostile_input_on_every_topic_is_dead_lettered_and_the_partition_moves(h):
    start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0")
    dlq = h.reader(DLQ_TOPIC)
    b = f"b-{uuid.uuid4().hex[:8]}"
    contact(h, b, channels=("sms",))
    wait_contact(h, b)
    case_id, _ = open_case(h, buyer_id=b)
    m, n = npb(h).m, npb(h).notification
    topics = [CONTACTS_TOPIC, CASES_TOPIC, REVIEW_TOPIC, REFUNDS_TOPIC, INSPECTION_TOPIC,
              LOGISTICS_TOPIC, NOTIFICATIONS_TOPIC]
    for t in topics:  # bytes that are no envelope, on the partition of the case
        h.produce_many([(case_id, b"\x08\xff\xff garbage", None)], topic=t)
    send(h, CONTACTS_TOPIC, "buyer_erased", npb(h).contacts.BuyerErased(buyer_id=""), case_id)
    send(h, CASES_TOPIC, "buyer_acknowledged", m.cases.BuyerAcknowledged(case_id="other"), case_id)
    bad = m.review.ReviewDecided(case_id=case_id, verdict=m.review.VERDICT_APPROVED,
                                 approved_amount=money(h, 1, "XX"))
    send(h, REVIEW_TOPIC, "review_decided", bad, case_id)
    send(h, REFUNDS_TOPIC, "refund_issued", m.refunds.RefundIssued(case_id=case_id), case_id)
    send(h, INSPECTION_TOPIC, "inspection_completed",
         m.inspection.InspectionCompleted(case_id="x" * 65), case_id)
    send(h, LOGISTICS_TOPIC, "delivery_outcome",
         m.logistics.DeliveryOutcome(case_id=case_id, finding=99), case_id)
    send(h, NOTIFICATIONS_TOPIC, "notification_requested",
         n.NotificationRequested(notification_id=str(uuid.uuid4()), case_id=case_id,
                                 template_id="no.such"), case_id)
    # then a good event on every topic, on the same partitions
    send(h, CASES_TOPIC, "buyer_acknowledged",
         m.cases.BuyerAcknowledged(case_id=case_id, buyer_id=b), case_id)
    send(h, REVIEW_TOPIC, "review_decided",
         m.review.ReviewDecided(case_id=case_id, verdict=m.review.VERDICT_MANUAL_REVIEW), case_id)
    send(h, REFUNDS_TOPIC, "exchange_requested", m.refunds.ExchangeRequested(case_id=case_id),
         case_id)
    send(h, INSPECTION_TOPIC, "inspection_completed",
         m.inspection.InspectionCompleted(case_id=case_id), case_id)
    send(h, LOGISTICS_TOPIC, "delivery_outcome", m.logistics.DeliveryOutcome(case_id=case_id),
         case_id)
    send(h, NOTIFICATIONS_TOPIC, "notification_requested",
         n.NotificationRequested(notification_id=str(uuid.uuid4()), case_id=case_id,
                                 template_id="case.closed"), case_id)
    contact(h, "b-after", channels=())
    wait_contact(h, "b-after")
    rows = wait_deliveries(h, "case_id = %s AND channel = 'sms'", (case_id,), 6)
    assert sorted(r["template_id"] for r in rows) == sorted(
        ["case.acknowledged", "review.manual", "exchange.requested", "inspection.completed",
         "delivery.outcome", "case.closed"])
    dls = wait_until(lambda: (lambda d: d if len(d) >= 14 else None)(dead_letters(h, dlq)),
                     20 * SLOW, what="14 dead letters")
    by_topic = {}
    for _, d, _ in dls:
        by_topic.setdefault(d.source_topic, []).append((d.reason_code, d.detail))
    assert sorted(by_topic) == sorted(topics)
    for t, got in by_topic.items():
        assert sorted(r for r, _ in got) == ["contract_violation", "decode_failed"] or \
            sorted(r for r, _ in got) == ["contract_violation", "invalid_envelope"], (t, got)
    assert ("contract_violation", "template_id unknown") in by_topic[NOTIFICATIONS_TOPIC]
    assert ("contract_violation", "finding unknown") in by_topic[LOGISTICS_TOPIC]


def test_templates_reloaded_on_sighup_and_a_bad_file_refused(h, tmp_path):
    base = (ROOT / "deploy/config/notification.templates").read_text()
    f = tmp_path / "notification.templates"
    f.write_text(base.replace("version = builtin-3", "version = qa-1"))
    w = start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0", AS_NOTIFICATION_TEMPLATES_FILE=str(f))
    b = f"b-{uuid.uuid4().hex[:8]}"
    contact(h, b, channels=("sms",))
    wait_contact(h, b)
    c1, _ = open_case(h, buyer_id=b)
    ack(h, c1, b)
    assert {r["template_version"] for r in wait_deliveries(h, "case_id = %s", (c1,), 2)} == {"qa-1"}
    f.write_text(base.replace("version = builtin-3", "version = qa-2").replace("push = ", "pus = ", 1))
    w.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: w.metric("as_notification_templates_reloads_total", result="refused") == 1,
               20 * SLOW, what="reload refused")
    (msg,) = w.logged("templates refused, the previous ones stay in force")
    assert msg["detail"].endswith("unknown key (subject, sms, email, push)") and ": line " in \
        msg["detail"] and msg["in_force"] == "qa-1"
    f.write_text(base.replace("version = builtin-3", "version = qa-3").replace(
        "sms = We received your after-sales request {case_number} and are handling it.",
        "sms = Got {case_number}."))
    w.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: w.metric("as_notification_templates_reloads_total", result="ok") == 1,
               20 * SLOW, what="reload ok")
    c2, _ = open_case(h, buyer_id=b, number="AS-RL-2")
    ack(h, c2, b)
    rows = wait_deliveries(h, "case_id = %s AND channel = 'sms'", (c2,), 1)
    assert (rows[0]["template_version"], rows[0]["body"]) == ("qa-3", "Got AS-RL-2.")


def test_a_contact_the_runtime_refuses_is_dead_lettered_without_its_bytes(h):
    # Refused before the handler sees it (undecodable, the envelope's
    # contract, a NUL in a string, too large): the dead letter keeps the
    # reason, the offset, the size and the SHA-256 of the bytes, not the
    # bytes, which name the buyer's phone and e-mail (issue 14 item 1).
    import hashlib
    w = start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0", AS_MAX_MESSAGE_BYTES="4096")
    dlq = h.reader(DLQ_TOPIC)
    n = npb(h)
    b = f"b-{uuid.uuid4().hex[:8]}"

    def contact_env(**kw):
        c = n.contacts.BuyerContactUpdated(buyer_id=b, locale="en", time_zone="UTC",
                                           phone=kw.pop("phone", PHONE), email=EMAIL,
                                           push_token=kw.pop("push", ""), updated_at_us=now_us())
        return h.envelope("buyer_contact_updated", c, case_id=b, **kw)
    garbage = b"\x0a\x7f" + f"call {PHONE} or mail {EMAIL}".encode()  # a field cut short
    values = [garbage,
              contact_env(event_id="not-a-uuid").SerializeToString(),
              contact_env(phone=PHONE + "\x00").SerializeToString(),
              contact_env(push="t" * 5000).SerializeToString()]
    at = h.produce_many([(b, v, None) for v in values], topic=CONTACTS_TOPIC)
    # the same garbage on a topic without personal data keeps its bytes
    h.produce_many([(b, b"\x0a\x7f not personal", None)], topic=CASES_TOPIC)
    dls = wait_until(lambda: (lambda d: d if len(d) >= 5 else None)(dead_letters(h, dlq)),
                     20 * SLOW, what="five dead letters")
    mine = {(d.source_partition, d.source_offset): d for _, d, _ in dls
            if d.source_topic == CONTACTS_TOPIC}
    assert sorted(mine) == sorted(at), (sorted(mine), at)
    reasons = []
    for v, where in zip(values, at):
        d = mine[where]
        reasons.append(d.reason_code)
        assert d.original == b"" and d.original_withheld, d
        assert d.original_size == len(v) and d.original_sha256 == hashlib.sha256(v).digest()
        assert d.source_key == b.encode()  # an id: kept, to find the buyer's other events
    assert reasons == ["decode_failed", "invalid_envelope", "string_nul", "payload_too_large"]
    (other,) = [d for _, d, _ in dls if d.source_topic == CASES_TOPIC]
    assert other.original == b"\x0a\x7f not personal" and not other.original_withheld
    wire = b"".join(msg.value() for _, _, msg in dead_letters(h, dlq)) + \
        b"".join(msg.value() for _, _, msg in dls)
    logs = w.text()
    for secret in (PHONE, EMAIL):
        assert secret.encode() not in wire, secret
        assert secret not in logs, secret
    assert w.metric("as_messages_deadlettered_total") == 5


def test_contacts_name_the_buyer_not_a_case(h):
    # The contacts topic's contract (issue 14 item 2): an envelope with
    # neither case_id nor order_id, about the payload's buyer_id (the key);
    # the older form, the buyer id in case_id, still accepted.
    w = start_notification(h, AS_NOTIFICATION_SEND_CONCURRENCY="0")
    dlq = h.reader(DLQ_TOPIC)
    n = npb(h)
    b, old, other = (f"b-{uuid.uuid4().hex[:8]}" for _ in range(3))
    c = n.contacts.BuyerContactUpdated(buyer_id=b, locale="en", time_zone="UTC", phone=PHONE,
                                       updated_at_us=now_us())
    send(h, CONTACTS_TOPIC, "buyer_contact_updated", c, b, case_id="")
    contact(h, old)  # case_id = the buyer id
    wait_contact(h, b)
    wait_contact(h, old)
    send(h, CONTACTS_TOPIC, "buyer_erased",
         n.contacts.BuyerErased(buyer_id=b, request_id="er-2", erased_at_us=now_us()), b,
         case_id="")
    wait_until(lambda: h.scalar("SELECT count(*) FROM notification.erasures WHERE buyer_id = %s",
                                (b,)) == 1, 20 * SLOW, what="erasure recorded")
    assert h.scalar("SELECT count(*) FROM notification.contacts WHERE buyer_id = %s", (b,)) == 0
    # a case_id that is another buyer's is still refused
    c2 = n.contacts.BuyerContactUpdated(buyer_id=other, time_zone="UTC", updated_at_us=now_us())
    send(h, CONTACTS_TOPIC, "buyer_contact_updated", c2, other, case_id=old)
    (d,) = [d for _, d, _ in wait_until(lambda: dead_letters(h, dlq), 20 * SLOW,
                                        what="the mismatched contact dead-lettered")]
    assert (d.reason_code, d.detail) == ("contract_violation",
                                         "buyer_id missing, unsafe or not the envelope's case_id")
    assert w.metric("as_notification_contacts_total", result="stored") == 2
