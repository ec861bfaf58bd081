/* intake_projection: order events -> the order projection intake decides on.
 *
 * Each event kind owns a column group of intake.orders (or rows of
 * order_lines / shipments) stamped with the event's own timestamp; a batch's
 * events of one kind are written by one bulk upsert that keeps, per order,
 * the most recent event and only overwrites an older group. Whatever order
 * events arrive in, and however often, the rows converge. Rows are written
 * in order id order so that two transactions lock them in the same order.
 * Events that break the order contract (unsafe ids, negative amounts, bad
 * currencies, a discount above its line) are dead-lettered before anything
 * is written; an OrderPlaced whose line totals or order total do not fit in
 * int64 is dead-lettered as amount_overflow (no later product or sum of its
 * amounts could be computed). */
#include <errno.h>
#include <string.h>

#include "as_money.h"
#include "intake.h"

#define DLQ_AMOUNT_OVERFLOW "amount_overflow"

#define TEXT_MAX 256

enum { K_PLACED, K_LINES, K_PAID, K_SHIPPED, K_DELIVERED, K_CANCELLED, K_COUNT };

static const char *const sql_of[K_COUNT] = {
    [K_PLACED] =
        "INSERT INTO %1$s.orders AS o (order_id, buyer_id, merchant_id, region, shipping_fee_minor,"
        " shipping_currency, placed_at_us) SELECT DISTINCT ON (u.o) u.o, u.b, u.m, u.r, u.f, u.c, u.t"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],"
        " $7::bigint[]) AS u(o, b, m, r, f, c, t) ORDER BY u.o, u.t DESC"
        " ON CONFLICT (order_id) DO UPDATE SET buyer_id = EXCLUDED.buyer_id,"
        " merchant_id = EXCLUDED.merchant_id, region = EXCLUDED.region,"
        " shipping_fee_minor = EXCLUDED.shipping_fee_minor,"
        " shipping_currency = EXCLUDED.shipping_currency, placed_at_us = EXCLUDED.placed_at_us,"
        " updated_at = now() WHERE o.placed_at_us IS NULL OR EXCLUDED.placed_at_us > o.placed_at_us",
    [K_LINES] =
        "INSERT INTO %1$s.order_lines AS l (order_id, line_id, sku, category, supplier_id,"
        " unit_minor, currency, quantity, title, placed_at_us, discount_minor)"
        " SELECT DISTINCT ON (u.o, u.l) u.o, u.l, u.s, u.c, u.p, u.m, u.cur, u.q, u.ti, u.t, u.d"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],"
        " $7::text[], $8::int[], $9::text[], $10::bigint[], $11::bigint[])"
        " AS u(o, l, s, c, p, m, cur, q, ti, t, d)"
        " ORDER BY u.o, u.l, u.t DESC ON CONFLICT (order_id, line_id) DO UPDATE SET"
        " sku = EXCLUDED.sku, category = EXCLUDED.category, supplier_id = EXCLUDED.supplier_id,"
        " unit_minor = EXCLUDED.unit_minor, currency = EXCLUDED.currency,"
        " quantity = EXCLUDED.quantity, title = EXCLUDED.title, placed_at_us = EXCLUDED.placed_at_us,"
        " discount_minor = EXCLUDED.discount_minor"
        " WHERE EXCLUDED.placed_at_us > l.placed_at_us",
    [K_PAID] =
        "INSERT INTO %1$s.orders AS o (order_id, amount_paid_minor, paid_currency, payment_method,"
        " payment_ref, paid_at_us) SELECT DISTINCT ON (u.o) u.o, u.a, u.c, u.m, u.r, u.t"
        " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], $5::text[], $6::bigint[])"
        " AS u(o, a, c, m, r, t) ORDER BY u.o, u.t DESC ON CONFLICT (order_id) DO UPDATE SET"
        " amount_paid_minor = EXCLUDED.amount_paid_minor, paid_currency = EXCLUDED.paid_currency,"
        " payment_method = EXCLUDED.payment_method, payment_ref = EXCLUDED.payment_ref,"
        " paid_at_us = EXCLUDED.paid_at_us, updated_at = now()"
        " WHERE o.paid_at_us IS NULL OR EXCLUDED.paid_at_us > o.paid_at_us",
    [K_SHIPPED] =
        "INSERT INTO %1$s.shipments AS s (order_id, shipment_id, carrier, tracking_number,"
        " shipped_at_us) SELECT DISTINCT ON (u.o, u.s) u.o, u.s, u.c, u.n, u.t"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])"
        " AS u(o, s, c, n, t) ORDER BY u.o, u.s, u.t DESC ON CONFLICT (order_id, shipment_id)"
        " DO UPDATE SET carrier = EXCLUDED.carrier, tracking_number = EXCLUDED.tracking_number,"
        " shipped_at_us = EXCLUDED.shipped_at_us"
        " WHERE s.shipped_at_us IS NULL OR EXCLUDED.shipped_at_us > s.shipped_at_us",
    [K_DELIVERED] =
        "WITH sh AS (INSERT INTO %1$s.shipments AS s (order_id, shipment_id, delivered_at_us, proof)"
        " SELECT DISTINCT ON (u.o, u.s) u.o, u.s, u.t, u.p FROM unnest($1::text[], $2::text[],"
        " $3::bigint[], $4::text[]) AS u(o, s, t, p) ORDER BY u.o, u.s, u.t DESC"
        " ON CONFLICT (order_id, shipment_id) DO UPDATE SET delivered_at_us = EXCLUDED.delivered_at_us,"
        " proof = EXCLUDED.proof"
        " WHERE s.delivered_at_us IS NULL OR EXCLUDED.delivered_at_us > s.delivered_at_us)"
        " INSERT INTO %1$s.orders AS o (order_id, delivered_at_us) SELECT u.o, max(u.t)"
        " FROM unnest($1::text[], $3::bigint[]) AS u(o, t) GROUP BY u.o ORDER BY u.o"
        " ON CONFLICT (order_id) DO UPDATE SET"
        " delivered_at_us = greatest(o.delivered_at_us, EXCLUDED.delivered_at_us), updated_at = now()"
        " WHERE o.delivered_at_us IS DISTINCT FROM greatest(o.delivered_at_us, EXCLUDED.delivered_at_us)",
    [K_CANCELLED] =
        "INSERT INTO %1$s.orders AS o (order_id, cancel_reason, cancelled_at_us)"
        " SELECT DISTINCT ON (u.o) u.o, u.r, u.t FROM unnest($1::text[], $2::text[], $3::bigint[])"
        " AS u(o, r, t) ORDER BY u.o, u.t DESC ON CONFLICT (order_id) DO UPDATE SET"
        " cancel_reason = EXCLUDED.cancel_reason, cancelled_at_us = EXCLUDED.cancelled_at_us,"
        " updated_at = now() WHERE o.cancelled_at_us IS NULL OR EXCLUDED.cancelled_at_us > o.cancelled_at_us",
};
static const int ncols_of[K_COUNT] = {7, 11, 6, 5, 4, 3};

static bool text_ok(const char *s) {
  size_t n = strlen(s);
  return n <= TEXT_MAX && intake_utf8_valid(s, n);
}

static bool money_ok(const Aftersales__V1__Money *m) {
  return !m || (m->amount_minor >= 0 && as_money_currency_ok(m->currency));
}

/* The payload's order id must be safe and agree with the envelope's. */
static const char *order_id_of(const as_msg_t *m, const char *payload_order) {
  if (!as_envelope_id_ok(payload_order)) return NULL;
  if (m->env->order_id[0] && strcmp(m->env->order_id, payload_order) != 0) return NULL;
  return payload_order;
}

static const char *line_error(const Aftersales__V1__OrderLine *l) {
  if (!as_envelope_id_ok(l->line_id)) return "line_id missing or unsafe";
  if (l->quantity < 1) return "line quantity below 1";
  if (!l->unit_price || !money_ok(l->unit_price)) return "line unit_price missing or invalid";
  if (l->discount && (!money_ok(l->discount) || strcmp(l->discount->currency, l->unit_price->currency) != 0))
    return "line discount invalid or not in the unit price's currency";
  if (!text_ok(l->sku) || !text_ok(l->category) || !text_ok(l->supplier_id) || !text_ok(l->title))
    return "line text too long or not UTF-8";
  return NULL;
}

/* The order's amounts: every line total (unit x quantity), the sum of the
 * lines and the shipping fee must fit in int64, and a discount may not
 * exceed its line. Sets *overflow when the refusal is an overflow. */
static const char *amounts_error(const Aftersales__V1__OrderPlaced *p, bool *overflow) {
  int64_t total = p->shipping_fee ? p->shipping_fee->amount_minor : 0;
  *overflow = true;
  for (size_t i = 0; i < p->n_lines; i++) {
    const Aftersales__V1__OrderLine *l = p->lines[i];
    int64_t line;
    if (!as_money_mul(l->unit_price->amount_minor, l->quantity, &line)) return "line total overflows int64";
    if (!as_money_add(total, line, &total)) return "order total overflows int64";
    if (l->discount && l->discount->amount_minor > line) {
      *overflow = false;
      return "line discount above the line total";
    }
  }
  *overflow = false;
  return NULL;
}

static const char *placed_error(const Aftersales__V1__OrderPlaced *p, bool *overflow) {
  *overflow = false;
  if (!as_envelope_id_ok(p->buyer_id)) return "buyer_id missing or unsafe";
  if (p->merchant_id[0] && !as_envelope_id_ok(p->merchant_id)) return "merchant_id unsafe";
  if (!text_ok(p->region) || !money_ok(p->shipping_fee)) return "region or shipping_fee invalid";
  if (p->n_lines == 0) return "no lines";
  for (size_t i = 0; i < p->n_lines; i++) {
    const char *e = line_error(p->lines[i]);
    if (e) return e;
  }
  return amounts_error(p, overflow);
}

static void add_placed(as_cols_t *c, const char *oid, const Aftersales__V1__OrderPlaced *p) {
  as_cols_str(&c[K_PLACED], 0, oid);
  as_cols_str(&c[K_PLACED], 1, p->buyer_id);
  as_cols_str(&c[K_PLACED], 2, p->merchant_id);
  as_cols_str(&c[K_PLACED], 3, p->region);
  if (p->shipping_fee) {
    as_cols_int(&c[K_PLACED], 4, p->shipping_fee->amount_minor);
    as_cols_str(&c[K_PLACED], 5, p->shipping_fee->currency);
  } else {
    as_cols_null(&c[K_PLACED], 4);
    as_cols_null(&c[K_PLACED], 5);
  }
  as_cols_int(&c[K_PLACED], 6, p->placed_at_us);
  as_cols_row(&c[K_PLACED]);
  for (size_t i = 0; i < p->n_lines; i++) {
    const Aftersales__V1__OrderLine *l = p->lines[i];
    as_cols_t *lc = &c[K_LINES];
    const char *s[] = {oid, l->line_id, l->sku, l->category, l->supplier_id};
    for (int k = 0; k < 5; k++) as_cols_str(lc, k, s[k]);
    as_cols_int(lc, 5, l->unit_price->amount_minor);
    as_cols_str(lc, 6, l->unit_price->currency);
    as_cols_int(lc, 7, l->quantity);
    as_cols_str(lc, 8, l->title);
    as_cols_int(lc, 9, p->placed_at_us);
    as_cols_int(lc, 10, l->discount ? l->discount->amount_minor : 0);
    as_cols_row(lc);
  }
}

static const char *add_paid(as_cols_t *c, const char *oid, const Aftersales__V1__OrderPaid *p) {
  if (!money_ok(p->amount_paid) || !text_ok(p->payment_ref)) return "amount_paid or payment_ref invalid";
  if ((int)p->payment_method < 0 || (int)p->payment_method > 5) return "unknown payment_method";
  as_cols_t *k = &c[K_PAID];
  as_cols_str(k, 0, oid);
  if (p->amount_paid) {
    as_cols_int(k, 1, p->amount_paid->amount_minor);
    as_cols_str(k, 2, p->amount_paid->currency);
  } else {
    as_cols_null(k, 1);
    as_cols_null(k, 2);
  }
  as_cols_int(k, 3, (int)p->payment_method);
  as_cols_str(k, 4, p->payment_ref);
  as_cols_int(k, 5, p->paid_at_us);
  as_cols_row(k);
  return NULL;
}

static const char *add_shipped(as_cols_t *c, const char *oid, const Aftersales__V1__OrderShipped *p) {
  if (!as_envelope_id_ok(p->shipment_id)) return "shipment_id missing or unsafe";
  if (!text_ok(p->carrier) || !text_ok(p->tracking_number)) return "carrier or tracking invalid";
  as_cols_t *k = &c[K_SHIPPED];
  as_cols_str(k, 0, oid);
  as_cols_str(k, 1, p->shipment_id);
  as_cols_str(k, 2, p->carrier);
  as_cols_str(k, 3, p->tracking_number);
  as_cols_int(k, 4, p->shipped_at_us);
  as_cols_row(k);
  return NULL;
}

static const char *add_delivered(as_cols_t *c, const char *oid, const Aftersales__V1__OrderDelivered *p) {
  if (p->shipment_id[0] && !as_envelope_id_ok(p->shipment_id)) return "shipment_id unsafe";
  if (!text_ok(p->proof)) return "proof invalid";
  as_cols_t *k = &c[K_DELIVERED];
  as_cols_str(k, 0, oid);
  as_cols_str(k, 1, p->shipment_id);
  as_cols_int(k, 2, p->delivered_at_us);
  as_cols_str(k, 3, p->proof);
  as_cols_row(k);
  return NULL;
}

static const char *add_cancelled(as_cols_t *c, const char *oid, const Aftersales__V1__OrderCancelled *p) {
  if (!text_ok(p->reason)) return "reason invalid";
  as_cols_t *k = &c[K_CANCELLED];
  as_cols_str(k, 0, oid);
  as_cols_str(k, 1, p->reason);
  as_cols_int(k, 2, p->cancelled_at_us);
  as_cols_row(k);
  return NULL;
}

/* Validates one order event and appends its row(s); returns an error text
 * for the dead letter (*overflow: reason amount_overflow, else
 * contract_violation), NULL if added or not an order event. The order ids
 * whose OrderPlaced or OrderPaid came go to *ready: they may release held
 * requests. */
static const char *add_event(as_cols_t *c, const as_msg_t *m, as_cols_t *ready, bool *overflow) {
  const as_envelope_t *e = m->env;
  switch (e->payload_case) {
    case AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_PLACED: {
      const char *oid = order_id_of(m, e->order_placed->order_id);
      if (!oid) return "order_id missing, unsafe or not the envelope's";
      const char *err = placed_error(e->order_placed, overflow);
      if (err) return err;
      add_placed(c, oid, e->order_placed);
      as_cols_str(ready, 0, oid);
      as_cols_row(ready);
      return NULL;
    }
    case AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_PAID: {
      const char *oid = order_id_of(m, e->order_paid->order_id);
      const char *err = oid ? add_paid(c, oid, e->order_paid) : "order_id missing, unsafe or not the envelope's";
      if (!err) {
        as_cols_str(ready, 0, oid);
        as_cols_row(ready);
      }
      return err;
    }
    case AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_SHIPPED: {
      const char *oid = order_id_of(m, e->order_shipped->order_id);
      return oid ? add_shipped(c, oid, e->order_shipped) : "order_id missing, unsafe or not the envelope's";
    }
    case AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_DELIVERED: {
      const char *oid = order_id_of(m, e->order_delivered->order_id);
      return oid ? add_delivered(c, oid, e->order_delivered) : "order_id missing, unsafe or not the envelope's";
    }
    case AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_CANCELLED: {
      const char *oid = order_id_of(m, e->order_cancelled->order_id);
      return oid ? add_cancelled(c, oid, e->order_cancelled) : "order_id missing, unsafe or not the envelope's";
    }
    default:
      return NULL;
  }
}

int intake_projection_apply(intake_t *x, as_tx_t *tx, as_msg_t *const *msgs, size_t n,
                            as_cols_t *ready) {
  as_cols_t c[K_COUNT];
  for (int k = 0; k < K_COUNT; k++) as_cols_init(&c[k], ncols_of[k]);
  for (size_t i = 0; i < n; i++) {
    bool overflow = false;
    const char *err = add_event(c, msgs[i], ready, &overflow);
    if (err) as_tx_mark_dead(msgs[i], overflow ? DLQ_AMOUNT_OVERFLOW : AS_DLQ_CONTRACT, err);
  }
  int rc = 0;
  for (int k = 0; rc == 0 && k < K_COUNT; k++) rc = intake_cols_run(&c[k], x, tx, sql_of[k], NULL);
  for (int k = 0; k < K_COUNT; k++) as_cols_free(&c[k]);
  return rc;
}
