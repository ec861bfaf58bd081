/* intake_outreach: proactive cases for the buyers of a flawed lot.
 *
 * A SupplierQualityAlert (aftersales.inspection.v1) naming a lot makes
 * intake, which owns the order projection, reach out to every buyer of that
 * supplier's SKU from that lot who has not complained: one proactive case
 * per order line (origin CASE_ORIGIN_PROACTIVE, the alert's id, route
 * review, QUALITY_CLAIM / QUALITY_DEFECT, all the line's purchased units and
 * its share of the amount paid, as for any case); review then makes the
 * offer. Only orders paid, not cancelled and shipped or delivered qualify;
 * a line with any case on it, or an order of one of the alert's own cases,
 * is the buyer's complaint already.
 *
 * Once per alert: intake.outreach_alerts keeps each alert id it handled (its
 * primary key also serialises two instances on one alert), so the same
 * alert again opens nothing, even when the first pass was cut at
 * AS_INTAKE_OUTREACH_MAX; the lines beyond the bound are counted and
 * logged, never dropped silently. Once per line: the case id is derived
 * from (alert, order, line), so a race ends in as_case_open_many's conflict.
 * The cost per alert is fixed, however many buyers: the claim, one statement
 * that locks the eligible orders (in order id order, as the request
 * pipeline does, so a buyer's own request on the same line waits or is
 * waited for), one that reads their lines with whether each has a case (a
 * fresh snapshot after the lock), then the bulk writes of any case opening.
 * No request is behind a proactive case, so no buyer acknowledgement is
 * published.
 *
 * An alert is checked before anything is written: its id must be the one
 * its cluster names (README "Identifiers"), supplier and SKU present and
 * printable, lot and case ids safe; else it is dead-lettered as
 * contract_violation with the reason. An alert without a lot is counted
 * and changes nothing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_deadline.h"
#include "as_money.h"
#include "as_topics.h"
#include "as_utf8.h"
#include "as_uuid.h"
#include "intake.h"

#define US 1000000LL
#define TEXT_MAX 256 /* as the projection's texts (intake_projection.c) */

/* Claims the alert; no row back: handled before. */
static const char sql_claim[] =
    "INSERT INTO outreach_alerts (alert_id, supplier_id, sku, lot_id, opened, over_bound)"
    " VALUES ($1, $2, $3, $4, 0, 0) ON CONFLICT DO NOTHING RETURNING 1";
static const char sql_tally[] =
    "UPDATE outreach_alerts SET opened = $2::int, over_bound = $3::int WHERE alert_id = $1";

/* The eligible orders, locked, at most $5 of them: INTAKE_O_* columns (as
 * intake_requests.c reads them), how many eligible lines there are in all,
 * and the buyer's history as a CaseOpened reports it (intake_history.c:
 * orders placed, the first one's time, cases before this one, on the
 * order). */
#define ELIGIBLE                                                                                \
  " FROM order_lines l JOIN orders o ON o.order_id = l.order_id"                                \
  " WHERE l.supplier_id = $1 AND l.sku = $2 AND l.lot_id = $3 AND l.lot_id <> ''"               \
  " AND o.placed_at_us IS NOT NULL AND o.cancelled_at_us IS NULL"                               \
  " AND o.amount_paid_minor IS NOT NULL AND (o.delivered_at_us IS NOT NULL OR EXISTS"           \
  " (SELECT 1 FROM shipments s WHERE s.order_id = o.order_id AND s.shipped_at_us IS NOT NULL))" \
  " AND NOT EXISTS (SELECT 1 FROM cases.case_lines cl"                                          \
  " WHERE cl.order_id = l.order_id AND cl.line_id = l.line_id)"                                 \
  " AND NOT EXISTS (SELECT 1 FROM cases.cases k"                                                \
  " WHERE k.case_id = ANY($4::text[]) AND k.order_id = l.order_id)"
static const char sql_orders[] =
    "WITH c AS (SELECT l.order_id" ELIGIBLE
    "), n AS (SELECT count(*) AS lines FROM c)"
    " SELECT o.order_id, o.buyer_id, coalesce(o.merchant_id, ''), false, o.placed_at_us,"
    " coalesce(o.delivered_at_us, 0), o.amount_paid_minor, o.paid_currency,"
    " coalesce(o.payment_method, 0), coalesce(o.payment_ref, ''), coalesce(o.region, ''),"
    " o.shipping_fee_minor, o.shipping_currency, n.lines,"
    " (SELECT count(*) FROM orders b WHERE b.buyer_id = o.buyer_id AND b.placed_at_us IS NOT NULL),"
    " (SELECT coalesce(min(b.placed_at_us), 0) FROM orders b WHERE b.buyer_id = o.buyer_id),"
    " (SELECT count(*) FROM cases.cases k WHERE k.buyer_id = o.buyer_id),"
    " (SELECT count(*) FROM cases.cases k WHERE k.order_id = o.order_id) FROM orders o, n"
    " WHERE o.order_id IN (SELECT order_id FROM c)"
    " ORDER BY o.order_id COLLATE \"C\" LIMIT $5::int FOR UPDATE OF o";
enum { O_ELIGIBLE_LINES = INTAKE_O_SHIP_CUR + 1, O_ORDERS, O_FIRST, O_CASES, O_ON_ORDER };

/* Every line of those orders (the allocation weighs them all): INTAKE_L_*
 * columns and, last, whether a case is on the line. */
static const char sql_lines[] =
    "SELECT l.order_id, l.line_id, l.sku, l.unit_minor, l.currency, l.quantity, 0,"
    " l.category, l.supplier_id, l.discount_minor, l.lot_id, EXISTS (SELECT 1 FROM"
    " cases.case_lines cl WHERE cl.order_id = l.order_id AND cl.line_id = l.line_id)"
    " FROM order_lines l WHERE l.order_id = ANY($1::text[])"
    " ORDER BY l.order_id COLLATE \"C\", l.line_id COLLATE \"C\"";
#define L_HAS_CASE (INTAKE_L_LOT + 1)

/* The opened cases' lines and review clocks, one statement. */
enum { W_CASE, W_ORDER, W_LINE, W_SKU, W_QTY, W_UNIT, W_CUR, W_PAID, W_LOT, K_CASE, K_DUE };
static const as_col_t rows_cols[] = {
    [W_CASE] = {"l.case_id", "text"}, [W_ORDER] = {"l.order_id", "text"},
    [W_LINE] = {"l.line_id", "text"}, [W_SKU] = {"l.sku", "text"},
    [W_QTY] = {"l.quantity", "int"},  [W_UNIT] = {"l.unit_minor", "bigint"},
    [W_CUR] = {"l.currency", "text"}, [W_PAID] = {"l.paid_minor", "bigint"},
    [W_LOT] = {"l.lot_id", "text"},   [K_CASE] = {"k.case_id", "text"},
    [K_DUE] = {"k.due_us", "bigint"},
};
static const as_bulk_t sql_rows = AS_BULK(
    "WITH ins_lines AS (INSERT INTO cases.case_lines (case_id, order_id, line_id, sku, quantity,"
    " unit_minor, currency, paid_minor, lot_id, purchased) SELECT l.*, l.quantity FROM {{l}})"
    " INSERT INTO cases.sla_clocks (case_id, clock, due_at)"
    " SELECT k.case_id, 'review', to_timestamp(k.due_us / 1e6) FROM {{k}}",
    rows_cols);

/* One line reached out to. */
typedef struct target {
  int o, l; /* rows in the orders and lines results */
  int64_t paid, shipping_paid, claimed_minor;
  char case_id[AS_UUID_STRLEN + 1];
  char case_number[AS_CASE_NUMBER_MAX];
  bool opened;
} target_t;

typedef struct outreach {
  intake_t *x;
  as_tx_t *tx;
  as_msg_t *m;
  const Aftersales__V1__SupplierQualityAlert *a;
  PGresult *orders, *lines;
  target_t *t;
  size_t n;
  long long eligible; /* lines the lock statement counted */
  int64_t now, review_due_us;
} outreach_t;

/* Printable text the projection could hold: 1..TEXT_MAX bytes of UTF-8
 * (the decoder checked that), no control characters. */
static bool text_ok(const char *s, bool required) {
  size_t n = strlen(s);
  if (n == 0) return !required;
  if (n > TEXT_MAX || !as_utf8_valid(s, n)) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
  return true;
}

/* The alert's id as its cluster names it (README "Identifiers"); its texts
 * were checked first, so the name fits: three of TEXT_MAX, an id, a number. */
static void alert_id_of(char out[AS_UUID_STRLEN + 1],
                        const Aftersales__V1__SupplierQualityAlert *a) {
  char name[3 * TEXT_MAX + AS_ID_MAX + 32];
  int len = snprintf(name, sizeof name, "%s|%s|%s|%s|%lld", a->supplier_id, a->sku, a->lot_id,
                     a->defect_code, (long long)a->window_start_us);
  as_uuid_v5(out, "aftersales.supplier_alert", name, (size_t)len);
}

static const char *alert_error(const Aftersales__V1__SupplierQualityAlert *a) {
  if (!as_envelope_id_ok(a->alert_id)) return "SupplierQualityAlert: alert_id missing or unsafe";
  if (!text_ok(a->supplier_id, true)) return "SupplierQualityAlert: supplier_id missing or invalid";
  if (!text_ok(a->sku, true)) return "SupplierQualityAlert: sku missing or invalid";
  if (!text_ok(a->defect_code, false)) return "SupplierQualityAlert: defect_code invalid";
  if (a->lot_id[0] && !as_envelope_id_ok(a->lot_id)) return "SupplierQualityAlert: lot_id unsafe";
  for (size_t i = 0; i < a->n_case_ids; i++)
    if (!as_envelope_id_ok(a->case_ids[i])) return "SupplierQualityAlert: a case id is unsafe";
  char id[AS_UUID_STRLEN + 1];
  alert_id_of(id, a);
  if (strcmp(id, a->alert_id) != 0)
    return "SupplierQualityAlert: alert_id is not the id of its supplier, sku, lot, defect code "
           "and window start";
  return NULL;
}

/* "{a,b}" from ids that are safe (as_envelope_id_ok: no quoting needed). */
static void id_array(as_buf_t *b, char *const *ids, size_t n) {
  as_buf_puts(b, "{");
  for (size_t i = 0; i < n; i++) {
    if (i) as_buf_puts(b, ",");
    as_buf_puts(b, ids[i]);
  }
  as_buf_puts(b, "}");
}

/* Claims the alert; *fresh false when it was handled before. */
static int claim(outreach_t *w, bool *fresh) {
  const char *vals[4] = {w->a->alert_id, w->a->supplier_id, w->a->sku, w->a->lot_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(w->tx), sql_claim, 4, vals, &r);
  *fresh = rc == 0 && PQntuples(r) == 1;
  PQclear(r);
  return rc;
}

static int load(outreach_t *w) {
  as_buf_t cases, ids;
  as_buf_init(&cases);
  as_buf_init(&ids);
  id_array(&cases, w->a->case_ids, w->a->n_case_ids);
  char max[24];
  snprintf(max, sizeof max, "%lld", w->x->conf->outreach_max);
  const char *vals[5] = {w->a->supplier_id, w->a->sku, w->a->lot_id, as_buf_str(&cases), max};
  int rc = as_buf_ok(&cases) ? 0 : -ENOMEM;
  if (rc == 0) rc = as_db_query(as_tx_db(w->tx), sql_orders, 5, vals, &w->orders);
  int no = rc == 0 ? PQntuples(w->orders) : 0;
  if (no > 0) w->eligible = strtoll(PQgetvalue(w->orders, 0, O_ELIGIBLE_LINES), NULL, 10);
  as_buf_puts(&ids, "{");
  for (int i = 0; i < no; i++) {
    if (i) as_buf_puts(&ids, ",");
    as_buf_puts(&ids, PQgetvalue(w->orders, i, INTAKE_O_ID)); /* safe: the projection checked */
  }
  as_buf_puts(&ids, "}");
  if (rc == 0 && no > 0) {
    const char *v = as_buf_str(&ids);
    rc = as_buf_ok(&ids) ? as_db_query(as_tx_db(w->tx), sql_lines, 1, &v, &w->lines) : -ENOMEM;
  }
  as_buf_free(&cases);
  as_buf_free(&ids);
  return rc;
}

/* Row of orders holding order id oid (sorted in byte order), or -1. */
static int order_row(PGresult *orders, const char *oid) {
  int lo = 0, hi = PQntuples(orders);
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(PQgetvalue(orders, mid, INTAKE_O_ID), oid);
    if (c == 0) return mid;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

static bool is_target(const outreach_t *w, int row) {
  PGresult *l = w->lines;
  return strcmp(PQgetvalue(l, row, INTAKE_L_SUPPLIER), w->a->supplier_id) == 0 &&
         strcmp(PQgetvalue(l, row, INTAKE_L_SKU), w->a->sku) == 0 &&
         strcmp(PQgetvalue(l, row, INTAKE_L_LOT), w->a->lot_id) == 0 &&
         PQgetvalue(l, row, L_HAS_CASE)[0] == 'f';
}

/* The line's share of the payment and its case id; false (logged) when the
 * order's payment cannot be allocated (the request pipeline would refuse a
 * claim on it the same way). */
static bool price(outreach_t *w, target_t *t) {
  PGresult *l = w->lines;
  const char *why = NULL;
  if (intake_money_shares(w->orders, t->o, l, &t->l, 1, &t->paid, &t->shipping_paid, &why) < 0)
    why = "out of memory";
  int64_t unit = strtoll(PQgetvalue(l, t->l, INTAKE_L_UNIT), NULL, 10);
  if (!why && !as_money_mul(unit, atoi(PQgetvalue(l, t->l, INTAKE_L_QUANTITY)), &t->claimed_minor))
    why = "amount_overflow";
  if (why) {
    AS_WARN(w->x->log, "outreach: order line skipped", AS_F_STR("alert_id", w->a->alert_id),
            AS_F_STR("order_id", PQgetvalue(l, t->l, INTAKE_L_ORDER)), AS_F_STR("why", why));
    return false;
  }
  char name[512];
  int len = snprintf(name, sizeof name, "%s|%s|%s", w->a->alert_id,
                     PQgetvalue(l, t->l, INTAKE_L_ORDER), PQgetvalue(l, t->l, INTAKE_L_LINE));
  as_uuid_v5(t->case_id, "aftersales.proactive_case", name, (size_t)len);
  return true;
}

/* The lines to reach out to, in (order, line) order, at most the bound. */
static int pick(outreach_t *w) {
  int nl = w->lines ? PQntuples(w->lines) : 0;
  w->t = calloc(nl ? (size_t)nl : 1, sizeof *w->t);
  if (!w->t) return -ENOMEM;
  for (int row = 0; row < nl && w->n < (size_t)w->x->conf->outreach_max; row++) {
    if (!is_target(w, row)) continue;
    target_t *t = &w->t[w->n];
    t->l = row;
    t->o = order_row(w->orders, PQgetvalue(w->lines, row, INTAKE_L_ORDER));
    if (t->o >= 0 && price(w, t)) w->n++;
  }
  return 0;
}

static as_case_opening_t opening_of(const outreach_t *w, target_t *t) {
  PGresult *o = w->orders;
  return (as_case_opening_t){
      .c = {.case_id = t->case_id,
            .case_type = "QUALITY_CLAIM",
            .order_id = PQgetvalue(o, t->o, INTAKE_O_ID),
            .buyer_id = PQgetvalue(o, t->o, INTAKE_O_BUYER),
            .merchant_id = PQgetvalue(o, t->o, INTAKE_O_MERCHANT),
            .reason = "QUALITY_DEFECT",
            .route = "review",
            .currency = PQgetvalue(w->lines, t->l, INTAKE_L_CUR),
            .claimed_minor = t->claimed_minor,
            .state = AFTERSALES__V1__CASE_STATE__CASE_STATE_OPEN,
            .has_paid = true,
            .paid_minor = strtoll(PQgetvalue(o, t->o, INTAKE_O_PAID), NULL, 10),
            .shipping_paid_minor = t->shipping_paid,
            .paid_currency = PQgetvalue(o, t->o, INTAKE_O_PAID_CUR)},
      .actor = {"system", "intake"},
      .why = "proactive outreach",
      .event_id = w->m->env->event_id,
      .cause = w->m};
}

static int open_cases(outreach_t *w) {
  as_case_opening_t *o = calloc(w->n ? w->n : 1, sizeof *o);
  if (!o) return -ENOMEM;
  for (size_t i = 0; i < w->n; i++) o[i] = opening_of(w, &w->t[i]);
  int rc = as_case_open_many(w->tx, o, w->n);
  for (size_t i = 0; rc == 0 && i < w->n; i++) {
    w->t[i].opened = o[i].opened;
    snprintf(w->t[i].case_number, sizeof w->t[i].case_number, "%s", o[i].case_number);
  }
  free(o);
  return rc;
}

/* Lines, review clocks and intake's pickup deadline of the opened cases. */
static int write_rows(outreach_t *w) {
  PGresult *l = w->lines;
  as_cols_t c;
  as_cols_init(&c, &sql_rows);
  const char **ids = calloc(w->n ? w->n : 1, sizeof *ids);
  const char **kinds = calloc(w->n ? w->n : 1, sizeof *kinds);
  int64_t *due = calloc(w->n ? w->n : 1, sizeof *due);
  int rc = ids && kinds && due ? 0 : -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; rc == 0 && i < w->n; i++) {
    const target_t *t = &w->t[i];
    if (!t->opened) continue;
    as_cols_str(&c, W_CASE, t->case_id);
    as_cols_str(&c, W_ORDER, PQgetvalue(l, t->l, INTAKE_L_ORDER));
    as_cols_str(&c, W_LINE, PQgetvalue(l, t->l, INTAKE_L_LINE));
    as_cols_str(&c, W_SKU, PQgetvalue(l, t->l, INTAKE_L_SKU));
    as_cols_int(&c, W_QTY, atoll(PQgetvalue(l, t->l, INTAKE_L_QUANTITY)));
    as_cols_int(&c, W_UNIT, atoll(PQgetvalue(l, t->l, INTAKE_L_UNIT)));
    as_cols_str(&c, W_CUR, PQgetvalue(l, t->l, INTAKE_L_CUR));
    as_cols_int(&c, W_PAID, t->paid);
    as_cols_str(&c, W_LOT, w->a->lot_id);
    as_cols_str(&c, K_CASE, t->case_id);
    as_cols_int(&c, K_DUE, w->review_due_us);
    ids[k] = t->case_id, kinds[k] = "pickup", due[k++] = w->review_due_us;
  }
  if (rc == 0) rc = as_cols_run(&c, as_tx_db(w->tx), NULL);
  if (rc == 0 && k) rc = as_deadline_set_many(w->tx, ids, kinds, due, k);
  as_cols_free(&c);
  free(ids), free(kinds), free(due);
  return rc;
}

/* Money from two columns of r, or NULL when the amount is NULL. */
static Aftersales__V1__Money *money_of(Aftersales__V1__Money *m, PGresult *r, int row, int amount,
                                       int currency) {
  if (PQgetisnull(r, row, amount)) return NULL;
  aftersales__v1__money__init(m);
  m->amount_minor = strtoll(PQgetvalue(r, row, amount), NULL, 10);
  m->currency = PQgetvalue(r, row, currency);
  return m;
}

static Aftersales__V1__Money money(int64_t minor, const char *currency) {
  Aftersales__V1__Money m = AFTERSALES__V1__MONEY__INIT;
  m.amount_minor = minor;
  m.currency = (char *)currency;
  return m;
}

/* What one CaseOpened is packed from (all borrowed from the results). */
typedef struct opened_msg {
  Aftersales__V1__LineRef ref, *refs[1];
  Aftersales__V1__CaseLine cl, *cls[1];
  Aftersales__V1__OrderFacts facts;
  Aftersales__V1__BuyerHistory hist;
  Aftersales__V1__Money unit, paid, order_paid, fee, fee_paid, claimed;
  Aftersales__V1__CaseOpened o;
} opened_msg_t;

static void fill_line(opened_msg_t *e, const outreach_t *w, const target_t *t) {
  PGresult *l = w->lines;
  aftersales__v1__line_ref__init(&e->ref);
  e->ref.line_id = PQgetvalue(l, t->l, INTAKE_L_LINE);
  e->ref.sku = PQgetvalue(l, t->l, INTAKE_L_SKU);
  e->ref.quantity = atoi(PQgetvalue(l, t->l, INTAKE_L_QUANTITY));
  e->refs[0] = &e->ref;
  aftersales__v1__case_line__init(&e->cl);
  e->cl.line_id = e->ref.line_id;
  e->cl.sku = e->ref.sku;
  e->cl.category = PQgetvalue(l, t->l, INTAKE_L_CATEGORY);
  e->cl.supplier_id = PQgetvalue(l, t->l, INTAKE_L_SUPPLIER);
  e->cl.quantity = e->ref.quantity;
  e->cl.purchased_quantity = e->ref.quantity;
  e->cl.unit_price = money_of(&e->unit, l, t->l, INTAKE_L_UNIT, INTAKE_L_CUR);
  e->paid = money(t->paid, e->cl.unit_price->currency);
  e->cl.paid_allocated = &e->paid;
  e->cl.lot_id = PQgetvalue(l, t->l, INTAKE_L_LOT);
  e->cls[0] = &e->cl;
}

static void fill_facts(opened_msg_t *e, const outreach_t *w, const target_t *t) {
  PGresult *o = w->orders;
  Aftersales__V1__OrderFacts *f = &e->facts;
  aftersales__v1__order_facts__init(f);
  f->placed_at_us = strtoll(PQgetvalue(o, t->o, INTAKE_O_PLACED), NULL, 10);
  f->delivered_at_us = strtoll(PQgetvalue(o, t->o, INTAKE_O_DELIVERED), NULL, 10);
  f->paid = money_of(&e->order_paid, o, t->o, INTAKE_O_PAID, INTAKE_O_PAID_CUR);
  f->payment_method = (Aftersales__V1__PaymentMethod)atoi(PQgetvalue(o, t->o, INTAKE_O_PAY_METHOD));
  f->payment_ref = PQgetvalue(o, t->o, INTAKE_O_PAY_REF);
  f->region = PQgetvalue(o, t->o, INTAKE_O_REGION);
  f->shipping_fee = money_of(&e->fee, o, t->o, INTAKE_O_SHIP_FEE, INTAKE_O_SHIP_CUR);
  e->fee_paid = money(t->shipping_paid, f->paid->currency);
  f->shipping_paid = &e->fee_paid;
  aftersales__v1__buyer_history__init(&e->hist);
  e->hist.orders = atoi(PQgetvalue(o, t->o, O_ORDERS));
  e->hist.first_order_at_us = strtoll(PQgetvalue(o, t->o, O_FIRST), NULL, 10);
  e->hist.cases = atoi(PQgetvalue(o, t->o, O_CASES));
  e->hist.claims_on_order = atoi(PQgetvalue(o, t->o, O_ON_ORDER));
}

static int publish_opened(outreach_t *w, const target_t *t) {
  opened_msg_t e;
  fill_line(&e, w, t);
  fill_facts(&e, w, t);
  e.claimed = money(t->claimed_minor, e.cl.unit_price->currency);
  Aftersales__V1__CaseOpened *o = &e.o;
  aftersales__v1__case_opened__init(o);
  o->case_id = (char *)t->case_id;
  o->case_number = (char *)t->case_number;
  o->order_id = PQgetvalue(w->orders, t->o, INTAKE_O_ID);
  o->buyer_id = PQgetvalue(w->orders, t->o, INTAKE_O_BUYER);
  o->merchant_id = PQgetvalue(w->orders, t->o, INTAKE_O_MERCHANT);
  o->case_type = AFTERSALES__V1__CASE_TYPE__CASE_TYPE_QUALITY_CLAIM;
  o->reason = AFTERSALES__V1__REASON__REASON_QUALITY_DEFECT;
  o->n_lines = 1;
  o->lines = e.refs;
  o->claimed_amount = &e.claimed;
  o->state = AFTERSALES__V1__CASE_STATE__CASE_STATE_OPEN;
  o->route = "review";
  o->review_due_us = w->review_due_us;
  o->n_case_lines = 1;
  o->case_lines = e.cls;
  o->order = &e.facts;
  o->buyer_history = &e.hist;
  o->submitted_at_us = w->now; /* nobody asked: the case's own opening */
  o->origin = AFTERSALES__V1__CASE_ORIGIN__CASE_ORIGIN_PROACTIVE;
  o->alert_id = w->a->alert_id;
  char eid[AS_UUID_STRLEN + 1], name[64];
  int len = snprintf(name, sizeof name, "%s|CaseOpened", t->case_id);
  as_uuid_v5(eid, "aftersales.intake.event", name, (size_t)len);
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = eid;
  env.case_id = (char *)t->case_id;
  env.order_id = o->order_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_OPENED;
  env.case_opened = o;
  return as_tx_publish(w->tx, w->m, AS_TOPIC_NAME_CASES, t->case_id, &env);
}

/* Records the tally on the alert's row, counts and logs it. */
static int tally(outreach_t *w) {
  size_t opened = 0;
  for (size_t i = 0; i < w->n; i++) opened += w->t[i].opened;
  long long over = w->eligible > (long long)w->n ? w->eligible - (long long)w->n : 0;
  char a[24], b[24];
  snprintf(a, sizeof a, "%zu", opened);
  snprintf(b, sizeof b, "%lld", over);
  const char *vals[3] = {w->a->alert_id, a, b};
  int rc = as_db_query(as_tx_db(w->tx), sql_tally, 3, vals, NULL);
  as_counter_add(w->x->outreach_opened, opened);
  as_counter_add(w->x->outreach_over, (uint64_t)over);
  if (over > 0)
    AS_WARN(w->x->log, "outreach: lines beyond AS_INTAKE_OUTREACH_MAX not contacted",
            AS_F_STR("alert_id", w->a->alert_id), AS_F_INT("opened", opened),
            AS_F_INT("over_bound", over));
  else
    AS_INFO(w->x->log, "outreach: proactive cases opened", AS_F_STR("alert_id", w->a->alert_id),
            AS_F_INT("opened", opened));
  return rc;
}

static int reach_out(outreach_t *w) {
  int rc = load(w);
  if (rc == 0) rc = pick(w);
  if (rc == 0 && w->n) rc = open_cases(w);
  if (rc == 0 && w->n) rc = write_rows(w);
  for (size_t i = 0; rc == 0 && i < w->n; i++)
    if (w->t[i].opened) rc = publish_opened(w, &w->t[i]);
  if (rc == 0) rc = tally(w);
  return rc;
}

int intake_outreach_apply(void *state, as_tx_t *tx, as_msg_t *m) {
  intake_t *x = state;
  const Aftersales__V1__SupplierQualityAlert *a = m->env->supplier_quality_alert;
  const char *bad = alert_error(a);
  if (bad) return as_tx_reject(m, bad), 0;
  if (!a->lot_id[0]) {
    as_counter_add(x->outreach_ignored[INTAKE_OUTREACH_NO_LOT], 1);
    return 0;
  }
  outreach_t w = {.x = x, .tx = tx, .m = m, .a = a, .now = as_now_us()};
  w.review_due_us = w.now + x->conf->review_hours * 3600 * US;
  bool fresh = false;
  int rc = claim(&w, &fresh);
  if (rc == 0 && !fresh) {
    as_counter_add(x->outreach_ignored[INTAKE_OUTREACH_REPLAYED], 1);
    AS_INFO(x->log, "outreach: alert handled before", AS_F_STR("alert_id", a->alert_id));
    return 0;
  }
  if (rc == 0) rc = reach_out(&w);
  PQclear(w.orders);
  PQclear(w.lines);
  free(w.t);
  return rc;
}
