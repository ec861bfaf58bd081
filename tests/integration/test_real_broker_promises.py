"""What needs a real broker to test (AS_BROKER=kafka; the first two are
skipped on the mock, which cannot do them): the promises of exactly-once
processing where the mock cluster's limits would break them or hide them.

  - A consumer lagging far past 5 MiB per partition loses nothing: the mock
    keeps about 5 MiB per partition and drops older messages, so a worker
    stopped while more was produced would never see them; Kafka keeps them.
  - The broker stopped mid-load (SIGTERM, scripts/kafka.sh stop) and started
    again on the same data (kafka.sh restart): the workers report not ready
    (/readyz 503, "broker":false) while it is down, resume by themselves, and
    every probe is applied once and echoed once (the relay's idempotent
    producer across a broker restart; the mock has no restart on the same
    data and no idempotent dedupe).
  - Three instances joining and leaving the group under load (a real
    coordinator's rebalances, well under a second each): applied once,
    echoed once. It runs on the mock too, where each rebalance is slower
    (the ASan pass): the promise is the same.

Each checks from outside: the database's per-probe counts and the echo
topic as a consumer of ours reads it.
"""
import threading
import time

import pytest

from conftest import ECHO_TOPIC, PARTITIONS, PROBE_TOPIC, SLOW, echo_events, random_ids, settle, wait_until



def echoes_once(h, ids):
    """Every probe of ids echoed exactly once on the echo topic."""
    per = {}
    for _, e, _ in echo_events(h, h.reader(ECHO_TOPIC)):
        per[e.probe_id] = per.get(e.probe_id, 0) + 1
    missing = [p for p in ids if p not in per]
    doubled = {p: n for p, n in per.items() if n != 1}
    assert not missing and not doubled, f"echo: {len(missing)} missing {missing[:3]}, doubled {list(doubled.items())[:3]}"


def applied_once(h, ids, timeout=120):
    want = set(ids)
    wait_until(lambda: sum(1 for p, n in h.counts().items() if p in want and n >= 1) == len(ids),
               timeout * SLOW, interval=0.5, what=f"{len(ids)} probes applied")
    settle(h, timeout=60)
    counts = h.counts()
    wrong = {p: counts.get(p) for p in ids if counts.get(p) != 1}
    assert not wrong, f"{len(wrong)} probes not applied exactly once: {list(wrong.items())[:5]}"


class Load:
    """Probes produced at a steady rate from a thread of their own, by an
    idempotent producer of the test's (its retries across a broker outage
    must not be what doubles an input)."""

    def __init__(self, h, n, rate):
        from confluent_kafka import Producer
        self.ids = random_ids(n, "load")
        self.values = [h.probe_envelope(p, i).SerializeToString() for i, p in enumerate(self.ids)]
        self.rate = rate
        self.errors = []
        self.stopping = False
        self.p = Producer({"bootstrap.servers": h.bootstrap, "enable.idempotence": True, "acks": "all",
                           "linger.ms": 5, "message.timeout.ms": 120000, "log_level": 2})
        self.t = threading.Thread(target=self._run, daemon=True)

    def _dr(self, err, msg):
        if err:
            self.errors.append(err)

    def _run(self):
        t0 = time.monotonic()
        for i, (pid, v) in enumerate(zip(self.ids, self.values)):
            if self.stopping:
                self.ids = self.ids[:i]  # what was produced is the load
                return
            while True:
                try:
                    self.p.produce(PROBE_TOPIC, key=pid.encode(), value=v, on_delivery=self._dr)
                    break
                except BufferError:
                    self.p.poll(0.05)
            self.p.poll(0)
            ahead = t0 + (i + 1) / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def start(self):
        self.t.start()
        return self

    def done(self):
        return not self.t.is_alive()

    def stop(self):
        """Ends the load where it is (a test that needs it running until
        some step, however long the steps take on this build and broker)."""
        self.stopping = True
        return self.join()

    def join(self, timeout=120):
        self.t.join(timeout * SLOW)
        assert not self.t.is_alive(), "the load did not finish"
        assert self.p.flush(120) == 0, "probes not delivered"
        assert not self.errors, self.errors[:3]


@pytest.mark.kafka_only("the mock keeps about 5 MiB per partition and drops the rest")
def test_consumer_lagging_past_5_mib_per_partition_loses_nothing(h):
    """as-probe stopped while 6+ MiB is produced into each of two
    partitions, then started again: every message applied once and echoed
    once (on the mock the oldest megabytes are gone by then)."""
    w = h.start_worker()
    w.wait_assigned(partitions=PARTITIONS[PROBE_TOPIC])
    assert w.terminate() == 0
    note = "n" * 1000  # the probe's longest note: about 1.2 KB a message
    per_partition = 5600  # about 6.5 MiB each
    ids = []
    for part in (0, 1):
        batch = random_ids(per_partition, f"lag{part}")
        h.produce_many([(p, h.probe_envelope(p, i, note=note).SerializeToString(), part)
                        for i, p in enumerate(batch)])
        ids += batch
    from confluent_kafka import TopicPartition
    r = h.reader(PROBE_TOPIC)
    sizes = [r.c.get_watermark_offsets(TopicPartition(PROBE_TOPIC, p), timeout=10) for p in (0, 1)]
    assert all(lo == 0 and hi == per_partition for lo, hi in sizes), sizes
    w2 = h.start_worker("w2")
    applied_once(h, ids)
    echoes_once(h, ids)
    assert w2.metric("as_messages_processed_total") == len(ids)


@pytest.mark.kafka_only("the mock cannot stop and start again on the same data")
def test_broker_restart_mid_load_not_ready_then_exactly_once(h):
    """SIGTERM to the broker while probes stream in; /readyz 503 with
    "broker":false while it is down; kafka.sh restart on the same data and
    ports; the worker resumes on its own and every probe has one effect."""
    kafka = h.broker.kafka
    w = h.start_worker()
    w.wait_assigned(partitions=PARTITIONS[PROBE_TOPIC])
    load = Load(h, 3000, 400).start()
    wait_until(lambda: sum(h.counts().values()) >= 300, 30 * SLOW, what="the load under way")
    kafka.stop()

    def not_ready():
        status, body = w.http("/readyz")
        return (status, body) if status == 503 and '"broker":false' in body else None
    status, body = wait_until(not_ready, 30 * SLOW, interval=0.2, what="/readyz 503 with the broker down")
    assert w.proc.poll() is None, w.tail()
    applied_down = sum(h.counts().values())
    time.sleep(2)  # down for a while: the worker keeps waiting, and stays unready
    assert w.http("/readyz")[0] == 503
    kafka.restart()
    w.wait_ready(timeout=60)
    load.join()
    applied_once(h, load.ids)
    echoes_once(h, load.ids)
    assert applied_down < len(load.ids), "the load was over before the broker stopped"
    assert w.terminate() == 0


def test_rebalance_three_instances_joining_and_leaving_under_load(h):
    """w1 alone, w2 and w3 join, w1 and w2 leave (SIGTERM) while probes
    stream in; w3 ends with every partition; applied once, echoed once."""
    w1 = h.start_worker("w1")
    w1.wait_assigned(partitions=PARTITIONS[PROBE_TOPIC])
    # Ids for 100 s at 400/s: the load must outlast the rebalances (on the
    # mock under ASan they wait out session.timeout.ms); it stops after the
    # last member left.
    load = Load(h, 40000, 400).start()
    steps = []
    w2 = h.start_worker("w2")
    steps.append(("w2 joined", sum(h.counts().values())))
    time.sleep(1.5)
    w3 = h.start_worker("w3")
    steps.append(("w3 joined", sum(h.counts().values())))
    wait_until(lambda: all(w.assigned() > 0 for w in (w1, w2, w3)), 30 * SLOW,
               what="all three instances assigned")
    assert sum(w.assigned() for w in (w1, w2, w3)) == PARTITIONS[PROBE_TOPIC]
    assert w1.terminate() == 0
    steps.append(("w1 left", sum(h.counts().values())))
    time.sleep(1.5)
    assert w2.terminate() == 0
    steps.append(("w2 left", sum(h.counts().values())))
    time.sleep(1.0)
    assert not load.done(), f"the load was over before the last member left: {steps}"
    load.stop()
    applied_once(h, load.ids)
    w3.wait_assigned(partitions=PARTITIONS[PROBE_TOPIC])
    echoes_once(h, load.ids)
    assert steps[-1][1] < len(load.ids), f"everything was applied before the last member left: {steps}"
    assert sum(w.metric("as_messages_processed_total") for w in (w3,)) > 0
