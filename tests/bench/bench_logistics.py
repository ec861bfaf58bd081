"""bench logistics: as-logistics projecting tracking scans and matching
warehouse receipts.

  1. prefill: P shipped forward parcels (with their orders) and R expected
     returns (cases with one claimed line, a return shipped with its
     tracking number), COPYd into the logistics schema as the worker
     writes them;
  2. throughput: N TrackingScan events over the P parcels (out of order
     within a parcel, a few repeated) produced as fast as possible;
     scans_per_s = scans projected (the parcels' scan counts) / wall time
     from the first produce to the last one projected;
  3. latency (after a VACUUM of the deadlines and parcels the bulk phase
     churned, and the CHECKPOINT every benchmark does): WarehouseReceipt at
     1,000/s paced for ~10 s, each matched by
     tracking number; p99 of (ReturnReceived read time - receipt produce
     time);
  4. the worker's peak RSS (VmHWM).
Prints exactly one line: bench logistics broker=B scans_per_s=N
p99_match_ms=N rss_mb=N broker_cpu_s=N
"""
import io
import os
import sys
import time
import uuid

sys.path.insert(0, os.environ.get("AS_GEN_PY", "build/gen/py"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import envelope_pb2  # noqa: E402
import psycopg2  # noqa: E402
from bench import (BROKER, LOW_LATENCY, PACED_WARM, Stack, bulk_producer, ArrivalReader, log,  # noqa: E402
                   paced_p99, peak_rss_kb, produce, report_batches, settle)

N = int(os.environ.get("AS_BENCH_SCANS", "100000"))
PARCELS = int(os.environ.get("AS_BENCH_PARCELS", "10000"))
RATE = int(os.environ.get("AS_BENCH_RATE", "1000"))
SECONDS = float(os.environ.get("AS_BENCH_SECONDS", "10"))
TAG = uuid.uuid4().hex[:6]


def tracking(i):
    return "SF%s%07d" % (TAG, i)


def return_tracking(i):
    return "YT%s%07d" % (TAG, i)


def case_id(i):
    return "c-%s-%07d" % (TAG, i)


def prefill(dsn, parcels, returns):
    t0 = time.time()
    now = int(time.time() * 1e6)
    orders, rows, cases, rets = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
    for i in range(parcels):
        oid = "o-%s-%07d" % (TAG, i)
        orders.write("%s\tb-%s-%d\n" % (oid, TAG, i))
        rows.write("SF\t%s\t1\t%s\ts-1\t{l1}\t{1}\t%d\t%d\n" % (tracking(i), oid, now, now + 7 * 86400 * 10**6))
    for i in range(returns):
        cid = case_id(i)
        cases.write("%s\to-%s\tb-%s\treview\t7\t1\tzh-CN\t{l1}\t{1}\n" % (cid, cid, cid))
        rets.write("%s\tWH-1\t%d\tYTO\t%s\t%d\n" % (cid, now + 7 * 86400 * 10**6, return_tracking(i), now))
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        for buf, sql in ((orders, "logistics.orders (order_id, buyer_id)"),
                         (rows, "logistics.parcels (carrier, tracking_number, direction, order_id,"
                                " shipment_id, line_ids, quantities, shipped_at_us, expected_delivery_us)"),
                         (cases, "logistics.cases (case_id, order_id, buyer_id, route, reason,"
                                 " preferred_outcome, locale, line_ids, quantities)"),
                         (rets, "logistics.returns (case_id, warehouse_id, ship_by_us, carrier,"
                                " tracking_number, shipped_at_us)")):
            buf.seek(0)
            cur.copy_expert("COPY %s FROM STDIN" % sql, buf)
        cur.execute("ANALYZE logistics.parcels; ANALYZE logistics.returns; ANALYZE logistics.cases")
    c.close()
    log("prefilled %d parcels and %d returns in %.1fs" % (parcels, returns, time.time() - t0))


def envelope(kind, key, case_id="", order_id=""):
    e = envelope_pb2.Envelope()
    e.event_id = str(uuid.uuid4())
    e.event_type = kind
    e.schema_version = 1
    e.case_id, e.order_id = case_id or key, order_id
    e.occurred_at_us = int(time.time() * 1e6)
    e.producer.service = "bench"
    e.producer.instance = "bench-1"
    e.trace_id = uuid.uuid4().hex
    return e


STATUSES = ("picked_up", "in_transit", "sorted", "in_transit", "out_for_delivery")


def scan_msg(k, t0):
    i = k % PARCELS
    e = envelope("TrackingScan", tracking(i))
    s = e.tracking_scan
    s.carrier, s.tracking_number, s.location = "SF", tracking(i), "hub-%d" % (k % 50)
    # a parcel's scans arrive out of order: the later half of each round first
    rnd = k // PARCELS
    s.scanned_at_us = t0 + (rnd ^ 1) * 1000 + i
    s.status = STATUSES[rnd % len(STATUSES)]
    return tracking(i), e.SerializeToString()


def receipt_msg(i):
    e = envelope("WarehouseReceipt", return_tracking(i))
    r = e.warehouse_receipt
    r.warehouse_id, r.tracking_number, r.condition = "WH-1", return_tracking(i), "sealed"
    r.received_at_us, r.receipt_id = int(time.time() * 1e6), "rc-%s-%07d" % (TAG, i)
    r.lines.add(line_id="l1", quantity=1)
    return return_tracking(i), e.SerializeToString()


def projected(dsn):
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.execute("SELECT coalesce(sum(scans), 0) FROM logistics.parcels WHERE direction = 1")
        n = cur.fetchone()[0]
    c.close()
    return n


def vacuum(dsn):
    """After the bulk phase: the vacuum autovacuum runs within its naptime
    anyway (100,000 scans move each parcel's one stall deadline ten times:
    non-HOT updates, due_at is indexed), so that the paced phase measures
    steady state. Without it, its first minute matched receipts at ~5 ms
    each instead of ~0.3 ms (p99 20-30 s; seen on both brokers)."""
    t = time.time()
    c = psycopg2.connect(dsn)
    c.autocommit = True
    c.cursor().execute("VACUUM ANALYZE logistics.deadlines, logistics.parcels")
    c.close()
    log("vacuumed after the bulk phase in %.1fs" % (time.time() - t))


def throughput(p, dsn):
    t_scan = int(time.time() * 1e6) - 3600 * 10**6
    msgs = [scan_msg(k, t_scan) for k in range(N)]
    t0 = time.time()
    for key, value in msgs:
        produce(p, "aftersales.logistics.v1", key, value)
    p.flush(60)
    log("produced %d TrackingScan in %.1fs" % (N, time.time() - t0))
    deadline = time.time() + 600
    while True:
        n = projected(dsn)
        if n >= N:
            break
        if time.time() > deadline:
            raise RuntimeError("only %d of %d scans projected" % (n, N))
        time.sleep(0.1)
    return N / (time.time() - t0)


def latency(bootstrap, reader, rate, n, first):
    """p99 of n receipts matched at rate/s, messages first, first + 1, ..."""
    return paced_p99(bootstrap, "aftersales.logistics.v1", reader.at, rate, n, lambda k: receipt_msg(first + k),
                     "receipts matched")


def main():
    reader = None
    paced = int(RATE * SECONDS)
    with Stack("logistics") as stack:
        try:
            env = stack.env("logistics", "bench-logistics", **LOW_LATENCY)
            stack.migrate("as-logistics", env, "logistics")
            prefill(stack.dsn, PARCELS, PACED_WARM + paced)
            w = stack.start("as-logistics", env, "logistics")
            # arrival time of each return's ReturnReceived, by tracking number
            reader = ArrivalReader(stack.bootstrap, "aftersales.logistics.v1", "return_received",
                                   lambda e: e.tracking_number)
            reader.start()
            p = bulk_producer(stack.bootstrap)
            time.sleep(3)  # the worker's group join
            rate = throughput(p, stack.dsn)
            log("throughput: %.0f scans/s (%d scans over %d parcels)" % (rate, N, PARCELS))
            report_batches(stack.log("logistics"))
            vacuum(stack.dsn)
            settle(stack.dsn)
            latency(stack.bootstrap, reader, RATE, PACED_WARM, 0)  # warm-up, not counted
            p99 = latency(stack.bootstrap, reader, RATE, paced, PACED_WARM)
            report_batches(stack.log("logistics"))
            rss = peak_rss_kb(w.pid)
            log("peak RSS %.1f MB" % (rss / 1024))
            print("bench logistics broker=%s scans_per_s=%d p99_match_ms=%d rss_mb=%d %s"
                  % (BROKER, rate, round(p99), round(rss / 1024), stack.broker_cpu_field()), flush=True)
        finally:
            if reader:
                reader.close()


if __name__ == "__main__":
    main()
