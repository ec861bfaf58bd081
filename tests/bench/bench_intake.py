"""bench intake: as-intake against a projection of 100,000 orders.

  1. prefill: OrderPlaced + OrderPaid + OrderDelivered for N orders, produced
     in chunks (the embedded broker keeps only ~5 MiB per partition) and
     waited for until the projection holds them all;
  2. throughput: a stream of valid requests (one per order, distinct
     idempotency keys) produced as fast as possible; requests_per_s is the
     number of cases opened per second from the first to the last, read
     off the shared case-number sequence;
  3. latency: 1,000 requests/s paced for ~10 s on other orders; a consumer
     of aftersales.cases.v1 takes the time each BuyerAcknowledged arrives;
     p99_ack_ms is the 99th percentile of arrival - submitted_at;
  4. low rate: the worker restarted with the settings make run gives a
     newcomer (bench.RUN_DEFAULTS, not LOW_LATENCY), LOW_N requests at
     LOW_RATE/s (10/s, a quiet hour) after LOW_WARM uncounted ones: p99_ack_ms_low.
Prints exactly one line: bench intake broker=B requests_per_s=N p99_ack_ms=N
p99_ack_ms_low=N low_rate=N broker_cpu_s=N
"""
import os
import sys
import time
import uuid

sys.path.insert(0, os.environ.get("AS_GEN_PY", "build/gen/py"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import envelope_pb2  # noqa: E402
import common_pb2  # noqa: E402
import psycopg2  # noqa: E402
from bench import (BROKER, LOW_LATENCY, LOW_N, LOW_RATE, LOW_WARM, PACED_WARM, RUN_DEFAULTS, Stack,  # noqa: E402
                   bulk_producer, EventReader, log, paced_producer,
                   produce, report_batches, settle)

N_ORDERS = int(os.environ.get("AS_BENCH_ORDERS", "100000"))
N_REQ = int(os.environ.get("AS_BENCH_REQUESTS", "50000"))
RATE = int(os.environ.get("AS_BENCH_RATE", "1000"))
SECONDS = float(os.environ.get("AS_BENCH_SECONDS", "10"))
CHUNK = 20000


def envelope(order_id, field, fill):
    e = envelope_pb2.Envelope()
    e.event_id = str(uuid.uuid4())
    e.schema_version = 1
    e.order_id = order_id
    e.occurred_at_us = int(time.time() * 1e6)
    e.producer.service = "bench"
    e.producer.instance = "bench-1"
    e.trace_id = uuid.uuid4().hex
    fill(getattr(e, field))
    e.event_type = type(getattr(e, field)).DESCRIPTOR.name
    return e


def order_msgs(i):
    oid, t0 = "o-%07d" % i, int(time.time() * 1e6) - 86400 * 10**6

    def placed(p):
        p.order_id, p.buyer_id, p.merchant_id, p.placed_at_us, p.region = oid, "b-%07d" % i, "m-%d" % (i % 50), t0, "CN-31"
        l = p.lines.add(line_id="l1", sku="SKU-%d" % (i % 1000), category="apparel", supplier_id="s-1", quantity=2, title="T")
        l.unit_price.amount_minor, l.unit_price.currency = 1999, "CNY"

    def paid(p):
        p.order_id, p.payment_method, p.payment_ref, p.paid_at_us = oid, common_pb2.PAYMENT_METHOD_CARD, "pay", t0 + 1
        p.amount_paid.amount_minor, p.amount_paid.currency = 3998, "CNY"

    def delivered(p):
        p.order_id, p.shipment_id, p.delivered_at_us = oid, "s-1", t0 + 2

    return [(oid, envelope(oid, f, fn).SerializeToString())
            for f, fn in (("order_placed", placed), ("order_paid", paid), ("order_delivered", delivered))]


def request_msg(i):
    oid = "o-%07d" % i
    now = int(time.time() * 1e6)

    def fill(r):
        r.request_id, r.idempotency_key, r.order_id, r.buyer_id = "r-%d" % i, "k-%d" % i, oid, "b-%07d" % i
        r.case_type, r.reason = common_pb2.CASE_TYPE_RETURN_REFUND, common_pb2.REASON_SIZE_MISMATCH
        r.lines.add(line_id="l1", quantity=1)
        r.comment, r.submitted_at_us, r.locale = "尺码偏小，想退货", now, "zh-CN"
        r.preferred_outcome, r.return_method = common_pb2.OUTCOME_REFUND, common_pb2.RETURN_METHOD_PICKUP
    return oid, envelope(oid, "aftersales_requested", fill).SerializeToString()


def scalar(dsn, q):
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.execute(q)
        v = cur.fetchone()[0]
    c.close()
    return v


def wait_for(dsn, q, target, what, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = scalar(dsn, q)
        except psycopg2.Error:
            v = 0
        if v >= target:
            return
        time.sleep(0.2)
    raise RuntimeError("timed out waiting for %s" % what)


def prefill(p, dsn):
    t0 = time.time()
    for start in range(0, N_ORDERS, CHUNK):
        for i in range(start, min(start + CHUNK, N_ORDERS)):
            for key, value in order_msgs(i):
                produce(p, "aftersales.orders.v1", key, value)
        p.flush(60)
        wait_for(dsn, "SELECT count(*) FROM intake.orders WHERE delivered_at_us IS NOT NULL",
                 min(start + CHUNK, N_ORDERS), "projection")
    log("projection of %d orders built in %.1fs" % (N_ORDERS, time.time() - t0))


def opened(dsn):
    return scalar(dsn, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM cases.case_number_seq")


def throughput(p, dsn):
    msgs = [request_msg(i) for i in range(N_REQ)]
    base = opened(dsn)
    for key, value in msgs:
        produce(p, "aftersales.requests.v1", key, value)
    p.flush(60)
    t_first = None
    deadline = time.time() + 600
    while time.time() < deadline:
        n = opened(dsn) - base
        now = time.time()
        if t_first is None and n > 0:
            t_first, n_first = now, n
        if n >= N_REQ:
            return (n - n_first) / max(now - t_first, 1e-6)
        time.sleep(0.05)
    raise RuntimeError("requests not all opened")


class AckReader(EventReader):
    """Latencies of BuyerAcknowledged events (arrival - submitted_at)."""

    def __init__(self, bootstrap):
        super().__init__(bootstrap, "aftersales.cases.v1", "buyer_acknowledged")
        self.lat = []
        self.split = []

    def on_event(self, a, m, now):
        sub_ms = a.submitted_at_us / 1e3
        self.lat.append(now * 1e3 - sub_ms)
        # The relay's producer stamps CreateTime (ms) when it produces: the
        # split between the worker and the way back.
        self.split.append((m.timestamp()[1] - sub_ms, now * 1e3 - m.timestamp()[1]))


def latency(bootstrap, rate, n, first):
    """p99 of the acknowledgements of n requests at rate/s, on orders
    first, first + 1, ..."""
    p = paced_producer(bootstrap)
    reader = AckReader(bootstrap)
    reader.start()
    # The reader's first fetch and the producer's first metadata round trip
    # are not intake's latency: let both settle before the clock starts.
    p.list_topics(timeout=10)
    time.sleep(2)
    t0 = time.time()
    for k in range(n):
        i = first + k
        due = t0 + k / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        key, value = request_msg(i)  # submitted_at = now
        produce(p, "aftersales.requests.v1", key, value)
        p.poll(0)
    p.flush(30)
    deadline = time.time() + 60
    while len(reader.lat) < n and time.time() < deadline:
        time.sleep(0.1)
    reader.close()
    lat = sorted(reader.lat)
    if len(lat) < n:
        raise RuntimeError("only %d of %d acknowledgements arrived" % (len(lat), n))
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    log("paced %d requests at %d/s: p50=%.1fms p99=%.1fms max=%.1fms" % (n, rate, p50, p99, lat[-1]))
    for i, what in ((0, "submitted -> relay produced"), (1, "relay produced -> read back")):
        v = sorted(x[i] for x in reader.split)
        log("  %s: p50=%.1fms p99=%.1fms (ms-resolution timestamps)"
            % (what, v[len(v) // 2], v[min(len(v) - 1, int(len(v) * 0.99))]))
    return p99


def main():
    if N_REQ + PACED_WARM + int(RATE * SECONDS) + LOW_WARM + LOW_N > N_ORDERS:
        raise SystemExit("bench intake: AS_BENCH_ORDERS must cover the requests of both phases")
    with Stack("intake") as stack:
        dsn = stack.dsn
        env = stack.env("intake", "bench-intake", **LOW_LATENCY)
        stack.migrate("as-intake", env, "intake")
        w = stack.start("as-intake", env, "intake")
        p = bulk_producer(stack.bootstrap)
        prefill(p, dsn)
        rate = throughput(p, dsn)
        log("throughput: %.0f requests/s (%d requests)" % (rate, N_REQ))
        report_batches(stack.log("intake"))
        t = time.time()
        wait_for(dsn, "SELECT (count(*) = 0)::int FROM intake.outbox WHERE sent_at IS NULL", 1, "outbox drained")
        log("outbox drained %.1fs after the last case opened" % (time.time() - t))
        settle(dsn)
        latency(stack.bootstrap, RATE, PACED_WARM, N_REQ)  # warm-up, not counted
        p99 = latency(stack.bootstrap, RATE, int(RATE * SECONDS), N_REQ + PACED_WARM)
        stack.stop(w)
        stack.start("as-intake", stack.env("intake", "bench-intake", **RUN_DEFAULTS), "intake-defaults")
        time.sleep(5)  # its group join: the paced requests measure the worker, not the join
        low = N_REQ + PACED_WARM + int(RATE * SECONDS)
        latency(stack.bootstrap, LOW_RATE, LOW_WARM, low)  # warm-up, not counted
        p99_low = latency(stack.bootstrap, LOW_RATE, LOW_N, low + LOW_WARM)
        print("bench intake broker=%s requests_per_s=%d p99_ack_ms=%d p99_ack_ms_low=%d low_rate=%d %s"
              % (BROKER, rate, round(p99), round(p99_low), LOW_RATE, stack.broker_cpu_field()), flush=True)


if __name__ == "__main__":
    main()
