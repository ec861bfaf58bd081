/* insp_cases: the projection of CaseOpened that tasks, verdicts and
 * clusters read: who bought what from which supplier and lot, what was
 * claimed and what each line was paid. Written for a whole batch with two
 * bulk statements; a hostile CaseOpened (unsafe ids, units or amounts that
 * cannot be) is dead-lettered with the reason and the rest go on. A case
 * without lines (a logistics or complaint case) has nothing to inspect. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as_cols.h"
#include "as_money.h"
#include "inspection.h"

enum { K_CASE, K_ORDER, K_BUYER, K_TYPE, K_REASON, K_CUR, K_EVID, K_AT, K_NCOLS };
static const as_col_t case_cols[K_NCOLS] = {
    [K_CASE] = {"case_id", "text"},      [K_ORDER] = {"order_id", "text"},
    [K_BUYER] = {"buyer_id", "text"},    [K_TYPE] = {"case_type", "int"},
    [K_REASON] = {"reason", "int"},      [K_CUR] = {"currency", "text"},
    [K_EVID] = {"has_evidence", "bool"}, [K_AT] = {"opened_at_us", "bigint"},
};
static const as_bulk_t sql_cases = AS_BULK(
    "INSERT INTO cases (case_id, order_id, buyer_id, case_type, reason, currency, has_evidence,"
    " opened_at_us) SELECT * FROM {{u}} ON CONFLICT (case_id) DO NOTHING",
    case_cols);

enum { L_CASE, L_LINE, L_SKU, L_CAT, L_SUP, L_LOT, L_PURCH, L_CLAIM, L_PAID, L_NCOLS };
static const as_col_t line_cols[L_NCOLS] = {
    [L_CASE] = {"case_id", "text"},      [L_LINE] = {"line_id", "text"},
    [L_SKU] = {"sku", "text"},           [L_CAT] = {"category", "text"},
    [L_SUP] = {"supplier_id", "text"},   [L_LOT] = {"lot_id", "text"},
    [L_PURCH] = {"purchased", "int"},    [L_CLAIM] = {"claimed", "int"},
    [L_PAID] = {"paid_minor", "bigint"},
};
static const as_bulk_t sql_lines = AS_BULK(
    "INSERT INTO case_lines (case_id, line_id, sku, category, supplier_id, lot_id, purchased,"
    " claimed, paid_minor) SELECT * FROM {{u}} ON CONFLICT DO NOTHING",
    line_cols);

/* What the event carries that the projection cannot hold; NULL if nothing. */
static const char *bad_line(const Aftersales__V1__CaseLine *l, const char *cur) {
  if (!as_envelope_id_ok(l->line_id) || !as_envelope_id_ok(l->sku))
    return "case line: line id or sku missing or unsafe";
  if (!as_envelope_id_ok(l->supplier_id)) return "case line: supplier id missing or unsafe";
  if (l->lot_id[0] && !as_envelope_id_ok(l->lot_id)) return "case line: lot id unsafe";
  if (strlen(l->category) > INSP_NAME_MAX) return "case line: category longer than 64 bytes";
  if (l->purchased_quantity < 1 || l->quantity < 1 || l->quantity > l->purchased_quantity)
    return "case line: claimed units outside 1..purchased";
  const Aftersales__V1__Money *p = l->paid_allocated;
  if (!p || p->amount_minor < 0 || strcmp(p->currency, cur) != 0)
    return "case line: paid_allocated missing, negative or in another currency";
  /* a grant adds up to INSP_MAX_LINES of these: the sum must not overflow */
  if (p->amount_minor > INT64_MAX / INSP_MAX_LINES) return "case line: paid_allocated too large";
  return NULL;
}

static const char *bad_case(const Aftersales__V1__CaseOpened *e) {
  if (!as_envelope_id_ok(e->case_id) || !as_envelope_id_ok(e->order_id) ||
      !as_envelope_id_ok(e->buyer_id))
    return "case, order or buyer id missing or unsafe";
  if (e->n_case_lines > INSP_MAX_LINES) return "more than 100 case lines";
  const char *cur =
      e->case_lines[0]->paid_allocated ? e->case_lines[0]->paid_allocated->currency : "";
  if (!as_money_currency_ok(cur)) return "case line: currency not ISO 4217";
  for (size_t i = 0; i < e->n_case_lines; i++) {
    const char *bad = bad_line(e->case_lines[i], cur);
    if (bad) return bad;
    for (size_t k = 0; k < i; k++)
      if (strcmp(e->case_lines[k]->line_id, e->case_lines[i]->line_id) == 0)
        return "case line named twice";
  }
  return NULL;
}

static void case_rows(as_cols_t *c, as_cols_t *l, const Aftersales__V1__CaseOpened *e, int64_t at) {
  as_cols_str(c, K_CASE, e->case_id);
  as_cols_str(c, K_ORDER, e->order_id);
  as_cols_str(c, K_BUYER, e->buyer_id);
  as_cols_int(c, K_TYPE, e->case_type);
  as_cols_int(c, K_REASON, e->reason);
  as_cols_str(c, K_CUR, e->case_lines[0]->paid_allocated->currency);
  as_cols_bool(c, K_EVID, as_envelope_has_photo_or_video(e->evidence, e->n_evidence));
  as_cols_int(c, K_AT, at);
  for (size_t i = 0; i < e->n_case_lines; i++) {
    const Aftersales__V1__CaseLine *x = e->case_lines[i];
    as_cols_str(l, L_CASE, e->case_id);
    as_cols_str(l, L_LINE, x->line_id);
    as_cols_str(l, L_SKU, x->sku);
    as_cols_str(l, L_CAT, x->category);
    as_cols_str(l, L_SUP, x->supplier_id);
    as_cols_str(l, L_LOT, x->lot_id);
    as_cols_int(l, L_PURCH, x->purchased_quantity);
    as_cols_int(l, L_CLAIM, x->quantity);
    as_cols_int(l, L_PAID, x->paid_allocated->amount_minor);
  }
}

int insp_cases_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  (void)state;
  as_cols_t c, l;
  as_cols_init(&c, &sql_cases);
  as_cols_init(&l, &sql_lines);
  int64_t now = as_now_us();
  for (size_t i = 0; i < n; i++) {
    const Aftersales__V1__CaseOpened *e = msgs[i]->env->case_opened;
    if (e->n_case_lines == 0) continue;
    const char *bad = bad_case(e);
    if (bad) {
      as_tx_reject(msgs[i], bad);
      continue;
    }
    case_rows(&c, &l, e, now);
  }
  int rc = as_cols_run(&c, as_tx_db(tx), NULL);
  if (rc == 0) rc = as_cols_run(&l, as_tx_db(tx), NULL);
  as_cols_free(&c);
  as_cols_free(&l);
  return rc;
}

static const as_col_t load_cols[] = {{"case_id", "text"}};
static const as_bulk_t sql_load = AS_BULK(
    "SELECT c.case_id, c.order_id, c.buyer_id, c.currency, c.case_type, c.reason, c.has_evidence,"
    " l.line_id, l.sku, l.category, l.supplier_id, l.lot_id, l.purchased, l.claimed, l.paid_minor"
    " FROM cases c JOIN case_lines l USING (case_id) WHERE c.case_id = ANY({{$case_id}})"
    " ORDER BY c.case_id, l.line_id",
    load_cols);

static void line_at(PGresult *r, int i, insp_line_t *l) {
  l->line_id = PQgetvalue(r, i, 7);
  l->sku = PQgetvalue(r, i, 8);
  l->category = PQgetvalue(r, i, 9);
  l->supplier_id = PQgetvalue(r, i, 10);
  l->lot_id = PQgetvalue(r, i, 11);
  l->purchased = atoi(PQgetvalue(r, i, 12));
  l->claimed = atoi(PQgetvalue(r, i, 13));
  l->paid_minor = strtoll(PQgetvalue(r, i, 14), NULL, 10);
}

/* Rows come ordered by case: a case is a run of rows. */
static int cases_of(PGresult *r, insp_cases_t *out) {
  int rows = PQntuples(r);
  out->v = calloc((size_t)rows + 1, sizeof *out->v);
  out->lines = calloc((size_t)rows + 1, sizeof *out->lines);
  if (!out->v || !out->lines) return -ENOMEM;
  for (int i = 0; i < rows; i++) {
    line_at(r, i, &out->lines[i]);
    insp_case_t *c = out->n ? &out->v[out->n - 1] : NULL;
    if (!c || strcmp(c->case_id, PQgetvalue(r, i, 0)) != 0) {
      c = &out->v[out->n++];
      c->case_id = PQgetvalue(r, i, 0);
      c->order_id = PQgetvalue(r, i, 1);
      c->buyer_id = PQgetvalue(r, i, 2);
      c->currency = PQgetvalue(r, i, 3);
      c->case_type = atoi(PQgetvalue(r, i, 4));
      c->reason = atoi(PQgetvalue(r, i, 5));
      c->has_evidence = PQgetvalue(r, i, 6)[0] == 't';
      c->lines = &out->lines[i];
    }
    c->n++;
  }
  return 0;
}

int insp_cases_load(as_tx_t *tx, const char *const *ids, size_t n, insp_cases_t *out) {
  memset(out, 0, sizeof *out);
  as_cols_t q;
  as_cols_init(&q, &sql_load);
  for (size_t i = 0; i < n; i++) as_cols_str(&q, 0, ids[i]);
  int rc = n ? as_cols_run(&q, as_tx_db(tx), &out->owner) : 0;
  as_cols_free(&q);
  return rc == 0 && out->owner ? cases_of(out->owner, out) : rc;
}

const insp_case_t *insp_cases_find(const insp_cases_t *out, const char *case_id) {
  for (size_t i = 0; i < out->n; i++)
    if (strcmp(out->v[i].case_id, case_id) == 0) return &out->v[i];
  return NULL;
}

void insp_cases_free(insp_cases_t *out) {
  free(out->v);
  free(out->lines);
  PQclear(out->owner);
  memset(out, 0, sizeof *out);
}

const insp_line_t *insp_case_line(const insp_case_t *c, const char *line_id) {
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->lines[i].line_id, line_id) == 0) return &c->lines[i];
  return NULL;
}
