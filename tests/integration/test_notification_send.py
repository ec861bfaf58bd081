"""The notification sender (issue 14 items 4 and 6) from outside: real
loopback HTTP and SMTP gateways (gateway.py), real PostgreSQL, the
worker's events read from the topics. The deliveries rows are inserted
as the batch side writes them (001_notification.sql), one per
notification and channel."""

import hashlib
import hmac
import json
import time
import uuid

import pytest

from conftest import CASES_TOPIC, SLOW, start_service, wait_until
from gateway import HttpSink, SmtpSink, html_of

NOTIFICATIONS_TOPIC = "aftersales.notifications.v1"
SECRET = "s3cret-for-tests"
PHONE, MAIL, TOKEN = "+8613800138000", "buyer@example.com", "push-token-1"


@pytest.fixture
def gw(h):
    http, smtp = HttpSink(), SmtpSink()
    yield http, smtp
    http.close()
    smtp.close()
    # Personal data reaches the gateway and nothing else: no log line of
    # any sender of the test names an address (or the webhook secret).
    for w in h.workers:
        text = w.text()
        leaked = [v for v in (PHONE, MAIL, TOKEN, SECRET) if v in text]
        assert not leaked, f"{w.name}'s log carries {leaked}"


def start_sender(h, gw, name=None, **over):
    http, smtp = gw
    env = {"AS_NOTIFICATION_SMS_URL": http.url("/sms"),
           "AS_NOTIFICATION_PUSH_URL": http.url("/push"),
           "AS_NOTIFICATION_SMTP_URL": smtp.url(),
           "AS_NOTIFICATION_SMTP_FROM": "care@shop.example",
           "AS_NOTIFICATION_WEBHOOK_SECRET": SECRET,
           "AS_NOTIFICATION_SEND_TIMEOUT_MS": "1500",
           "AS_NOTIFICATION_SEND_LEASE_MS": "4000",
           "AS_NOTIFICATION_SEND_INTERVAL_MS": "20",
           "AS_NOTIFICATION_RETRY_BASE_MS": "400",
           "AS_NOTIFICATION_RETRY_MAX_MS": "2000",
           "AS_NOTIFICATION_MAX_ATTEMPTS": "3",
           "AS_NOTIFICATION_BREAKER_FAILURES": "100"}
    env.update({k: str(v) for k, v in over.items()})
    return start_service(h, "notification", name, **env)


def contact(h, buyer, phone=PHONE, mail=MAIL, token=TOKEN):
    h.sql("INSERT INTO notification.contacts (buyer_id, phone, email, push_token, channels,"
          " updated_at_us) VALUES (%s, %s, %s, %s, '{sms,email,push}', 1)"
          " ON CONFLICT (buyer_id) DO NOTHING", (buyer, phone, mail, token))


def delivery(h, channels=("sms",), case_id=None, buyer="b-1", seq=0, due_in_s=0, body="您的售后申请已受理",
             subject="Case received", submitted_at_us=0, source_at_us=None):
    """Inserts one notification's rows (rank order = channels); returns
    (notification_id, [delivery_id per channel])."""
    contact(h, buyer)
    nid = str(uuid.uuid4())
    case_id = case_id or f"case-{nid[:8]}"
    src = int(time.time() * 1e6) if source_at_us is None else source_at_us
    ids = []
    for rank, ch in enumerate(channels):
        did = str(uuid.uuid4())
        ids.append(did)
        h.sql("INSERT INTO notification.deliveries (delivery_id, notification_id, rank, case_id,"
              " buyer_id, channel, template_id, template_version, locale, subject, body, case_seq,"
              " status, due_at, source_event_id, source_at_us, submitted_at_us)"
              " VALUES (%s, %s, %s, %s, %s, %s, 'case.acknowledged', 'v1', 'zh-CN', %s, %s, %s,"
              " %s, now() + %s * interval '1 second', %s, %s, %s)",
              (did, nid, rank, case_id, buyer, ch, subject, body, seq,
               "pending" if rank == 0 else "standby", due_in_s, str(uuid.uuid4()), src,
               submitted_at_us))
    return nid, ids


def ch(name):
    """A Channel number (notification_pb2 is importable once the pb fixture ran)."""
    import notification_pb2
    return notification_pb2.Channel.Value(name)


def row(h, did):
    r = h.sql("SELECT status, attempts, last_error, sla_breached FROM notification.deliveries"
              " WHERE delivery_id = %s", (did,))[0]
    return {"status": r[0], "attempts": r[1], "last_error": r[2], "sla_breached": r[3]}


def wait_status(h, did, status, timeout=20):
    return wait_until(lambda: row(h, did)["status"] == status or None, timeout * SLOW,
                      what=f"delivery {did} {status} (now {row(h, did)})")


def events(h, reader, kind):
    out = []
    for m in reader.drain():
        env = h.decode(m.value())
        if env.WhichOneof("payload") == kind:
            out.append(getattr(env, kind))
    return out


def test_gateway_500_then_200_is_retried_with_backoff_and_signed(h, gw):
    http, _ = gw
    http.plan("/sms", [500, 200])
    w = start_sender(h, gw)
    nid, (did,) = delivery(h)
    wait_status(h, did, "sent")
    reqs = http.got("/sms")
    assert [r["answer"] for r in reqs] == [500, 200]
    assert reqs[1]["at"] - reqs[0]["at"] >= 0.2 * 0.9, "retried before the backoff (base 400 ms, jitter 0.5x-1x)"
    keys = {r["headers"]["Idempotency-Key"] for r in reqs}
    assert keys == {did}
    assert reqs[0]["body"] == reqs[1]["body"]
    for r in reqs:
        want = "sha256=" + hmac.new(SECRET.encode(), r["body"], hashlib.sha256).hexdigest()
        assert r["headers"]["X-Aftersales-Signature"] == want
    doc = json.loads(reqs[1]["body"])
    assert doc["to"] == PHONE and doc["body"] == "您的售后申请已受理" and doc["delivery_id"] == did
    assert row(h, did)["attempts"] == 2
    sent = wait_until(lambda: events(h, h.reader(NOTIFICATIONS_TOPIC), "notification_sent") or None,
                      20 * SLOW, what="NotificationSent")
    assert [(s.notification_id, s.idempotency_key, s.attempts, s.channel) for s in sent] == \
        [(nid, did, 2, ch('CHANNEL_SMS'))]
    assert w.metric("as_notification_sends_total", channel="sms", result="retried") == 1
    assert w.metric("as_notification_sends_total", channel="sms", result="sent") == 1


def test_always_500_fails_after_the_bound_and_the_next_channel_is_used(h, gw):
    http, smtp = gw
    http.plan("/sms", [500])
    w = start_sender(h, gw)
    nid, (sms, mail) = delivery(h, channels=("sms", "email"))
    wait_status(h, mail, "sent", timeout=30)
    assert row(h, sms) == {"status": "failed", "attempts": 3, "last_error": "http_500",
                           "sla_breached": False}
    assert len(http.got("/sms")) == 3
    (m,) = smtp.wait_for(1)
    assert m["to"] == [MAIL]
    reader = h.reader(NOTIFICATIONS_TOPIC)
    failed = wait_until(lambda: events(h, reader, "notification_failed") or None, 20 * SLOW,
                        what="NotificationFailed")
    assert [(f.notification_id, f.channel, f.error_code, f.attempts, f.next_channel) for f in failed] \
        == [(nid, ch('CHANNEL_SMS'), "http_500", 3, ch('CHANNEL_EMAIL'))]
    sent = wait_until(lambda: events(h, reader, "notification_sent") or None, 20 * SLOW,
                      what="NotificationSent")
    assert [(s.notification_id, s.channel) for s in sent] == [(nid, ch('CHANNEL_EMAIL'))]
    assert w.metric("as_notification_sends_total", channel="sms", result="failed") == 1


def test_sent_cancels_the_standby_channels(h, gw):
    http, smtp = gw
    w = start_sender(h, gw)
    nid, (sms, mail, push) = delivery(h, channels=("sms", "email", "push"))
    wait_status(h, sms, "sent")
    assert row(h, mail)["status"] == "cancelled" and row(h, push)["status"] == "cancelled"
    time.sleep(0.5)
    assert len(http.got()) == 1 and not smtp.messages
    assert w.metric("as_notification_sends_total", result="sent") == 1


def test_email_reaches_the_smtp_sink_as_html_with_the_idempotency_key(h, gw):
    _, smtp = gw
    start_sender(h, gw)
    body = "<p>您好，您的售后申请 <b>A-1</b> 已受理 &amp; 处理中</p>"
    nid, (did,) = delivery(h, channels=("email",), body=body, subject="售后申请已受理")
    wait_status(h, did, "sent")
    (m,) = smtp.wait_for(1)
    msg = m["message"]
    assert m["from"] == "care@shop.example" and m["to"] == [MAIL]
    assert msg["Message-ID"] == f"<{did}@aftersales.invalid>"
    assert msg["X-Aftersales-Notification"] == nid
    assert str(msg["Subject"]) == "售后申请已受理"
    assert msg.get_content_type() == "text/html"
    assert html_of(msg).strip() == body


def test_a_hanging_gateway_times_out_and_nothing_else_stalls(h, gw):
    http, _ = gw
    http.plan("/push", ["hang", 200])
    w = start_sender(h, gw, AS_NOTIFICATION_SEND_TIMEOUT_MS=3000, AS_NOTIFICATION_SEND_LEASE_MS=8000)
    _, (push,) = delivery(h, channels=("push",))
    http.wait_for(1, "/push")
    hung_at = time.monotonic()
    sms = [delivery(h, channels=("sms",))[1][0] for _ in range(5)]
    for did in sms:
        wait_status(h, did, "sent")
    assert time.monotonic() - hung_at < 3.0, "the other sends waited for the hanging one"
    assert row(h, push)["status"] == "sending"
    wait_status(h, push, "sent", timeout=20)
    assert row(h, push)["attempts"] == 2
    assert h.scalar("SELECT last_error FROM notification.deliveries WHERE delivery_id = %s",
                    (push,)) == "timeout"
    assert w.metric("as_notification_send_seconds_count", channel="push") == 2
    assert w.metric("as_notification_send_seconds_sum", channel="push") >= 3.0 * 0.95


def test_killed_between_send_and_mark_resends_the_same_key_and_message(h, gw):
    http, _ = gw
    http.plan("/sms", ["hold", 200])
    w = start_sender(h, gw, name="first")
    _, (did,) = delivery(h)
    http.wait_for(1, "/sms")
    w.kill()  # the gateway has the message; the sender never hears back
    http.release()
    assert row(h, did)["status"] == "sending"
    start_sender(h, gw, name="second")
    wait_status(h, did, "sent", timeout=30)
    reqs = http.got("/sms")
    assert len(reqs) == 2
    assert {r["headers"]["Idempotency-Key"] for r in reqs} == {did}
    assert reqs[0]["body"] == reqs[1]["body"], "two different messages for one delivery"


def test_breaker_opens_falls_through_and_closes(h, gw):
    http, _ = gw
    http.plan("/sms", [500])
    w = start_sender(h, gw, AS_NOTIFICATION_BREAKER_FAILURES=2,
                     AS_NOTIFICATION_BREAKER_COOLOFF_MS=2000, AS_NOTIFICATION_MAX_ATTEMPTS=10,
                     AS_NOTIFICATION_RETRY_BASE_MS=120000, AS_NOTIFICATION_RETRY_MAX_MS=120000)
    # The two that open it come back only after the test (a 60-120 s
    # backoff): every later SMS request is the fall-through's or the trial's.
    for _ in range(2):
        delivery(h)
    http.wait_for(2, "/sms")
    wait_until(lambda: w.metric("as_notification_breaker_open", channel="sms") == 1 or None,
               10 * SLOW, what="sms breaker open")
    opened = time.monotonic()
    nid, (sms, push) = delivery(h, channels=("sms", "push"))
    wait_status(h, push, "sent")
    assert row(h, sms)["status"] == "failed" and row(h, sms)["last_error"] == "circuit_open"
    assert len(http.got("/sms")) == 2, "a paused channel was sent to"
    assert w.metric("as_notification_sends_total", channel="sms", result="fell_through") >= 1
    http.plan("/sms", [200])
    _, (alone,) = delivery(h)  # no standby: waits out the cool-off, then is the trial
    wait_status(h, alone, "sent", timeout=20)
    assert time.monotonic() - opened >= 2.0 * 0.9
    assert row(h, alone)["attempts"] == 1, "waiting for the breaker cost an attempt"
    assert w.metric("as_notification_breaker_open", channel="sms") == 0
    assert w.metric("as_notification_breaker_opened_total", channel="sms") == 1


def test_case_events_are_sent_in_order(h, gw):
    http, _ = gw
    start_sender(h, gw)
    _, (first,) = delivery(h, case_id="case-order", seq=1, due_in_s=2, body="first")
    _, (second,) = delivery(h, case_id="case-order", seq=2, body="second")
    wait_status(h, second, "sent", timeout=20)
    bodies = [json.loads(r["body"])["body"] for r in http.got("/sms")]
    assert bodies == ["first", "second"]


def test_first_response_sla_breach_and_one_never_sent(h, gw):
    start_sender(h, gw, AS_NOTIFICATION_FIRST_RESPONSE_SLA_S=5)
    now = int(time.time() * 1e6)
    late_case = f"case-late-{uuid.uuid4().hex[:6]}"
    _, (late,) = delivery(h, case_id=late_case, submitted_at_us=now - 20_000_000)
    _, (ontime,) = delivery(h, submitted_at_us=now)
    stuck_case = f"case-stuck-{uuid.uuid4().hex[:6]}"
    _, (stuck,) = delivery(h, case_id=stuck_case, due_in_s=3600)  # quiet hours, say
    wait_status(h, late, "sent")
    wait_status(h, ontime, "sent")
    reader = h.reader(CASES_TOPIC)

    def breaches():
        got = {}
        for m in reader.drain():
            env = h.decode(m.value())
            if env.WhichOneof("payload") == "sla_breached":
                got.setdefault(env.sla_breached.case_id, []).append(env.sla_breached.clock)
        return got if stuck_case in got else None
    got = wait_until(breaches, 20 * SLOW, what="SlaBreached for the one never sent")
    time.sleep(1.5)  # a later sweep must not breach it again
    got = breaches()
    assert got == {late_case: ["first_response"], stuck_case: ["notification"]}
    assert row(h, late)["sla_breached"] and row(h, stuck)["sla_breached"]
    assert not row(h, ontime)["sla_breached"]


def test_429_honours_retry_after(h, gw):
    http, _ = gw
    http.plan("/sms", [("429", 2), 200])
    w = start_sender(h, gw, AS_NOTIFICATION_RETRY_BASE_MS=50, AS_NOTIFICATION_RETRY_MAX_MS=100,
                     AS_NOTIFICATION_BREAKER_FAILURES=1)
    _, (did,) = delivery(h)
    wait_status(h, did, "sent")
    reqs = http.got("/sms")
    assert [r["answer"] for r in reqs] == [("429", 2), 200]
    assert reqs[1]["at"] - reqs[0]["at"] >= 2.0 * 0.95, "Retry-After: 2 not honoured"
    assert w.metric("as_notification_breaker_opened_total", channel="sms") == 0, \
        "a rate limit is not a provider failure"


def test_results_recorded_after_the_database_refused_them(h, gw):
    """The gateway has accepted; the table is locked so the record fails
    (lock timeout): the result is kept and recorded once the lock is gone,
    one NotificationSent, no second send."""
    http, _ = gw
    http.plan("/sms", ["hold", 200])
    w = start_sender(h, gw, AS_DB_LOCK_TIMEOUT_MS=200, AS_NOTIFICATION_SEND_LEASE_MS=60000)
    nid, (did,) = delivery(h)
    http.wait_for(1, "/sms")
    locker = h.pg.connect(h.dbname)
    locker.autocommit = False
    cur = locker.cursor()
    cur.execute("LOCK TABLE notification.deliveries IN ACCESS EXCLUSIVE MODE")
    try:
        http.release()
        wait_until(lambda: w.metric("as_notification_send_record_failures_total") >= 1 or None,
                   20 * SLOW, what="a failed record")
    finally:
        locker.rollback()
        locker.close()
    wait_status(h, did, "sent")
    assert len(http.got("/sms")) == 1
    sent = wait_until(lambda: events(h, h.reader(NOTIFICATIONS_TOPIC), "notification_sent") or None,
                      20 * SLOW, what="NotificationSent")
    assert [s.notification_id for s in sent] == [nid]


def test_sigterm_with_a_send_in_flight_exits_cleanly_and_the_next_sender_finishes_it(h, gw):
    """Shutdown abandons what is in flight (its lease keeps the row) and
    closes every handle: exit 0 at once, the loop closed; the next sender
    takes the row when the lease runs out, with the same key."""
    http, _ = gw
    http.plan("/push", ["hang", 200])
    w = start_sender(h, gw, name="first", AS_NOTIFICATION_SEND_TIMEOUT_MS=20000,
                     AS_NOTIFICATION_SEND_LEASE_MS=25000)
    _, (did,) = delivery(h, channels=("push",))
    http.wait_for(1, "/push")
    t = time.monotonic()
    assert w.terminate(timeout=15) == 0
    assert time.monotonic() - t < 5 * SLOW, "shutdown waited for the hanging send"
    assert not w.logged("loop closed with handles open"), w.tail()
    assert row(h, did)["status"] == "sending"
    h.sql("UPDATE notification.deliveries SET due_at = now() WHERE delivery_id = %s", (did,))  # lease over
    start_sender(h, gw, name="second")
    wait_status(h, did, "sent")
    assert {r["headers"]["Idempotency-Key"] for r in http.got("/push")} == {did}


def test_rows_taken_ahead_are_given_back_at_sigterm(h, gw):
    """The sender takes up to AS_NOTIFICATION_SEND_CONCURRENCY rows ahead
    of those in flight (a freed slot starts the next at once); at SIGTERM
    the ones not started are given back, due now with their attempt
    returned, so the next sender sends them at once instead of after the
    lease; the ones in flight keep their lease, and nothing is sent twice."""
    http, _ = gw
    http.plan("/sms", ["hang", "hang", 200, 200])
    w = start_sender(h, gw, name="first", AS_NOTIFICATION_SEND_CONCURRENCY=2,
                     AS_NOTIFICATION_SEND_TIMEOUT_MS=20000, AS_NOTIFICATION_SEND_LEASE_MS=60000)
    dids = [delivery(h, seq=k)[1][0] for k in range(4)]
    http.wait_for(2, "/sms")
    wait_until(lambda: all(row(h, d)["status"] == "sending" for d in dids) or None, 10 * SLOW,
               what="all four taken: two in flight, two ahead")
    hung = {r["headers"]["Idempotency-Key"] for r in http.got("/sms")}
    ahead = [d for d in dids if d not in hung]
    assert len(hung) == 2 and len(ahead) == 2
    assert w.terminate(timeout=15) == 0
    for d in ahead:
        assert (row(h, d)["status"], row(h, d)["attempts"]) == ("pending", 0)
    assert h.scalar("SELECT count(*) FROM notification.deliveries WHERE delivery_id::text = ANY(%s)"
                    " AND due_at <= now()", (ahead,)) == 2
    for d in hung:
        assert row(h, d)["status"] == "sending"
    t = time.monotonic()
    start_sender(h, gw, name="second")
    for d in ahead:
        wait_status(h, d, "sent")
    assert time.monotonic() - t < 20 * SLOW, "the rows given back waited out their lease"
    keys = [r["headers"]["Idempotency-Key"] for r in http.got("/sms")]
    assert sorted(keys) == sorted(dids), "a row sent twice, or one not sent"
