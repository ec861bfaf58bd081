"""bench inspection: as-inspection judging QcVerdict events.

  1. prefill: N open goods tasks (the cases, their lines, the tasks and the
     task units as the worker writes them from CaseOpened and
     ReturnReceived), COPYs into the inspection schema; one apparel line
     per case, 200 SKUs of one supplier and lot, one buyer per case;
  2. throughput: N verdicts produced as fast as possible, one case in ten
     failing colourfast (so 20 SKUs form defect clusters: their alerts and
     every grant are part of the work); verdicts_per_s = InspectionCompleted
     read back on aftersales.inspection.v1 / wall time from the first
     produce to the last one read;
  3. latency: 1,000 verdicts/s paced for ~10 s; p99 of (InspectionCompleted
     read time - QcVerdict produce time);
  4. the worker's peak RSS (VmHWM) and the alerts raised (clusters).
Prints exactly one line: bench inspection broker=B verdicts_per_s=N
p99_verdict_ms=N clusters=N rss_mb=N broker_cpu_s=N
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

N = int(os.environ.get("AS_BENCH_VERDICTS", "20000"))
RATE = int(os.environ.get("AS_BENCH_RATE", "1000"))
SECONDS = float(os.environ.get("AS_BENCH_SECONDS", "10"))
TAG = uuid.uuid4().hex[:6]
ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")
TASK_NS = uuid.uuid5(ROOT, "aftersales.inspection_task")
ITEMS = ("colourfast", "seams_intact", "size_label", "tags_attached")


def case_id(i):
    return "c-%s-%07d" % (TAG, i)


def task_id(i):
    return str(uuid.uuid5(TASK_NS, "%s|return" % case_id(i)))


def prefill(dsn, n):
    t0 = time.time()
    now = int(time.time() * 1e6)
    cases, lines, tasks, units = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
    for i in range(n):
        cid = case_id(i)
        cases.write("%s\to-%s\tb-%s-%d\t4\t3\tCNY\tt\t%d\n" % (cid, cid, TAG, i, now))
        lines.write("%s\tl1\tSKU-%d\tapparel\tsup-1\tLOT-1\t1\t1\t5900\n" % (cid, i % 200))
        tasks.write("%s\t%s\tf\tapparel\tbuiltin-1\t%d\t%d\n" % (task_id(i), cid, now, now + 48 * 3600 * 10**6))
        units.write("%s\tl1\tSKU-%d\t1\n" % (task_id(i), i % 200))
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        for buf, sql in ((cases, "inspection.cases (case_id, order_id, buyer_id, case_type, reason, currency,"
                                 " has_evidence, opened_at_us)"),
                         (lines, "inspection.case_lines (case_id, line_id, sku, category, supplier_id, lot_id,"
                                 " purchased, claimed, paid_minor)"),
                         (tasks, "inspection.tasks (task_id, case_id, evidence_only, category, standard_version,"
                                 " opened_at_us, due_at_us)"),
                         (units, "inspection.task_lines (task_id, line_id, sku, quantity)")):
            buf.seek(0)
            cur.copy_expert("COPY %s FROM STDIN" % sql, buf)
    c.close()
    log("prefilled %d tasks in %.1fs" % (n, time.time() - t0))


def verdict_msg(i):
    cid, now = case_id(i), int(time.time() * 1e6)
    e = envelope_pb2.Envelope()
    e.event_id = str(uuid.uuid4())
    e.event_type = "QcVerdict"
    e.schema_version = 1
    e.case_id, e.order_id = cid, "o-" + cid
    e.occurred_at_us = now
    e.producer.service = "bench"
    e.producer.instance = "bench-1"
    e.trace_id = uuid.uuid4().hex
    v = e.qc_verdict
    v.case_id, v.task_id, v.inspector_id, v.inspected_at_us = cid, task_id(i), "qc-%d" % (i % 40), now
    fail = i % 10 == 0
    v.defect_confirmed = fail
    for code in ITEMS:
        v.items.add(item_code=code, passed=not (fail and code == "colourfast"))
    return cid, e.SerializeToString()


def throughput(p, reader):
    msgs = [verdict_msg(i) for i in range(N)]
    t0 = time.time()
    for cid, value in msgs:
        produce(p, "aftersales.inspection.v1", cid, value)
    p.flush(60)
    log("produced %d QcVerdict in %.1fs" % (N, time.time() - t0))
    ids = [cid for cid, _ in msgs]
    deadline = time.time() + 600
    while sum(1 for c in ids if c in reader.at) < N:
        if time.time() > deadline:
            raise RuntimeError("only %d of %d verdicts judged" % (sum(1 for c in ids if c in reader.at), N))
        time.sleep(0.1)
    return N / (max(reader.at[c] for c in ids) - t0)


def latency(bootstrap, reader, rate, n, first):
    """p99 of n verdicts judged at rate/s, messages first, first + 1, ..."""
    return paced_p99(bootstrap, "aftersales.inspection.v1", reader.at, rate, n, lambda k: verdict_msg(first + k),
                     "verdicts judged")


def main():
    reader = None
    paced = int(RATE * SECONDS)
    with Stack("inspection") as stack:
        try:
            env = stack.env("inspection", "bench-inspection", **LOW_LATENCY)
            stack.migrate("as-inspection", env, "inspection")
            prefill(stack.dsn, N + PACED_WARM + paced)
            w = stack.start("as-inspection", env, "inspection")
            # arrival time of each case's InspectionCompleted
            reader = ArrivalReader(stack.bootstrap, "aftersales.inspection.v1", "inspection_completed",
                                   lambda e: e.case_id)
            reader.start()
            p = bulk_producer(stack.bootstrap)
            time.sleep(3)  # the worker's group join
            rate = throughput(p, reader)
            log("throughput: %.0f verdicts/s (%d verdicts)" % (rate, N))
            report_batches(stack.log("inspection"))
            settle(stack.dsn)
            latency(stack.bootstrap, reader, RATE, PACED_WARM, N)  # warm-up, not counted
            p99 = latency(stack.bootstrap, reader, RATE, paced, N + PACED_WARM)
            report_batches(stack.log("inspection"))
            with psycopg2.connect(stack.dsn) as c, c.cursor() as cur:
                cur.execute("SELECT (SELECT count(*) FROM inspection.alerts),"
                            " (SELECT count(*) FROM inspection.grants)")
                clusters, grants = cur.fetchone()
            c.close()
            rss = peak_rss_kb(w.pid)
            log("alerts=%d grants=%d peak RSS %.1f MB" % (clusters, grants, rss / 1024))
            print("bench inspection broker=%s verdicts_per_s=%d p99_verdict_ms=%d clusters=%d rss_mb=%d %s"
                  % (BROKER, rate, round(p99), clusters, round(rss / 1024), stack.broker_cpu_field()),
                  flush=True)
        finally:
            if reader:
                reader.close()


if __name__ == "__main__":
    main()
