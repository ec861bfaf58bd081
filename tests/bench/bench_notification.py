"""bench notification: as-notification's sender against a local HTTP gateway.

  1. sends: N deliveries rows (SMS, one case each, as the batch side writes
     them) COPYed into the notification schema, then the worker started
     against an asyncio HTTP sink (gateway.FastHttpSink, always 200,
     keep-alive, in a process of its own: on the bench's interpreter it
     shared the GIL with the readers and the paced producer, and its
     answers stalled for seconds); sends_per_s = N / (last request - first request) at the
     gateway, every row then checked 'sent';
  2. first response, the full flow: as-intake and as-notification on one
     broker, orders and the buyers' contacts (BuyerContactUpdated, SMS)
     prefilled, then requests at 1,000/s for ~10 s (after an uncounted
     warm-up, answered whole before they start); p99 of (the acknowledgement's arrival at the gateway - the
     request's submitted_at), joined by case id through BuyerAcknowledged;
     an acknowledgement that never reaches the gateway fails the bench
     (it measured the sender alone when none did, which once hid every
     contact dead-lettered);
  3. the notification worker's peak RSS (VmHWM).
Prints exactly one line: bench notification broker=B sends_per_s=N
p99_first_response_ms=N unanswered=N rss_mb=N broker_cpu_s=N
"""
import io
import json
import multiprocessing
import os
import re
import sys
import threading
import time
import urllib.request
import uuid

sys.path.insert(0, os.environ.get("AS_GEN_PY", "build/gen/py"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import envelope_pb2  # noqa: E402
import notification_pb2  # noqa: E402
import psycopg2  # noqa: E402
from bench import (BROKER, LOW_LATENCY, PACED_WARM, Stack, bulk_producer, EventReader, log,  # noqa: E402
                   paced_producer, peak_rss_kb, produce, settle)
from bench_intake import order_msgs, request_msg  # noqa: E402
from gateway import FastHttpSink  # noqa: E402

N = int(os.environ.get("AS_BENCH_SENDS", "20000"))
RATE = int(os.environ.get("AS_BENCH_RATE", "1000"))
SECONDS = float(os.environ.get("AS_BENCH_SECONDS", "10"))
WAIT_S = 60  # after the last request, for the last acknowledgements
BUYERS = 1000
TAG = uuid.uuid4().hex[:6]
SENDER = dict(AS_NOTIFICATION_WEBHOOK_SECRET="bench-secret",
              AS_NOTIFICATION_SEND_CONCURRENCY="64")


def copy(dsn, table, cols, rows):
    buf = io.StringIO("".join("\t".join(str(v) for v in r) + "\n" for r in rows))
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.copy_expert("COPY notification.%s (%s) FROM STDIN" % (table, cols), buf)
    c.close()


def contacts(dsn):
    copy(dsn, "contacts", "buyer_id, phone, channels, updated_at_us",
         (("bb-%s-%d" % (TAG, b), "+86138%08d" % b, "{sms}", 1) for b in range(BUYERS)))


DELIVERY_COLS = ("delivery_id, notification_id, case_id, buyer_id, channel, template_id,"
                 " template_version, locale, body, source_event_id, source_at_us, submitted_at_us")


def delivery_row(i, now):
    return (uuid.uuid4(), uuid.uuid4(), "c-%s-%07d" % (TAG, i), "bb-%s-%d" % (TAG, i % BUYERS), "sms",
            "case.acknowledged", "v1", "zh-CN", "您的售后申请已受理，案件号 A-%07d" % i, uuid.uuid4(), now, 0)


def sends(stack, env):
    contacts(stack.dsn)
    now = int(time.time() * 1e6)
    copy(stack.dsn, "deliveries", DELIVERY_COLS, (delivery_row(i, now) for i in range(N)))
    # What autovacuum does within a minute of such a change: without it the
    # planner still thinks the table empty and sorts every due row per take.
    with psycopg2.connect(stack.dsn) as c, c.cursor() as cur:
        cur.execute("ANALYZE notification.deliveries, notification.contacts")
    c.close()
    log("prefilled %d deliveries" % N)
    sink = ChildSink()
    w = stack.start("as-notification", dict(env, AS_NOTIFICATION_SMS_URL=sink.url("/sms")), "sends")
    deadline = time.time() + 600
    while len(sink.received) < N:
        if time.time() > deadline or w.poll() is not None:
            raise RuntimeError("only %d of %d sends reached the gateway" % (len(sink.received), N))
        time.sleep(0.05)
    t = [r[0] for r in sink.received[:N]]
    rate = N / max(max(t) - min(t), 1e-6)
    while True:
        with psycopg2.connect(stack.dsn) as c, c.cursor() as cur:
            cur.execute("SELECT count(*) FILTER (WHERE status = 'sent'), count(*)"
                        " FROM notification.deliveries")
            sent, total = cur.fetchone()
        c.close()
        if sent == total:
            break
        if time.time() > deadline:
            raise RuntimeError("%d of %d deliveries recorded sent" % (sent, total))
        time.sleep(0.1)
    log("sends: %.0f/s (%d to the gateway, every row recorded sent)" % (rate, N))
    return w, sink, rate


class AckReader(EventReader):
    """submitted_at of each case's BuyerAcknowledged, by case id."""

    def __init__(self, bootstrap):
        super().__init__(bootstrap, "aftersales.cases.v1", "buyer_acknowledged")
        self.submitted = {}

    def on_event(self, a, message, now):
        self.submitted[a.case_id] = a.submitted_at_us / 1e6


class ChildSink:
    """gateway.FastHttpSink in a child process; received is [(arrival time,
    case id)], read from the child's pipe as it goes."""

    def __init__(self):
        self.received = []
        self.conn, child = multiprocessing.Pipe(duplex=False)
        self.proc = multiprocessing.get_context("fork").Process(target=ChildSink.serve, args=(child,),
                                                                daemon=True)
        self.proc.start()
        child.close()
        self.port = self.conn.recv()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self.pump, daemon=True)
        self.reader.start()

    @staticmethod
    def serve(conn):
        sink = FastHttpSink()
        conn.send(sink.port)
        k = 0
        while True:
            time.sleep(0.02)
            got = sink.received[k:]
            k += len(got)
            out = []
            for at, _, body in got:
                try:
                    out.append((at, json.loads(body)["case_id"]))
                except (ValueError, KeyError):
                    out.append((at, ""))
            if out:
                conn.send(out)

    def pump(self):
        try:
            while True:
                got = self.conn.recv()
                with self.lock:
                    self.received.extend(got)
        except (EOFError, OSError):
            pass

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self):
        self.proc.terminate()
        self.proc.join(5)


def arrivals(sink, since):
    out = {}
    with sink.lock:
        got = sink.received[since:]
    for at, case_id in got:
        out.setdefault(case_id, at)
    return out


def full_flow(stack, env, sink, n_orders):
    """p99 ms of the first response through intake and notification."""
    p = bulk_producer(stack.bootstrap)
    for i in range(n_orders):
        for key, value in order_msgs(i):
            produce(p, "aftersales.orders.v1", key, value)
        e = envelope_pb2.Envelope(event_id=str(uuid.uuid4()), event_type="BuyerContactUpdated",
                                  schema_version=1, occurred_at_us=int(time.time() * 1e6))
        e.producer.service, e.producer.instance = "bench", "bench-1"
        c = e.buyer_contact_updated
        c.buyer_id, c.locale, c.phone = "b-%07d" % i, "zh-CN", "+86139%08d" % i
        c.channels_allowed.append(notification_pb2.CHANNEL_SMS)
        c.updated_at_us = int(time.time() * 1e6)
        e.case_id = c.buyer_id  # a contact's envelope names its buyer where others name a case
        produce(p, "aftersales.contacts.v1", c.buyer_id, e.SerializeToString())
    p.flush(120)
    ienv = stack.env("intake", "bench-intake", **LOW_LATENCY)
    stack.migrate("as-intake", ienv, "intake")
    stack.start("as-intake", ienv, "intake")
    deadline = time.time() + 300
    while True:
        with psycopg2.connect(stack.dsn) as c, c.cursor() as cur:
            cur.execute("SELECT count(*) FROM intake.orders WHERE delivered_at_us IS NOT NULL")
            orders = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM notification.contacts WHERE buyer_id LIKE 'b-%%'")
            if orders >= n_orders and cur.fetchone()[0] >= n_orders:
                break
        c.close()
        if time.time() > deadline:
            raise RuntimeError("intake's orders or notification's contacts not projected")
        time.sleep(0.2)
    settle(stack.dsn)
    reader = AckReader(stack.bootstrap)
    reader.start()
    pp = paced_producer(stack.bootstrap)
    pp.list_topics(timeout=10)
    time.sleep(2)
    # The warm-up (uncounted, as every bench's paced phase) is answered
    # whole before the measured requests start, so its backlog is not
    # theirs.
    warm_end = pace(pp, sink, range(PACED_WARM))
    wait_arrivals(sink, warm_end[0], PACED_WARM)
    t1 = time.time()
    first = pace(pp, sink, range(PACED_WARM, n_orders))[0]
    total = n_orders - PACED_WARM
    end = wait_arrivals(sink, first, total)
    reader.close()
    got = arrivals(sink, first)
    # A request not answered by the end counts as answered then (a lower
    # bound on its latency), and is said on the bench line: the first
    # response is the promise, so a silent one must not vanish from the p99.
    measured = {cid: sub for cid, sub in reader.submitted.items() if sub >= t1}
    unanswered = [cid for cid in measured if cid not in got]
    log("full flow: %d of %d requests unanswered %d s after the last one; the sender's view:"
        % (len(unanswered), total, WAIT_S))
    for line in metrics(stack.log("sends")):
        if re.match(r"as_notification_(sends_total|breaker_opened_total|send_queue|sends_in_flight)",
                    line) and not line.endswith(" 0"):
            log("  " + line)
    lat = [(got.get(cid, end) - sub) * 1e3 for cid, sub in measured.items()]
    return p99_of(lat, "full flow: %d first responses of %d requests" % (len(got), total)), len(unanswered)


def pace(pp, sink, ks):
    """Requests k in ks at RATE/s; returns (the sink's count before, when done)."""
    first = len(sink.received)
    t0 = time.time()
    for i, k in enumerate(ks):
        delay = t0 + i / RATE - time.time()
        if delay > 0:
            time.sleep(delay)
        key, value = request_msg(k)
        produce(pp, "aftersales.requests.v1", key, value)
        pp.poll(0)
    pp.flush(30)
    return first, time.time()


def wait_arrivals(sink, first, n):
    """Waits up to WAIT_S for n arrivals after the first ones; returns when it stopped."""
    deadline = time.time() + WAIT_S
    while len(arrivals(sink, first)) < n and time.time() < deadline:
        time.sleep(0.2)
    return time.time()


def metrics(logfile):
    m = re.search(r'"http_port":(\d+)', open(logfile).read())
    if not m:
        return []
    with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % m.group(1), timeout=5) as r:
        return [x for x in r.read().decode().splitlines() if not x.startswith("#")]


def p99_of(lat, what):
    lat = sorted(lat)
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    log("%s: p50=%.1fms p99=%.1fms max=%.1fms" % (what, p50, p99, lat[-1]))
    return p99


def main():
    with Stack("notification") as stack:
        env = stack.env("notification", "bench-notification", **LOW_LATENCY, **SENDER)
        stack.migrate("as-notification", env, "notification")
        w, sink, rate = sends(stack, env)
        p99, unanswered = full_flow(stack, env, sink, PACED_WARM + int(RATE * SECONDS))
        rss = peak_rss_kb(w.pid)
        log("notification worker peak RSS %.1f MB" % (rss / 1024))
        sink.close()
        print("bench notification broker=%s sends_per_s=%d p99_first_response_ms=%d unanswered=%d"
              " rss_mb=%d %s" % (BROKER, rate, round(p99), unanswered, round(rss / 1024),
                                 stack.broker_cpu_field()), flush=True)


if __name__ == "__main__":
    main()
