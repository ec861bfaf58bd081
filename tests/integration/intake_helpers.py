"""Helpers for intake's issue-8 tests: orders with any amounts, discounts,
payment (or none), and reading answers per request id."""
import time

from conftest import (CASES_TOPIC, SLOW, case_events, intake_pb, produce_orders, wait_until)

DAY_US = 86400 * 1_000_000


def order(h, order_id, buyer_id, lines, shipping=800, paid="sum", paid_currency="CNY", currency="CNY",
          t0=None, delivered=True):
    """[(name, Envelope)] for lines = [(line_id, unit_minor, quantity[, discount])]; shipping None
    = no fee; paid "sum" = what the lines and fee cost, None = no OrderPaid, else that amount."""
    common, orders, _, _ = intake_pb(h)
    t0 = t0 or int(time.time() * 1e6) - DAY_US
    placed = orders.OrderPlaced(order_id=order_id, buyer_id=buyer_id, merchant_id="m-1",
                                placed_at_us=t0, region="CN-31")
    if shipping is not None:
        placed.shipping_fee.amount_minor, placed.shipping_fee.currency = shipping, currency
    total = shipping or 0
    for spec in lines:
        line_id, unit, qty = spec[:3]
        l = placed.lines.add(line_id=line_id, sku="SKU-" + line_id, category="apparel",
                             supplier_id="sup-1", quantity=qty, title="T")
        l.unit_price.amount_minor, l.unit_price.currency = unit, currency
        if len(spec) > 3:
            l.discount.amount_minor, l.discount.currency = spec[3], currency
        total += unit * qty - (spec[3] if len(spec) > 3 else 0)
    out = [("order_placed", placed)]
    if paid is not None:
        p = orders.OrderPaid(order_id=order_id, payment_method=common.PAYMENT_METHOD_WALLET,
                             payment_ref="pay-" + order_id, paid_at_us=t0 + 1000)
        p.amount_paid.amount_minor = total if paid == "sum" else paid
        p.amount_paid.currency = paid_currency
        out.append(("order_paid", p))
    if delivered:
        out.append(("order_delivered", orders.OrderDelivered(order_id=order_id, shipment_id="s-1",
                                                             delivered_at_us=t0 + 3000, proof="locker")))
    return [(f, h.envelope(f, p, case_id="", order_id=order_id)) for f, p in out]


def project(h, order_id, buyer_id, lines, **kw):
    """Produces the order's events and waits until intake has projected them."""
    evs = order(h, order_id, buyer_id, lines, **kw)
    produce_orders(h, evs)
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND placed_at_us IS NOT NULL",
                             (order_id,)), 20 * SLOW, what="order projected")
    return evs


def answers(evs):
    """{request_id: [(kind, payload)]}: every answer naming a request id."""
    out = {}
    for k, p, _, _ in evs:
        if k in ("buyer_acknowledged", "request_rejected"):
            out.setdefault(p.request_id, []).append((k, p))
    return out


def wait_answers(h, reader, rids, timeout=30):
    """Reads the cases topic until every request id in rids has an answer."""
    def ok():
        evs = case_events(h, reader)
        return evs if set(rids) <= set(answers(evs)) else None
    return wait_until(ok, timeout * SLOW, interval=0.2, what="answers")


def opened_by_request(evs):
    return {p.request_id: p for k, p, _, _ in evs if k == "case_opened"}


__all__ = ["CASES_TOPIC", "DAY_US", "order", "project", "answers", "wait_answers", "opened_by_request"]
