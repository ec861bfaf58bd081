"""Helpers of the notification tests (tests/integration/test_notification*.py).

They publish what the account system, intake, review, inspection and
logistics would (real protobuf bytes on the real topics): contacts and
erasures on the contacts topic (key and envelope case_id: the buyer id),
CaseOpened and the buyer-visible events; and read back the deliveries the
worker wrote (notification.deliveries) and what it published. The ids are
recomputed here as the README's "Identifiers" section says, in Python.
"""
import time
import uuid

from conftest import CASES_TOPIC, SLOW, start_notification, wait_until
from review_helpers import (INSPECTION_TOPIC, LOGISTICS_TOPIC, REFUNDS_TOPIC, REVIEW_TOPIC,
                            now_us, pbm)

CONTACTS_TOPIC = "aftersales.contacts.v1"
NOTIFICATIONS_TOPIC = "aftersales.notifications.v1"
ROOT_NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")

__all__ = ["CONTACTS_TOPIC", "NOTIFICATIONS_TOPIC", "INSPECTION_TOPIC", "LOGISTICS_TOPIC",
           "REFUNDS_TOPIC", "REVIEW_TOPIC", "CASES_TOPIC", "start_notification", "now_us"]


def ns_id(ns, name):
    return str(uuid.uuid5(uuid.uuid5(ROOT_NS, ns), name))


def notification_id(source_event_id, template_id):
    return ns_id("aftersales.notification", f"{source_event_id}|{template_id}")


def delivery_id(nid, channel):
    return ns_id("aftersales.notification_delivery", f"{nid}|{channel}")


class N:
    def __init__(self, h):
        m = pbm(h)
        import contacts_pb2
        import notification_pb2
        self.m, self.contacts, self.notification = m, contacts_pb2, notification_pb2


def npb(h):
    if not hasattr(h, "_notif_pb"):
        h._notif_pb = N(h)
    return h._notif_pb


def send(h, topic, field, payload, key, case_id=None, order_id="", event_id=None, env=None):
    """Publishes payload in a new envelope (or env, made before: its time kept)."""
    env = env or h.envelope(field, payload, case_id=key if case_id is None else case_id,
                            event_id=event_id, order_id=order_id)
    h.produce_many([(key, env.SerializeToString(), None)], topic=topic)
    return env


def contact(h, buyer_id, locale="en", tz="Asia/Shanghai", phone="+8613800138000",
            email="buyer@example.com", push="", channels=("sms", "email"), quiet=(0, 0),
            updated_at_us=None):
    n = npb(h)
    c = n.contacts.BuyerContactUpdated(buyer_id=buyer_id, locale=locale, time_zone=tz,
                                       phone=phone, email=email, push_token=push,
                                       updated_at_us=updated_at_us or now_us())
    for ch in channels:
        c.channels_allowed.append(n.notification.Channel.Value("CHANNEL_" + ch.upper()))
    c.quiet_hours.start_minute, c.quiet_hours.end_minute = quiet
    return send(h, CONTACTS_TOPIC, "buyer_contact_updated", c, buyer_id)


def wait_contact(h, buyer_id, timeout=20):
    wait_until(lambda: h.scalar("SELECT count(*) FROM notification.contacts WHERE buyer_id = %s",
                                (buyer_id,)) == 1, timeout * SLOW, what="contact stored")


def open_case(h, case_id=None, buyer_id=None, locale="", number=None):
    m = npb(h).m
    tag = uuid.uuid4().hex[:8]
    case_id = case_id or f"case-{tag}"
    buyer_id = buyer_id or f"b-{tag}"
    e = m.cases.CaseOpened(case_id=case_id, case_number=number or f"AS-{tag}",
                           order_id=f"o-{case_id}", buyer_id=buyer_id, locale=locale,
                           submitted_at_us=now_us(), state=m.common.CASE_STATE_OPEN)
    send(h, CASES_TOPIC, "case_opened", e, case_id)
    wait_until(lambda: h.scalar("SELECT count(*) FROM notification.cases WHERE case_id = %s",
                                (case_id,)) == 1, 20 * SLOW, what="case projected")
    return case_id, buyer_id


def deliveries(h, where="true", args=None):
    """[dict] of notification.deliveries rows matching where, in case order."""
    cols = ["delivery_id", "notification_id", "rank", "case_id", "buyer_id", "channel",
            "template_id", "template_version", "locale", "subject", "body", "urgent", "case_seq",
            "case_arrival", "status", "source_event_id", "submitted_at_us"]
    rows = h.sql(f"SELECT {', '.join(cols)}, extract(epoch FROM due_at - now())"
                 f" FROM notification.deliveries WHERE {where} ORDER BY case_seq, case_arrival, rank",
                 args)
    return [dict(zip(cols + ["due_in_s"], [str(v) if k in ("delivery_id", "notification_id")
                                           else v for k, v in zip(cols + ["x"], r)]))
            for r in rows]


def wait_deliveries(h, where, args, n, timeout=20):
    """The deliveries once there are n (or more); fails naming those there were."""
    try:
        return wait_until(lambda: (lambda d: d if len(d) >= n else None)(deliveries(h, where,
                                                                                   args)),
                          timeout * SLOW, what=f"{n} deliveries where {where} {args}")
    except AssertionError as e:
        got = [(d["template_id"], d["channel"]) for d in deliveries(h, where, args)]
        raise AssertionError(f"{e}; there are {len(got)}: {got}") from None


def money(h, minor, currency="CNY"):
    mm = npb(h).m.common.Money(amount_minor=minor, currency=currency)
    return mm
