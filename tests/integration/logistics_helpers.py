"""Helpers of the logistics tests (tests/integration/test_logistics*.py).

They publish what upstream (orders), intake (CaseOpened, with the shared
cases.cases row it writes), review (ReturnInstructions), carriers
(TrackingScan, CarrierVerificationAnswered), buyers (ReturnShipped),
warehouses (WarehouseReceipt) and agents (ReceiptLinked) would: real
protobuf bytes on the real topics. Inquiry ids are recomputed as the
README's "Identifiers" section says, in Python.
"""
import uuid

from conftest import CASES_TOPIC, SLOW, dead_letters, start_logistics, wait_until
from inspection_helpers import events, ns_id
from review_helpers import (DAY_US, HOUR_US, LOGISTICS_TOPIC, REVIEW_TOPIC, insert_case_rows,
                            new_case, now_us, of_kind, pbm, produce_on)

ORDERS_TOPIC = "aftersales.orders.v1"
KINDS = {1: "delivered_not_received", 2: "stalled", 3: "not_received", 4: "return_transit"}


def inquiry_id(kind, subject, n=1):
    """uuid5("aftersales.carrier_inquiry", "<kind>|<case_id or tracking>|<n>")."""
    return ns_id("aftersales.carrier_inquiry", f"{kind}|{subject}|{n}")


def tag():
    return uuid.uuid4().hex[:10]


def order_env(h, field, payload, order_id):
    return h.envelope(field, payload, case_id="", order_id=order_id)


def produce_orders(h, envs):
    h.produce_many([(e.order_id, e.SerializeToString(), None) for e in envs], topic=ORDERS_TOPIC)


def placed(h, order_id, buyer_id):
    m = pbm(h)
    from orders_pb2 import OrderPlaced
    _ = m
    return order_env(h, "order_placed", OrderPlaced(order_id=order_id, buyer_id=buyer_id,
                                                    merchant_id="m-1", placed_at_us=now_us()),
                     order_id)


def shipped(h, order_id, tracking, carrier="SF", lines=(("l1", 1),), shipped_at=None,
            expected=0, shipment_id="s-1"):
    from orders_pb2 import OrderShipped
    s = OrderShipped(order_id=order_id, shipment_id=shipment_id, carrier=carrier,
                     tracking_number=tracking, shipped_at_us=shipped_at or now_us() - DAY_US,
                     expected_delivery_us=expected)
    for line_id, q in lines:
        s.lines.add(line_id=line_id, quantity=q)
    return order_env(h, "order_shipped", s, order_id)


def delivered(h, order_id, at=None, proof="locker 12", shipment_id="s-1"):
    from orders_pb2 import OrderDelivered
    return order_env(h, "order_delivered", OrderDelivered(order_id=order_id, shipment_id=shipment_id,
                                                          delivered_at_us=at or now_us(), proof=proof),
                     order_id)


def ship_order(h, order_id=None, buyer_id=None, tracking=None, carrier="SF", **kw):
    """OrderPlaced + OrderShipped on the orders topic; returns (order, buyer, tracking)."""
    t = tag()
    order_id, buyer_id = order_id or f"o-{t}", buyer_id or f"b-{t}"
    tracking = tracking or f"{carrier}{t}"
    produce_orders(h, [placed(h, order_id, buyer_id), shipped(h, order_id, tracking, carrier, **kw)])
    return order_id, buyer_id, tracking


def scan_env(h, tracking, status="in_transit", at=None, carrier="SF", location="Shanghai hub",
             proof=""):
    s = pbm(h).logistics.TrackingScan(carrier=carrier, tracking_number=tracking, status=status,
                                      location=location, scanned_at_us=at or now_us(), proof=proof)
    # a carrier knows no case: the envelope names the parcel (its key)
    return h.envelope("tracking_scan", s, case_id=tracking)


def scans(h, envs):
    h.produce_many([(e.tracking_scan.tracking_number, e.SerializeToString(), None) for e in envs],
                   topic=LOGISTICS_TOPIC)


def logistics_case(h, order_id, buyer_id, reason="DELIVERED_NOT_RECEIVED", preferred="REFUND",
                   lines=None):
    """A CaseOpened routed to logistics (and its shared row), published."""
    env = new_case(h, order_id=order_id, buyer_id=buyer_id, case_type="LOGISTICS", reason=reason,
                   lines=lines)
    c = pbm(h).common
    env.case_opened.route = "logistics"
    env.case_opened.preferred_outcome = c.Outcome.Value("OUTCOME_" + preferred)
    insert_case_rows(h, [env], review_clock=False)
    h.produce_many([(env.case_id, env.SerializeToString(), None)], topic=CASES_TOPIC)
    return env.case_id


def review_case(h, lines=None):
    """A review-routed CaseOpened (a return is expected of it later)."""
    env = new_case(h, lines=lines)
    insert_case_rows(h, [env], review_clock=False)
    h.produce_many([(env.case_id, env.SerializeToString(), None)], topic=CASES_TOPIC)
    return env.case_id


def answer(h, case_id="", inquiry="", finding="LOST", proof="", at=None, event_id=None):
    m = pbm(h).logistics
    a = m.CarrierVerificationAnswered(case_id=case_id, carrier="SF", inquiry_id=inquiry,
                                      finding=m.DeliveryFinding.Value("DELIVERY_FINDING_" + finding),
                                      proof=proof, answered_at_us=at or now_us())
    return produce_on(h, LOGISTICS_TOPIC, "carrier_verification_answered", a, case_id or inquiry,
                      event_id=event_id)


def instructions(h, case_id, ship_by=None, warehouse="WH-CN-SH-01"):
    r = pbm(h).review.ReturnInstructions(case_id=case_id, warehouse_id=warehouse,
                                         ship_by_us=ship_by or now_us() + 7 * DAY_US)
    return produce_on(h, REVIEW_TOPIC, "return_instructions", r, case_id)


def return_shipped(h, case_id, tracking, carrier="YTO", at=None):
    r = pbm(h).logistics.ReturnShipped(case_id=case_id, carrier=carrier, tracking_number=tracking,
                                       shipped_at_us=at or now_us())
    return produce_on(h, LOGISTICS_TOPIC, "return_shipped", r, case_id)


def receipt(h, lines=(("l1", 1),), tracking="", label="", receipt_id=None, condition="sealed",
            at=None, warehouse="WH-CN-SH-01"):
    r = pbm(h).logistics.WarehouseReceipt(warehouse_id=warehouse, tracking_number=tracking,
                                          case_id=label, condition=condition,
                                          received_at_us=at or now_us(),
                                          receipt_id=receipt_id or f"rc-{tag()}")
    for line_id, q in lines:
        r.lines.add(line_id=line_id, quantity=q)
    return produce_on(h, LOGISTICS_TOPIC, "warehouse_receipt", r, label or tracking or "wh")


def linked(h, receipt_id, case_id, agent="agent-7"):
    r = pbm(h).logistics.ReceiptLinked(receipt_id=receipt_id, case_id=case_id, agent_id=agent,
                                       linked_at_us=now_us())
    return produce_on(h, LOGISTICS_TOPIC, "receipt_linked", r, case_id)


def wait_kind(h, reader, kind, n=1, timeout=20, pred=None):
    def ok():
        got = [e for e in of_kind(events(h, reader), kind) if pred is None or pred(e[1])]
        return got if len(got) >= n else None
    return wait_until(ok, timeout * SLOW, interval=0.2, what=f"{n} {kind}")


def wait_dead(h, reader, n, timeout=20):
    return wait_until(lambda: (lambda d: d if len(d) >= n else None)(dead_letters(h, reader)),
                      timeout * SLOW, what=f"{n} dead letters")


def dead_reasons(h, reader):
    return [(d.reason_code, d.detail) for _, d, _ in dead_letters(h, reader)]


def fire(h, kind, key):
    """Makes the deadline (key, kind) due now: the real scanner fires it."""
    h.sql("UPDATE logistics.deadlines SET due_at = now() - interval '1 second'"
          " WHERE case_id = %s AND kind = %s", (key, kind))


def parcel(h, carrier, tracking):
    r = h.sql("SELECT parcel_id, order_id, last_status, last_scan_us, delivered_at_us, scans,"
              " stalled_inquiry FROM logistics.parcels WHERE carrier = %s AND tracking_number = %s",
              (carrier, tracking))
    return r[0] if r else None


__all__ = ["start_logistics", "DAY_US", "HOUR_US", "KINDS", "LOGISTICS_TOPIC", "ORDERS_TOPIC", "REVIEW_TOPIC",
           "now_us", "of_kind", "pbm"]
