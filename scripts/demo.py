"""make run's demonstration: sends a few events into the running fleet and
prints what comes out, decoded, so a newcomer sees the runtime at work.

Today the fleet's only worker is the runtime's probe worker: this sends
synthetic probes (one twice, to show the inbox dedupe), one malformed
message and one that breaks the probe's contract (to show the dead-letter
path), then prints the echo and dead-letter events as they arrive.
"""
import argparse
import os
import sys
import time
import uuid

sys.path.insert(0, os.environ.get("AS_GEN_PY", "build/gen/py"))
import envelope_pb2  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402


def probe(probe_id, seq, amount):
    e = envelope_pb2.Envelope(event_id=str(uuid.uuid4()), event_type="SyntheticProbe",
                              schema_version=1, case_id=probe_id,
                              occurred_at_us=int(time.time() * 1e6), trace_id=uuid.uuid4().hex)
    e.producer.service = "demo"
    e.producer.instance = "make-run"
    e.synthetic_probe.probe_id = probe_id
    e.synthetic_probe.seq = seq
    e.synthetic_probe.amount_minor = amount
    return e


def describe(env):
    kind = env.WhichOneof("payload")
    body = getattr(env, kind)
    if kind == "dead_letter":
        return "dead letter: reason=%s detail=%r from %s[%d]@%d" % (
            body.reason_code, body.detail, body.source_topic, body.source_partition, body.source_offset)
    if kind == "probe_echoed":
        return "probe echoed: probe_id=%s seq=%d count=%d total_minor=%d" % (
            body.probe_id, body.seq, body.count, body.total_minor)
    return "%s: %s" % (kind, str(body).replace("\n", " "))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--dsn", default="")
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()

    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "demo-" + uuid.uuid4().hex[:8],
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["aftersales.probe-echo.v1", "aftersales.deadletter.v1"])
    p = Producer({"bootstrap.servers": args.bootstrap})
    sent = [probe("demo-%d" % i, i, 100 * (i + 1)) for i in range(3)]
    for e in sent:
        p.produce("aftersales.probe.v1", key=e.synthetic_probe.probe_id, value=e.SerializeToString())
    p.produce("aftersales.probe.v1", key="demo-0", value=sent[0].SerializeToString())  # a redelivery
    p.produce("aftersales.probe.v1", key="demo-bad", value=b"\x08not a protobuf envelope")
    p.produce("aftersales.probe.v1", key="demo-neg", value=probe("demo-neg", 9, -5).SerializeToString())
    p.flush(10)
    print("demo: sent 3 probes, one of them twice, 1 malformed message, 1 probe with a negative amount")

    expected, seen, deadline = 5, 0, time.time() + args.seconds
    while seen < expected and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        env = envelope_pb2.Envelope()
        env.ParseFromString(m.value())
        print("demo: %-26s %s" % (m.topic(), describe(env)))
        seen += 1
    c.close()
    print("demo: %d of %d expected events seen (3 echoes, 2 dead letters; the redelivery had no effect)"
          % (seen, expected))
    return 0 if seen == expected else 1


if __name__ == "__main__":
    sys.exit(main())
