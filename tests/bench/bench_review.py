"""bench review: as-review deciding crafted CaseOpened events.

  1. prefill: the shared cases.cases and cases.case_lines rows of every case
     with what was paid (intake writes them in production; review refuses a
     CaseOpened whose paid figures are not intake's), two COPYs;
  2. throughput: N crafted CaseOpened (route review, delivered two days ago;
     ~70% changed-mind approvals with a return, ~20% cheap refund-only, ~10%
     rejections) produced as fast as possible; cases_per_s = cases decided
     (ReviewDecided read back on aftersales.review.v1) / wall time from the
     first produce to the last decision read;
  3. latency: 1,000 cases/s paced for ~10 s; p99 of (ReviewDecided read time
     - CaseOpened produce time);
  4. low rate: the worker restarted with the settings make run gives a
     newcomer (bench.RUN_DEFAULTS, not LOW_LATENCY), LOW_N cases at
     LOW_RATE/s (10/s, a quiet hour) after LOW_WARM uncounted ones: p99_decision_ms_low.
Prints exactly one line: bench review broker=B cases_per_s=N
p99_decision_ms=N p99_decision_ms_low=N low_rate=N broker_cpu_s=N
"""
import io
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
                   bulk_producer, EventReader, log, paced_p99,
                   produce, report_batches, settle)

N_CASES = int(os.environ.get("AS_BENCH_CASES", "20000"))
RATE = int(os.environ.get("AS_BENCH_RATE", "1000"))
SECONDS = float(os.environ.get("AS_BENCH_SECONDS", "10"))
DAY_US = 86400 * 10**6
TAG = uuid.uuid4().hex[:6]


def case_id(i):
    return "c-%s-%07d" % (TAG, i)


def case_kind(i):
    k = i % 10
    return "cheap" if k < 2 else ("reject" if k == 2 else "return")


def case_msg(i):
    cid, oid, now = case_id(i), "o-%s-%07d" % (TAG, i), int(time.time() * 1e6)
    kind = case_kind(i)
    unit = 500 if kind == "cheap" else 3000
    e = envelope_pb2.Envelope()
    e.event_id = str(uuid.uuid4())
    e.event_type = "CaseOpened"
    e.schema_version = 1
    e.case_id, e.order_id = cid, oid
    e.occurred_at_us = now
    e.producer.service = "bench"
    e.producer.instance = "bench-1"
    e.trace_id = uuid.uuid4().hex
    c = e.case_opened
    c.case_id, c.case_number, c.order_id, c.buyer_id, c.merchant_id = cid, "AS-B-" + cid, oid, "b-%d" % i, "m-%d" % (i % 50)
    c.case_type, c.reason = common_pb2.CASE_TYPE_RETURN_REFUND, common_pb2.REASON_CHANGED_MIND
    c.state, c.route, c.request_id = common_pb2.CASE_STATE_OPEN, "review", "r-%d" % i
    c.review_due_us = now + 24 * 3600 * 10**6
    c.preferred_outcome, c.return_method = common_pb2.OUTCOME_REFUND, common_pb2.RETURN_METHOD_PICKUP
    c.declared_unused = kind != "reject"
    c.locale, c.submitted_at_us = "zh-CN", now
    l = c.case_lines.add(line_id="l1", sku="SKU-%d" % (i % 1000), category="apparel", supplier_id="s-1",
                         quantity=1, purchased_quantity=2)
    l.unit_price.amount_minor, l.unit_price.currency = unit, "CNY"
    # Paid in full (2 x unit + shipping): the line's allocation is its list
    # price and the shipping fee's is the fee, as intake records them.
    l.paid_allocated.amount_minor, l.paid_allocated.currency = 2 * unit, "CNY"
    c.lines.add(line_id="l1", sku=l.sku, quantity=1)
    c.claimed_amount.amount_minor, c.claimed_amount.currency = unit, "CNY"
    o = c.order
    o.placed_at_us, o.delivered_at_us = now - 4 * DAY_US, now - 2 * DAY_US
    o.paid.amount_minor, o.paid.currency = 2 * unit + 800, "CNY"
    o.payment_method, o.payment_ref, o.region = common_pb2.PAYMENT_METHOD_CARD, "pay-" + oid, "CN-EAST"
    o.shipping_fee.amount_minor, o.shipping_fee.currency = 800, "CNY"
    o.shipping_paid.amount_minor, o.shipping_paid.currency = 800, "CNY"
    c.buyer_history.first_order_at_us, c.buyer_history.orders = now - 400 * DAY_US, 10
    return cid, e.SerializeToString()


def prefill(dsn, n):
    """The shared rows intake writes when it opens a case: the case with what
    was paid, and its claimed line with the line's paid allocation."""
    t0 = time.time()
    buf, lines = io.StringIO(), io.StringIO()
    for i in range(n):
        cid, oid = case_id(i), "o-%s-%07d" % (TAG, i)
        unit = 500 if case_kind(i) == "cheap" else 3000
        buf.write("%s\tAS-B-%s\tRETURN_REFUND\tOPEN\t%s\tb-%d\tm-%d\tCHANGED_MIND\treview\tCNY\t%d\t%d\tCNY\t800\n"
                  % (cid, cid, oid, i, i % 50, unit, 2 * unit + 800))
        lines.write("%s\t%s\tl1\tSKU-%d\t1\t%d\tCNY\t%d\t2\n" % (cid, oid, i % 1000, unit, 2 * unit))
    buf.seek(0)
    lines.seek(0)
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.copy_expert("COPY cases.cases (case_id, case_number, case_type, state, order_id, buyer_id,"
                        " merchant_id, reason, route, currency, claimed_minor, paid_minor, paid_currency,"
                        " shipping_paid_minor) FROM STDIN", buf)
        cur.copy_expert("COPY cases.case_lines (case_id, order_id, line_id, sku, quantity, unit_minor,"
                        " currency, paid_minor, purchased) FROM STDIN", lines)
        cur.execute("INSERT INTO cases.sla_clocks (case_id, clock, due_at) SELECT case_id, 'review',"
                    " now() + interval '1 day' FROM cases.cases")
    c.close()
    log("prefilled %d case rows in %.1fs" % (n, time.time() - t0))


class DecisionReader(EventReader):
    """Arrival time of the first ReviewDecided of each case, and how many
    of each verdict."""

    def __init__(self, bootstrap):
        super().__init__(bootstrap, "aftersales.review.v1", "review_decided")
        self.at = {}
        self.verdicts = {}

    def on_event(self, d, message, now):
        if d.case_id not in self.at:
            self.at[d.case_id] = now
            self.verdicts[d.verdict] = self.verdicts.get(d.verdict, 0) + 1


def throughput(p, reader):
    msgs = [case_msg(i) for i in range(N_CASES)]
    ids = [cid for cid, _ in msgs]
    t0 = time.time()
    for cid, value in msgs:
        produce(p, "aftersales.cases.v1", cid, value)
    p.flush(60)
    log("produced %d CaseOpened in %.1fs" % (N_CASES, time.time() - t0))
    deadline = time.time() + 600
    while time.time() < deadline:
        done = sum(1 for cid in ids if cid in reader.at)
        if done >= N_CASES:
            break
        time.sleep(0.1)
    else:
        raise RuntimeError("only %d of %d cases decided" % (done, N_CASES))
    t_last = max(reader.at[cid] for cid in ids)
    log("verdicts: %s" % {k: v for k, v in sorted(reader.verdicts.items())})
    return N_CASES / (t_last - t0)


def latency(bootstrap, reader, rate, n, first):
    """p99 of n decisions arrived at rate/s, messages first, first + 1, ..."""
    return paced_p99(bootstrap, "aftersales.cases.v1", reader.at, rate, n, lambda k: case_msg(first + k),
                     "decisions arrived")


def main():
    reader = None
    with Stack("review") as stack:
        try:
            env = stack.env("review", "bench-review", **LOW_LATENCY)
            stack.migrate("as-review", env, "review")
            prefill(stack.dsn, N_CASES + PACED_WARM + int(RATE * SECONDS) + LOW_WARM + LOW_N)
            w = stack.start("as-review", env, "review")
            reader = DecisionReader(stack.bootstrap)
            reader.start()
            p = bulk_producer(stack.bootstrap)
            time.sleep(3)  # the worker's group join
            rate = throughput(p, reader)
            log("throughput: %.0f cases/s (%d cases)" % (rate, N_CASES))
            report_batches(stack.log("review"))
            settle(stack.dsn)
            latency(stack.bootstrap, reader, RATE, PACED_WARM, N_CASES)  # warm-up, not counted
            p99 = latency(stack.bootstrap, reader, RATE, int(RATE * SECONDS), N_CASES + PACED_WARM)
            report_batches(stack.log("review"))  # cumulative: throughput and paced phases
            # Low rate, on the settings make run gives a newcomer.
            stack.stop(w)
            stack.start("as-review", stack.env("review", "bench-review", **RUN_DEFAULTS), "review-defaults")
            time.sleep(5)  # its group join
            low = N_CASES + PACED_WARM + int(RATE * SECONDS)
            latency(stack.bootstrap, reader, LOW_RATE, LOW_WARM, low)  # warm-up, not counted
            p99_low = latency(stack.bootstrap, reader, LOW_RATE, LOW_N, low + LOW_WARM)
            print("bench review broker=%s cases_per_s=%d p99_decision_ms=%d p99_decision_ms_low=%d"
                  " low_rate=%d %s" % (BROKER, rate, round(p99), round(p99_low), LOW_RATE,
                                       stack.broker_cpu_field()), flush=True)
        finally:
            if reader:
                reader.close()


if __name__ == "__main__":
    main()
