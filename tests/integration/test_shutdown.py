"""SIGTERM is a clean shutdown.

The worker finishes its batch, drains the outbox, commits offsets, leaves the
consumer group (LeaveGroup sent and answered, seen in librdkafka's cgrp debug
log) and exits 0 -- under the ASan+UBSan build too, with no leak or error
report on stderr. Proof on the other side: a new worker in the same group gets
every partition and processes nothing again: of a marker produced on every
partition after it joined, it processes the markers and nothing else, no
duplicate, probe_state, inbox, outbox and echoes grown by the markers only.
"""
import time

from conftest import ECHO_TOPIC, SANITIZED, SLOW, random_ids, settle, wait_until



def test_sigterm_drains_commits_and_leaves_group(h):
    over = {"AS_SHUTDOWN_TIMEOUT_MS": 15000}
    w1 = h.start_worker(name="w1", AS_RDKAFKA_DEBUG="cgrp", AS_LOG_LEVEL="debug", **over)
    w1.wait_assigned(partitions=12)
    ids = random_ids(30)
    envs = [h.probe_envelope(pid, s, amount=1) for s in range(4) for pid in ids]
    h.produce_many([(e.synthetic_probe.probe_id, e.SerializeToString(), None) for e in envs])
    wait_until(lambda: h.scalar("SELECT count(*) FROM probe.inbox") == len(envs), 30 * SLOW,
               what="probes applied")

    # Straight after the last commit: the relay may still have rows in flight.
    t0 = time.monotonic()
    code = w1.terminate(timeout=30)
    stderr = w1.text()
    assert code == 0, f"exit {code}\n{w1.tail(80)}"
    assert not w1.sanitizer_report(), stderr[-4000:]
    if SANITIZED:
        assert "LeakSanitizer" not in stderr and "AddressSanitizer" not in stderr
    assert time.monotonic() - t0 < 20 * SLOW
    msgs = [r.get("msg") for r in w1.lines()]
    assert "shutting down" in msgs and "consumer closed" in msgs, msgs[-10:]
    stopped = w1.logged("worker stopped")
    assert stopped and stopped[-1]["exit_code"] == 0
    assert "shutdown: outbox not drained in time; the next relay publishes it" not in msgs
    # Drained: every row marked sent, every echo on the wire.
    assert h.scalar("SELECT count(*) FROM probe.outbox WHERE sent_at IS NULL") == 0
    assert h.scalar("SELECT count(*) FROM probe.outbox") == len(envs)
    on_wire = {h.decode(m.value()).event_id for m in h.reader(ECHO_TOPIC).drain()}
    assert on_wire == {str(x) for (x,) in h.sql("SELECT event_id FROM probe.outbox")}

    state = sorted(h.sql("SELECT * FROM probe.probe_state"))
    inbox = h.scalar("SELECT count(*) FROM probe.inbox")

    # Left the group: librdkafka (debug=cgrp) sent LeaveGroup and the broker
    # answered, before the consumer was reported closed. (The mock broker
    # does not list groups, and it delays the next join by the session
    # timeout even after an explicit leave, so timing cannot tell.)
    recs = w1.lines()
    leave = [i for i, r in enumerate(recs) if r.get("facility") == "LEAVEGROUP"
             and "LeaveGroup response received" in r.get("detail", "")]
    closed = [i for i, r in enumerate(recs) if r.get("msg") == "consumer closed"]
    assert leave and closed and leave[0] < closed[0], "no LeaveGroup round trip before close"
    assert not [r for r in recs if r.get("facility") == "LEAVEGROUP" and "rror" in r.get("detail", "")]

    w2 = h.start_worker(name="w2", **over)
    w2.wait_assigned(timeout=30, partitions=12)
    # Offsets committed: nothing comes again. A marker on every partition,
    # after the old messages: once w2 has processed the 12 markers, anything
    # it were to read again it has read already (a partition is read in
    # order), and settle() has its outbox published.
    markers = [h.probe_envelope(pid, 0, amount=1) for pid in random_ids(12, prefix="marker")]
    h.produce_many([(e.synthetic_probe.probe_id, e.SerializeToString(), p) for p, e in enumerate(markers)])
    wait_until(lambda: w2.metric("as_messages_processed_total") >= len(markers), 30 * SLOW,
               what="markers processed")
    settle(h)
    assert w2.metric("as_messages_processed_total") == len(markers)
    assert w2.metric("as_messages_duplicate_total") == 0
    marked = {e.synthetic_probe.probe_id for e in markers}
    assert sorted(r for r in h.sql("SELECT * FROM probe.probe_state") if r[0] not in marked) == state
    assert h.scalar("SELECT count(*) FROM probe.inbox") == inbox + len(markers)
    assert h.scalar("SELECT count(*) FROM probe.outbox") == len(envs) + len(markers)
    assert len(h.reader(ECHO_TOPIC).drain()) == len(envs) + len(markers)

    # And the second one shuts down cleanly too, with nothing left to do.
    assert w2.terminate(timeout=30) == 0, w2.tail(80)
    assert not w2.sanitizer_report(), w2.tail(80)
