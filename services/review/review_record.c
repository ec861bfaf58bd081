/* review_record: cases as review knows them.
 *
 * Review decides from CaseOpened alone (the lines with what was paid, the
 * order facts, the buyer's history): it copies them into its own tables so
 * that later events (evidence, replies, receipts, agent decisions) can be
 * decided on the same facts, and it seeds the refund ledger with what was
 * paid per order line: the share of the amount paid that intake allocated
 * to the line and to the shipping fee. Before any of that, each CaseOpened
 * is checked against the shared case tables (review_record_verify): the
 * case must be one intake opened, for that order and buyer, with the paid
 * figures intake recorded, and they must agree with the ledger's, so the
 * cap can only ever come from intake's record of the payment. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_money.h"
#include "review.h"

#define AN(e, f) ((e)->f ? (e)->f : &empty_money)
static const Aftersales__V1__Money empty_money = AFTERSALES__V1__MONEY__INIT;

void review_rec_free(review_rec_t *r) {
  free(r->lines);
  PQclear(r->owner);
  r->lines = NULL;
  r->owner = NULL;
}

/* A present amount in the case's currency, >= 0; absent is -1 so that it
 * matches intake's NULL in the integrity check and is refused here. */
static int64_t amount_of(const Aftersales__V1__Money *m) {
  return m ? m->amount_minor : -1;
}

static bool same_cur(const Aftersales__V1__Money *m, const char *cur) {
  return m && strcmp(m->currency, cur) == 0;
}

/* One line, checked: its units, its list price (whose product with the
 * units bought must fit in 64 bits) and its paid allocation. *list adds
 * the line's list total. */
static const char *take_line(review_line_t *out, const Aftersales__V1__CaseLine *l, const char *cur,
                             int64_t *list, bool *overflow) {
  if (!as_envelope_id_ok(l->line_id) || l->quantity < 1 || l->purchased_quantity < l->quantity)
    return "lines.invalid";
  if (!l->unit_price || l->unit_price->amount_minor < 0) return "price.invalid";
  if (!same_cur(l->unit_price, cur)) return "currency.mismatch";
  int64_t line;
  if (!as_money_mul(l->unit_price->amount_minor, l->purchased_quantity, &line) ||
      !as_money_add(*list, line, list))
    return *overflow = true, "amount.overflow";
  if (amount_of(l->paid_allocated) < 0) return "paid.missing";
  if (!same_cur(l->paid_allocated, cur)) return "currency.mismatch";
  *out = (review_line_t){.line_id = l->line_id,
                         .sku = l->sku,
                         .category = l->category,
                         .supplier_id = l->supplier_id,
                         .lot_id = l->lot_id,
                         .quantity = l->quantity,
                         .unit_minor = l->unit_price->amount_minor,
                         .purchased = l->purchased_quantity,
                         .paid_minor = l->paid_allocated->amount_minor};
  return NULL;
}

/* The lines: one currency, units within what was bought, list totals that
 * fit in 64 bits, and allocations that (with the shipping fee's) stay
 * within the amount paid. The claim is what its units were paid:
 * share(line allocation, units claimed, units bought) summed. */
static const char *take_lines(review_rec_t *rec, const Aftersales__V1__CaseOpened *e,
                              bool *overflow) {
  size_t n = e->n_case_lines;
  if (n == 0 || n > 1000) return "lines.invalid";
  rec->lines = calloc(n, sizeof *rec->lines);
  if (!rec->lines) return "lines.invalid";
  int64_t list = 0, claimed = 0, allocated = rec->shipping_paid_minor;
  for (size_t i = 0; i < n; i++) {
    review_line_t *l = &rec->lines[i];
    const char *bad = take_line(l, e->case_lines[i], rec->c.currency, &list, overflow);
    int64_t share;
    if (bad) return bad;
    if (!as_money_add(allocated, l->paid_minor, &allocated))
      return *overflow = true, "amount.overflow";
    if (as_money_share(l->paid_minor, l->quantity, l->purchased, &share) < 0 ||
        !as_money_add(claimed, share, &claimed))
      return "paid.inconsistent";
  }
  if (allocated > rec->paid_minor) return "paid.inconsistent";
  rec->c.lines = rec->lines;
  rec->c.nlines = n;
  rec->c.claimed_minor = claimed;
  return NULL;
}

/* The order-level figures: a payment in an ISO currency, its shipping
 * allocation in the same currency, a shipping fee >= 0. */
static const char *take_order(review_rec_t *rec, const Aftersales__V1__OrderFacts *o) {
  if (!o->paid || !as_money_currency_ok(o->paid->currency) || o->paid->amount_minor < 0)
    return "order.unpaid";
  if (amount_of(o->shipping_paid) < 0) return "paid.missing";
  if (!same_cur(o->shipping_paid, o->paid->currency)) return "currency.mismatch";
  if (AN(o, shipping_fee)->amount_minor < 0) return "price.invalid";
  rec->c.currency = o->paid->currency;
  rec->paid_minor = o->paid->amount_minor;
  rec->shipping_paid_minor = o->shipping_paid->amount_minor;
  rec->shipping_fee_minor = AN(o, shipping_fee)->amount_minor;
  return NULL;
}

/* What a case that cannot be decided keeps: enough to be recorded and
 * handed to a person (no lines, nothing claimed, nothing in the ledger;
 * XXX is ISO 4217's "no currency"). */
const char *review_record_undecidable(review_rec_t *rec, const char *why) {
  free(rec->lines);
  rec->lines = NULL;
  rec->c.lines = NULL;
  rec->c.nlines = 0;
  rec->c.claimed_minor = 0;
  if (!as_money_currency_ok(rec->c.currency)) rec->c.currency = "XXX";
  if (rec->shipping_fee_minor < 0) rec->shipping_fee_minor = 0;
  rec->paid_minor = rec->paid_minor < 0 ? 0 : rec->paid_minor;
  rec->shipping_paid_minor = rec->shipping_paid_minor < 0 ? 0 : rec->shipping_paid_minor;
  rec->undecidable = why;
  return why;
}

const char *review_record_from_event(review_rec_t *rec, const Aftersales__V1__CaseOpened *e,
                                     bool *overflow) {
  static const Aftersales__V1__OrderFacts no_order = AFTERSALES__V1__ORDER_FACTS__INIT;
  static const Aftersales__V1__BuyerHistory no_history = AFTERSALES__V1__BUYER_HISTORY__INIT;
  const Aftersales__V1__OrderFacts *o = e->order ? e->order : &no_order;
  const Aftersales__V1__BuyerHistory *h = e->buyer_history ? e->buyer_history : &no_history;
  *overflow = false;
  *rec = (review_rec_t){.case_id = e->case_id,
                        .case_number = e->case_number,
                        .order_id = e->order_id,
                        .buyer_id = e->buyer_id,
                        .locale = e->locale,
                        .payment_ref = o->payment_ref,
                        .payment_method = o->payment_method,
                        .review_due_us = e->review_due_us,
                        .logistics = strcmp(e->route, "logistics") == 0,
                        .state = e->state};
  rec->c = (review_case_t){
      .case_type = e->case_type,
      .reason = e->reason,
      .preferred_outcome = e->preferred_outcome,
      .return_method = e->return_method,
      .merchant_id = e->merchant_id,
      .currency = "XXX",
      .region = o->region,
      .delivered_at_us = o->delivered_at_us,
      .submitted_at_us = e->submitted_at_us,
      .has_photo_or_video = as_envelope_has_photo_or_video(e->evidence, e->n_evidence),
      .declared_unused = e->declared_unused,
      .first_order_at_us = h->first_order_at_us,
      .orders = h->orders,
      .cases = h->cases,
      .claims_on_order = h->claims_on_order};
  const char *bad = !e->order || !e->buyer_history ? "order.facts_missing" : take_order(rec, o);
  if (!bad) bad = take_lines(rec, e, overflow);
  return bad ? review_record_undecidable(rec, bad) : NULL;
}

/* ---- the integrity check */

typedef struct fig {
  const char *line_id;
  int64_t paid;
  int32_t purchased;
} fig_t;

static int fig_cmp(const void *a, const void *b) {
  return strcmp(((const fig_t *)a)->line_id, ((const fig_t *)b)->line_id);
}

/* The event's lines as intake's query renders its own: "line:paid:units"
 * by line id in byte order, comma separated (ids hold no comma). */
static char *event_lines(const Aftersales__V1__CaseOpened *e) {
  size_t n = e->n_case_lines, cap = 1;
  fig_t *f = calloc(n + 1, sizeof *f);
  if (!f) return NULL;
  for (size_t i = 0; i < n; i++) {
    const Aftersales__V1__CaseLine *l = e->case_lines[i];
    f[i] = (fig_t){l->line_id, amount_of(l->paid_allocated), l->purchased_quantity};
    cap += strlen(l->line_id) + 48;
  }
  qsort(f, n, sizeof *f, fig_cmp);
  char *out = malloc(cap), *p = out;
  for (size_t i = 0; out && i < n; i++)
    p += snprintf(p, cap - (size_t)(p - out), "%s%s:%lld:%d", i ? "," : "", f[i].line_id,
                  (long long)f[i].paid, f[i].purchased);
  if (out) *p = '\0';
  free(f);
  return out;
}

/* The ledger's rows for the order ("line:paid:CUR", comma separated): each
 * row that names one of the event's lines, or the shipping fee, must hold
 * the event's figure and currency. */
static bool ledger_agrees(const Aftersales__V1__CaseOpened *e, const char *rows) {
  const Aftersales__V1__OrderFacts *o = e->order;
  const char *cur = o && o->paid ? o->paid->currency : "";
  char *copy = strdup(rows), *save = NULL;
  bool ok = copy != NULL;
  for (char *row = copy ? strtok_r(copy, ",", &save) : NULL; ok && row;
       row = strtok_r(NULL, ",", &save)) {
    char *c = strrchr(row, ':'), *pd;
    if (!c) continue;
    *c = '\0';
    pd = strrchr(row, ':');
    if (!pd) continue;
    *pd = '\0';
    long long paid = strtoll(pd + 1, NULL, 10);
    int64_t want = -2;
    if (strcmp(row, "#shipping") == 0) want = o ? amount_of(o->shipping_paid) : -1;
    for (size_t i = 0; i < e->n_case_lines && want == -2; i++)
      if (strcmp(e->case_lines[i]->line_id, row) == 0)
        want = amount_of(e->case_lines[i]->paid_allocated);
    if (want != -2) ok = want == paid && strcmp(c + 1, cur) == 0;
  }
  free(copy);
  return ok;
}

static const as_col_t verify_cols[] = {{"case_id", "text"}};
static const as_bulk_t sql_verify = AS_BULK(
    "SELECT c.case_id, c.order_id, c.buyer_id, coalesce(c.paid_minor, -1), "
    "coalesce(c.paid_currency, ''),"
    " coalesce(c.shipping_paid_minor, -1),"
    " coalesce((SELECT string_agg(l.line_id || ':' || coalesce(l.paid_minor, -1) || ':' || "
    "coalesce(l.purchased, -1),"
    " ',' ORDER BY l.line_id COLLATE \"C\") FROM cases.case_lines l WHERE l.case_id = c.case_id), "
    "''),"
    " coalesce((SELECT string_agg(g.line_id || ':' || g.paid_minor || ':' || g.currency, ',')"
    " FROM ledger g WHERE g.order_id = c.order_id), ''), u.i"
    " FROM {{u:i}} JOIN cases.cases c ON c.case_id = u.case_id",
    verify_cols);

/* One event against its row of sql_verify. */
static review_why_t verify_one(const Aftersales__V1__CaseOpened *e, PGresult *r, int row) {
  const Aftersales__V1__OrderFacts *o = e->order;
  if (strcmp(PQgetvalue(r, row, 1), e->order_id) != 0 ||
      strcmp(PQgetvalue(r, row, 2), e->buyer_id) != 0)
    return REVIEW_WHY_UNKNOWN_CASE;
  long long paid = o ? amount_of(o->paid) : -1, ship = o ? amount_of(o->shipping_paid) : -1;
  const char *cur = o && o->paid ? o->paid->currency : "";
  char *lines = event_lines(e);
  bool same = lines && paid == strtoll(PQgetvalue(r, row, 3), NULL, 10) &&
              strcmp(cur, PQgetvalue(r, row, 4)) == 0 &&
              ship == strtoll(PQgetvalue(r, row, 5), NULL, 10) &&
              strcmp(lines, PQgetvalue(r, row, 6)) == 0;
  free(lines);
  if (!same) return REVIEW_WHY_INTAKE;
  return ledger_agrees(e, PQgetvalue(r, row, 7)) ? REVIEW_WHY_OK : REVIEW_WHY_LEDGER;
}

int review_record_verify(as_tx_t *tx, const Aftersales__V1__CaseOpened *const *ev, size_t n,
                         review_why_t *why) {
  as_cols_t ids;
  as_cols_init(&ids, &sql_verify);
  for (size_t i = 0; i < n; i++) {
    as_cols_str(&ids, 0, ev[i]->case_id);
    why[i] = REVIEW_WHY_UNKNOWN_CASE;
  }
  PGresult *r = NULL;
  int rc = as_cols_run(&ids, as_tx_db(tx), &r);
  as_cols_free(&ids);
  /* Each row names the event it answers (u.i, from 1): a batch of n
   * events costs n lookups, not n x n comparisons. */
  for (int row = 0; rc == 0 && r && row < PQntuples(r); row++) {
    long long i = strtoll(PQgetvalue(r, row, 8), NULL, 10);
    if (i >= 1 && (size_t)i <= n) why[i - 1] = verify_one(ev[i - 1], r, row);
  }
  PQclear(r);
  return rc;
}

enum {
  K_CASE,
  K_NUM,
  K_ORDER,
  K_BUYER,
  K_MERCHANT,
  K_TYPE,
  K_REASON,
  K_CUR,
  K_CLAIMED,
  K_DELIV,
  K_SUBM,
  K_REGION,
  K_PAYREF,
  K_PAYMETH,
  K_SHIPFEE,
  K_POUT,
  K_RMETH,
  K_UNUSED,
  K_MEDIA,
  K_FIRST,
  K_ORDERS,
  K_CASES,
  K_CLAIMS,
  K_LOCALE,
  K_DUE,
  K_PAID,
  K_SHIPPAID,
  K_ROUTE,
  K_NCOLS
};
static const as_col_t case_cols[K_NCOLS] = {
    [K_CASE] = {"case_id", "text"},
    [K_NUM] = {"case_number", "text"},
    [K_ORDER] = {"order_id", "text"},
    [K_BUYER] = {"buyer_id", "text"},
    [K_MERCHANT] = {"merchant_id", "text"},
    [K_TYPE] = {"case_type", "int"},
    [K_REASON] = {"reason", "int"},
    [K_CUR] = {"currency", "text"},
    [K_CLAIMED] = {"claimed_minor", "bigint"},
    [K_DELIV] = {"delivered_at_us", "bigint"},
    [K_SUBM] = {"submitted_at_us", "bigint"},
    [K_REGION] = {"region", "text"},
    [K_PAYREF] = {"payment_ref", "text"},
    [K_PAYMETH] = {"payment_method", "int"},
    [K_SHIPFEE] = {"shipping_fee_minor", "bigint"},
    [K_POUT] = {"preferred_outcome", "int"},
    [K_RMETH] = {"return_method", "int"},
    [K_UNUSED] = {"declared_unused", "bool"},
    [K_MEDIA] = {"has_media", "bool"},
    [K_FIRST] = {"first_order_at_us", "bigint"},
    [K_ORDERS] = {"orders", "int"},
    [K_CASES] = {"prior_cases", "int"},
    [K_CLAIMS] = {"claims_on_order", "int"},
    [K_LOCALE] = {"locale", "text"},
    [K_DUE] = {"review_due_us", "bigint"},
    [K_PAID] = {"paid_minor", "bigint"},
    [K_SHIPPAID] = {"shipping_paid_minor", "bigint"},
    [K_ROUTE] = {"route", "text"},
};

static void case_row(as_cols_t *c, const review_rec_t *r) {
  const char *s[] = {
      [K_CASE] = r->case_id,           [K_NUM] = r->case_number,
      [K_ORDER] = r->order_id,         [K_BUYER] = r->buyer_id,
      [K_MERCHANT] = r->c.merchant_id, [K_CUR] = r->c.currency,
      [K_REGION] = r->c.region,        [K_PAYREF] = r->payment_ref,
      [K_LOCALE] = r->locale,          [K_ROUTE] = r->logistics ? "logistics" : "review"};
  long long v[] = {[K_TYPE] = r->c.case_type,
                   [K_REASON] = r->c.reason,
                   [K_CLAIMED] = r->c.claimed_minor,
                   [K_DELIV] = r->c.delivered_at_us,
                   [K_SUBM] = r->c.submitted_at_us,
                   [K_PAYMETH] = r->payment_method,
                   [K_SHIPFEE] = r->shipping_fee_minor,
                   [K_POUT] = r->c.preferred_outcome,
                   [K_RMETH] = r->c.return_method,
                   [K_UNUSED] = r->c.declared_unused,
                   [K_MEDIA] = r->c.has_photo_or_video,
                   [K_FIRST] = r->c.first_order_at_us,
                   [K_ORDERS] = r->c.orders,
                   [K_CASES] = r->c.cases,
                   [K_CLAIMS] = r->c.claims_on_order,
                   [K_DUE] = r->review_due_us,
                   [K_PAID] = r->paid_minor,
                   [K_SHIPPAID] = r->shipping_paid_minor};
  for (int k = 0; k < K_NCOLS; k++) {
    if (k < (int)(sizeof s / sizeof s[0]) && s[k])
      as_cols_str(c, k, s[k]);
    else if (k == K_UNUSED || k == K_MEDIA)
      as_cols_bool(c, k, (int)v[k]);
    else
      as_cols_int(c, k, v[k]);
  }
}

static const as_bulk_t sql_cases = AS_BULK(
    "INSERT INTO cases (case_id, case_number, order_id, buyer_id, merchant_id, case_type, reason,"
    " currency, claimed_minor, delivered_at_us, submitted_at_us, region, payment_ref, "
    "payment_method,"
    " shipping_fee_minor, preferred_outcome, return_method, declared_unused, has_media, "
    "first_order_at_us,"
    " orders, prior_cases, claims_on_order, locale, review_due_us, paid_minor, shipping_paid_minor,"
    " route)"
    " SELECT * FROM {{u}} ON CONFLICT (case_id) DO NOTHING RETURNING case_id",
    case_cols);

enum {
  CL_CASE,
  CL_LINE,
  CL_SKU,
  CL_CATEGORY,
  CL_QTY,
  CL_UNIT,
  CL_PURCHASED,
  CL_PAID,
  CL_SUPPLIER,
  CL_LOT
};
static const as_col_t line_cols[] = {
    [CL_CASE] = {"case_id", "text"},
    [CL_LINE] = {"line_id", "text"},
    [CL_SKU] = {"sku", "text"},
    [CL_CATEGORY] = {"category", "text"},
    [CL_QTY] = {"quantity", "int"},
    [CL_UNIT] = {"unit_minor", "bigint"},
    [CL_PURCHASED] = {"purchased", "int"},
    [CL_PAID] = {"paid_minor", "bigint"},
    [CL_SUPPLIER] = {"supplier_id", "text"},
    [CL_LOT] = {"lot_id", "text"},
};
static const as_bulk_t sql_lines = AS_BULK(
    "INSERT INTO case_lines (case_id, line_id, sku, category, quantity, unit_minor, purchased, "
    "paid_minor, supplier_id, lot_id)"
    " SELECT * FROM {{u}} ON CONFLICT DO NOTHING",
    line_cols);

/* Paid per line is the line's allocation of the amount paid (all its units);
 * '#shipping' holds the shipping fee's. The integrity check has made sure an
 * existing row holds the same figures, so DO NOTHING loses nothing. */
enum { LG_ORDER, LG_LINE, LG_CUR, LG_PAID, LG_PURCHASED };
static const as_col_t ledger_cols[] = {
    [LG_ORDER] = {"order_id", "text"},     [LG_LINE] = {"line_id", "text"},
    [LG_CUR] = {"currency", "text"},       [LG_PAID] = {"paid_minor", "bigint"},
    [LG_PURCHASED] = {"purchased", "int"},
};
static const as_bulk_t sql_ledger = AS_BULK(
    "INSERT INTO ledger (order_id, line_id, currency, paid_minor, purchased) SELECT * FROM {{u}}"
    " ON CONFLICT DO NOTHING",
    ledger_cols);

/* RETURNING rows come back in the order the rows went in, so each search
 * starts after the last match: linear for a batch, still right otherwise. */
static void mark_fresh(const review_rec_t *recs, size_t n, PGresult *r, bool *fresh) {
  memset(fresh, 0, n * sizeof *fresh);
  size_t at = 0;
  for (int j = 0; r && n && j < PQntuples(r); j++)
    for (size_t k = 0; k < n; k++) {
      size_t i = (at + k) % n;
      if (!fresh[i] && strcmp(recs[i].case_id, PQgetvalue(r, j, 0)) == 0) {
        fresh[i] = true;
        at = i + 1;
        break;
      }
    }
}

static void ledger_row(as_cols_t *ledger, const review_rec_t *r, const char *line_id, int64_t paid,
                       int32_t purchased) {
  as_cols_str(ledger, LG_ORDER, r->order_id);
  as_cols_str(ledger, LG_LINE, line_id);
  as_cols_str(ledger, LG_CUR, r->c.currency);
  as_cols_int(ledger, LG_PAID, paid);
  as_cols_int(ledger, LG_PURCHASED, purchased);
}

static void line_rows(as_cols_t *lines, as_cols_t *ledger, const review_rec_t *r) {
  for (size_t j = 0; j < r->c.nlines; j++) {
    const review_line_t *l = &r->lines[j];
    as_cols_str(lines, CL_CASE, r->case_id);
    as_cols_str(lines, CL_LINE, l->line_id);
    as_cols_str(lines, CL_SKU, l->sku);
    as_cols_str(lines, CL_CATEGORY, l->category);
    as_cols_int(lines, CL_QTY, l->quantity);
    as_cols_int(lines, CL_UNIT, l->unit_minor);
    as_cols_int(lines, CL_PURCHASED, l->purchased);
    as_cols_int(lines, CL_PAID, l->paid_minor);
    as_cols_str(lines, CL_SUPPLIER, l->supplier_id ? l->supplier_id : "");
    as_cols_str(lines, CL_LOT, l->lot_id ? l->lot_id : "");
    ledger_row(ledger, r, l->line_id, l->paid_minor, l->purchased);
  }
  if (r->undecidable) return; /* nothing can be refunded before a person decides */
  ledger_row(ledger, r, "#shipping", r->shipping_paid_minor, 0);
}

int review_record_insert(as_tx_t *tx, review_rec_t *recs, size_t n, bool *fresh) {
  as_cols_t cases, lines, ledger;
  as_cols_init(&cases, &sql_cases);
  as_cols_init(&lines, &sql_lines);
  as_cols_init(&ledger, &sql_ledger);
  for (size_t i = 0; i < n; i++) {
    case_row(&cases, &recs[i]);
    line_rows(&lines, &ledger, &recs[i]);
  }
  PGresult *r = NULL;
  int rc = as_cols_run(&cases, as_tx_db(tx), &r);
  if (rc == 0) mark_fresh(recs, n, r, fresh);
  PQclear(r);
  if (rc == 0) rc = as_cols_run(&lines, as_tx_db(tx), NULL);
  if (rc == 0) rc = as_cols_run(&ledger, as_tx_db(tx), NULL);
  as_cols_free(&cases);
  as_cols_free(&lines);
  as_cols_free(&ledger);
  return rc;
}

/* ---- reading a case back */

static const char sql_load[] =
    "SELECT r.case_id, r.case_number, r.order_id, r.buyer_id, r.merchant_id, r.currency, r.region,"
    " r.payment_ref, r.locale, c.state, r.case_type, r.reason, r.claimed_minor, r.delivered_at_us,"
    " r.submitted_at_us, r.payment_method, r.shipping_fee_minor, r.preferred_outcome, "
    "r.return_method,"
    " r.declared_unused, r.has_media, r.first_order_at_us, r.orders, r.prior_cases, "
    "r.claims_on_order,"
    " r.review_due_us, coalesce(r.verdict, 0), coalesce(r.outcome, 0), coalesce(r.shipping_payer, "
    "0),"
    " coalesce(r.offer_kind, 0), coalesce(r.return_required, false), coalesce(r.refund_shipping, "
    "false),"
    " r.ruling_final, r.return_received_at_us IS NOT NULL, r.inspection_passed IS NOT NULL,"
    " coalesce(r.inspection_passed, false), coalesce(r.approved_minor, 0), coalesce(r.offer_minor, "
    "0),"
    " coalesce(r.offer_id, ''), r.paid_minor, r.shipping_paid_minor, r.shipping_refund,"
    " r.route = 'logistics', r.receipt_counted"
    " FROM cases r JOIN cases.cases c USING (case_id) WHERE r.case_id = $1 FOR UPDATE OF r, c";

static const char sql_load_lines[] =
    "SELECT line_id, sku, category, supplier_id, lot_id, quantity, unit_minor, purchased, "
    "paid_minor"
    " FROM case_lines"
    " WHERE case_id = $1"
    " ORDER BY line_id";

static long long num(PGresult *r, int row, int col) {
  return strtoll(PQgetvalue(r, row, col), NULL, 10);
}
static bool yes(PGresult *r, int row, int col) {
  return PQgetvalue(r, row, col)[0] == 't';
}

static void fill_rec(review_rec_t *rec, PGresult *r) {
  const char *s[9];
  for (int k = 0; k < 9; k++) s[k] = PQgetvalue(r, 0, k);
  *rec = (review_rec_t){.case_id = s[0],
                        .case_number = s[1],
                        .order_id = s[2],
                        .buyer_id = s[3],
                        .payment_ref = s[7],
                        .locale = s[8],
                        .payment_method = (int)num(r, 0, 15),
                        .shipping_fee_minor = num(r, 0, 16),
                        .review_due_us = num(r, 0, 25),
                        .verdict = (int)num(r, 0, 26),
                        .outcome = (int)num(r, 0, 27),
                        .shipping_payer = (int)num(r, 0, 28),
                        .offer_kind = (int)num(r, 0, 29),
                        .return_required = yes(r, 0, 30),
                        .refund_shipping = yes(r, 0, 31),
                        .ruling_final = yes(r, 0, 32),
                        .received = yes(r, 0, 33),
                        .inspection_known = yes(r, 0, 34),
                        .inspection_passed = yes(r, 0, 35),
                        .approved_minor = num(r, 0, 36),
                        .offer_minor = num(r, 0, 37),
                        .paid_minor = num(r, 0, 39),
                        .shipping_paid_minor = num(r, 0, 40),
                        .shipping_refund = (int)num(r, 0, 41),
                        .logistics = yes(r, 0, 42),
                        .receipt_counted = yes(r, 0, 43),
                        .owner = r};
  snprintf(rec->offer_id, sizeof rec->offer_id, "%s", PQgetvalue(r, 0, 38));
  if (as_case_state_parse(PQgetvalue(r, 0, 9), &rec->state) < 0) rec->state = 0;
  rec->c = (review_case_t){.case_type = (int)num(r, 0, 10),
                           .reason = (int)num(r, 0, 11),
                           .merchant_id = s[4],
                           .currency = s[5],
                           .region = s[6],
                           .claimed_minor = num(r, 0, 12),
                           .delivered_at_us = num(r, 0, 13),
                           .submitted_at_us = num(r, 0, 14),
                           .preferred_outcome = (int)num(r, 0, 17),
                           .return_method = (int)num(r, 0, 18),
                           .declared_unused = yes(r, 0, 19),
                           .has_photo_or_video = yes(r, 0, 20),
                           .first_order_at_us = num(r, 0, 21),
                           .orders = (int32_t)num(r, 0, 22),
                           .cases = (int32_t)num(r, 0, 23),
                           .claims_on_order = (int32_t)num(r, 0, 24)};
}

/* The lines' strings are copied behind the line array, in one allocation,
 * so a record holds a single result (owner). */
static int load_lines(as_tx_t *tx, review_rec_t *rec) {
  const char *vals[1] = {rec->case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_load_lines, 1, vals, &r);
  if (rc < 0) return rc;
  int n = PQntuples(r);
  size_t slots = n > 0 ? (size_t)n : 1, strbytes = 0;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < 5; k++) strbytes += (size_t)PQgetlength(r, i, k) + 1;
  char *mem = malloc(slots * sizeof(review_line_t) + strbytes);
  if (!mem) {
    PQclear(r);
    return -ENOMEM;
  }
  rec->lines = (review_line_t *)(void *)mem;
  char *p = mem + slots * sizeof(review_line_t);
  for (int i = 0; i < n; i++) {
    const char *f[5];
    for (int k = 0; k < 5; k++) {
      size_t len = (size_t)PQgetlength(r, i, k);
      memcpy(p, PQgetvalue(r, i, k), len + 1);
      f[k] = p;
      p += len + 1;
    }
    rec->lines[i] = (review_line_t){.line_id = f[0],
                                    .sku = f[1],
                                    .category = f[2],
                                    .supplier_id = f[3],
                                    .lot_id = f[4],
                                    .quantity = (int32_t)num(r, i, 5),
                                    .unit_minor = num(r, i, 6),
                                    .purchased = (int32_t)num(r, i, 7),
                                    .paid_minor = num(r, i, 8)};
  }
  PQclear(r);
  rec->c.lines = rec->lines;
  rec->c.nlines = (size_t)n;
  return 0;
}

int review_record_load(as_tx_t *tx, const char *case_id, review_rec_t *rec) {
  const char *vals[1] = {case_id};
  PGresult *r = NULL;
  memset(rec, 0, sizeof *rec);
  int rc = as_db_query(as_tx_db(tx), sql_load, 1, vals, &r);
  if (rc < 0) return rc;
  if (PQntuples(r) == 0) {
    PQclear(r);
    return -ENOENT;
  }
  fill_rec(rec, r);
  return load_lines(tx, rec);
}
