"""Intake bounds the events it makes at their source (issue 10, item 1).

A request that claims AS_INTAKE_LINES_MAX=1000 lines of an order whose
SKUs, categories and suppliers are 256 characters each would make a
CaseOpened of about 1.07 MB, more than the producer's message.max.bytes
(1,000,000): today its outbox row is never published and every event after
it waits behind it. Intake answers such a request with RequestRejected
request_too_large instead, writes no case, and the next request is answered
as usual.
"""
import time

from conftest import (CASES_TOPIC, SLOW, intake_pb, produce_orders, produce_requests,
                      request_envelope, start_intake, wait_until)
from intake_helpers import answers, wait_answers
from test_intake import setup_order

LONG = 256  # intake_projection.c's TEXT_MAX


def _wide_order(h, order_id, buyer_id, n):
    common, orders, _, _ = intake_pb(h)
    t0 = int(time.time() * 1e6) - 86400 * 1_000_000
    placed = orders.OrderPlaced(order_id=order_id, buyer_id=buyer_id, merchant_id="m-1",
                                placed_at_us=t0, region="CN-31")
    for i in range(n):
        l = placed.lines.add(line_id=f"l{i}", sku=f"{i:06d}".ljust(LONG, "S"),
                             category="c".ljust(LONG, "C"), supplier_id="s".ljust(LONG, "P"),
                             quantity=1, title="T")
        l.unit_price.amount_minor, l.unit_price.currency = 100, "CNY"
    paid = orders.OrderPaid(order_id=order_id, payment_method=common.PAYMENT_METHOD_WALLET,
                            payment_ref="pay-" + order_id, paid_at_us=t0 + 1000)
    paid.amount_paid.amount_minor, paid.amount_paid.currency = 100 * n, "CNY"
    delivered = orders.OrderDelivered(order_id=order_id, shipment_id="s-1",
                                      delivered_at_us=t0 + 3000, proof="locker")
    return [(f, h.envelope(f, p, case_id="", order_id=order_id))
            for f, p in (("order_placed", placed), ("order_paid", paid),
                         ("order_delivered", delivered))]


def test_a_request_whose_case_would_not_fit_the_producer_is_rejected(h):
    start_intake(h, AS_INTAKE_LINES_MAX=1000)
    order_id, buyer_id = "o-wide-1", "b-wide-1"
    produce_orders(h, _wide_order(h, order_id, buyer_id, 1000))
    wait_until(lambda: h.scalar("SELECT count(*) FROM intake.order_lines WHERE order_id = %s",
                                (order_id,)) == 1000, 30 * SLOW, what="the wide order projected")
    reader = h.reader(CASES_TOPIC)
    wide = request_envelope(h, order_id, buyer_id, lines=[(f"l{i}", 1) for i in range(1000)])
    small_order, small_buyer = setup_order(h)
    small = request_envelope(h, small_order, small_buyer)
    produce_requests(h, [wide])
    produce_requests(h, [small])
    wide_id, small_id = (e.aftersales_requested.request_id for e in (wide, small))
    got = answers(wait_answers(h, reader, [wide_id, small_id]))
    (kind, p), = got[wide_id]
    assert kind == "request_rejected" and p.reason_code == "request_too_large", (kind, p)
    assert got[small_id][0][0] == "buyer_acknowledged"
    assert h.scalar("SELECT count(*) FROM cases.cases WHERE order_id = %s", (order_id,)) == 0
