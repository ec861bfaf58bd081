/* review_record: cases as review knows them.
 *
 * Review decides from CaseOpened alone (the lines with what was paid, the
 * order facts, the buyer's history): it copies them into its own tables so
 * that later events (evidence, replies, receipts, agent decisions) can be
 * decided on the same facts, and it seeds the refund ledger with what was
 * paid per order line. The first case of an order writes the ledger's paid
 * figures; a later event cannot raise them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "review.h"

#define AN(e, f) ((e)->f ? (e)->f : &empty_money)
static const Aftersales__V1__Money empty_money = AFTERSALES__V1__MONEY__INIT;

void review_rec_free(review_rec_t *r) {
  free(r->lines);
  free(r->purchased);
  PQclear(r->owner);
  r->lines = NULL;
  r->purchased = NULL;
  r->owner = NULL;
}

static bool currency_ok(const char *c) {
  return c && strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' && c[2] >= 'A' &&
         c[2] <= 'Z';
}

/* The lines, checked: one currency, positive quantities within what was
 * bought, and a claimed total that fits in 63 bits. */
static const char *take_lines(review_rec_t *rec, const Aftersales__V1__CaseOpened *e) {
  size_t n = e->n_case_lines;
  if (n == 0 || n > 1000) return "case_lines missing or too many";
  rec->lines = calloc(n, sizeof *rec->lines);
  rec->purchased = calloc(n, sizeof *rec->purchased);
  if (!rec->lines || !rec->purchased) return "out of memory";
  int64_t total = 0;
  for (size_t i = 0; i < n; i++) {
    const Aftersales__V1__CaseLine *l = e->case_lines[i];
    const Aftersales__V1__Money *p = AN(l, unit_price);
    if (!as_envelope_id_ok(l->line_id) || l->quantity < 1 || l->purchased_quantity < l->quantity)
      return "case line id or quantity invalid";
    if (p->amount_minor < 0 || strcmp(p->currency, rec->c.currency) != 0) return "case line price invalid";
    int64_t line;
    if (__builtin_mul_overflow(p->amount_minor, (int64_t)l->quantity, &line) ||
        __builtin_add_overflow(total, line, &total))
      return "claimed amount overflows";
    rec->lines[i] = (review_line_t){.line_id = l->line_id, .sku = l->sku, .category = l->category,
                                    .quantity = l->quantity, .unit_minor = p->amount_minor};
    rec->purchased[i] = l->purchased_quantity;
  }
  rec->c.lines = rec->lines;
  rec->c.nlines = n;
  rec->c.claimed_minor = total;
  return NULL;
}

const char *review_record_from_event(review_rec_t *rec, const Aftersales__V1__CaseOpened *e) {
  const Aftersales__V1__OrderFacts *o = e->order;
  const Aftersales__V1__BuyerHistory *h = e->buyer_history;
  if (!as_envelope_id_ok(e->case_id) || !as_envelope_id_ok(e->order_id) || !as_envelope_id_ok(e->buyer_id))
    return "case, order or buyer id missing or unsafe";
  if (!o || !h) return "order facts or buyer history missing";
  const char *cur = AN(o, paid)->currency;
  if (!currency_ok(cur)) return "currency missing or not ISO 4217";
  if (AN(o, shipping_fee)->amount_minor < 0) return "shipping fee negative";
  *rec = (review_rec_t){.case_id = e->case_id, .case_number = e->case_number, .order_id = e->order_id,
                        .buyer_id = e->buyer_id, .locale = e->locale, .payment_ref = o->payment_ref,
                        .payment_method = o->payment_method,
                        .shipping_fee_minor = AN(o, shipping_fee)->amount_minor,
                        .review_due_us = e->review_due_us, .state = e->state};
  rec->c = (review_case_t){.case_type = e->case_type, .reason = e->reason,
                           .preferred_outcome = e->preferred_outcome, .return_method = e->return_method,
                           .merchant_id = e->merchant_id, .currency = cur, .region = o->region,
                           .delivered_at_us = o->delivered_at_us, .submitted_at_us = e->submitted_at_us,
                           .has_photo_or_video = as_envelope_has_photo_or_video(e->evidence, e->n_evidence),
                           .declared_unused = e->declared_unused, .first_order_at_us = h->first_order_at_us,
                           .orders = h->orders, .cases = h->cases, .claims_on_order = h->claims_on_order};
  return take_lines(rec, e);
}

enum { K_CASE, K_NUM, K_ORDER, K_BUYER, K_MERCHANT, K_TYPE, K_REASON, K_CUR, K_CLAIMED, K_DELIV, K_SUBM,
       K_REGION, K_PAYREF, K_PAYMETH, K_SHIPFEE, K_POUT, K_RMETH, K_UNUSED, K_MEDIA, K_FIRST, K_ORDERS, K_CASES,
       K_CLAIMS, K_LOCALE, K_DUE, K_NCOLS };

static void case_row(as_cols_t *c, const review_rec_t *r) {
  const char *s[] = {[K_CASE] = r->case_id, [K_NUM] = r->case_number, [K_ORDER] = r->order_id,
                     [K_BUYER] = r->buyer_id, [K_MERCHANT] = r->c.merchant_id, [K_CUR] = r->c.currency,
                     [K_REGION] = r->c.region, [K_PAYREF] = r->payment_ref, [K_LOCALE] = r->locale};
  long long v[] = {[K_TYPE] = r->c.case_type, [K_REASON] = r->c.reason, [K_CLAIMED] = r->c.claimed_minor,
                   [K_DELIV] = r->c.delivered_at_us, [K_SUBM] = r->c.submitted_at_us,
                   [K_PAYMETH] = r->payment_method, [K_SHIPFEE] = r->shipping_fee_minor,
                   [K_POUT] = r->c.preferred_outcome, [K_RMETH] = r->c.return_method,
                   [K_UNUSED] = r->c.declared_unused, [K_MEDIA] = r->c.has_photo_or_video,
                   [K_FIRST] = r->c.first_order_at_us, [K_ORDERS] = r->c.orders, [K_CASES] = r->c.cases,
                   [K_CLAIMS] = r->c.claims_on_order, [K_DUE] = r->review_due_us};
  for (int k = 0; k < K_NCOLS; k++) {
    if (k < (int)(sizeof s / sizeof s[0]) && s[k])
      as_cols_str(c, k, s[k]);
    else if (k == K_UNUSED || k == K_MEDIA)
      as_cols_bool(c, k, (int)v[k]);
    else
      as_cols_int(c, k, v[k]);
  }
  as_cols_row(c);
}

static const char sql_cases[] =
    "INSERT INTO %1$s.cases (case_id, case_number, order_id, buyer_id, merchant_id, case_type, reason,"
    " currency, claimed_minor, delivered_at_us, submitted_at_us, region, payment_ref, payment_method,"
    " shipping_fee_minor, preferred_outcome, return_method, declared_unused, has_media, first_order_at_us,"
    " orders, prior_cases, claims_on_order, locale, review_due_us)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[],"
    " $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::int[],"
    " $15::bigint[], $16::int[], $17::int[], $18::boolean[], $19::boolean[], $20::bigint[], $21::int[],"
    " $22::int[], $23::int[], $24::text[], $25::bigint[])"
    " ON CONFLICT (case_id) DO NOTHING RETURNING case_id";

static const char sql_lines[] =
    "INSERT INTO %1$s.case_lines (case_id, line_id, sku, category, quantity, unit_minor)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[])"
    " ON CONFLICT DO NOTHING";

/* Paid per line is unit price times units bought; '#shipping' holds the
 * order's shipping fee. */
static const char sql_ledger[] =
    "INSERT INTO %1$s.ledger (order_id, line_id, currency, paid_minor)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) ON CONFLICT DO NOTHING";

static void mark_fresh(const review_rec_t *recs, size_t n, PGresult *r, bool *fresh) {
  memset(fresh, 0, n * sizeof *fresh);
  for (int j = 0; r && j < PQntuples(r); j++)
    for (size_t i = 0; i < n; i++)
      if (!fresh[i] && strcmp(recs[i].case_id, PQgetvalue(r, j, 0)) == 0) {
        fresh[i] = true;
        break;
      }
}

static void line_rows(as_cols_t *lines, as_cols_t *ledger, const review_rec_t *r) {
  for (size_t j = 0; j < r->c.nlines; j++) {
    const review_line_t *l = &r->lines[j];
    as_cols_str(lines, 0, r->case_id);
    as_cols_str(lines, 1, l->line_id);
    as_cols_str(lines, 2, l->sku);
    as_cols_str(lines, 3, l->category);
    as_cols_int(lines, 4, l->quantity);
    as_cols_int(lines, 5, l->unit_minor);
    as_cols_row(lines);
    as_cols_str(ledger, 0, r->order_id);
    as_cols_str(ledger, 1, l->line_id);
    as_cols_str(ledger, 2, r->c.currency);
    as_cols_int(ledger, 3, l->unit_minor * r->purchased[j]); /* bounded: checked in take_lines */
    as_cols_row(ledger);
  }
  as_cols_str(ledger, 0, r->order_id);
  as_cols_str(ledger, 1, "#shipping");
  as_cols_str(ledger, 2, r->c.currency);
  as_cols_int(ledger, 3, r->shipping_fee_minor);
  as_cols_row(ledger);
}

int review_record_insert(review_t *x, as_tx_t *tx, review_rec_t *recs, size_t n, bool *fresh) {
  as_cols_t cases, lines, ledger;
  as_cols_init(&cases, K_NCOLS);
  as_cols_init(&lines, 6);
  as_cols_init(&ledger, 4);
  for (size_t i = 0; i < n; i++) {
    case_row(&cases, &recs[i]);
    line_rows(&lines, &ledger, &recs[i]);
  }
  char sql[2048];
  PGresult *r = NULL;
  int rc = as_cols_run(&cases, as_tx_db(tx), review_sql(x, sql, sizeof sql, sql_cases), &r);
  if (rc == 0) mark_fresh(recs, n, r, fresh);
  PQclear(r);
  if (rc == 0) rc = as_cols_run(&lines, as_tx_db(tx), review_sql(x, sql, sizeof sql, sql_lines), NULL);
  if (rc == 0) rc = as_cols_run(&ledger, as_tx_db(tx), review_sql(x, sql, sizeof sql, sql_ledger), NULL);
  as_cols_free(&cases);
  as_cols_free(&lines);
  as_cols_free(&ledger);
  return rc;
}

/* ---- reading a case back */

static const char sql_load[] =
    "SELECT r.case_id, r.case_number, r.order_id, r.buyer_id, r.merchant_id, r.currency, r.region,"
    " r.payment_ref, r.locale, c.state, r.case_type, r.reason, r.claimed_minor, r.delivered_at_us,"
    " r.submitted_at_us, r.payment_method, r.shipping_fee_minor, r.preferred_outcome, r.return_method,"
    " r.declared_unused, r.has_media, r.first_order_at_us, r.orders, r.prior_cases, r.claims_on_order,"
    " r.review_due_us, coalesce(r.verdict, 0), coalesce(r.outcome, 0), coalesce(r.shipping_payer, 0),"
    " coalesce(r.offer_kind, 0), coalesce(r.return_required, false), coalesce(r.refund_shipping, false),"
    " r.ruling_final, r.return_received_at_us IS NOT NULL, r.inspection_passed IS NOT NULL,"
    " coalesce(r.inspection_passed, false), coalesce(r.approved_minor, 0), coalesce(r.offer_minor, 0),"
    " coalesce(r.offer_id, '')"
    " FROM %1$s.cases r JOIN cases.cases c USING (case_id) WHERE r.case_id = $1 FOR UPDATE OF r, c";

static const char sql_load_lines[] =
    "SELECT line_id, sku, category, quantity, unit_minor FROM %1$s.case_lines WHERE case_id = $1"
    " ORDER BY line_id";

static long long num(PGresult *r, int row, int col) { return strtoll(PQgetvalue(r, row, col), NULL, 10); }
static bool yes(PGresult *r, int row, int col) { return PQgetvalue(r, row, col)[0] == 't'; }

static void fill_rec(review_rec_t *rec, PGresult *r) {
  const char *s[9];
  for (int k = 0; k < 9; k++) s[k] = PQgetvalue(r, 0, k);
  *rec = (review_rec_t){.case_id = s[0], .case_number = s[1], .order_id = s[2], .buyer_id = s[3],
                        .payment_ref = s[7], .locale = s[8], .payment_method = (int)num(r, 0, 15),
                        .shipping_fee_minor = num(r, 0, 16), .review_due_us = num(r, 0, 25),
                        .verdict = (int)num(r, 0, 26), .outcome = (int)num(r, 0, 27),
                        .shipping_payer = (int)num(r, 0, 28), .offer_kind = (int)num(r, 0, 29),
                        .return_required = yes(r, 0, 30), .refund_shipping = yes(r, 0, 31),
                        .ruling_final = yes(r, 0, 32), .received = yes(r, 0, 33),
                        .inspection_known = yes(r, 0, 34), .inspection_passed = yes(r, 0, 35),
                        .approved_minor = num(r, 0, 36), .offer_minor = num(r, 0, 37), .owner = r};
  snprintf(rec->offer_id, sizeof rec->offer_id, "%s", PQgetvalue(r, 0, 38));
  if (as_case_state_parse(PQgetvalue(r, 0, 9), &rec->state) < 0) rec->state = 0;
  rec->c = (review_case_t){.case_type = (int)num(r, 0, 10), .reason = (int)num(r, 0, 11),
                           .merchant_id = s[4], .currency = s[5], .region = s[6],
                           .claimed_minor = num(r, 0, 12), .delivered_at_us = num(r, 0, 13),
                           .submitted_at_us = num(r, 0, 14), .preferred_outcome = (int)num(r, 0, 17),
                           .return_method = (int)num(r, 0, 18), .declared_unused = yes(r, 0, 19),
                           .has_photo_or_video = yes(r, 0, 20), .first_order_at_us = num(r, 0, 21),
                           .orders = (int32_t)num(r, 0, 22), .cases = (int32_t)num(r, 0, 23),
                           .claims_on_order = (int32_t)num(r, 0, 24)};
}

/* The lines' strings are copied behind the line array, in one allocation,
 * so a record holds a single result (owner). */
static int load_lines(review_t *x, as_tx_t *tx, review_rec_t *rec) {
  char sql[256];
  const char *vals[1] = {rec->case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), review_sql(x, sql, sizeof sql, sql_load_lines), 1, vals, &r);
  if (rc < 0) return rc;
  int n = PQntuples(r);
  size_t slots = n > 0 ? (size_t)n : 1, strbytes = 0;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < 3; k++) strbytes += (size_t)PQgetlength(r, i, k) + 1;
  char *mem = malloc(slots * sizeof(review_line_t) + strbytes);
  if (!mem) {
    PQclear(r);
    return -ENOMEM;
  }
  rec->lines = (review_line_t *)(void *)mem;
  char *p = mem + slots * sizeof(review_line_t);
  for (int i = 0; i < n; i++) {
    const char *f[3];
    for (int k = 0; k < 3; k++) {
      size_t len = (size_t)PQgetlength(r, i, k);
      memcpy(p, PQgetvalue(r, i, k), len + 1);
      f[k] = p;
      p += len + 1;
    }
    rec->lines[i] = (review_line_t){.line_id = f[0], .sku = f[1], .category = f[2],
                                    .quantity = (int32_t)num(r, i, 3), .unit_minor = num(r, i, 4)};
  }
  PQclear(r);
  rec->c.lines = rec->lines;
  rec->c.nlines = (size_t)n;
  return 0;
}

int review_record_load(review_t *x, as_tx_t *tx, const char *case_id, review_rec_t *rec) {
  char sql[2048];
  const char *vals[1] = {case_id};
  PGresult *r = NULL;
  memset(rec, 0, sizeof *rec);
  int rc = as_db_query(as_tx_db(tx), review_sql(x, sql, sizeof sql, sql_load), 1, vals, &r);
  if (rc < 0) return rc;
  if (PQntuples(r) == 0) {
    PQclear(r);
    return -ENOENT;
  }
  fill_rec(rec, r);
  return load_lines(x, tx, rec);
}
