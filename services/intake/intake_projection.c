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
#include "as_utf8.h"
#include "intake.h"

#define DLQ_AMOUNT_OVERFLOW "amount_overflow"

#define TEXT_MAX 256

enum { K_PLACED, K_LINES, K_PAID, K_SHIPPED, K_DELIVERED, K_CANCELLED, K_COUNT };

/* Each statement's columns are its table's, in the INSERT's order (u.*). */
enum { PL_ORDER, PL_BUYER, PL_MERCHANT, PL_REGION, PL_FEE, PL_FEE_CUR, PL_AT };
static const as_col_t placed_cols[] = {
    [PL_ORDER] = {"order_id", "text"},           [PL_BUYER] = {"buyer_id", "text"},
    [PL_MERCHANT] = {"merchant_id", "text"},     [PL_REGION] = {"region", "text"},
    [PL_FEE] = {"shipping_fee_minor", "bigint"}, [PL_FEE_CUR] = {"shipping_currency", "text"},
    [PL_AT] = {"placed_at_us", "bigint"},
};
enum {
  LN_ORDER,
  LN_LINE,
  LN_SKU,
  LN_CATEGORY,
  LN_SUPPLIER,
  LN_UNIT,
  LN_CUR,
  LN_QTY,
  LN_TITLE,
  LN_AT,
  LN_DISCOUNT,
  LN_LOT
};
static const as_col_t line_cols[] = {
    [LN_ORDER] = {"order_id", "text"},
    [LN_LINE] = {"line_id", "text"},
    [LN_SKU] = {"sku", "text"},
    [LN_CATEGORY] = {"category", "text"},
    [LN_SUPPLIER] = {"supplier_id", "text"},
    [LN_UNIT] = {"unit_minor", "bigint"},
    [LN_CUR] = {"currency", "text"},
    [LN_QTY] = {"quantity", "int"},
    [LN_TITLE] = {"title", "text"},
    [LN_AT] = {"placed_at_us", "bigint"},
    [LN_DISCOUNT] = {"discount_minor", "bigint"},
    [LN_LOT] = {"lot_id", "text"},
};
enum { PD_ORDER, PD_AMOUNT, PD_CUR, PD_METHOD, PD_REF, PD_AT };
static const as_col_t paid_cols[] = {
    [PD_ORDER] = {"order_id", "text"},    [PD_AMOUNT] = {"amount_paid_minor", "bigint"},
    [PD_CUR] = {"paid_currency", "text"}, [PD_METHOD] = {"payment_method", "int"},
    [PD_REF] = {"payment_ref", "text"},   [PD_AT] = {"paid_at_us", "bigint"},
};
enum { SH_ORDER, SH_SHIPMENT, SH_CARRIER, SH_TRACKING, SH_AT };
static const as_col_t shipped_cols[] = {
    [SH_ORDER] = {"order_id", "text"},     [SH_SHIPMENT] = {"shipment_id", "text"},
    [SH_CARRIER] = {"carrier", "text"},    [SH_TRACKING] = {"tracking_number", "text"},
    [SH_AT] = {"shipped_at_us", "bigint"},
};
enum { DL_ORDER, DL_SHIPMENT, DL_AT, DL_PROOF };
static const as_col_t delivered_cols[] = {
    [DL_ORDER] = {"order_id", "text"},
    [DL_SHIPMENT] = {"shipment_id", "text"},
    [DL_AT] = {"delivered_at_us", "bigint"},
    [DL_PROOF] = {"proof", "text"},
};
enum { CN_ORDER, CN_REASON, CN_AT };
static const as_col_t cancelled_cols[] = {
    [CN_ORDER] = {"order_id", "text"},
    [CN_REASON] = {"cancel_reason", "text"},
    [CN_AT] = {"cancelled_at_us", "bigint"},
};

static const as_bulk_t sql_of[K_COUNT] = {
    [K_PLACED] = AS_BULK(
        "INSERT INTO orders AS o (order_id, buyer_id, merchant_id, region, shipping_fee_minor,"
        " shipping_currency, placed_at_us) SELECT DISTINCT ON (u.order_id) u.*"
        " FROM {{u}} ORDER BY u.order_id, u.placed_at_us DESC"
        " ON CONFLICT (order_id) DO UPDATE SET buyer_id = EXCLUDED.buyer_id,"
        " merchant_id = EXCLUDED.merchant_id, region = EXCLUDED.region,"
        " shipping_fee_minor = EXCLUDED.shipping_fee_minor,"
        " shipping_currency = EXCLUDED.shipping_currency, placed_at_us = EXCLUDED.placed_at_us,"
        " updated_at = now() WHERE o.placed_at_us IS NULL OR EXCLUDED.placed_at_us > "
        "o.placed_at_us",
        placed_cols),
    [K_LINES] = AS_BULK(
        "INSERT INTO order_lines AS l (order_id, line_id, sku, category, supplier_id,"
        " unit_minor, currency, quantity, title, placed_at_us, discount_minor, lot_id)"
        " SELECT DISTINCT ON (u.order_id, u.line_id) u.* FROM {{u}}"
        " ORDER BY u.order_id, u.line_id, u.placed_at_us DESC ON CONFLICT (order_id, line_id) DO "
        "UPDATE SET"
        " sku = EXCLUDED.sku, category = EXCLUDED.category, supplier_id = EXCLUDED.supplier_id,"
        " unit_minor = EXCLUDED.unit_minor, currency = EXCLUDED.currency,"
        " quantity = EXCLUDED.quantity, title = EXCLUDED.title, placed_at_us = "
        "EXCLUDED.placed_at_us,"
        " discount_minor = EXCLUDED.discount_minor, lot_id = EXCLUDED.lot_id"
        " WHERE EXCLUDED.placed_at_us > l.placed_at_us",
        line_cols),
    [K_PAID] = AS_BULK(
        "INSERT INTO orders AS o (order_id, amount_paid_minor, paid_currency, payment_method,"
        " payment_ref, paid_at_us) SELECT DISTINCT ON (u.order_id) u.*"
        " FROM {{u}} ORDER BY u.order_id, u.paid_at_us DESC ON CONFLICT (order_id) DO UPDATE SET"
        " amount_paid_minor = EXCLUDED.amount_paid_minor, paid_currency = EXCLUDED.paid_currency,"
        " payment_method = EXCLUDED.payment_method, payment_ref = EXCLUDED.payment_ref,"
        " paid_at_us = EXCLUDED.paid_at_us, updated_at = now()"
        " WHERE o.paid_at_us IS NULL OR EXCLUDED.paid_at_us > o.paid_at_us",
        paid_cols),
    [K_SHIPPED] = AS_BULK(
        "INSERT INTO shipments AS s (order_id, shipment_id, carrier, tracking_number,"
        " shipped_at_us) SELECT DISTINCT ON (u.order_id, u.shipment_id) u.*"
        " FROM {{u}} ORDER BY u.order_id, u.shipment_id, u.shipped_at_us DESC ON CONFLICT "
        "(order_id, shipment_id)"
        " DO UPDATE SET carrier = EXCLUDED.carrier, tracking_number = EXCLUDED.tracking_number,"
        " shipped_at_us = EXCLUDED.shipped_at_us"
        " WHERE s.shipped_at_us IS NULL OR EXCLUDED.shipped_at_us > s.shipped_at_us",
        shipped_cols),
    [K_DELIVERED] = AS_BULK(
        "WITH sh AS (INSERT INTO shipments AS s (order_id, shipment_id, delivered_at_us, proof)"
        " SELECT DISTINCT ON (u.order_id, u.shipment_id) u.* FROM {{u}}"
        " ORDER BY u.order_id, u.shipment_id, u.delivered_at_us DESC"
        " ON CONFLICT (order_id, shipment_id) DO UPDATE SET delivered_at_us = "
        "EXCLUDED.delivered_at_us,"
        " proof = EXCLUDED.proof"
        " WHERE s.delivered_at_us IS NULL OR EXCLUDED.delivered_at_us > s.delivered_at_us)"
        " INSERT INTO orders AS o (order_id, delivered_at_us) SELECT u.order_id, "
        "max(u.delivered_at_us)"
        " FROM {{u}} GROUP BY u.order_id ORDER BY u.order_id"
        " ON CONFLICT (order_id) DO UPDATE SET"
        " delivered_at_us = greatest(o.delivered_at_us, EXCLUDED.delivered_at_us), updated_at = "
        "now()"
        " WHERE o.delivered_at_us IS DISTINCT FROM greatest(o.delivered_at_us, "
        "EXCLUDED.delivered_at_us)",
        delivered_cols),
    [K_CANCELLED] = AS_BULK(
        "INSERT INTO orders AS o (order_id, cancel_reason, cancelled_at_us)"
        " SELECT DISTINCT ON (u.order_id) u.* FROM {{u}}"
        " ORDER BY u.order_id, u.cancelled_at_us DESC ON CONFLICT (order_id) DO UPDATE SET"
        " cancel_reason = EXCLUDED.cancel_reason, cancelled_at_us = EXCLUDED.cancelled_at_us,"
        " updated_at = now() WHERE o.cancelled_at_us IS NULL OR EXCLUDED.cancelled_at_us > "
        "o.cancelled_at_us",
        cancelled_cols),
};

static bool text_ok(const char *s) {
  size_t n = strlen(s);
  return n <= TEXT_MAX && as_utf8_valid(s, n);
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
  if (l->discount &&
      (!money_ok(l->discount) || strcmp(l->discount->currency, l->unit_price->currency) != 0))
    return "line discount invalid or not in the unit price's currency";
  if (!text_ok(l->sku) || !text_ok(l->category) || !text_ok(l->supplier_id) || !text_ok(l->title))
    return "line text too long or not UTF-8";
  if (l->lot_id[0] && !as_envelope_id_ok(l->lot_id)) return "line lot_id unsafe";
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
    if (!as_money_mul(l->unit_price->amount_minor, l->quantity, &line))
      return "line total overflows int64";
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
  as_cols_t *k = &c[K_PLACED];
  as_cols_str(k, PL_ORDER, oid);
  as_cols_str(k, PL_BUYER, p->buyer_id);
  as_cols_str(k, PL_MERCHANT, p->merchant_id);
  as_cols_str(k, PL_REGION, p->region);
  if (p->shipping_fee) {
    as_cols_int(k, PL_FEE, p->shipping_fee->amount_minor);
    as_cols_str(k, PL_FEE_CUR, p->shipping_fee->currency);
  } else {
    as_cols_null(k, PL_FEE);
    as_cols_null(k, PL_FEE_CUR);
  }
  as_cols_int(k, PL_AT, p->placed_at_us);
  for (size_t i = 0; i < p->n_lines; i++) {
    const Aftersales__V1__OrderLine *l = p->lines[i];
    as_cols_t *lc = &c[K_LINES];
    as_cols_str(lc, LN_ORDER, oid);
    as_cols_str(lc, LN_LINE, l->line_id);
    as_cols_str(lc, LN_SKU, l->sku);
    as_cols_str(lc, LN_CATEGORY, l->category);
    as_cols_str(lc, LN_SUPPLIER, l->supplier_id);
    as_cols_int(lc, LN_UNIT, l->unit_price->amount_minor);
    as_cols_str(lc, LN_CUR, l->unit_price->currency);
    as_cols_int(lc, LN_QTY, l->quantity);
    as_cols_str(lc, LN_TITLE, l->title);
    as_cols_int(lc, LN_AT, p->placed_at_us);
    as_cols_int(lc, LN_DISCOUNT, l->discount ? l->discount->amount_minor : 0);
    as_cols_str(lc, LN_LOT, l->lot_id);
  }
}

static const char *add_paid(as_cols_t *c, const char *oid, const Aftersales__V1__OrderPaid *p) {
  if (!money_ok(p->amount_paid) || !text_ok(p->payment_ref))
    return "amount_paid or payment_ref invalid";
  if ((int)p->payment_method < 0 || (int)p->payment_method > 5) return "unknown payment_method";
  as_cols_t *k = &c[K_PAID];
  as_cols_str(k, PD_ORDER, oid);
  if (p->amount_paid) {
    as_cols_int(k, PD_AMOUNT, p->amount_paid->amount_minor);
    as_cols_str(k, PD_CUR, p->amount_paid->currency);
  } else {
    as_cols_null(k, PD_AMOUNT);
    as_cols_null(k, PD_CUR);
  }
  as_cols_int(k, PD_METHOD, (int)p->payment_method);
  as_cols_str(k, PD_REF, p->payment_ref);
  as_cols_int(k, PD_AT, p->paid_at_us);
  return NULL;
}

static const char *add_shipped(as_cols_t *c, const char *oid,
                               const Aftersales__V1__OrderShipped *p) {
  if (!as_envelope_id_ok(p->shipment_id)) return "shipment_id missing or unsafe";
  if (!text_ok(p->carrier) || !text_ok(p->tracking_number)) return "carrier or tracking invalid";
  as_cols_t *k = &c[K_SHIPPED];
  as_cols_str(k, SH_ORDER, oid);
  as_cols_str(k, SH_SHIPMENT, p->shipment_id);
  as_cols_str(k, SH_CARRIER, p->carrier);
  as_cols_str(k, SH_TRACKING, p->tracking_number);
  as_cols_int(k, SH_AT, p->shipped_at_us);
  return NULL;
}

static const char *add_delivered(as_cols_t *c, const char *oid,
                                 const Aftersales__V1__OrderDelivered *p) {
  if (p->shipment_id[0] && !as_envelope_id_ok(p->shipment_id)) return "shipment_id unsafe";
  if (!text_ok(p->proof)) return "proof invalid";
  as_cols_t *k = &c[K_DELIVERED];
  as_cols_str(k, DL_ORDER, oid);
  as_cols_str(k, DL_SHIPMENT, p->shipment_id);
  as_cols_int(k, DL_AT, p->delivered_at_us);
  as_cols_str(k, DL_PROOF, p->proof);
  return NULL;
}

static const char *add_cancelled(as_cols_t *c, const char *oid,
                                 const Aftersales__V1__OrderCancelled *p) {
  if (!text_ok(p->reason)) return "reason invalid";
  as_cols_t *k = &c[K_CANCELLED];
  as_cols_str(k, CN_ORDER, oid);
  as_cols_str(k, CN_REASON, p->reason);
  as_cols_int(k, CN_AT, p->cancelled_at_us);
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
      as_cols_str(ready, INTAKE_READY_ORDER, oid);
      return NULL;
    }
    case AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_PAID: {
      const char *oid = order_id_of(m, e->order_paid->order_id);
      const char *err =
          oid ? add_paid(c, oid, e->order_paid) : "order_id missing, unsafe or not the envelope's";
      if (!err) as_cols_str(ready, INTAKE_READY_ORDER, oid);
      return err;
    }
    case AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_SHIPPED: {
      const char *oid = order_id_of(m, e->order_shipped->order_id);
      return oid ? add_shipped(c, oid, e->order_shipped)
                 : "order_id missing, unsafe or not the envelope's";
    }
    case AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_DELIVERED: {
      const char *oid = order_id_of(m, e->order_delivered->order_id);
      return oid ? add_delivered(c, oid, e->order_delivered)
                 : "order_id missing, unsafe or not the envelope's";
    }
    case AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_CANCELLED: {
      const char *oid = order_id_of(m, e->order_cancelled->order_id);
      return oid ? add_cancelled(c, oid, e->order_cancelled)
                 : "order_id missing, unsafe or not the envelope's";
    }
    default:
      return NULL;
  }
}

static int project(as_tx_t *tx, as_msg_t *const *msgs, size_t n, as_cols_t *ready) {
  as_cols_t c[K_COUNT];
  for (int k = 0; k < K_COUNT; k++) as_cols_init(&c[k], &sql_of[k]);
  for (size_t i = 0; i < n; i++) {
    bool overflow = false;
    const char *err = add_event(c, msgs[i], ready, &overflow);
    if (err) as_tx_mark_dead(msgs[i], overflow ? DLQ_AMOUNT_OVERFLOW : AS_DLQ_CONTRACT, err);
  }
  int rc = 0;
  for (int k = 0; rc == 0 && k < K_COUNT; k++) rc = as_cols_run(&c[k], as_tx_db(tx), NULL);
  for (int k = 0; k < K_COUNT; k++) as_cols_free(&c[k]);
  return rc;
}

int intake_orders_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  intake_t *x = state;
  as_cols_t ready;
  as_cols_init(&ready, &intake_hold_take);
  int rc = project(tx, msgs, n, &ready);
  if (rc == 0) rc = intake_hold_release(x, tx, &ready);
  as_cols_free(&ready);
  return rc;
}
